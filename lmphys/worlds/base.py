"""The interface between synthetic worlds and the training loop.

A world is a package under lmphys/worlds/ whose folder name is its `task.name`. Its `__init__`
offers the loop, sweeps and scripts three names:
- `validate_config(config)`: raise ConfigError for the first bad task.* field of a run config
  (and for task fields that do not fit the model, e.g. an evaluation longer than its context);
- `task_from_config(task_config)`: the `Task` below;
- `ANALYSES`: {name: fn(task, graphdef, params, **options) -> JSON-ready dict}, the analyses of a
  trained model a sweep may run after training and scripts/probe.py runs on a finished workdir.

The loop only sees `Batch` and a task's `evaluate`; what tokens mean stays inside the world
(DESIGN.md, principle 3). Batches are pure functions of a PRNG key, and the loop derives that key
from (seed, step), so step s of a run always sees the same data, across restarts and devices.
Worlds whose data can only be made in Python offer `host_batch(seed, step)` instead, which the
loop runs on the host, in worker processes if the task asks for them (train/host_data.py).

Helpers shared by the worlds: `causal_lm_batch` and `masked_lm_batch` (training rows from token
rows), and `pack_left_aligned` (Part 4.1's context windows filled with whole instances from
position 0).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np


class Batch(NamedTuple):
    """One training batch. All arrays are [batch, seq_len] (numpy arrays from `host_batch`)."""

    inputs: jax.Array  # int32 token ids fed to the model
    targets: jax.Array  # int32 ids the model should predict at each position
    loss_mask: jax.Array  # float32, 1 where the position counts in the loss


# sample_fn(prompts_BT, prompt_lengths_B, key) -> tokens_BT: the model's continuation of each
# prompt, written in place after its first prompt_lengths[b] tokens (the prompt is kept).
SampleFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
# log_probs_fn(tokens_BT) -> float32 [B, T, V]: log-softmax of the model's logits at each position.
LogProbsFn = Callable[[jax.Array], jax.Array]


class ModelFns(NamedTuple):
    """How a task's evaluation reaches the model being trained, without knowing its code.

    `sample` is None for encoders, which do not generate; `log_probs` of a decoder at position t
    is the distribution of token t + 1.
    """

    sample: SampleFn | None
    log_probs: LogProbsFn


class Task(Protocol):
    """What a synthetic world offers the loop.

    Optionally, a world whose data can't be made on device (e.g. iGSM problems built in Python)
    has `host_batch` and `data_workers` (see `HostTask`); the loop then trains on `host_batch`
    and never calls `batch`.
    """

    vocab_size: int
    bos_id: int
    eos_id: int
    pad_id: int

    def batch(self, key: jax.Array, data=None) -> Batch:
        """A training batch; pure and jittable so it can run on device inside the train step.

        A task built on a fixed dataset (e.g. packed biographies) exposes it as `data`, a pytree of
        arrays; the loop passes it back here as an argument of the jitted step rather than letting
        it be baked into the program as a constant. Tasks that sample afresh have `data = None`."""

    def evaluate(self, model: ModelFns, key: jax.Array) -> dict[str, float]:
        """Task metrics (e.g. generation accuracy) of the model reached through `model`."""


class HostTask(Task, Protocol):
    """A task whose batches are made on the host, by numpy code, rather than inside the step."""

    data_workers: int  # 0: batches are made in the loop's thread; N > 0: by N worker processes

    def host_batch(self, seed: int, step: int, held_out: bool = False, rows: slice | None = None) -> Batch:
        """Batch `step` of data stream `seed` as numpy arrays [batch_size, seq_len] (inputs and
        targets int32, loss_mask float32); a pure function of its arguments and the task's config,
        so a resumed run replays exactly and the number of workers never changes the data.
        `rows` (a slice of the batch's rows) asks for those rows alone, the same as in the whole
        batch: each host of a multi-host job makes only its own.
        `held_out=True` is the evaluation stream (e.g. test-split problems). With
        `data_workers > 0` the task object is pickled to worker processes, so it must pickle."""


def causal_lm_batch(sequences_BT1: jax.Array) -> Batch:
    """Next-token prediction on [B, T+1] token rows: inputs are the first T, targets the last T."""
    inputs = sequences_BT1[:, :-1]
    targets = sequences_BT1[:, 1:]
    return Batch(inputs, targets, jnp.ones(inputs.shape, jnp.float32))


def masked_lm_batch(
    tokens_BT: jax.Array,
    key: jax.Array,
    *,
    mask_id: int,
    vocab_size: int,
    rate: float = 0.15,
    maskable_BT: jax.Array | None = None,
) -> Batch:
    """BERT's masked-LM corruption: of the chosen `rate` of positions, 80% become [MASK], 10% a
    random token, 10% stay; the loss counts only the chosen positions."""
    choose_key, kind_key, token_key = jax.random.split(key, 3)
    chosen = jax.random.bernoulli(choose_key, rate, tokens_BT.shape)
    if maskable_BT is not None:
        chosen &= maskable_BT
    kind = jax.random.uniform(kind_key, tokens_BT.shape)
    random_tokens = jax.random.randint(token_key, tokens_BT.shape, 1, vocab_size, tokens_BT.dtype)
    corrupted = jnp.where(kind < 0.8, mask_id, jnp.where(kind < 0.9, random_tokens, tokens_BT))
    inputs = jnp.where(chosen, corrupted, tokens_BT)
    return Batch(inputs, tokens_BT, chosen.astype(jnp.float32))


class Packed(NamedTuple):
    """One left-aligned context window: `tokens` and `labels` (1 where a token is a target the
    loss counts), `width` long, and where each instance in it starts with the instance itself
    (the last one may be cut off at the end of the window)."""

    tokens: list[int]
    labels: list[int]
    placed: list[tuple[int, Any]]


def pack_left_aligned(draw: Callable[[], Any], width: int) -> Packed:
    """Instances from `draw()` (objects with `.tokens` and `.labels`, lists of the same length)
    concatenated from position 0 until `width` tokens are filled; the last one is cut at the end
    and its rest dropped. This is how Part 4.1's synthetic tasks fill a context window (paper
    A.1/A.2/A.4): every window starts with a fresh, whole instance, and nothing is padded."""
    tokens: list[int] = []
    labels: list[int] = []
    placed: list[tuple[int, Any]] = []
    while len(tokens) < width:
        instance = draw()
        if not instance.tokens:
            raise ValueError("pack_left_aligned: draw() returned an empty instance")
        placed.append((len(tokens), instance))
        tokens.extend(instance.tokens)
        labels.extend(instance.labels)
    return Packed(tokens[:width], labels[:width], placed)


def windows_batch(window: Callable[[int], Packed], batch_size: int, seq_len: int, seed: int, step: int,
                  held_out: bool = False, rows: slice | None = None) -> Batch:
    """A host batch of packed windows (numpy [rows, seq_len]): row r of batch `step` of data
    stream `seed` is `window(row seed)`, a window of seq_len + 1 tokens from its own
    random.Random seed, so any subset of rows (a host's share) is the same as in the whole batch;
    `held_out` draws from a separate seed range (Part 4.1's Depo, Brevo and Mano tasks)."""
    indices = range(batch_size)[rows or slice(None)]
    tokens = np.zeros((len(indices), seq_len + 1), np.int32)
    labels = np.zeros((len(indices), seq_len + 1), np.float32)
    for position, row in enumerate(indices):
        row_seed = (((int(seed) % (1 << 31)) * 2 + int(held_out)) << 48) | (int(step) << 20) | int(row)
        packed = window(row_seed)
        tokens[position], labels[position] = packed.tokens, packed.labels
    return Batch(tokens[:, :-1], tokens[:, 1:], labels[:, 1:])
