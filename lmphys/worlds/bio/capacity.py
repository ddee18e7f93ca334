"""Part 3.3 of Physics of Language Models ("Knowledge Capacity Scaling Laws"): how many bits of knowledge
a trained model provably stores, computed from its losses, and that count per parameter.

The argument (Part 3.3, arXiv 2404.05405: Theorem 3.2, the bit-complexity lower bound; Def. 4.1 and
4.3, the capacity ratio). The data are drawn uniformly at random, so they carry a known number of
bits; a model is a function of the data, and a model whose cross-entropy on some random part is p nats
predicts that part as well as a code of p nats would. What it predicts better than chance it must
have stored: for a part with M equally likely outcomes it holds at least log2(M / e^p) bits. Summed
over the parts of bioD(N, K, C, D, L, T):

    bits >= N   * log2((N0 - N) / e^{p1})     names: N distinct names out of N0 possible
          + N*K * log2(D^C / e^{p2})          values: C chunks out of D, per person and attribute
          + K*D * log2(T^L / e^{p3})          chunk tables: each of the K*D chunks is L tokens out of T

    p1 = the loss summed over a name's tokens, averaged over people (N0 - N, not N0: names are
         distinct, so even the last one drawn still had at least N0 - N choices);
    p2 = the loss summed over one value's C*L tokens, averaged over people and attributes;
    p3 = ln T + the loss summed over a chunk's tokens *after its first*, averaged over the chunks in the
         documents. Once a chunk has started, a model that learned the attribute's D chunks knows the
         rest; the first token's loss is confounded with choosing which chunk, which the value term
         already credits, so it is counted at chance (ln T). With chunk_loss None the term is left out.

The name and value terms are Theorem 3.2's. The chunk term is ours and smaller: the paper's (Def.
4.1) is K*D*log2(T^L / (D e^{p3'})) with p3' the loss of a value's whole first chunk, which also
credits knowing which D chunks exist from the values themselves; its proof needs N >> D log N (every
chunk the first chunk of many people), which worlds of a few hundred people do not have. The paper's
Def. 4.1 numerator is reported beside ours ("paper_def41" and its maximum "paper_def41_max").

The most a model can hold is not the data's entropy: it must generate a name with nothing before
it, so the best name loss is ln N (each of the N names it has seen with probability 1/N; Part 3.3,
Cor. 3.3 and App. F.1), and the reachable name term is N log2((N0 - N)/N). `biod_ceiling` and
`bios_ceiling` are the bounds of a perfect model, reported beside the bits ("ceiling").

Each term is clipped at 0: a model worse than chance on a part stores nothing about it. For bioS (the
Part 3.1 world; Def. 4.3 counts the same parts) the name term is the same, and each person's
independent attributes are uniform over their pools: bits per person = sum over attributes of
max(0, log2 |pool| - loss/ln 2), with |birth_date| = 200 * 12 * 28, birth_city 200, university 300,
major 100, employer 263 (the employer's city follows from the employer: 0 bits, excluded), plus the
gender bit: ~47.6 bits per person at zero loss (Remark 4.4), plus the name term. Three points make
each loss the loss of exactly that choice:
- a value's loss includes its end: 10 pool values are the start of others ("Business" of "Business
  Administration"), so P(value) = P(its tokens) * (1 - P(the next token continues it into a longer
  one)); template words after the value are not scored (they also encode which template was drawn);
- gender is read at the first word that states it (He/She/he/she/His/Her) as P(this gender's words)
  / P(any gender word) there, so the template choice (capital or not, possessive or not) costs nothing;
- documents are scored as they were trained on: after bos and the domain token if the run used one.

Capacity after quantization: `quantize` rounds every weight matrix to int8/int4 levels and back, then the
same losses are measured on the rounded model. Bits per parameter are reported with every parameter
and without the embedding parameters (the token embedding, and the output head when untied), since
the paper counts the embedding of used tokens only (App. A: 3275 used GPT-2 tokens).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lmphys.errors import ConfigError, DataError
from lmphys.models import sizes, transformer
from lmphys.worlds.bio import biod
from lmphys.worlds.bio.people import ATTRIBUTES, max_people
from lmphys.worlds.bio.pieces import gender_words
from lmphys.worlds.bio.text import biographies, value_extensions

__all__ = [
    "BIOS_CHOICES", "span_losses", "document_measures", "biod_bits", "biod_ceiling", "bios_bits", "bios_ceiling",
    "measure_biod_bits", "measure_bios_bits", "quantize", "bits_per_parameter", "embedding_parameters",
    "QUANTIZATIONS", "analyze_run",
]

# How many equally likely values each independent bioS attribute has (FACTS.md, Part 3.1).
BIOS_CHOICES = {"birth_date": 200 * 12 * 28, "birth_city": 200, "university": 300, "major": 100, "employer": 263}
# Determined by another attribute, so it carries no bits of its own.
_BIOS_DEPENDENT = ("employer_city",)
# Parameters that embed or unembed tokens (GPT's token_embed, an untied lm_head).
_EMBEDDING_NAMES = ("token_embed", "lm_head")

LogProbsFn = Callable[[jax.Array], jax.Array]


def _clipped_bits(choices_log2: float, loss_nats: float) -> float:
    """Bits a model stores about one uniform choice among 2^choices_log2, given its loss in nats."""
    return max(0.0, choices_log2 - loss_nats / math.log(2))


def _checked_spans(spans: np.ndarray, lengths: np.ndarray, seq_len: int, offset: int) -> np.ndarray:
    spans = np.asarray(spans)
    spans = spans[:, None] if spans.ndim == 2 else spans
    if spans.ndim != 3 or spans.shape[0] != len(lengths) or spans.shape[2] != 2:
        raise DataError(f"spans must be [{len(lengths)}, 2] or [{len(lengths)}, S, 2], got {spans.shape}")
    if spans.size and ((spans[..., 0] < 0).any() or (spans[..., 1] < spans[..., 0]).any()):
        raise DataError("every span must satisfy 0 <= start <= end")
    if spans.size and (spans[..., 1] > lengths[:, None]).any():
        raise DataError("a span ends past the end of its document")
    if spans.size and spans[..., 1].max() + offset > seq_len - 1:
        raise DataError(f"a span ends at token {spans[..., 1].max()}, past what seq_len={seq_len} holds after bos")
    return spans


def document_measures(
    log_probs_fn: LogProbsFn,
    documents,
    spans: np.ndarray,
    *,
    bos_id: int,
    pad_id: int,
    seq_len: int,
    prefix: Sequence[int] = (),
    positions: np.ndarray | None = None,
    token_sets: np.ndarray | None = None,
    batch_size: int = 64,
) -> tuple[np.ndarray, np.ndarray | None]:
    """One forward pass over the documents: (span losses, set log-probabilities).

    `documents` has `tokens` and `offsets` (text.Documents, biod.BioDDocuments). Each document is fed
    as [bos] + prefix + document, padded (or cut) to seq_len; log_probs_fn(tokens_BT) -> [B, T, V] is
    the log-softmax of a causal LM. spans [num_docs, S, 2] (or [num_docs, 2]): (start, end) token
    offsets inside each document; returns their summed loss in nats, float64 [num_docs, S] (or
    [num_docs]). positions [num_docs, Q] (document token offsets) with token_sets [num_docs, Q, M]
    (token ids, -1 padded): also returns log of the probability that the document token at that offset
    is one of the set, float64 [num_docs, Q] (-inf for an empty set), else None.
    """
    num_docs = len(documents.offsets) - 1
    lengths = np.diff(documents.offsets)
    offset = len(prefix)  # document token j sits at row position 1 + offset + j, predicted at offset + j
    single = np.asarray(spans).ndim == 2
    spans = _checked_spans(spans, lengths, seq_len, offset)
    if positions is not None:
        positions, token_sets = np.asarray(positions, np.int64), np.asarray(token_sets, np.int64)
        if positions.shape != (num_docs,) + positions.shape[1:2] or token_sets.shape[:2] != positions.shape:
            raise DataError(f"positions must be [{num_docs}, Q] and token_sets [{num_docs}, Q, M], got "
                            f"{positions.shape} and {token_sets.shape}")
        if positions.size and (positions.min() < 0 or positions.max() + offset > seq_len - 1):
            raise DataError(f"a set position lies outside what seq_len={seq_len} holds after bos")
    losses = np.zeros(spans.shape[:2])
    set_log_probs = None if positions is None else np.zeros(positions.shape)
    for batch_start in range(0, num_docs, batch_size):
        rows = np.full((batch_size, seq_len), pad_id, np.int32)  # a fixed shape, so a jitted fn compiles once
        doc_ids = np.arange(batch_start, min(batch_start + batch_size, num_docs))
        rows[:, 0] = bos_id
        rows[:, 1:1 + offset] = prefix
        for row, doc in enumerate(doc_ids):
            tokens = documents.tokens[documents.offsets[doc]:documents.offsets[doc + 1]][: seq_len - 1 - offset]
            rows[row, 1 + offset:1 + offset + len(tokens)] = tokens
        # Gather on the device so only [B, T] and [B, Q] floats come back, not [B, T, V].
        log_probs = jnp.asarray(log_probs_fn(jnp.asarray(rows)))
        next_tokens = jnp.asarray(np.concatenate([rows[:, 1:], rows[:, -1:]], axis=1))
        picked = jnp.take_along_axis(log_probs, next_tokens[..., None], axis=-1)[..., 0]
        token_loss = -np.asarray(picked, np.float64)[: len(doc_ids), offset:]  # [b, T]: loss of doc token j at j
        cumulative = np.concatenate([np.zeros((len(doc_ids), 1)), np.cumsum(token_loss, axis=1)], axis=1)
        batch_spans = spans[doc_ids]
        rows_index = np.arange(len(doc_ids))[:, None]
        losses[doc_ids] = cumulative[rows_index, batch_spans[..., 1]] - cumulative[rows_index, batch_spans[..., 0]]
        if positions is not None:
            where = np.zeros((batch_size,) + positions.shape[1:], np.int32)
            where[:len(doc_ids)] = positions[doc_ids] + offset
            sets = np.full((batch_size,) + token_sets.shape[1:], -1, np.int32)
            sets[:len(doc_ids)] = token_sets[doc_ids]
            at = jnp.take_along_axis(log_probs, jnp.asarray(where)[..., None], axis=1)  # [B, Q, V]
            member = jnp.take_along_axis(at, jnp.maximum(jnp.asarray(sets), 0), axis=-1)
            mass = jax.nn.logsumexp(jnp.where(jnp.asarray(sets) >= 0, member, -jnp.inf), axis=-1)
            set_log_probs[doc_ids] = np.asarray(mass, np.float64)[: len(doc_ids)]
    return (losses[:, 0] if single else losses), set_log_probs


def span_losses(log_probs_fn: LogProbsFn, documents, spans: np.ndarray, *, bos_id: int, pad_id: int,
                seq_len: int, batch_size: int = 64, prefix: Sequence[int] = ()) -> np.ndarray:
    """The model's loss (nats), summed over each document's tokens in each span (`document_measures`)."""
    return document_measures(log_probs_fn, documents, spans, bos_id=bos_id, pad_id=pad_id, seq_len=seq_len,
                             prefix=prefix, batch_size=batch_size)[0]


def biod_bits(
    spec: biod.BioDSpec,
    name_loss: float,
    value_loss: float,
    chunk_loss: float | None = None,
    *,
    name_space: int | None = None,
) -> dict[str, float]:
    """The bit lower bound of the module docstring for bioD(spec): {"name", "value", "chunk", "total"}.

    name_loss = p1, value_loss = p2 (nats, as defined above); chunk_loss = the mean summed loss over a
    chunk's continuation tokens (p3 - ln T), or None to leave the chunk term out. name_space is N0,
    by default the size of the shipped name pools.
    """
    n0 = biod.name_space() if name_space is None else name_space
    n, k = spec.num_people, spec.num_attributes
    if n >= n0:
        raise ConfigError(f"name_space ({n0}) must exceed num_people ({n})")
    name = n * _clipped_bits(math.log2(n0 - n), name_loss)
    value = n * k * _clipped_bits(spec.chunks * math.log2(spec.diversity), value_loss)
    chunk = 0.0
    if chunk_loss is not None:
        p3 = math.log(spec.value_vocab) + chunk_loss
        chunk = k * spec.diversity * _clipped_bits(spec.chunk_len * math.log2(spec.value_vocab), p3)
    return {"name": name, "value": value, "chunk": chunk, "total": name + value + chunk}


def biod_ceiling(spec: biod.BioDSpec, *, with_chunks: bool = True, name_space: int | None = None) -> float:
    """`biod_bits` of a perfect model: name loss ln N (the best a model can do), value and chunk losses 0."""
    n = spec.num_people
    chunk_loss = 0.0 if with_chunks and spec.chunk_len > 1 else None
    return biod_bits(spec, math.log(n), 0.0, chunk_loss, name_space=name_space)["total"]


def _paper_def41(spec: biod.BioDSpec, name_loss: float, value_loss: float, first_chunk_loss: float,
                 name_space: int) -> float:
    """Part 3.3 Def. 4.1's numerator, as written (no clipping, N0 and T^L without the o(.) corrections)."""
    n, k, d = spec.num_people, spec.num_attributes, spec.diversity
    nats = (n * (math.log(name_space) - name_loss) + n * k * (spec.chunks * math.log(d) - value_loss)
            + k * d * (spec.chunk_len * math.log(spec.value_vocab) - math.log(d) - first_chunk_loss))
    return nats / math.log(2)


def bios_bits(num_people: int, attribute_losses: dict[str, float], gender_loss: float | None,
              name_loss: float | None = None, *, name_space: int | None = None) -> dict[str, float]:
    """Bits a model stores about bioS people, from its mean loss (nats) on each attribute's value
    (its end included), on the gender (None leaves it out) and on the name (None leaves it out).

    Returns the total bits of each attribute over all people, "gender", "name", "total" and
    "per_person". employer_city may be passed and is ignored (it follows from the employer).
    """
    unknown = set(attribute_losses) - set(BIOS_CHOICES) - set(_BIOS_DEPENDENT)
    missing = set(BIOS_CHOICES) - set(attribute_losses)
    if unknown or missing:
        raise DataError(f"attribute_losses needs exactly {sorted(BIOS_CHOICES)}; unknown {sorted(unknown)}, missing {sorted(missing)}")
    n0 = max_people() if name_space is None else name_space
    if num_people >= n0:
        raise ConfigError(f"name_space ({n0}) must exceed the number of people ({num_people})")
    result = {
        attribute: num_people * _clipped_bits(math.log2(choices), attribute_losses[attribute])
        for attribute, choices in BIOS_CHOICES.items()
    }
    result["gender"] = 0.0 if gender_loss is None else num_people * _clipped_bits(1.0, gender_loss)
    result["name"] = 0.0 if name_loss is None else num_people * _clipped_bits(math.log2(n0 - num_people), name_loss)
    result["total"] = sum(result.values())
    result["per_person"] = result["total"] / num_people if num_people else 0.0
    return result


def bios_ceiling(num_people: int, *, with_gender: bool = True, name_space: int | None = None) -> float:
    """`bios_bits` of a perfect model: name loss ln N, every other loss 0."""
    losses = {attribute: 0.0 for attribute in BIOS_CHOICES}
    return bios_bits(num_people, losses, 0.0 if with_gender else None, math.log(num_people) if num_people else None,
                     name_space=name_space)["total"]


def measure_biod_bits(
    log_probs_fn: LogProbsFn, docs: biod.BioDDocuments, *, seq_len: int, batch_size: int = 64,
    prefix: Sequence[int] = (),
) -> dict[str, float]:
    """biod_bits from a causal LM's losses on bioD documents (one forward pass over them), with the
    three losses it measured ("name_loss", "value_loss", "chunk_loss"), "ceiling" (`biod_ceiling`) and
    Part 3.3 Def. 4.1's numerator from the same losses and the first chunk's ("paper_def41",
    "paper_def41_max")."""
    world = docs.world
    spec = world.spec
    first_chunks = np.stack([docs.value_spans[..., 0], docs.value_spans[..., 0] + spec.chunk_len], axis=-1)
    spans = np.concatenate(
        [docs.name_spans[:, None], docs.value_spans, biod.chunk_continuation_spans(docs), first_chunks], axis=1
    )
    losses = span_losses(log_probs_fn, docs, spans, bos_id=world.bos_id, pad_id=world.pad_id, seq_len=seq_len,
                         batch_size=batch_size, prefix=prefix)
    k = spec.num_attributes
    name_loss = float(losses[:, 0].mean())
    value_loss = float(losses[:, 1:1 + k].mean())
    chunk_loss = float(losses[:, 1 + k:-k].mean()) if spec.chunk_len > 1 else None
    first_chunk_loss = float(losses[:, -k:].mean())
    bits = biod_bits(spec, name_loss, value_loss, chunk_loss)
    n0 = biod.name_space()
    return {**bits, "name_loss": name_loss, "value_loss": value_loss, "chunk_loss": chunk_loss if chunk_loss is not None else 0.0,
            "ceiling": biod_ceiling(spec, with_chunks=chunk_loss is not None),
            "paper_def41": _paper_def41(spec, name_loss, value_loss, first_chunk_loss, n0),
            "paper_def41_max": _paper_def41(spec, math.log(spec.num_people), 0.0, 0.0, n0)}


def measure_bios_bits(
    log_probs_fn: LogProbsFn, documents, people, *, bos_id: int, pad_id: int, seq_len: int, batch_size: int = 64,
    prefix: Sequence[int] = (),
) -> dict[str, float]:
    """bios_bits from a causal LM's losses on bioS biographies (text.Documents of `people`): the
    first full name's tokens; each attribute's value tokens plus its end (see the module docstring);
    the gender at the first gender word of the documents that have one. Also "ceiling" and the
    losses ("name_loss", "gender_loss", "<attribute>_loss")."""
    num_docs = len(documents.offsets) - 1
    pronoun = np.asarray(documents.pronoun_positions)
    has_pronoun = pronoun >= 0
    words, word_gender = gender_words()
    gender = np.asarray(people.gender)[documents.person]
    same = np.where(word_gender[None] == gender[:, None], words[None], -1)  # [docs, W]: this person's gender words
    extensions = value_extensions(people, documents.person)  # [docs, 6, E]
    positions = np.concatenate([documents.value_spans[..., 1], np.maximum(pronoun, 0)[:, None],
                                np.maximum(pronoun, 0)[:, None]], axis=1)
    width = max(extensions.shape[2], len(words))
    token_sets = np.full((num_docs, len(ATTRIBUTES) + 2, width), -1, np.int64)
    token_sets[:, :len(ATTRIBUTES), :extensions.shape[2]] = extensions
    token_sets[:, -2, :len(words)] = same
    token_sets[:, -1, :len(words)] = words
    spans = np.concatenate([documents.value_spans, documents.name_spans[:, None]], axis=1)
    losses, set_log_probs = document_measures(
        log_probs_fn, documents, spans, bos_id=bos_id, pad_id=pad_id, seq_len=seq_len, prefix=prefix,
        positions=positions, token_sets=token_sets, batch_size=batch_size)
    with np.errstate(divide="ignore"):
        end_loss = -np.log1p(-np.exp(np.minimum(set_log_probs[:, :len(ATTRIBUTES)], 0.0)))  # 0 without longer values
    value_losses = losses[:, :len(ATTRIBUTES)] + end_loss
    attribute_losses = {name: float(value_losses[:, j].mean()) for j, name in enumerate(ATTRIBUTES)}
    gender_loss = float((set_log_probs[has_pronoun, -1] - set_log_probs[has_pronoun, -2]).mean()) if has_pronoun.any() else None
    name_loss = float(losses[:, -1].mean()) if num_docs else None
    num_people = len(np.unique(documents.person)) if num_docs else 0
    bits = bios_bits(num_people, attribute_losses, gender_loss, name_loss)
    return {**bits, "ceiling": bios_ceiling(num_people, with_gender=gender_loss is not None),
            "name_loss": name_loss if name_loss is not None else 0.0,
            "gender_loss": gender_loss if gender_loss is not None else 0.0,
            **{f"{name}_loss": value for name, value in attribute_losses.items()}}


def quantize(params, bits: int):
    """Round-to-nearest symmetric integer quantization of every weight with >= 2 dims, dequantized back
    to float32: one scale per output column (the last axis), computed over the input axis (-2)
    separately for every leading index, so stacked [layers, in, out] kernels get one scale per layer and
    column. Levels are scale * {-q, ..., q} with q = 2^(bits-1) - 1 (127 for int8, 7 for int4).
    1-D parameters (biases, norm scales) and non-float leaves are returned unchanged."""
    if not isinstance(bits, int) or not 2 <= bits <= 16:
        raise ConfigError(f"quantization bits must be an integer in [2, 16], got {bits!r}")
    max_level = 2 ** (bits - 1) - 1

    def quantize_leaf(leaf):
        array = jnp.asarray(leaf)
        if array.ndim < 2 or not jnp.issubdtype(array.dtype, jnp.floating):
            return leaf
        array = array.astype(jnp.float32)
        largest = jnp.max(jnp.abs(array), axis=-2, keepdims=True)
        scale = jnp.where(largest > 0, largest / max_level, 1.0)  # an all-zero column stays zero
        return jnp.clip(jnp.round(array / scale), -max_level, max_level) * scale

    return jax.tree.map(quantize_leaf, params)


def bits_per_parameter(bits: float, params) -> float:
    """Stored bits divided by the number of parameters (every array entry of the pytree, embeddings
    included)."""
    count = sum(int(np.size(leaf)) for leaf in jax.tree.leaves(params))
    if count == 0:
        raise DataError("params has no parameters")
    return bits / count


def embedding_parameters(params) -> int:
    """Entries of the parameters that embed or unembed tokens (the token embedding, an untied output
    head): the part of a model that grows with its vocabulary, not with what it knows."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    return sum(int(np.size(leaf)) for path, leaf in leaves
               if any(name in jax.tree_util.keystr(path) for name in _EMBEDDING_NAMES))


QUANTIZATIONS = (8, 4)  # the integer widths analyze_run also measures


def _bits_measure(task: Any, graphdef: Any) -> Callable[[Any], dict[str, float]]:
    """params -> bits of knowledge the model holds about the task's people (whole world, training
    data, scored after the same bos and domain token as in training); the documents and the
    compiled forward pass are made once for every weight variant."""
    apply = jax.jit(lambda params, tokens: jax.nn.log_softmax(transformer.apply(graphdef, params, tokens)))
    prefix = task.document_prefix
    if task.config.world == "biod":
        documents = biod.documents(task.world, task.config.world_seed, copies=1)
        return lambda params: measure_biod_bits(
            lambda tokens: apply(params, jnp.asarray(tokens)), documents, seq_len=task.seq_len, prefix=prefix)
    documents = biographies(task.people, task.config.world_seed, templates=task.config.templates)  # each person's fixed rendering
    return lambda params: measure_bios_bits(
        lambda tokens: apply(params, jnp.asarray(tokens)), documents, task.people, bos_id=task.bos_id,
        pad_id=task.pad_id, seq_len=task.seq_len, prefix=prefix)


def analyze_run(task: Any, graphdef: Any, params: Any) -> dict[str, Any]:
    """Part 3.3's capacity of a knowledge run's model (its BioTask, graph and parameters):
    {"params", "params_without_embedding", "ceiling" (the most a perfect model holds), "fp32": bits,
    "bits_per_param_fp32", "bits_per_param_fp32_without_embedding", and the same after int8 / int4
    quantization} (JSON-ready; empty for encoders, which do not predict the next token)."""
    if not nnx.merge(graphdef, params).cfg.causal:
        return {}
    measure = _bits_measure(task, graphdef)
    num_params = sizes.num_params(params)
    without_embedding = num_params - embedding_parameters(params)
    out: dict[str, Any] = {"params": num_params, "params_without_embedding": without_embedding}
    for label, weights in [("fp32", params)] + [(f"int{bits}", quantize(params, bits)) for bits in QUANTIZATIONS]:
        bits = measure(weights)
        out[label] = {name: float(value) for name, value in bits.items()}
        out["ceiling"] = float(bits["ceiling"])
        out[f"bits_per_param_{label}"] = float(bits["total"]) / num_params
        out[f"bits_per_param_{label}_without_embedding"] = float(bits["total"]) / max(1, without_embedding)
    return out
