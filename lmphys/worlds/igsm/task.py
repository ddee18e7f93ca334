"""Parts 2.1 and 2.2: the iGSM world as a training task.

`IGSMTask` turns one `config.task` into training rows and evaluations:
- Rows are made on the host (`host_batch`): row r of step s is the problem generated from
  (seed, s, r), one problem per row, "<bos> problem question <sol> solution <ans> N <eos>"
  padded (the released layout, with lmphys's own separator tokens); the loss is on the solution,
  the answer and <eos> (`loss_on = "solution"`) or on every token (`"all"`). A problem longer than
  the row is replaced by the next draw of the same row (never cut). Training problems come from
  the train bins of `split_bins` (paper: 0..16; released: 0..15), evaluation ones from its test bins.
- Retry data (Part 2.2): `retry_rate` > 0 puts mistakes taken back with [BACK] into the solutions
  (`retry_kind`: retry, weak or miss; see text.insert_retries); `mask_mistakes` takes the
  mistaken tokens out of the loss (the [BACK] after them stays in).
- `train_tokens` > 0 sets train.steps so the run sees that many (non-pad) tokens: Part 2.2 compares
  retry rates at equal training tokens, and retry solutions are longer.
- Evaluation: greedy full-solution accuracy (check.py) on `eval_problems` test-split problems
  per op, those whose solution fits `eval_len`: `acc_op<k>` for every in-distribution op
  (1..max_train_op) and OOD op, their means `acc_id` and `acc_ood`, and `answer_id` / `answer_ood`
  for the final answer alone, `finished_id` / `finished_ood` for the share of solutions that end
  (<eos> within eval_len), `unneeded_id` / `unneeded_ood` for correct steps the question did not
  need (per correct solution). `attempt` returns the solutions themselves. The evaluation problems
  are fixed (they don't depend on the run's seed), so all runs are scored on the same ones.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import ml_collections
import numpy as np

from lmphys.config import require, require_fields
from lmphys.errors import DataError
from lmphys.worlds.base import Batch, ModelFns
from lmphys.worlds.igsm.check import CheckResult
from lmphys.worlds.igsm.graph import DIFFICULTIES
from lmphys.worlds.igsm.problem import BIN_SPLITS, FORMATS, Problem, check_solution, generate
from lmphys.worlds.igsm.text import RETRY_KINDS, tokenizer

LOSS_ON = ("solution", "all")
_EVAL_SEED = 1 << 40  # evaluation problems come from their own seed range, shared by every run
_TOO_LONG_DRAWS = 64
_PACK_SLOTS = 1024  # problems a packed row may draw (each has its own seed below the row's)
_PACK_MISSES = 4  # a packed row ends after this many drawn problems in a row did not fit its rest
# Fields added after runs were saved: their defaults keep the earlier behaviour, so the config.json
# of an older run still loads (probes, reports, init_from).
_ADDED_FIELDS = {"pack": False, "split_bins": "paper"}


def default_config() -> ml_collections.ConfigDict:
    """Every field of an igsm `config.task`, with the CPU-scale defaults."""
    task = ml_collections.ConfigDict()
    task.name = "igsm"
    task.objective = "lm"  # iGSM trains decoders only (generation is the evaluation)
    task.difficulty = "small"  # small (CPU), med or hard
    task.fmt = "pq"  # pq: problem then question; qp: question first
    task.batch_size = 32
    task.seq_len = 256  # training rows: a problem with its solution must fit
    task.eval_len = 320  # evaluation rows (prompt + generated solution); <= model.max_len
    task.loss_on = "solution"  # solution (and <eos>) or all tokens
    task.retry_rate = 0.0  # Part 2.2: chance of a mistake (then [BACK]) before each step
    task.retry_kind = "retry"  # retry (not computable yet), weak (this or a later step), miss (not computed yet)
    task.mask_mistakes = False  # take the mistaken tokens out of the loss
    task.train_tokens = 0  # > 0: train.steps is set so the run sees this many tokens (equal-token comparisons)
    task.data_workers = 0  # processes generating batches ahead (0: in the training process)
    task.pack = False  # several whole problems per row (rows one problem long are ~35% filled at med)
    task.eval_problems = 32  # per op
    task.eval_ops = ""  # comma-separated ops to evaluate; "": every training op and the OOD ops
    task.split_bins = "paper"  # template bins: paper (train 0..16, test 17..22) or released (0..15 / 16..22)
    task.temperature = 0.0  # greedy decoding, as in the paper
    return task


def validate(task: ml_collections.ConfigDict) -> None:
    """Raise ConfigError naming the first bad igsm task field."""
    require_fields(task, [name for name in default_config().keys() if name not in _ADDED_FIELDS], "task",
                   "lmphys.worlds.igsm.default_config")
    require(task.objective == "lm", "task.objective", "iGSM trains decoders (lm): solutions are generated", task.objective)
    require(task.difficulty in DIFFICULTIES, "task.difficulty", f"it must be one of {', '.join(DIFFICULTIES)}", task.difficulty)
    require(task.fmt in FORMATS, "task.fmt", f"it must be one of {', '.join(FORMATS)}", task.fmt)
    require(task.loss_on in LOSS_ON, "task.loss_on", f"it must be one of {', '.join(LOSS_ON)}", task.loss_on)
    require(task.retry_kind in RETRY_KINDS, "task.retry_kind", f"it must be one of {', '.join(RETRY_KINDS)}", task.retry_kind)
    require(0 <= task.retry_rate < 1, "task.retry_rate", "it must lie in [0, 1)", task.retry_rate)
    for field in ("batch_size", "eval_problems"):
        require(isinstance(task[field], int) and task[field] > 0, f"task.{field}", "it must be a positive integer", task[field])
    require(task.train_tokens >= 0, "task.train_tokens", "it must be zero or positive", task.train_tokens)
    require(isinstance(task.data_workers, int) and task.data_workers >= 0, "task.data_workers", "it must be 0 or more",
           task.data_workers)
    require(isinstance(task.get("pack", False), bool), "task.pack", "it must be True or False", task.get("pack"))
    bins = task.get("split_bins", _ADDED_FIELDS["split_bins"])
    require(bins in BIN_SPLITS, "task.split_bins", f"it must be one of {', '.join(BIN_SPLITS)}", bins)
    require(task.seq_len >= 64, "task.seq_len", "it must be at least 64 (a problem with its solution must fit)", task.seq_len)
    require(task.eval_len >= task.seq_len, "task.eval_len", f"it must be at least task.seq_len = {task.seq_len}", task.eval_len)
    require(task.temperature >= 0, "task.temperature", "it must be zero (greedy) or positive", task.temperature)
    try:
        eval_ops(task)
    except ValueError:
        require(False, "task.eval_ops", "it must be comma-separated integers in 1..40, or empty", task.eval_ops)


def validate_config(config: ml_collections.ConfigDict) -> None:
    """The task.* fields of an iGSM run (`validate`), and an evaluation length the model can take."""
    validate(config.task)
    require(config.task.eval_len <= config.model.max_len, "task.eval_len",
           f"it must be at most model.max_len = {config.model.max_len} (evaluation writes solutions up to it)",
           config.task.eval_len)


def eval_ops(task: ml_collections.ConfigDict) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(in-distribution ops, OOD ops) that evaluation scores."""
    difficulty = DIFFICULTIES[task.difficulty]
    if task.eval_ops:
        ops = tuple(int(op) for op in str(task.eval_ops).split(","))
        if not all(1 <= op <= 40 for op in ops):
            raise ValueError(task.eval_ops)
    else:
        ops = tuple(range(1, difficulty.max_train_op + 1)) + difficulty.ood_ops
    return tuple(op for op in ops if op <= difficulty.max_train_op), tuple(op for op in ops if op > difficulty.max_train_op)


class IGSMTask:
    """iGSM rows made on the host from (seed, step, row), and full-solution evaluation. Plain
    fields only, so worker processes can unpickle it."""

    def __init__(self, task: ml_collections.ConfigDict):
        validate(task)
        tok = tokenizer()
        self.vocab_size = tok.vocab_size
        self.bos_id, self.eos_id, self.pad_id = tok.bos_id, tok.eos_id, tok.pad_id
        self.difficulty = task.difficulty
        self.fmt = task.fmt
        self.batch_size = task.batch_size
        self.seq_len = task.seq_len
        self.eval_len = task.eval_len
        self.loss_on = task.loss_on
        self.retry_rate = float(task.retry_rate)
        self.retry_kind = task.retry_kind
        self.mask_mistakes = bool(task.mask_mistakes)
        self.data_workers = task.data_workers
        self.pack = task.get("pack", _ADDED_FIELDS["pack"])
        self.bins = task.get("split_bins", _ADDED_FIELDS["split_bins"])
        self.train_tokens = int(task.train_tokens)
        self.eval_problems = task.eval_problems
        self.ops_in, self.ops_out = eval_ops(task)
        self._eval_sets: dict[int, list[Problem]] = {}

    def describe(self) -> str:
        retry = f", retry {self.retry_kind} {self.retry_rate}" if self.retry_rate else ""
        return f"igsm {self.difficulty} {self.fmt}{retry}{', packed rows' if self.pack else ''}"

    def row(self, seed: int, split: str = "train") -> tuple[list[int], list[float]]:
        """Tokens of one training sequence (<bos> ... <eos>, at most seq_len + 1) and which of them
        the loss counts (each flag belongs to its token, i.e. to the target that predicts it)."""
        for draw in range(_TOO_LONG_DRAWS):
            problem = generate(seed * _TOO_LONG_DRAWS + draw, self.difficulty, fmt=self.fmt, split=split, bins=self.bins)
            prompt = problem.prompt_ids()[0]
            solution, mistakes, _ = problem.solution_tokens(self.retry_rate, self.retry_kind, seed=seed)
            tokens = prompt + solution + [self.eos_id]
            if len(tokens) <= self.seq_len + 1:
                counted = 0.0 if self.loss_on == "solution" else 1.0
                flags = [0.0] + [counted] * (len(prompt) - 1)
                flags += [0.0 if (self.mask_mistakes and mistake) else 1.0 for mistake in mistakes] + [1.0]
                return tokens, flags
        raise DataError(f"task.seq_len = {self.seq_len} is too short for {self.difficulty} problems: "
                        f"{_TOO_LONG_DRAWS} draws in a row did not fit; raise it")

    def packed_row(self, seed: int, split: str = "train") -> tuple[list[int], list[float]]:
        """Whole rows of `row` (problem seeds derived from `seed`) one after another while they fit
        seq_len + 1 tokens; a problem too long for what is left is skipped, and the row ends after
        `_PACK_MISSES` such problems in a row. Nothing is cut: attention runs across the problems
        of a row, as in GPT pretraining on concatenated documents."""
        tokens, flags = self.row(seed * _PACK_SLOTS, split)
        misses = 0
        for part in range(1, _PACK_SLOTS):
            ids, counted = self.row(seed * _PACK_SLOTS + part, split)
            if len(tokens) + len(ids) <= self.seq_len + 1:
                tokens, flags, misses = tokens + ids, flags + counted, 0
            else:
                misses += 1
                if misses == _PACK_MISSES:
                    break
        return tokens, flags

    @property
    def steps_from(self) -> str:
        """What sets the run's length when `train_steps` replaces the config's train.steps."""
        return f"task.train_tokens = {self.train_tokens}"

    def train_steps(self, steps: int) -> int:
        """`steps`, or with train_tokens > 0 the steps that see that many tokens (the mean real,
        non-pad length of a row measured on the first batches), so runs whose solutions differ in
        length (retry data) can be compared at equal training tokens (Part 2.2)."""
        if not self.train_tokens:
            return steps
        tokens_per_row = np.mean([(self.host_batch(0, step).inputs != self.pad_id).sum(axis=1).mean() for step in range(4)])
        return max(1, math.ceil(self.train_tokens / (self.batch_size * tokens_per_row)))

    def host_batch(self, seed: int, step: int, held_out: bool = False, rows: slice | None = None) -> Batch:
        """Batch of step `step` for data seed `seed` (numpy [batch_size, seq_len]), or only the
        rows `rows` of it (a host's share; row r is the same either way); `held_out` draws
        test-split problems from a separate seed range."""
        indices = range(self.batch_size)[rows or slice(None)]
        tokens = np.full((len(indices), self.seq_len + 1), self.pad_id, np.int32)
        flags = np.zeros((len(indices), self.seq_len + 1), np.float32)
        base = ((int(seed) % (1 << 31)) * 2 + int(held_out)) << 48 | int(step) << 16
        make_row = self.packed_row if self.pack else self.row
        for position, row in enumerate(indices):
            ids, counted = make_row(base | row, "test" if held_out else "train")
            tokens[position, :len(ids)] = ids
            flags[position, :len(ids)] = counted
        return Batch(tokens[:, :-1], tokens[:, 1:], flags[:, 1:])

    def batch(self, key: jax.Array, data=None) -> Batch:
        raise DataError("iGSM batches are made on the host: the loop calls host_batch(seed, step)")

    def eval_problems_of(self, op: int) -> list[Problem]:
        """The fixed test-split problems of one op (the same for every run): the first
        `eval_problems` whose prompt and solution fit `eval_len` (a model is never scored on a
        solution it had no room to write; at the paper's med/hard OOD ops about 10-16% are longer)."""
        if op not in self._eval_sets:
            chosen: list[Problem] = []
            for index in range(50 * self.eval_problems):
                problem = generate(_EVAL_SEED + op * 100_000 + index, self.difficulty, op=op, fmt=self.fmt, split="test",
                                   bins=self.bins)
                if len(problem.prompt_ids()[0]) + len(problem.solution_ids) + 1 <= self.eval_len:
                    chosen.append(problem)
                    if len(chosen) == self.eval_problems:
                        break
            else:
                raise DataError(f"task.eval_len = {self.eval_len} is too short for {self.difficulty} problems of op {op}: "
                                f"fewer than {self.eval_problems} of {50 * self.eval_problems} fit; raise it")
            self._eval_sets[op] = chosen
        return self._eval_sets[op]

    def evaluate(self, model: ModelFns, key: jax.Array) -> dict[str, float]:
        """Greedy full-solution accuracy per op and its in-distribution and OOD means; the means of
        final-answer accuracy (the answer after <ans> right, steps unchecked), which moves earlier
        in training than whole solutions do; the share of solutions that end (<eos> within
        eval_len), which shows a model stuck in a loop (e.g. retrying forever on retry data); and
        `unneeded_<id|ood>`, the mean number of correct steps for parameters the question does not
        need per correct solution (0 when none is correct; the paper finds models write almost none)."""
        metrics: dict[str, float] = {}
        answers: dict[int, float] = {}
        finished: dict[int, float] = {}
        unneeded: dict[int, list[int]] = {}
        for op in self.ops_in + self.ops_out:
            attempts = self.attempt(model, self.eval_problems_of(op), jax.random.fold_in(key, op))
            metrics[f"acc_op{op}"] = float(np.mean([a.correct for a in attempts]))
            answers[op] = float(np.mean([a.answer_right for a in attempts]))
            finished[op] = float(np.mean([a.finished for a in attempts]))
            unneeded[op] = [a.verdict.unneeded_steps for a in attempts if a.correct]
        for name, ops in (("id", self.ops_in), ("ood", self.ops_out)):
            if ops:
                metrics[f"acc_{name}"] = float(np.mean([metrics[f"acc_op{op}"] for op in ops]))
                metrics[f"answer_{name}"] = float(np.mean([answers[op] for op in ops]))
                metrics[f"finished_{name}"] = float(np.mean([finished[op] for op in ops]))
                counts = [count for op in ops for count in unneeded[op]]
                metrics[f"unneeded_{name}"] = float(np.mean(counts)) if counts else 0.0
        return metrics

    def attempt(self, model: ModelFns, problems: list[Problem], key: jax.Array) -> list[Attempt]:
        """The model's solution of each problem (prompt and solution must fit eval_len), sampled
        in one batch (greedy at temperature 0), with the checker's verdict; a solution that runs
        past eval_len without <eos> is unfinished and gets no verdict (it counts as wrong)."""
        if model.sample is None:
            raise DataError("iGSM evaluation generates solutions: it needs a decoder (model.kind = gpt)")
        prompts = [problem.prompt_ids()[0] for problem in problems]
        rows = np.full((len(problems), self.eval_len), self.pad_id, np.int32)
        for index, prompt in enumerate(prompts):
            rows[index, :len(prompt)] = prompt
        lengths = np.array([len(prompt) for prompt in prompts], np.int32)
        generated = np.asarray(model.sample(rows, lengths, key))
        tok = tokenizer()
        attempts = []
        for index, problem in enumerate(problems):
            continuation = generated[index, lengths[index]:].tolist()
            finished = self.eos_id in continuation
            if finished:
                continuation = continuation[:continuation.index(self.eos_id)]
            # A finished solution is checked exactly as written; an unfinished one is shown without padding.
            text = tok.decode(continuation if finished else [token for token in continuation if token != self.pad_id])
            verdict = check_solution(problem, continuation) if finished else None
            attempts.append(Attempt(problem, text, finished, verdict, finished and continuation[-2:] == problem.answer_ids))
        return attempts


@dataclasses.dataclass
class Attempt:
    """One generated solution: its text (up to <eos>, or all of it when unfinished) and scores."""

    problem: Problem
    text: str
    finished: bool  # ended with <eos> within eval_len
    verdict: CheckResult | None  # the checker's, for finished solutions
    answer_right: bool  # finished with "<ans> <the right answer>"

    @property
    def correct(self) -> bool:
        return self.verdict is not None and self.verdict.correct


def task_from_config(task: ml_collections.ConfigDict) -> IGSMTask:
    """IGSMTask from a `config.task` ConfigDict (every field as in `default_config`)."""
    return IGSMTask(task)

