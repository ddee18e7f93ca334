"""P-probing and Q-probing: is a person's knowledge attached to the name? (Part 3.1)

Physics of LMs Part 3.1 asks whether a model pretrained on biographies stores each person's six
attributes on the person's *name* (so that a question about the name can reach them later) or only
next to the text that states them. Two probes of the frozen model answer it:

- P-probing: the input is the person's fixed biography (BOS + document). At the token just before
  each attribute's value (positions P1..P6, in ATTRIBUTES order) linear heads try to read every one
  of the six attributes from the last layer's hidden state: a 6 x 6 table of held-out accuracies.
  The paper: with augmented pretraining data every attribute is decodable already at P1, soon after
  the name; without augmentation an attribute becomes decodable only from its own position on.
- Q-probing: the input is BOS + the full name alone; the heads read the last name token. High
  accuracy means the name's own representation carries the knowledge.

What trains (the model stays frozen): a rank-r update of the input token embeddings,
E' = E + A @ B with A [V, r] and B [r, D] (A starts at zero, so step 0 sees the frozen model; rank 2
for P, 16 for Q), which lets the probe adapt to an input the model was not trained on while being
too small to memorise people, and one linear softmax head per attribute on hidden[-1] (the last
block's output) at the probe position. Every P position has its own update and heads; the six heads
of a position share its update. Accuracy is measured on people held out of probe training.

Classes: `People.labels` for every attribute but birth_date, whose class here is the birth year
(birth_year - 1900: 200 classes), as a whole date (about 67k classes) is far too fine for a linear
head trained on a few thousand people.

Encoders (BERT) would see the value itself to the right of a P position, so for them every token
after the probe position is replaced by mask_id, in a separate input per position: the encoder's
probe reads the prefix only, as the decoder's does. Decoders need no masking (they are causal):
every position reads the same whole rows. An encoder is also P-probed a second way, `read="value"`
("p_at_value" in a probe_run): the value's first token and everything after it masked, read at that
first masked token. That is where a masked-LM encoder predicts the value (a decoder predicts it one
token earlier, where the first way reads), so this reading tells whether the encoder stored the
attribute at all, apart from whether the token before the value carries it.

Training is one jitted Adam step for all positions and attributes at once (a minibatch of training
people, drawn with replacement), scanned over the steps; every position's rows have one length, so
all positions run as one forward pass vmapped over positions, and features are computed in chunks
of one fixed size. A probe thus compiles one training program and one feature program, shared by
the trained model and its random-init twin (a decoder's rows used to be cut per position, which
compiled a program per position: 100 s for a 10-step P probe of a 0.4M-parameter model on 2 cores).
Features are standardised with the frozen model's statistics at each probe position: one fixed
affine map, which leaves the set of linear heads unchanged and lets one learning rate suit any model.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from lmphys.errors import ConfigError, DataError
from lmphys.models import transformer
from lmphys.probe import hidden_with_update, init_embedding_update, split_rows, standardizer
from lmphys.worlds.bio import cloze, pieces, text
from lmphys.worlds.bio.people import ATTRIBUTES, FIRST_YEAR, NUM_YEARS, People, num_classes

_EVAL_CHUNK = 256  # rows per forward pass when scoring
_STATS_ROWS = 512  # training rows that fix the feature standardisation

ProbeParams = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ProbeInputs:
    """The model inputs of one probe: for each probe position p, rows of tokens and where to read."""

    tokens: tuple[np.ndarray, ...]  # P arrays [N, T_p] int32 (T_p may differ per position)
    positions_PN: np.ndarray  # [P, N] the position in row n whose last hidden state is probed
    person_N: np.ndarray  # row n is about person person_N[n] of the People it was made from

    @property
    def num_positions(self) -> int:
        return len(self.tokens)


@dataclasses.dataclass(frozen=True)
class FittedProbes:
    """Trained low-rank updates and heads (stacked over positions) with their held-out scores."""

    accuracy_PA: np.ndarray  # [P, A] test accuracy of attribute a's head (labels order) at position p
    majority_A: np.ndarray  # [A] test accuracy of always guessing the commonest training class
    probe_params: ProbeParams  # {"update": {"a": [P,V,r], "b": [P,r,D]}, "heads": {attr: {"w", "b"}}}
    train_losses: np.ndarray  # [steps] summed cross-entropy of each training minibatch


@dataclasses.dataclass
class ProbeReport:
    """One probe's held-out accuracies, next to the same probe on a randomly initialised twin."""

    kind: str  # "P" or "Q"
    accuracy: dict[str, float]  # "P1.birth_date" .. "P6.employer_city", or "Q.birth_date" ..
    random_init: dict[str, float] | None

    @classmethod
    def from_run(cls, result: dict[str, Any], kind: str) -> "ProbeReport":
        """The P or Q half of a `probe_run` result."""
        if kind not in ("P", "Q"):
            raise ConfigError(f"probe kind must be 'P' or 'Q', got {kind!r}")
        name = kind.lower()
        return cls(kind, result[name], result.get(f"{name}_random"))


def attribute_labels(people: People) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Per attribute (ATTRIBUTES order), every person's class [N] and the number of classes.

    birth_date is classified by birth year (see the module docstring); the others by `People.labels`.
    """
    labels = {"birth_date": np.asarray(people.birth_year, np.int64) - FIRST_YEAR}
    classes = {"birth_date": NUM_YEARS}
    for attribute in ATTRIBUTES[1:]:
        labels[attribute] = np.asarray(people.labels(attribute), np.int64)
        classes[attribute] = num_classes(attribute)
    for attribute, label in labels.items():
        if len(label) and (label.min() < 0 or label.max() >= classes[attribute]):
            raise DataError(f"{attribute} classes must lie in [0, {classes[attribute]}), "
                            f"got {label.min()}..{label.max()}")
    return {attribute: label.astype(np.int32) for attribute, label in labels.items()}, classes


def _per_position_inputs(rows_NT: np.ndarray, positions_PN: np.ndarray, *, causal: bool, mask_id: int,
                         mask_read_token: bool = False) -> tuple:
    """A decoder's rows for every position, cut after the last probe token (a causal model's
    hidden state at t reads tokens <= t only, so the features are the same; one cut for all
    positions keeps them one program); an encoder's rows masked after each probe position, or
    from it on with mask_read_token."""
    if causal:
        rows_NT = rows_NT[:, :int(positions_PN.max()) + 1]
        return tuple(rows_NT for _ in positions_PN)
    columns_T = np.arange(rows_NT.shape[1])
    first_masked_PN = positions_PN if mask_read_token else positions_PN + 1
    return tuple(np.where(columns_T[None] >= first_N[:, None], mask_id, rows_NT).astype(np.int32)
                 for first_N in first_masked_PN)


P_READS = ("before_value", "value")


def p_probe_inputs(documents: text.Documents, *, bos_id: int, pad_id: int, mask_id: int,
                   causal: bool, read: str = "before_value") -> ProbeInputs:
    """P-probing rows: each person's first document as BOS + document; position p of person n is
    the token before attribute p's value (document offset value_start - 1, + 1 for the BOS), or
    with read="value" (encoders only) the value's first token, masked with all after it."""
    if read not in P_READS:
        raise ConfigError(f"P-probe read must be one of {P_READS}, got {read!r}")
    if read == "value" and causal:
        raise ConfigError('read="value" is for encoders: a decoder reading the value\'s first token sees it')
    if len(documents) == 0:
        raise DataError("P-probing needs at least one biography")
    persons, first_document = documents.first_of_each_person()
    value_starts_NP = np.asarray(documents.value_spans)[first_document, :, 0].astype(np.int64)
    doc_tokens = [np.asarray(documents.document(int(d))) for d in first_document]
    lengths = np.array([len(tokens) for tokens in doc_tokens])
    if np.any(value_starts_NP < 1) or np.any(value_starts_NP >= lengths[:, None]):
        raise DataError("every attribute value must start after the first token and inside its biography")
    rows = text.bos_rows(doc_tokens, bos_id, pad_id)
    positions_PN = value_starts_NP.T.astype(np.int32)  # (start - 1) + 1 for the BOS
    at_value = read == "value"
    positions_PN = positions_PN + 1 if at_value else positions_PN
    tokens = _per_position_inputs(rows, positions_PN, causal=causal, mask_id=mask_id, mask_read_token=at_value)
    return ProbeInputs(tokens, positions_PN, persons.astype(np.int64))


def q_probe_inputs(people: People, tokenizer: Any) -> ProbeInputs:
    """Q-probing rows: BOS + the person's full name; the probe reads the last name token."""
    names = [np.asarray(tokenizer.encode(people.full_name(i)), np.int32) for i in range(len(people))]
    if not names or min(len(name) for name in names) == 0:
        raise DataError("Q-probing needs people whose names encode to at least one token")
    rows = text.bos_rows(names, tokenizer.bos_id, tokenizer.pad_id)
    positions_PN = np.array([[len(name) for name in names]], np.int32)
    return ProbeInputs((rows,), positions_PN, np.arange(len(people)))


def probe_features(graphdef: nnx.GraphDef, params: dict, update: dict[str, jax.Array], tokens_BT: jax.Array,
                   positions_B: jax.Array) -> jax.Array:
    """hidden[-1] [B, D] at each row's probe position, with the embeddings moved by `update`."""
    hidden_LBTD = hidden_with_update(graphdef, params, update, tokens_BT)
    return hidden_LBTD[-1, jnp.arange(tokens_BT.shape[0]), positions_B].astype(jnp.float32)


def init_probe_params(key: jax.Array, embedding_VD: jax.Array, num_positions: int, rank: int,
                      num_classes: dict[str, int]) -> ProbeParams:
    """Zero heads and zero-start updates (probe.init_embedding_update: held-out people's unseen name
    tokens are read through the frozen model), every leaf with a leading position axis."""
    width = embedding_VD.shape[1]
    return {
        "update": init_embedding_update(key, embedding_VD, rank, (num_positions,)),
        "heads": {attribute: {"w": jnp.zeros((num_positions, width, classes)), "b": jnp.zeros((num_positions, classes))}
                  for attribute, classes in num_classes.items()},
    }


def _length_groups(inputs: ProbeInputs) -> tuple[tuple[int, ...], ...]:
    """Probe positions whose rows have one length, by increasing length: each group runs as one
    forward pass vmapped over its positions (the inputs made here always form one group)."""
    lengths = [tokens.shape[1] for tokens in inputs.tokens]
    return tuple(tuple(p for p, length in enumerate(lengths) if length == group_length)
                 for group_length in sorted(set(lengths)))


def _select(tree: Any, group: tuple[int, ...]) -> Any:
    """The group's slices of leaves stacked over positions."""
    return jax.tree.map(lambda leaf: leaf[np.asarray(group)], tree)


def _group_features(graphdef: nnx.GraphDef, params: dict, update_G: dict[str, jax.Array], tokens_GBT: jax.Array,
                    positions_GB: jax.Array) -> jax.Array:
    """probe_features [G, B, D] of a group of positions, each with its own embedding update."""
    return jax.vmap(functools.partial(probe_features, graphdef, params))(update_G, tokens_GBT, positions_GB)


def _head_logits(heads_G: dict, features_GBD: Any) -> dict[str, Any]:
    """Each attribute's logits [G, B, C] from the group's stacked heads (jax or numpy arrays)."""
    return {attribute: features_GBD @ head["w"] + head["b"][:, None] for attribute, head in heads_G.items()}


@functools.partial(jax.jit, static_argnames=("groups", "steps", "batch_size", "learning_rate"))
def _train(graphdef, params, probe_params, group_tokens, group_positions, labels, train_rows, mean_PD, scale_PD, key,
           *, groups: tuple[tuple[int, ...], ...], steps: int, batch_size: int, learning_rate: float):
    """Adam on every position's update and heads at once; returns (trained params, losses [steps])."""
    optimizer = optax.adam(learning_rate)

    def loss_fn(probe_params, rows_B):
        labels_B = {attribute: label[rows_B] for attribute, label in labels.items()}
        total = 0.0
        for group, tokens_GNT, positions_GN in zip(groups, group_tokens, group_positions):
            group_params = _select(probe_params, group)
            features_GBD = _group_features(graphdef, params, group_params["update"], tokens_GNT[:, rows_B],
                                           positions_GN[:, rows_B])
            features_GBD = (features_GBD - _select(mean_PD, group)[:, None]) * _select(scale_PD, group)[:, None]
            # positions are independent, so the gradient of the summed loss is each position's own
            for attribute, logits_GBC in _head_logits(group_params["heads"], features_GBD).items():
                losses_GB = optax.softmax_cross_entropy_with_integer_labels(logits_GBC, labels_B[attribute][None])
                total += losses_GB.mean(axis=1).sum()
        return total

    def step(carry, step_key):
        probe_params, opt_state = carry
        rows_B = train_rows[jax.random.randint(step_key, (batch_size,), 0, train_rows.shape[0])]
        loss, grads = jax.value_and_grad(loss_fn)(probe_params, rows_B)
        updates, opt_state = optimizer.update(grads, opt_state, probe_params)
        return (optax.apply_updates(probe_params, updates), opt_state), loss

    (probe_params, _), losses = jax.lax.scan(step, (probe_params, optimizer.init(probe_params)),
                                             jax.random.split(key, steps))
    return probe_params, losses


_group_features_jit = jax.jit(_group_features)


def _features_of_rows(graphdef, params, update_G, tokens_GNT: np.ndarray, positions_GN: np.ndarray,
                      rows: np.ndarray) -> np.ndarray:
    """Group features [G, len(rows), D] in chunks of rows of one size per input (the last padded),
    so the statistics and the scoring passes share one compiled program."""
    chunk = min(_EVAL_CHUNK, tokens_GNT.shape[1])
    features = []
    for start in range(0, len(rows), chunk):
        index = rows[start:start + chunk]
        padded = np.concatenate([index, np.full(chunk - len(index), index[0])])
        out = _group_features_jit(graphdef, params, update_G, jnp.asarray(tokens_GNT[:, padded]),
                                  jnp.asarray(positions_GN[:, padded]))
        features.append(np.asarray(out)[:, :len(index)])
    return np.concatenate(features, axis=1)


def fit_embedding_probes(
    graphdef: nnx.GraphDef,
    params: dict,
    inputs: ProbeInputs,
    labels: dict[str, np.ndarray],
    num_classes: dict[str, int],
    train_rows: np.ndarray,
    test_rows: np.ndarray,
    *,
    rank: int,
    steps: int,
    learning_rate: float,
    batch_size: int,
    key: jax.Array,
) -> FittedProbes:
    """Train the rank-`rank` embedding updates and linear heads of every probe position on
    `train_rows` of `inputs` (labels[attr][row] the class of row), score them on `test_rows`."""
    if rank < 1 or steps < 0 or batch_size < 1:
        raise ConfigError(f"probe needs rank >= 1, steps >= 0, batch_size >= 1; got {rank}, {steps}, {batch_size}")
    train_rows, test_rows = np.asarray(train_rows), np.asarray(test_rows)
    if len(train_rows) == 0 or len(test_rows) == 0:
        raise DataError(f"probe needs rows to train and to test on, got {len(train_rows)} and {len(test_rows)}")
    if list(labels) != list(num_classes):
        raise DataError(f"labels {list(labels)} and num_classes {list(num_classes)} name different attributes")
    init_key, train_key = jax.random.split(key)
    groups = _length_groups(inputs)
    group_tokens = [np.stack([inputs.tokens[p] for p in group]) for group in groups]
    group_positions = [inputs.positions_PN[np.asarray(group)] for group in groups]
    probe_params = init_probe_params(init_key, params["token_embed"]["embedding"], inputs.num_positions, rank,
                                     num_classes)

    mean_PD = np.zeros((inputs.num_positions, params["token_embed"]["embedding"].shape[1]), np.float32)
    scale_PD = np.ones_like(mean_PD)
    for group, tokens_GNT, positions_GN in zip(groups, group_tokens, group_positions):
        # the initial update is zero, so these are the frozen model's features
        frozen_GND = _features_of_rows(graphdef, params, _select(probe_params["update"], group), tokens_GNT,
                                       positions_GN, train_rows[:_STATS_ROWS])
        mean_PD[np.asarray(group)], scale_PD[np.asarray(group)] = standardizer(frozen_GND)

    probe_params, losses = _train(
        graphdef, params, probe_params, tuple(map(jnp.asarray, group_tokens)), tuple(map(jnp.asarray, group_positions)),
        {attribute: jnp.asarray(label, jnp.int32) for attribute, label in labels.items()},
        jnp.asarray(train_rows, jnp.int32), jnp.asarray(mean_PD), jnp.asarray(scale_PD), train_key,
        groups=groups, steps=steps, batch_size=batch_size, learning_rate=learning_rate)

    attributes = list(labels)
    accuracy_PA = np.zeros((inputs.num_positions, len(attributes)))
    for group, tokens_GNT, positions_GN in zip(groups, group_tokens, group_positions):
        group_params = jax.tree.map(np.asarray, _select(probe_params, group))
        features_GND = _features_of_rows(graphdef, params, group_params["update"], tokens_GNT, positions_GN,
                                         test_rows)
        features_GND = (features_GND - mean_PD[np.asarray(group)][:, None]) * scale_PD[np.asarray(group)][:, None]
        for attribute, logits_GNC in _head_logits(group_params["heads"], features_GND).items():
            accuracy_PA[np.asarray(group), attributes.index(attribute)] = np.mean(
                logits_GNC.argmax(-1) == labels[attribute][test_rows][None], axis=1)
    majority_A = np.array([np.mean(labels[attribute][test_rows] == np.bincount(labels[attribute][train_rows]).argmax())
                           for attribute in attributes])
    return FittedProbes(accuracy_PA, majority_A, probe_params, np.asarray(losses))


def _is_causal(graphdef: nnx.GraphDef, params: dict) -> bool:
    return nnx.merge(graphdef, params).cfg.causal


# Models this shallow are probed with their layers unrolled (transformer.unrolled_graph): the probe
# runs hundreds of steps through one compiled program, where the unrolled one is faster; deeper
# models keep the scanned graph, whose compile time does not grow with depth.
_UNROLL_UP_TO_LAYERS = 4


def _probe(graphdef, params, people, inputs: ProbeInputs, names: list[str], *, train_fraction, rank, steps,
           learning_rate, batch_size, key) -> dict[str, float]:
    if nnx.merge(graphdef, params).cfg.num_layers <= _UNROLL_UP_TO_LAYERS:
        graphdef = transformer.unrolled_graph(graphdef, params)
    split_key, fit_key = jax.random.split(key)
    all_labels, num_classes = attribute_labels(people)
    labels = {attribute: all_labels[attribute][inputs.person_N] for attribute in ATTRIBUTES}
    train_rows, test_rows = split_rows(len(inputs.person_N), train_fraction, split_key)
    fitted = fit_embedding_probes(graphdef, params, inputs, labels, num_classes, train_rows, test_rows, rank=rank,
                                  steps=steps, learning_rate=learning_rate, batch_size=batch_size, key=fit_key)
    return {f"{name}.{attribute}": float(fitted.accuracy_PA[p, a])
            for p, name in enumerate(names) for a, attribute in enumerate(ATTRIBUTES)}


def p_probe(
    graphdef: nnx.GraphDef,
    params: dict,
    people: People,
    documents: text.Documents,
    *,
    train_fraction: float = 0.5,
    rank: int = 2,
    steps: int = 300,
    learning_rate: float = 1e-3,
    batch_size: int = 16,
    read: str = "before_value",
    key: jax.Array,
) -> dict[str, float]:
    """P-probing (module docstring): held-out accuracy "P{p}.{attribute}" of reading each attribute
    at the token before attribute p's value in each person's first biography (36 entries); an
    encoder with read="value" at the value's first token, masked."""
    tokenizer = pieces.tokenizer()
    inputs = p_probe_inputs(documents, bos_id=tokenizer.bos_id, pad_id=tokenizer.pad_id, mask_id=tokenizer.mask_id,
                            causal=_is_causal(graphdef, params), read=read)
    if inputs.person_N.max() >= len(people):
        raise DataError(f"documents name person {inputs.person_N.max()} but only {len(people)} people were given")
    names = [f"P{p + 1}" for p in range(len(ATTRIBUTES))]
    return _probe(graphdef, params, people, inputs, names, train_fraction=train_fraction, rank=rank, steps=steps,
                  learning_rate=learning_rate, batch_size=batch_size, key=key)


def q_probe(
    graphdef: nnx.GraphDef,
    params: dict,
    people: People,
    *,
    train_fraction: float = 0.5,
    rank: int = 16,
    steps: int = 300,
    learning_rate: float = 1e-3,
    batch_size: int = 64,
    key: jax.Array,
) -> dict[str, float]:
    """Q-probing (module docstring): held-out accuracy "Q.{attribute}" of reading each attribute at
    the last token of BOS + full name (6 entries)."""
    inputs = q_probe_inputs(people, pieces.tokenizer())
    return _probe(graphdef, params, people, inputs, ["Q"], train_fraction=train_fraction, rank=rank, steps=steps,
                  learning_rate=learning_rate, batch_size=batch_size, key=key)


def probe_run(
    graphdef: nnx.GraphDef,
    params: dict,
    model_cfg: transformer.ModelConfig,
    people: People,
    documents: text.Documents,
    *,
    key: jax.Array,
    compare_random_init: bool = True,
    p_kwargs: dict[str, Any] | None = None,
    q_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """{"p": P-probing, "q": Q-probing} of the model, for an encoder also "p_at_value" (P-probing
    read at the masked value, module docstring), and with compare_random_init "p_random",
    "q_random" (and "p_at_value_random"): the same probes (same people split) on a fresh model of
    the same config, the baseline of what the architecture exposes untrained. p_kwargs / q_kwargs
    go to the probes."""
    p_key, q_key, init_key = jax.random.split(key, 3)
    p_kwargs, q_kwargs = p_kwargs or {}, q_kwargs or {}
    encoder = not model_cfg.causal

    def probes_of(graphdef, params) -> dict[str, Any]:
        result = {"p": p_probe(graphdef, params, people, documents, key=p_key, **p_kwargs),
                  "q": q_probe(graphdef, params, people, key=q_key, **q_kwargs)}
        if encoder:
            result["p_at_value"] = p_probe(graphdef, params, people, documents, key=p_key, read="value", **p_kwargs)
        return result

    result: dict[str, Any] = probes_of(graphdef, params)
    if compare_random_init:
        random_result = probes_of(*transformer.init_model(model_cfg, init_key))
        result.update({f"{name}_random": value for name, value in random_result.items()})
    return result


def _p_headline(p: dict[str, float], suffix: str = "") -> dict[str, float]:
    return {
        f"p1{suffix}_mean": float(np.mean([p[f"P1.{attribute}"] for attribute in ATTRIBUTES])),
        f"p_diagonal{suffix}_mean": float(np.mean([p[f"P{j + 1}.{attribute}"]
                                                   for j, attribute in enumerate(ATTRIBUTES)])),
    }


def _headline(result: dict[str, Any], tail: str) -> dict[str, float]:
    """The headline of the trained (tail "") or random-init (tail "_random") half of a result."""
    headline = _p_headline(result["p" + tail])
    headline["q_mean"] = float(np.mean([result["q" + tail][f"Q.{attribute}"] for attribute in ATTRIBUTES]))
    if "p_at_value" + tail in result:
        headline.update(_p_headline(result["p_at_value" + tail], "_at_value"))
    return headline


def summarize(result: dict[str, Any]) -> dict[str, float]:
    """Headline numbers of a `probe_run` result: mean P1 accuracy over the attributes (is the
    knowledge on the name, early?), mean diagonal (attribute j at its own position j), mean Q
    accuracy, for an encoder P1 and the diagonal read at the value ("p1_at_value_mean",
    "p_diagonal_at_value_mean"); each again with suffix "_random_init" when the baseline was run."""
    summary = _headline(result, "")
    if "p_random" in result and "q_random" in result:
        summary.update({f"{name}_random_init": value for name, value in _headline(result, "_random").items()})
    return summary


def analyze_run(task: Any, graphdef: nnx.GraphDef, params: dict, seed: int = 0) -> dict[str, Any]:
    """P- and Q-probing of a knowledge run's model (its BioTask, graph and parameters) against a
    random-init copy: {"summary": summarize(...), "detail": probe_run(...)} (JSON-ready). An
    encoder's run also gets its value cloze (cloze.py: did it memorise the biographies at all?) as
    detail "cloze" and summary "value_cloze_mean"."""
    documents = text.biographies(task.people, task.config.world_seed, templates=task.config.templates)
    model_cfg = nnx.merge(graphdef, params).cfg
    result = probe_run(graphdef, params, model_cfg, task.people, documents, key=jax.random.key(seed))
    summary = summarize(result)
    if not model_cfg.causal:
        result["cloze"] = cloze.value_cloze(graphdef, params, documents)
        summary["value_cloze_mean"] = cloze.mean_whole_value(result["cloze"])
    return {"summary": summary, "detail": result}  # every value is a float
