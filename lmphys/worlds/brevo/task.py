"""Brevo as a training task: packed context windows made on the host, and generation accuracy.

- Rows: row r of step s is a window of seq_len + 1 tokens filled left-aligned with training
  instances from its own `random.Random` (seeded by data seed, step and row), the last one cut
  off (worlds/base.pack_left_aligned). The loss counts <ans>, the answer and <eos> (labels).
- Evaluation (`evaluate`): `eval_instances` fixed test instances (n = N), the same for every run,
  each alone at the start of a row (those whose answer and <eos> fit seq_len tokens); the model
  writes its answer greedily after <ans> until <eos>, and check.py judges it. `acc` is the
  release's rule (any valid topological order of exactly the ancestors and the query),
  `acc_strict` also forbids repeats; `acc_depth<d>` (d = 1..5, then `acc_depth6plus`) buckets by
  the query's depth as the paper's Fig 9 does, `acc_anc<lo>_<hi>` by its number of ancestors.
"""
from __future__ import annotations

import random

import jax
import ml_collections
import numpy as np

from lmphys.config import require, require_fields
from lmphys.errors import DataError
from lmphys.worlds.base import Batch, ModelFns, pack_left_aligned, windows_batch
from lmphys.worlds.brevo import data
from lmphys.worlds.brevo.check import Verdict, check_names
from lmphys.worlds.brevo.text import Encoded, Tokenizer

_EVAL_SEED = 1 << 40  # evaluation instances come from their own seed range, shared by every run
_FIT_PROBES = 16  # test instances validate() draws to see that seq_len holds them
ANCESTOR_BINS = ((1, 2), (3, 4), (5, 8), (9, 16), (17, 32), (33, 64), (65, 128), (129, 10**9))


def default_config() -> ml_collections.ConfigDict:
    """Every field of a brevo `config.task` (Brevo1 at CPU scale)."""
    task = ml_collections.ConfigDict()
    task.name = "brevo"
    task.objective = "lm"
    task.max_size = 16  # N: training n ~ 1/(n + sqrt N) on 3..N, test n = N (paper: Brevo1 110/90/70, Brevo2 50/40/30)
    task.multi = False  # Brevo2: vertices named by multi-token words
    task.vocab = 4  # V of Brevo2's words (released: 4)
    task.min_word_len = 2  # Brevo2's word lengths (released: 2..4)
    task.max_word_len = 4
    task.query_from = "last"  # last (as released: the last vertex built) or last_quarter (the paper's text)
    task.batch_size = 32
    task.seq_len = 256  # context window (paper: Brevo1 1024, Brevo2 1536)
    task.eval_instances = 128  # fixed test instances generated per evaluation
    task.temperature = 0.0  # greedy answers
    task.data_workers = 0  # processes generating batches ahead (0: in the training process)
    return task


def spec_of(task: ml_collections.ConfigDict) -> data.Spec:
    return data.Spec(task.max_size, bool(task.multi), task.vocab, task.min_word_len, task.max_word_len, task.query_from)


def _integer(task: ml_collections.ConfigDict, field: str, least: int = 1) -> None:
    value = task[field]
    require(isinstance(value, int) and not isinstance(value, bool) and value >= least, f"task.{field}",
            f"it must be an integer >= {least}", value)


def validate(task: ml_collections.ConfigDict) -> None:
    """Raise ConfigError naming the first bad brevo task field."""
    require_fields(task, list(default_config().keys()), "task", "lmphys.worlds.brevo.default_config")
    require(task.objective == "lm", "task.objective", "Brevo trains decoders (lm): answers are generated", task.objective)
    _integer(task, "max_size", data.MIN_SIZE)
    for field in ("vocab", "min_word_len", "batch_size", "eval_instances"):
        _integer(task, field)
    _integer(task, "max_word_len", task.min_word_len)
    _integer(task, "data_workers", 0)
    require(isinstance(task.multi, bool), "task.multi", "it must be True or False", task.multi)
    require(task.query_from in data.QUERY_FROM, "task.query_from", f"it must be one of {', '.join(data.QUERY_FROM)}",
            task.query_from)
    require(task.temperature >= 0, "task.temperature", "it must be zero (greedy) or positive", task.temperature)
    if task.multi:
        words = sum(task.vocab ** length for length in range(task.min_word_len, task.max_word_len + 1))
        require(words >= task.max_size, "task.max_size",
                f"Brevo2 names every vertex by a distinct word: task.vocab = {task.vocab} and lengths "
                f"{task.min_word_len}..{task.max_word_len} allow only {words}", task.max_size)
    _integer(task, "seq_len", 8)
    spec, tokenizer = spec_of(task), Tokenizer(spec_of(task))
    lengths = sorted(len(tokenizer.encode(data.draw(random.Random(index), spec, test=True)).tokens)
                     for index in range(_FIT_PROBES))
    require(lengths[_FIT_PROBES // 2] <= task.seq_len, "task.seq_len",
            f"most test instances (n = N = {task.max_size}) do not fit in it (their median length is "
            f"{lengths[_FIT_PROBES // 2]} tokens, the longest of {_FIT_PROBES} drawn {lengths[-1]})", task.seq_len)


def validate_config(config: ml_collections.ConfigDict) -> None:
    """The task.* fields of a Brevo run (`validate`)."""
    validate(config.task)



def ancestor_bin(count: int) -> str:
    for low, high in ANCESTOR_BINS:
        if low <= count <= high:
            return f"acc_anc{low}_{high}" if high < 10**9 else f"acc_anc{low}plus"
    return "acc_anc0"


class BrevoTask:
    """Brevo windows made on the host from (seed, step, row), and greedy-answer evaluation; plain
    fields only, so worker processes can unpickle it."""

    def __init__(self, task: ml_collections.ConfigDict):
        validate(task)
        self.spec = spec_of(task)
        self.tokenizer = Tokenizer(self.spec)
        self.vocab_size = self.tokenizer.vocab_size
        self.bos_id, self.eos_id, self.pad_id = self.tokenizer.bos_id, self.tokenizer.eos_id, self.tokenizer.pad_id
        self.batch_size, self.seq_len = task.batch_size, task.seq_len
        self.eval_instances = task.eval_instances
        self.data_workers = task.data_workers
        self.law = data.size_law(self.spec.max_size)
        self._eval_set: tuple[list[tuple[data.Instance, Encoded]], float] | None = None

    def describe(self) -> str:
        kind = "Brevo2 (word names)" if self.spec.multi else "Brevo1"
        return f"brevo {kind} N={self.spec.max_size} query from {self.spec.query_from}"

    def window(self, seed: int, test: bool = False):
        rng = random.Random(seed)
        draw = lambda: self.tokenizer.encode(data.draw(rng, self.spec, test=test, law=self.law))
        return pack_left_aligned(draw, self.seq_len + 1)

    def host_batch(self, seed: int, step: int, held_out: bool = False, rows: slice | None = None) -> Batch:
        """Batch `step` of data stream `seed` (numpy [rows, seq_len]); `held_out`: test instances."""
        window = lambda row_seed: self.window(row_seed, test=held_out)
        return windows_batch(window, self.batch_size, self.seq_len, seed, step, held_out, rows)

    def batch(self, key: jax.Array, data=None) -> Batch:
        raise DataError("Brevo batches are made on the host: the loop calls host_batch(seed, step)")

    def eval_set(self) -> tuple[list[tuple[data.Instance, Encoded]], float]:
        """(the fixed test instances that fit seq_len with their tokens, the share that fit)."""
        if self._eval_set is None:
            drawn = [data.draw(random.Random(_EVAL_SEED + index), self.spec, test=True)
                     for index in range(self.eval_instances)]
            encoded = [(instance, self.tokenizer.encode(instance)) for instance in drawn]
            fitting = [pair for pair in encoded if len(pair[1].tokens) <= self.seq_len]
            self._eval_set = (fitting, len(fitting) / len(encoded))
        return self._eval_set

    def answers(self, model: ModelFns, pairs: list[tuple[data.Instance, Encoded]],
                key: jax.Array) -> list[tuple[list[int], bool, Verdict]]:
        """(written tokens after <ans>, finished with <eos>, verdict) of each instance, greedy."""
        if model.sample is None:
            raise DataError("Brevo evaluation generates answers: it needs a decoder (model.kind = gpt)")
        out = []
        for first in range(0, len(pairs), self.batch_size):
            chunk = pairs[first:first + self.batch_size]
            rows = np.zeros((len(chunk), self.seq_len), np.int32)
            lengths = np.array([encoded.prompt_len for _, encoded in chunk], np.int32)
            for index, (_, encoded) in enumerate(chunk):
                rows[index, :encoded.prompt_len] = encoded.tokens[:encoded.prompt_len]
            written = np.asarray(model.sample(rows, lengths, jax.random.fold_in(key, first)))
            for index, (instance, _) in enumerate(chunk):
                continuation = written[index, lengths[index]:].tolist()
                finished = self.eos_id in continuation
                if finished:
                    continuation = continuation[:continuation.index(self.eos_id)]
                names, whole = self.tokenizer.names_in(continuation)
                verdict = check_names(instance, names, whole) if finished else Verdict(False, False, "no <eos>")
                out.append((continuation, finished, verdict))
        return out

    def evaluate(self, model: ModelFns, key: jax.Array) -> dict[str, float]:
        """Greedy-answer accuracy overall, strict, by depth and by number of ancestors."""
        pairs, fit = self.eval_set()
        metrics = {"eval_fit_fraction": fit, "eval_instances": float(len(pairs))}
        if not pairs:
            return metrics
        results = self.answers(model, pairs, key)
        metrics["acc"] = float(np.mean([verdict.correct for _, _, verdict in results]))
        metrics["acc_strict"] = float(np.mean([verdict.strict for _, _, verdict in results]))
        metrics["finished"] = float(np.mean([finished for _, finished, _ in results]))
        buckets: dict[str, list[bool]] = {}
        for (instance, _), (_, _, verdict) in zip(pairs, results):
            depth = f"acc_depth{instance.depth}" if instance.depth <= 5 else "acc_depth6plus"
            buckets.setdefault(depth, []).append(verdict.correct)
            buckets.setdefault(ancestor_bin(instance.ancestors), []).append(verdict.correct)
        metrics.update({name: float(np.mean(scores)) for name, scores in sorted(buckets.items())})
        return metrics


def task_from_config(task: ml_collections.ConfigDict) -> BrevoTask:
    """BrevoTask from a `config.task` ConfigDict (every field as in `default_config`)."""
    return BrevoTask(task)
