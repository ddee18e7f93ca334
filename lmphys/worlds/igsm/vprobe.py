"""V-probing: what a model trained on iGSM knows about a problem's reasoning (Part 2.1).

Physics of LMs Part 2.1 asks whether a model that solves grade-school math problems has worked out,
in its hidden states, which parameters the answer needs and which it could compute next, before
writing any of it. The frozen model reads a prefix of a problem sequence (<bos> problem question
<sol> solution, as in training) cut at a position of interest, then a probe query it never saw in
training: "<probe> name(A) <probe_end>", or "<probe> name(A) <probe_sep> name(B) <probe_end>" for a
pair. A linear head reads the hidden state at <probe_end>. Tasks, where they read, and their labels:

- nece(A), once the problem and the question are both read (the prompt's last token before <sol>;
  pq: the question's last token): A is necessary for the answer, A in world.closure(query). Binary.
- dep(A, B), at the end of the problem: A depends on B, directly or through others. Binary; each
  problem gives as many pairs with as without the dependence, so chance is about one half.
- known(A), value(A), can_next(A), nece_next(A), where nece reads and after every solution
  step's closing ".": A has been computed in the solution so far; its value mod 23 (23 classes,
  counted on known A only); A is not computed yet but all its dependencies are (a constant is
  always computable); can_next(A) and A is necessary.
Every parameter of the world (instance and abstract) is probed at every position of its task.

What trains (the paper's V-probing): a rank-8 update of the input token embeddings, E' = E + A @ B
(probe.init_embedding_update: A starts at zero, so step 0 sees the frozen model), which lets the
model read the probe tokens, and linear softmax heads. Design choices, for CPU cost:
- One update per *family* of tasks that read the same inputs: nece; dep; and known, value,
  can_next and nece_next, which share their rows and update (each keeps its own heads). Sharing
  gives no task more capacity than an update of its own would, and saves three forward passes.
- Per-layer accuracy: one head per task per block output (hidden[1..L]; hidden[0] at <probe_end>
  is that token's embedding, the same on every row), all trained jointly with the family's one
  update by summing the per-layer losses. The paper trains a probe per layer; a shared update is
  L times cheaper, and a layer's accuracy with it may fall below what an update of its own would
  give but never exceeds what some rank-8 update allows.
Features are standardised per layer with the frozen model's statistics (probe.standardizer).
Probing is done on held-out *problems*: the problems are split, never the rows of one problem.
Accuracies come with the majority rate (always guessing the commonest training class), and
`v_probe_run` repeats everything on a randomly initialised model of the same shape, the baseline of
what the architecture exposes untrained.
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
from lmphys.worlds.igsm.graph import MOD, RNG, World
from lmphys.worlds.igsm.problem import Problem, generate
from lmphys.worlds.igsm.task import IGSMTask
from lmphys.worlds.igsm.text import Renderer, tokenizer

TASKS = ("nece", "dep", "known", "value", "can_next", "nece_next")
NUM_CLASSES = {"nece": 2, "dep": 2, "known": 2, "value": MOD, "can_next": 2, "nece_next": 2}
# Tasks that read the same probe inputs; each family trains one embedding update (module docstring).
FAMILIES = {"question": ("nece",), "pair": ("dep",), "steps": ("known", "value", "can_next", "nece_next")}
NOT_COUNTED = -1  # the label of a row that a task does not score (value of an unknown parameter)

# Probe problems come from a seed range that evaluation (from 1 << 40, a few million seeds) and
# training (seed 0's problems reach it only after ~780k steps) do not use.
_PROBE_SEED = 3 << 40
_SEEDS_PER_RUN_SEED = 1 << 24
_RANDOM_INIT_SEED = 0
_LENGTH_QUANTUM = 32  # rows are padded to a multiple of this: similar problem sets reuse compiled code
_EVAL_CHUNK = 128  # rows per forward pass when scoring
_STATS_ROWS = 512  # training rows that fix the feature standardisation

ProbeParams = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ProbeExample:
    """One probe input: a prefix of the problem's sequence, then the probe query."""

    tokens: tuple[int, ...]  # prefix + <probe> name(A) [<probe_sep> name(B)] <probe_end>
    prefix_len: int  # tokens[:prefix_len] is the prefix of prompt + solution, unchanged
    params: tuple[int, ...]  # (A,) or, for dep, (A, B)
    steps_done: int  # solution steps inside the prefix (0: the prompt only)
    labels: dict[str, int]  # every task of the family; NOT_COUNTED where the task skips this row


@dataclasses.dataclass(frozen=True)
class ProbeRows:
    """A family's probe inputs as padded rows, with the row's problem and per-task labels."""

    tokens_NT: np.ndarray  # [N, T] int32, padded with <pad> after <probe_end> (the model is causal)
    read_N: np.ndarray  # [N] position of <probe_end>, whose hidden states the heads read
    problem_N: np.ndarray  # [N] index of the row's problem in the list the rows were made from
    labels: dict[str, np.ndarray]  # task -> [N] class, NOT_COUNTED where the task skips the row


def probe_query(names: list[list[int]]) -> list[int]:
    """<probe> name(A) <probe_end>, or <probe> name(A) <probe_sep> name(B) <probe_end>."""
    tok = tokenizer()
    ids = [tok.probe_id] + names[0]
    for name in names[1:]:
        ids += [tok.probe_sep_id] + name
    return ids + [tok.probe_end_id]


def _example(prefix: list[int], renderer: Renderer, world: World, params: tuple[int, ...], steps_done: int,
             labels: dict[str, int]) -> ProbeExample:
    query = probe_query([renderer.name(world, world.params[index]) for index in params])
    return ProbeExample(tuple(prefix) + tuple(query), len(prefix), params, steps_done, labels)


def _question_read(problem: Problem) -> int:
    """Where the problem and the question have both been read: the prompt's token before <sol>."""
    _, problem_end, question_end = problem.prompt_ids()
    return max(problem_end, question_end)


def question_examples(problem: Problem, renderer: Renderer) -> list[ProbeExample]:
    """nece(A) for every parameter A, read after the problem and the question."""
    prefix = problem.prompt_ids()[0][:_question_read(problem) + 1]
    world = problem.world
    necessary = world.closure(problem.question_param)
    return [_example(prefix, renderer, world, (index,), 0, {"nece": int(param in necessary)})
            for index, param in enumerate(world.params)]


def pair_examples(problem: Problem, renderer: Renderer, rng: np.random.Generator,
                  pairs_per_problem: int) -> list[ProbeExample]:
    """dep(A, B) at the end of the problem: up to pairs_per_problem // 2 random pairs where A depends
    on B (transitively) and as many where it does not."""
    prompt, problem_end, _ = problem.prompt_ids()
    world = problem.world
    dependent, independent = [], []
    for a, param in enumerate(world.params):
        below = world.ancestors(param)
        for b, other in enumerate(world.params):
            if b != a:
                (dependent if other in below else independent).append((a, b))
    count = min(pairs_per_problem // 2, len(dependent), len(independent))
    examples = []
    for label, pairs in ((1, dependent), (0, independent)):
        for choice in rng.choice(len(pairs), count, replace=False):
            examples.append(_example(prompt[:problem_end + 1], renderer, world, pairs[choice], 0, {"dep": label}))
    return examples


def step_labels(world: World, necessary: frozenset, computed: set, index: int) -> dict[str, int]:
    """known, value (NOT_COUNTED unless known), can_next and nece_next of parameter
    world.params[index] once the solution has computed the parameters `computed` (the released
    `lora_label`: a random number is always available)."""
    param = world.params[index]
    known = param in computed
    can_next = not known and all(dep in computed or dep == RNG for dep in world.whole_preds(param))
    return {"known": int(known), "value": world.values[param] if known else NOT_COUNTED, "can_next": int(can_next),
            "nece_next": int(can_next and param in necessary)}


def step_examples(problem: Problem, renderer: Renderer) -> list[ProbeExample]:
    """known / value / can_next / nece_next of every parameter, read after the question and after
    each solution step's closing "."."""
    prompt = problem.prompt_ids()[0]
    solution, _, step_ends = problem.solution_tokens()
    sequence = prompt + solution
    cuts = [_question_read(problem) + 1] + [len(prompt) + end + 1 for end in step_ends]
    necessary = problem.world.closure(problem.question_param)
    examples = []
    for steps_done, cut in enumerate(cuts):
        computed = set(problem.steps[:steps_done])
        for index in range(len(problem.world.params)):
            labels = step_labels(problem.world, necessary, computed, index)
            examples.append(_example(sequence[:cut], renderer, problem.world, (index,), steps_done, labels))
    return examples


def family_examples(problem: Problem, family: str, *, renderer: Renderer, rng: np.random.Generator,
                    pairs_per_problem: int) -> list[ProbeExample]:
    """The probe inputs of one family (FAMILIES) for one problem."""
    if family == "question":
        return question_examples(problem, renderer)
    if family == "pair":
        return pair_examples(problem, renderer, rng, pairs_per_problem)
    return step_examples(problem, renderer)


def _families(tasks: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """The families the tasks need, each with the requested tasks among its own."""
    unknown = [task for task in tasks if task not in TASKS]
    if unknown or not tasks:
        raise ConfigError(f"tasks = {list(tasks)!r} is invalid: each must be one of {', '.join(TASKS)}")
    chosen = {family: tuple(task for task in members if task in tasks) for family, members in FAMILIES.items()}
    return {family: members for family, members in chosen.items() if members}


def probe_rows(problems: list[Problem], *, tasks: tuple[str, ...] = TASKS, max_len: int, seed: int = 0,
               pairs_per_problem: int = 8) -> tuple[dict[str, ProbeRows], np.ndarray]:
    """({family: rows} of the tasks, indices of the problems used). A problem whose longest probe
    input exceeds max_len tokens is left out whole. dep's pairs are drawn from (seed, problem)."""
    families = _families(tuple(tasks))
    renderer = Renderer(tokenizer())
    made: dict[str, list[ProbeExample]] = {family: [] for family in families}
    owners: dict[str, list[int]] = {family: [] for family in families}
    used = []
    for index, problem in enumerate(problems):
        rng = np.random.default_rng([seed, index])
        examples = {family: family_examples(problem, family, renderer=renderer, rng=rng,
                                            pairs_per_problem=pairs_per_problem) for family in families}
        if max(len(example.tokens) for group in examples.values() for example in group) > max_len:
            continue
        used.append(index)
        for family, group in examples.items():
            made[family] += group
            owners[family] += [index] * len(group)
    rows = {family: _padded(made[family], owners[family], families[family], max_len) for family in families}
    return rows, np.asarray(used, np.int64)


def _padded(examples: list[ProbeExample], owners: list[int], tasks: tuple[str, ...], max_len: int) -> ProbeRows:
    longest = max((len(example.tokens) for example in examples), default=1)
    length = min(-(-longest // _LENGTH_QUANTUM) * _LENGTH_QUANTUM, max_len)
    tokens_NT = np.full((len(examples), length), tokenizer().pad_id, np.int32)
    for row, example in enumerate(examples):
        tokens_NT[row, :len(example.tokens)] = example.tokens
    return ProbeRows(tokens_NT, np.array([len(example.tokens) - 1 for example in examples], np.int32),
                     np.asarray(owners, np.int64),
                     {task: np.array([example.labels[task] for example in examples], np.int32) for task in tasks})


def _block_features(graphdef: nnx.GraphDef, params: dict, update: dict[str, jax.Array], tokens_BT: jax.Array,
                    read_B: jax.Array) -> jax.Array:
    """Every block's output [L, B, D] at each row's read position, embeddings moved by `update`."""
    hidden_LBTD = hidden_with_update(graphdef, params, update, tokens_BT)
    return hidden_LBTD[1:, jnp.arange(tokens_BT.shape[0]), read_B].astype(jnp.float32)


def _logits(head: dict, features_LBD: Any) -> Any:
    """A task's per-layer logits [L, B, C] (jax or numpy arrays)."""
    return features_LBD @ head["w"] + head["b"][:, None]


@functools.partial(jax.jit, static_argnames=("learning_rate",))
def _train(graphdef, params, probe_params, tokens_SBT, read_SB, labels_SB, mean_LD, scale_LD, *, learning_rate: float):
    """Adam on the family's update and every task's per-layer heads, one step per minibatch
    (leading axis S of the rows, read positions and the tasks' labels); returns the trained
    params. The minibatches are gathered beforehand and heads and labels are tuples in the
    family's task order, so the compiled scan depends on the batch shape and the tasks' class
    counts only: not on how many rows the family has, nor on the tasks' names."""
    optimizer = optax.adam(learning_rate)

    def loss_fn(probe_params, tokens_BT, read_B, labels_B):
        features_LBD = _block_features(graphdef, params, probe_params["update"], tokens_BT, read_B)
        features_LBD = (features_LBD - mean_LD[:, None]) * scale_LD[:, None]
        total = 0.0
        for head, task_labels_B in zip(probe_params["heads"], labels_B):
            counted_B = task_labels_B != NOT_COUNTED
            losses_LB = optax.softmax_cross_entropy_with_integer_labels(_logits(head, features_LBD),
                                                                        jnp.maximum(task_labels_B, 0)[None])
            # a mean per layer, summed: each head's gradient is its own layer's loss's
            total += jnp.sum(losses_LB * counted_B) / jnp.maximum(counted_B.sum(), 1)
        return total

    def step(carry, batch):
        probe_params, opt_state = carry
        updates, opt_state = optimizer.update(jax.grad(loss_fn)(probe_params, *batch), opt_state, probe_params)
        return (optax.apply_updates(probe_params, updates), opt_state), None

    (probe_params, _), _ = jax.lax.scan(step, (probe_params, optimizer.init(probe_params)),
                                        (tokens_SBT, read_SB, labels_SB))
    return probe_params


_block_features_jit = jax.jit(_block_features)


def _features_of_rows(graphdef, params, update, rows: ProbeRows, indices: np.ndarray) -> np.ndarray:
    """Block features [L, len(indices), D] in chunks of _EVAL_CHUNK rows (the last padded), so that
    every call with rows of one length runs one compiled function."""
    features = []
    for start in range(0, len(indices), _EVAL_CHUNK):
        index = indices[start:start + _EVAL_CHUNK]
        padded = np.concatenate([index, np.full(_EVAL_CHUNK - len(index), index[0])])
        out = _block_features_jit(graphdef, params, update, jnp.asarray(rows.tokens_NT[padded]),
                                  jnp.asarray(rows.read_N[padded]))
        features.append(np.asarray(out)[:, :len(index)])
    return np.concatenate(features, axis=1)


def fit_family(graphdef: nnx.GraphDef, params: dict, rows: ProbeRows, train_problems: np.ndarray,
               test_problems: np.ndarray, *, rank: int, steps: int, batch_size: int, learning_rate: float,
               key: jax.Array) -> dict[str, dict[str, Any]]:
    """Train a family's embedding update and its tasks' per-layer heads on the rows of
    `train_problems`, score them on the rows of `test_problems`. Per task: "accuracy" (list over
    block outputs 1..L), "majority" (test accuracy of the commonest training class), "num_train"
    and "num_test" (rows the task counts)."""
    if rank < 1 or steps < 0 or batch_size < 1:
        raise ConfigError(f"V-probing needs rank >= 1, steps >= 0, batch_size >= 1; got {rank}, {steps}, {batch_size}")
    train_rows = np.flatnonzero(np.isin(rows.problem_N, train_problems))
    test_rows = np.flatnonzero(np.isin(rows.problem_N, test_problems))
    for task, labels_N in rows.labels.items():
        counted_N = labels_N != NOT_COUNTED
        if not counted_N[train_rows].any() or not counted_N[test_rows].any():
            raise DataError(f"V-probing task {task} has {counted_N[train_rows].sum()} training and "
                            f"{counted_N[test_rows].sum()} test rows; it needs some of both (probe more problems)")
    init_key, stats_key, batch_key = jax.random.split(key, 3)
    embedding_VD = params["token_embed"]["embedding"]
    num_layers = nnx.merge(graphdef, params).cfg.num_layers
    probe_params = {
        "update": init_embedding_update(init_key, embedding_VD, rank),
        "heads": tuple({"w": jnp.zeros((num_layers, embedding_VD.shape[1], NUM_CLASSES[task])),
                        "b": jnp.zeros((num_layers, NUM_CLASSES[task]))} for task in rows.labels),
    }
    stats_rows = np.sort(np.asarray(jax.random.permutation(stats_key, train_rows))[:_STATS_ROWS])
    # the update starts at zero, so these are the frozen model's features
    mean_LD, scale_LD = standardizer(_features_of_rows(graphdef, params, probe_params["update"], rows, stats_rows))
    # minibatches of training rows, drawn with replacement
    batches_SB = train_rows[np.asarray(jax.random.randint(batch_key, (steps, batch_size), 0, len(train_rows)))]
    probe_params = _train(
        graphdef, params, probe_params, jnp.asarray(rows.tokens_NT[batches_SB]), jnp.asarray(rows.read_N[batches_SB]),
        tuple(jnp.asarray(labels_N[batches_SB]) for labels_N in rows.labels.values()),
        jnp.asarray(mean_LD), jnp.asarray(scale_LD), learning_rate=learning_rate)

    probe_params = jax.tree.map(np.asarray, probe_params)
    features_LND = (_features_of_rows(graphdef, params, probe_params["update"], rows, test_rows) - mean_LD[:, None]) \
        * scale_LD[:, None]
    result = {}
    for head, (task, labels_N) in zip(probe_params["heads"], rows.labels.items()):
        train_labels, test_labels = labels_N[train_rows], labels_N[test_rows]
        counted_train, counted_test = train_labels != NOT_COUNTED, test_labels != NOT_COUNTED
        predicted_LN = _logits(head, features_LND).argmax(-1)
        commonest = np.bincount(train_labels[counted_train], minlength=NUM_CLASSES[task]).argmax()
        result[task] = {
            "accuracy": [float(value) for value in
                         np.mean(predicted_LN[:, counted_test] == test_labels[counted_test], axis=1)],
            "majority": float(np.mean(test_labels[counted_test] == commonest)),
            "num_train": int(counted_train.sum()),
            "num_test": int(counted_test.sum()),
        }
    return result


def v_probe(
    graphdef: nnx.GraphDef,
    params: dict,
    problems: list[Problem],
    *,
    tasks: tuple[str, ...] = TASKS,
    rank: int = 8,
    steps: int = 200,
    batch_size: int = 16,
    learning_rate: float = 3e-3,
    train_fraction: float = 0.7,
    pairs_per_problem: int = 8,
    seed: int = 0,
) -> dict[str, Any]:
    """V-probing (module docstring) of a decoder on `problems`, split into probe-training and
    held-out problems. Returns {"tasks": {task: {"accuracy": [per block output 1..L], "majority",
    "num_train", "num_test"}}, "num_problems": problems used, "num_skipped": problems whose probe
    inputs exceed the model's max_len}."""
    model_cfg = nnx.merge(graphdef, params).cfg
    if not model_cfg.causal:
        raise ConfigError("V-probing reads a prefix of the problem's sequence: it needs a decoder (model.kind = gpt)")
    families = _families(tuple(tasks))
    rows, used = probe_rows(problems, tasks=tuple(tasks), max_len=model_cfg.max_len, seed=seed,
                            pairs_per_problem=pairs_per_problem)
    if len(used) < 2:
        raise DataError(f"V-probing needs at least 2 problems whose probe inputs fit model.max_len = "
                        f"{model_cfg.max_len}; {len(used)} of {len(problems)} do")
    split_key, fit_key = jax.random.split(jax.random.key(seed))
    train, test = split_rows(len(used), train_fraction, split_key)
    results: dict[str, dict[str, Any]] = {}
    for number, family in enumerate(families):
        results.update(fit_family(graphdef, params, rows[family], used[train], used[test], rank=rank, steps=steps,
                                  batch_size=batch_size, learning_rate=learning_rate,
                                  key=jax.random.fold_in(fit_key, number)))
    return {"tasks": {task: results[task] for task in tasks}, "num_problems": len(used),
            "num_skipped": len(problems) - len(used)}


def probe_problems(task: IGSMTask, num_problems: int, seed: int = 0) -> list[Problem]:
    """Fresh training-split problems of the run's difficulty and format, from the probe seed range."""
    if not 0 < num_problems <= _SEEDS_PER_RUN_SEED:
        raise ConfigError(f"num_problems = {num_problems} is invalid: it must lie in [1, {_SEEDS_PER_RUN_SEED}]")
    first = _PROBE_SEED + seed * _SEEDS_PER_RUN_SEED
    return [generate(first + index, difficulty=task.difficulty, fmt=task.fmt, split="train")
            for index in range(num_problems)]


def v_probe_run(task: IGSMTask, graphdef: nnx.GraphDef, params: dict, *, num_problems: int = 200, seed: int = 0,
                **probe_options: Any) -> dict[str, Any]:
    """{"trained": v_probe of a run's model (its task, graph and parameters), "random_init": the
    same (same problems, same split) on the architecture initialised from a fixed key}.
    probe_options go to v_probe."""
    if not isinstance(task, IGSMTask):
        raise ConfigError(f"V-probing needs an igsm run, not a {type(task).__name__}")
    model_cfg = nnx.merge(graphdef, params).cfg
    if model_cfg.vocab_size != task.vocab_size:
        raise DataError("the model's vocabulary is not the iGSM one: are these this run's parameters?")
    _, random_params = transformer.init_model(model_cfg, jax.random.key(_RANDOM_INIT_SEED))
    problems = probe_problems(task, num_problems, seed)
    return {"trained": v_probe(graphdef, params, problems, seed=seed, **probe_options),
            "random_init": v_probe(graphdef, random_params, problems, seed=seed, **probe_options)}


def summarize(result: dict[str, Any]) -> dict[str, float]:
    """Headline numbers of a `v_probe_run` result, per task: vprobe_<task>_last (the trained model's
    last-layer accuracy), vprobe_<task>_random (the random-init model's) and vprobe_<task>_majority."""
    trained, random_init = result["trained"]["tasks"], result["random_init"]["tasks"]
    summary = {}
    for task, scores in trained.items():
        summary[f"vprobe_{task}_last"] = scores["accuracy"][-1]
        summary[f"vprobe_{task}_random"] = random_init[task]["accuracy"][-1]
        summary[f"vprobe_{task}_majority"] = scores["majority"]
    return summary


def analyze_run(task: IGSMTask, graphdef: nnx.GraphDef, params: dict, **options: Any) -> dict[str, Any]:
    """{"summary": summarize(...), "trained": ..., "random_init": ...} of `v_probe_run` (JSON-ready),
    as scripts/probe.py and the sweeps' "reasoning_probes" analysis record it."""
    result = v_probe_run(task, graphdef, params, **options)
    return {"summary": summarize(result), **result}
