"""Mano as a training task: packed context windows made on the host, and accuracy by length.

- Rows: row r of step s is a window of seq_len + 1 tokens filled left-aligned with training
  expressions (l uniform in 1..L) from its own `random.Random`, the last one cut off
  (worlds/base.pack_left_aligned); the loss counts every token, as in the paper.
- Evaluation (`evaluate`): for each length l in `eval_lengths` (default: 1..L), `eval_windows`
  fixed windows of expressions with exactly l operators, the same for every run; an expression is
  right when the model's argmax after <ans_l> is its value (one token, so teacher forcing is
  greedy decoding). Every whole expression in a window counts, not only the first.
  `acc_len<l>` per length, `acc` at l = L (the paper's number; chance is 1/23).
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
from lmphys.worlds.mano import data
from lmphys.worlds.mano.text import Tokenizer

_EVAL_SEED = 1 << 40  # evaluation windows come from their own seed range, shared by every run


def default_config() -> ml_collections.ConfigDict:
    """Every field of a mano `config.task` (CPU scale)."""
    task = ml_collections.ConfigDict()
    task.name = "mano"
    task.objective = "lm"
    task.max_ops = 4  # L: training lengths 1..L (paper: 10, 13, 16)
    task.ops = "asm"  # the release's ttype: a(+) s(-) m(*), d(/) adds division by the modular inverse
    task.knowledge_augment = True  # two interchangeable ids per special/operator token (released default)
    task.batch_size = 32
    task.seq_len = 256  # context window (paper: 1024)
    task.eval_windows = 4  # fixed test windows per evaluated length
    task.eval_lengths = ""  # comma-separated lengths to evaluate; "": every length 1..L
    task.temperature = 0.0  # evaluation is teacher-forced argmax; kept for the loop's sampler
    task.data_workers = 0  # processes generating batches ahead (0: in the training process)
    return task


def spec_of(task: ml_collections.ConfigDict) -> data.Spec:
    return data.Spec(task.max_ops, data.ops_from_letters(task.ops), bool(task.knowledge_augment))


def eval_lengths(task: ml_collections.ConfigDict) -> tuple[int, ...]:
    """The lengths evaluation scores (ValueError if task.eval_lengths is not a list of 1..L)."""
    if not task.eval_lengths:
        return tuple(range(1, task.max_ops + 1))
    lengths = tuple(int(part) for part in str(task.eval_lengths).split(","))
    if not all(1 <= length <= task.max_ops for length in lengths):
        raise ValueError(task.eval_lengths)
    return lengths


def _integer(task: ml_collections.ConfigDict, field: str, least: int = 1) -> None:
    value = task[field]
    require(isinstance(value, int) and not isinstance(value, bool) and value >= least, f"task.{field}",
            f"it must be an integer >= {least}", value)


def validate(task: ml_collections.ConfigDict) -> None:
    """Raise ConfigError naming the first bad mano task field."""
    require_fields(task, list(default_config().keys()), "task", "lmphys.worlds.mano.default_config")
    require(task.objective == "lm", "task.objective", "Mano trains decoders (lm)", task.objective)
    for field in ("max_ops", "batch_size", "eval_windows"):
        _integer(task, field)
    _integer(task, "data_workers", 0)
    ops = str(task.ops)
    require(bool(ops) and set(ops) <= set("asmd") and len(set(ops)) == len(ops), "task.ops",
            "it must be letters of asmd (a +, s -, m *, d /), each at most once, e.g. asm", task.ops)
    require(isinstance(task.knowledge_augment, bool), "task.knowledge_augment", "it must be True or False",
            task.knowledge_augment)
    instance_len = 2 * task.max_ops + 5
    _integer(task, "seq_len", instance_len - 1)  # a window holds at least one whole expression of length L
    try:
        eval_lengths(task)
    except ValueError:
        require(False, "task.eval_lengths", f"it must be comma-separated lengths in 1..{task.max_ops}, or empty",
                task.eval_lengths)
    require(task.temperature >= 0, "task.temperature", "it must be zero (greedy) or positive", task.temperature)


def validate_config(config: ml_collections.ConfigDict) -> None:
    """The task.* fields of a Mano run (`validate`)."""
    validate(config.task)



class ManoTask:
    """Mano windows made on the host from (seed, step, row); plain fields only, so worker
    processes can unpickle it."""

    def __init__(self, task: ml_collections.ConfigDict):
        validate(task)
        self.spec = spec_of(task)
        self.tokenizer = Tokenizer(self.spec.max_ops)
        self.vocab_size = self.tokenizer.vocab_size
        self.bos_id, self.eos_id, self.pad_id = self.tokenizer.bos_id, self.tokenizer.eos_id, self.tokenizer.pad_id
        self.batch_size, self.seq_len = task.batch_size, task.seq_len
        self.eval_windows = task.eval_windows
        self.lengths = eval_lengths(task)
        self.data_workers = task.data_workers
        self._eval_sets: dict[int, list[Any]] = {}

    def describe(self) -> str:
        augment = ", knowledge augmentation" if self.spec.knowledge_augment else ""
        return f"mano L={self.spec.max_ops} ops {''.join(self.spec.ops)}{augment}"

    def window(self, seed: int, lengths: tuple[int, ...] | None = None):
        rng = random.Random(seed)
        draw = lambda: self.tokenizer.encode(data.draw(rng, self.spec, lengths))
        return pack_left_aligned(draw, self.seq_len + 1)

    def host_batch(self, seed: int, step: int, held_out: bool = False, rows: slice | None = None) -> Batch:
        """Batch `step` of data stream `seed` (numpy [rows, seq_len]); `held_out`: length L only."""
        lengths = (self.spec.max_ops,) if held_out else None
        return windows_batch(lambda row_seed: self.window(row_seed, lengths), self.batch_size, self.seq_len, seed, step,
                             held_out, rows)

    def batch(self, key: jax.Array, data=None) -> Batch:
        raise DataError("Mano batches are made on the host: the loop calls host_batch(seed, step)")

    def eval_set(self, length: int) -> list[Any]:
        if length not in self._eval_sets:
            self._eval_sets[length] = [self.window(_EVAL_SEED + 1000 * length + index, (length,))
                                       for index in range(self.eval_windows)]
        return self._eval_sets[length]

    def answer_results(self, model: ModelFns, windows: list[Any]) -> list[tuple[bool, int, int]]:
        """(right, predicted value or -1, true value) of every whole expression in the windows."""
        results = []
        for first in range(0, len(windows), self.batch_size):
            chunk = windows[first:first + self.batch_size]
            rows = np.array([packed.tokens for packed in chunk], np.int32)
            predicted = np.asarray(jnp.argmax(model.log_probs(jnp.asarray(rows[:, :-1])), axis=-1))
            for packed, row, guess in zip(chunk, rows, predicted):
                for start, encoded in packed.placed:
                    position = start + encoded.answer_position
                    if position > self.seq_len:
                        continue  # cut off at the window's end
                    value = self.tokenizer.value_of(int(guess[position - 1]))
                    truth = self.tokenizer.value_of(int(row[position]))
                    results.append((value == truth, -1 if value is None else value, truth))
        return results

    def evaluate(self, model: ModelFns, key: jax.Array) -> dict[str, float]:
        """Answer accuracy per expression length (`acc_len<l>`) and at l = L (`acc`)."""
        metrics: dict[str, float] = {}
        for length in self.lengths:
            results = self.answer_results(model, self.eval_set(length))
            metrics[f"acc_len{length}"] = float(np.mean([right for right, _, _ in results])) if results else 0.0
        if f"acc_len{self.spec.max_ops}" in metrics:
            metrics["acc"] = metrics[f"acc_len{self.spec.max_ops}"]
        return metrics


def task_from_config(task: ml_collections.ConfigDict) -> ManoTask:
    """ManoTask from a `config.task` ConfigDict (every field as in `default_config`)."""
    return ManoTask(task)
