"""Depo as a training task: packed context windows made on the host, and accuracy by hop count.

- Rows: row r of step s is a window of seq_len + 1 tokens filled left-aligned with training
  instances drawn from its own `random.Random` (seeded by data seed, step and row), the last one
  cut off (worlds/base.pack_left_aligned). The loss counts only <ans> and answer tokens (labels).
- Evaluation (`evaluate`): `eval_windows` fixed windows of test instances (n = N, k a power of
  two), the same for every run; a query is right when every token of its answer word is the
  model's argmax given the window so far (teacher forcing: the same as greedy decoding of the
  answer). `acc_k<k>` for each test k, `acc` over all queries. Only queries whose answer lies
  whole in the window count. Paper: report acc at k = K and k = K/2.
"""
from __future__ import annotations

import random
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lmphys.config import require, require_fields
from lmphys.errors import DataError
from lmphys.worlds.base import Batch, ModelFns, pack_left_aligned, windows_batch
from lmphys.worlds.depo import data
from lmphys.worlds.depo.text import Tokenizer

_EVAL_SEED = 1 << 40  # evaluation windows come from their own seed range, shared by every run


def default_config() -> ml_collections.ConfigDict:
    """Every field of a depo `config.task` (Depo2 as released, at CPU scale)."""
    task = ml_collections.ConfigDict()
    task.name = "depo"
    task.objective = "lm"
    task.max_size = 12  # N: training n ~ 1/(n + sqrt N) on 3..N, test n = N (paper: Depo1 375/300/225, Depo2 125/100/75)
    task.max_hops = 4  # K: training k uniform on 1..K (paper: Depo1 8, Depo2 16)
    task.queries = 10  # M: queries per instance (min(n, M) distinct start words)
    task.vocab = 3  # V: Depo1 50; Depo2 3 as released (the paper's text says 4)
    task.min_word_len = 5  # Depo1 1, Depo2 5
    task.max_word_len = 7  # Depo1 2, Depo2 7
    task.separator = False  # a <sep> before every edge (a release option, off in the paper)
    task.batch_size = 32
    task.seq_len = 512  # context window (paper: 2048)
    task.eval_windows = 32  # fixed test windows scored per evaluation
    task.temperature = 0.0  # evaluation is teacher-forced argmax; kept for the loop's sampler
    task.data_workers = 0  # processes generating batches ahead (0: in the training process)
    return task


def spec_of(task: ml_collections.ConfigDict) -> data.Spec:
    return data.Spec(task.max_size, task.max_hops, task.queries, task.vocab, task.min_word_len, task.max_word_len,
                     bool(task.separator))


def _positive_int(task: ml_collections.ConfigDict, field: str, least: int = 1) -> None:
    value = task[field]
    require(isinstance(value, int) and not isinstance(value, bool) and value >= least, f"task.{field}",
            f"it must be an integer >= {least}", value)


def validate(task: ml_collections.ConfigDict) -> None:
    """Raise ConfigError naming the first bad depo task field."""
    require_fields(task, list(default_config().keys()), "task", "lmphys.worlds.depo.default_config")
    require(task.objective == "lm", "task.objective", "Depo trains decoders (lm)", task.objective)
    _positive_int(task, "max_size", data.MIN_SIZE)
    for field in ("max_hops", "queries", "vocab", "min_word_len", "batch_size", "eval_windows"):
        _positive_int(task, field)
    _positive_int(task, "max_word_len", task.min_word_len)
    _positive_int(task, "data_workers", 0)
    require(isinstance(task.separator, bool), "task.separator", "it must be True or False", task.separator)
    words = sum(task.vocab ** length for length in range(task.min_word_len, task.max_word_len + 1))
    require(words >= task.max_size, "task.max_size",
            f"it must be at most the {words} distinct words that task.vocab = {task.vocab} and word lengths "
            f"{task.min_word_len}..{task.max_word_len} allow", task.max_size)
    longest = data.longest_test_instance(spec_of(task))
    require(task.seq_len + 1 >= longest, "task.seq_len",
            f"a test instance (n = N = {task.max_size}) can take {longest} tokens: the window (seq_len + 1) must hold "
            f"one whole, so use at least {longest - 1}", task.seq_len)
    require(task.temperature >= 0, "task.temperature", "it must be zero (greedy) or positive", task.temperature)


def validate_config(config: ml_collections.ConfigDict) -> None:
    """The task.* fields of a Depo run (`validate`)."""
    validate(config.task)



class DepoTask:
    """Depo windows made on the host from (seed, step, row); plain fields only, so worker
    processes can unpickle it."""

    def __init__(self, task: ml_collections.ConfigDict):
        validate(task)
        self.spec = spec_of(task)
        self.tokenizer = Tokenizer(self.spec.max_hops, self.spec.vocab)
        self.vocab_size = self.tokenizer.vocab_size
        self.bos_id, self.eos_id, self.pad_id = self.tokenizer.bos_id, self.tokenizer.eos_id, self.tokenizer.pad_id
        self.batch_size, self.seq_len = task.batch_size, task.seq_len
        self.eval_windows = task.eval_windows
        self.data_workers = task.data_workers
        self.law = data.size_law(self.spec.max_size)
        self._eval_set: list[Any] | None = None

    def describe(self) -> str:
        spec = self.spec
        return (f"depo N={spec.max_size} K={spec.max_hops} V={spec.vocab} "
                f"words {spec.min_word_len}-{spec.max_word_len} tokens")

    def window(self, seed: int, test: bool = False):
        """One packed window (worlds/base.Packed of seq_len + 1 tokens) from random.Random(seed);
        each placed instance is an `Encoded` with its answers."""
        rng = random.Random(seed)
        draw = lambda: self.tokenizer.encode(data.draw(rng, self.spec, test=test, law=self.law), self.spec.separator)
        return pack_left_aligned(draw, self.seq_len + 1)

    def host_batch(self, seed: int, step: int, held_out: bool = False, rows: slice | None = None) -> Batch:
        """Batch `step` of data stream `seed` (numpy [rows, seq_len]); `held_out`: test instances."""
        window = lambda row_seed: self.window(row_seed, test=held_out)
        return windows_batch(window, self.batch_size, self.seq_len, seed, step, held_out, rows)

    def batch(self, key: jax.Array, data=None) -> Batch:
        raise DataError("Depo batches are made on the host: the loop calls host_batch(seed, step)")

    def eval_set(self) -> list[Any]:
        """The fixed evaluation windows (test instances), the same for every run."""
        if self._eval_set is None:
            self._eval_set = [self.window(_EVAL_SEED + index, test=True) for index in range(self.eval_windows)]
        return self._eval_set

    def query_results(self, model: ModelFns, windows: list[Any]) -> list[tuple[int, bool, list[int]]]:
        """(k, right, predicted answer tokens) of every query whose answer lies whole in its window."""
        results = []
        for first in range(0, len(windows), self.batch_size):
            chunk = windows[first:first + self.batch_size]
            rows = np.array([packed.tokens for packed in chunk], np.int32)
            predicted = np.asarray(jnp.argmax(model.log_probs(jnp.asarray(rows[:, :-1])), axis=-1))
            for packed, row, guess in zip(chunk, rows, predicted):
                for start, encoded in packed.placed:
                    for hops, offset, length in encoded.answers:
                        begin = start + offset
                        if begin + length > self.seq_len + 1:
                            continue  # cut off at the window's end
                        guessed = guess[begin - 1:begin - 1 + length].tolist()  # position t predicts t + 1
                        results.append((hops, guessed == row[begin:begin + length].tolist(), guessed))
        return results

    def evaluate(self, model: ModelFns, key: jax.Array) -> dict[str, float]:
        """Exact-match accuracy of the answer words, by hop count k (`acc_k<k>`) and overall (`acc`)."""
        results = self.query_results(model, self.eval_set())
        metrics = {"acc": float(np.mean([right for _, right, _ in results])) if results else 0.0,
                   "eval_queries": float(len(results))}
        for hops in sorted(set(data.eval_hops(self.spec.max_hops))):
            scored = [right for k, right, _ in results if k == hops]
            if scored:
                metrics[f"acc_k{hops}"] = float(np.mean(scored))
        return metrics


def task_from_config(task: ml_collections.ConfigDict) -> DepoTask:
    """DepoTask from a `config.task` ConfigDict (every field as in `default_config`)."""
    return DepoTask(task)
