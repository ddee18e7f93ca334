"""Batches made on the host, for worlds whose data can't be made on device (Part 2's iGSM
problems are built in Python): the loop feeds the step with a task's `host_batch(seed, step)`
(worlds/base.py, `HostTask`), computed in the loop's thread or by worker processes that keep a
few steps ahead of training.

Batch s is a pure function of (data seed, s) (DESIGN.md, principle 2): a resumed run replays
exactly, and the number of workers only decides where and when a batch is computed, never what
it holds. Workers are spawned, not forked (JAX is not fork-safe), and the task object is pickled
to each of them once, so a task with `data_workers > 0` must be picklable (a module-level class
holding plain data).
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import pickle
import signal
import threading
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lmphys import parallel
from lmphys.errors import DataError
from lmphys.worlds.base import Batch

DTYPES = Batch(inputs=np.int32, targets=np.int32, loss_mask=np.float32)


class HostDataError(RuntimeError):
    """Making a host batch failed; the message names the step, the cause (with a worker's own
    traceback) is chained. Not a one-line user error: a task bug needs its traceback."""


def data_seed(config: ml_collections.ConfigDict) -> int:
    """The seed of a run's training data stream: `data_seed`, or `seed` when it is -1."""
    return config.data_seed if config.data_seed >= 0 else config.seed


def checked_rows(task: Any, seed: int, step: int, held_out: bool = False, rows: slice | None = None) -> Batch:
    """`task.host_batch(seed, step, held_out, rows)` (all rows when `rows` is None), checked to
    be [rows, seq_len] arrays and given the dtypes the step expects."""
    made = task.host_batch(seed, step, held_out=held_out) if rows is None else task.host_batch(
        seed, step, held_out=held_out, rows=rows)
    arrays = [np.asarray(array, dtype) for array, dtype in zip(made, DTYPES)]
    expected = len(range(task.batch_size)[rows or slice(None)])
    if len(arrays) != len(DTYPES) or len({array.shape for array in arrays}) != 1 or arrays[0].ndim != 2 \
            or arrays[0].shape[0] != expected:
        raise DataError(f"{type(task).__name__}.host_batch({seed}, {step}) gave arrays of shapes "
                        f"{[array.shape for array in arrays]}: it must give inputs, targets and loss_mask, "
                        f"each [{expected} rows, seq_len]")
    return Batch(*arrays)


def stacked_rows(task: Any, seeds: Sequence[int], step: int, rows: slice | None = None) -> Batch:
    """Rows `rows` (default: all) of batch `step` of each data stream in `seeds`, stacked: numpy
    arrays [K, rows, seq_len]."""
    return Batch(*(np.stack(column) for column in zip(*(checked_rows(task, seed, step, rows=rows) for seed in seeds))))


def held_out_batches(task: Any, seeds: Sequence[int]) -> list[Batch]:
    """One fixed evaluation batch per seed (`host_batch(seed, 0, held_out=True)`), as jax arrays."""
    return [jax.tree.map(jnp.asarray, checked_rows(task, seed, 0, held_out=True)) for seed in seeds]


def on_mesh(batch: Batch, sharding: jax.sharding.Sharding, shape: tuple[int, int, int], step: int) -> Batch:
    """This host's block of a stacked host batch (`parallel.process_block`; the whole [K, B, T]
    batch on one host) placed for the step as the global [K, B, T] arrays, once checked to have
    the block's shape. Each device takes its own piece of the block."""
    block = parallel.process_block(sharding, shape)
    expected = tuple(piece.stop - piece.start for piece in block)
    if batch.inputs.shape != expected:
        raise DataError(f"the host batch of step {step} has shape {batch.inputs.shape}: this host's part of the "
                        f"step's {shape} batch (stacked models, task.batch_size, task.seq_len) is {expected}")

    def local_piece(array: np.ndarray, index: tuple[slice, ...]) -> np.ndarray:
        shifted = tuple(slice(piece.indices(size)[0] - origin.start, piece.indices(size)[1] - origin.start)
                        for piece, size, origin in zip(index, shape, block))
        return array[shifted]

    return jax.tree.map(lambda array: jax.make_array_from_callback(
        shape, sharding, lambda index: local_piece(array, index)), batch)


_worker_task: Any = None  # in a worker process: the task it makes batches of


def _start_worker(task: Any) -> None:
    """Worker initializer: keep the task; leave SIGINT/SIGTERM to the main process (which saves a
    checkpoint, then shuts the pool down); exit when the main process is gone."""
    global _worker_task
    _worker_task = task
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _exit_with(parent: Any) -> None:
    parent.join()  # returns once the main process has ended, even if it was killed
    os._exit(1)


def _worker_rows(seeds: Sequence[int], step: int, rows: slice | None) -> Batch:
    return stacked_rows(_worker_task, seeds, step, rows)


class HostBatches:
    """The training batches of K stacked models, made on the host: `get(step)` returns numpy
    arrays [K, batch_size, seq_len] whose row k is `task.host_batch(seeds[k], step)`; with `rows`,
    only those rows of each (a host of a multi-host job makes its own block of the batch).

    Steps are requested in increasing order from `start_step`. With `workers = 0` each batch is
    made when asked for; with `workers > 0`, a pool of that many spawned processes keeps the next
    `prefetch` steps in flight (prefetch >= workers keeps every worker busy). The task is pickled
    to the workers, so it must be picklable. A failure names the step it happened at. `close()`
    (or leaving a `with` block) ends the workers.
    """

    def __init__(self, task: Any, seeds: list[int], start_step: int, workers: int, prefetch: int = 4,
                 rows: slice | None = None):
        if not isinstance(workers, int) or workers < 0:
            raise DataError(f"{type(task).__name__}.data_workers = {workers!r} is invalid: it must be 0 or more")
        if not isinstance(prefetch, int) or prefetch < 1:
            raise ValueError(f"prefetch = {prefetch!r} is invalid: it must be positive")
        self.task = task
        self.seeds = list(seeds)
        self.prefetch = prefetch
        self.rows = rows
        self._pending: dict[int, concurrent.futures.Future] = {}
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        if workers:
            try:
                pickle.dumps(task)
            except Exception as error:
                raise DataError(f"{type(task).__name__} cannot be sent to data worker processes ({error}): "
                                "a task with data_workers > 0 must be picklable") from error
            self._pool = concurrent.futures.ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker, initargs=(task,)
            )
            self._submit_from(start_step)  # the workers start now, ahead of the first request

    def get(self, step: int) -> Batch:
        """The stacked batch of `step`; raises HostDataError naming the step if making it failed."""
        try:
            if self._pool is None:
                return stacked_rows(self.task, self.seeds, step, self.rows)
            for passed in [earlier for earlier in self._pending if earlier < step]:
                self._pending.pop(passed).cancel()
            self._submit_from(step)
            return self._pending.pop(step).result()
        except Exception as error:
            raise HostDataError(f"making the host batch of step {step} failed: {type(error).__name__}: {error}") from error

    def _submit_from(self, step: int) -> None:
        """Have steps step .. step + prefetch computed or in flight."""
        for ahead in range(step, step + self.prefetch + 1):
            if ahead not in self._pending:
                self._pending[ahead] = self._pool.submit(_worker_rows, self.seeds, ahead, self.rows)

    def close(self) -> None:
        """Cancel the batches not started yet and end the workers (after the ones they are making)."""
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> "HostBatches":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
