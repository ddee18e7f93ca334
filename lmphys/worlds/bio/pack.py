"""Packing tokenized documents into fixed training rows, and drawing batches from them on device.

The knowledge worlds (Part 3) train on a fixed set of documents (biographies, QA pairs, junk), not
on fresh samples, so the rows are made once on the host: each document becomes `[bos] doc [eos]`
(optionally with a domain token after bos), documents are shuffled and packed whole, first fit in
order, into rows of seq_len + 1 tokens; the rest of a row is padding. A document never straddles
two rows, so every biography keeps its name and every QA pair its question in view. Several
packings in different orders are kept (`pack_several`), so that a document is seen after many
different neighbours: attention crosses document boundaries, and with one fixed packing a model
memorises rows instead of facts (found on the CPU fine-tuning runs: near-zero training loss on QA
rows, yet the same questions asked alone were mostly answered wrong).

Each row carries a target mask: a token counts as a training target when it belongs to a document
at or after the document's `loss_from` offset (0 for biographies; the answer's start for QA, so the
loss is only on answers) or is its eos. Rows of several pools (biographies, QA, junk) sit in one
array; `draw_batch` picks each batch row's pool with the configured token shares and a row of
that pool uniformly, from the step's key alone (data = f(seed, step)).
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lmphys.errors import ConfigError
from lmphys.worlds.base import Batch


@dataclasses.dataclass(frozen=True)
class Rows:
    """Packed rows of one pool: tokens int32 [R, T+1] and is_target bool [R, T+1]."""

    tokens: np.ndarray
    is_target: np.ndarray

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


def pack(
    flat_tokens: np.ndarray,
    offsets: np.ndarray,
    *,
    seq_len: int,
    seed: int,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    loss_from: np.ndarray | None = None,
    prefix: Sequence[int] = (),
    what: str = "document",
) -> Rows:
    """Pack documents (flat tokens + offsets [n+1]) whole into rows of seq_len + 1 tokens, in an
    order shuffled by `seed`. `loss_from` [n] is the offset inside each document where targets
    start (default 0); `prefix` tokens (a domain token) follow each bos and are never targets."""
    offsets = np.asarray(offsets, np.int64)
    count = len(offsets) - 1
    lengths = np.diff(offsets)
    width = seq_len + 1
    extra = 2 + len(prefix)  # bos, prefix, eos
    if count == 0:
        return Rows(np.zeros((0, width), np.int32), np.zeros((0, width), bool))
    if lengths.max() + extra > width:
        raise ConfigError(
            f"task.seq_len = {seq_len} is too short: a {what} of {int(lengths.max())} tokens needs "
            f"{int(lengths.max()) + extra - 1} positions with its bos and eos"
        )
    order = np.random.default_rng(seed).permutation(count)
    sizes = lengths[order] + extra
    # First fit in order: a new row starts whenever the next document does not fit the current one.
    row_of = np.empty(count, np.int64)
    start_of = np.empty(count, np.int64)
    row, used = 0, 0
    for index, size in enumerate(sizes.tolist()):
        if used + size > width:
            row, used = row + 1, 0
        row_of[index], start_of[index] = row, used
        used += size
    num_rows = row + 1

    tokens = np.full(num_rows * width, pad_id, np.int32)
    is_target = np.zeros(num_rows * width, bool)
    first = row_of * width + start_of  # flat position of each (shuffled) document's bos
    tokens[first] = bos_id
    for slot, token in enumerate(prefix):
        tokens[first + 1 + slot] = token
    body_start = first + 1 + len(prefix)
    doc_lengths = lengths[order]
    # Flat destination and source of every document token, without a Python loop over tokens.
    within = np.arange(doc_lengths.sum()) - np.repeat(np.cumsum(doc_lengths) - doc_lengths, doc_lengths)
    destination = np.repeat(body_start, doc_lengths) + within
    source = np.repeat(offsets[:-1][order], doc_lengths) + within
    tokens[destination] = flat_tokens[source]
    starts = np.zeros(count, np.int64) if loss_from is None else np.asarray(loss_from, np.int64)[order]
    is_target[destination] = within >= np.repeat(starts, doc_lengths)
    eos_at = body_start + doc_lengths
    tokens[eos_at] = eos_id
    is_target[eos_at] = True
    return Rows(tokens.reshape(num_rows, width), is_target.reshape(num_rows, width))


def pack_several(
    flat_tokens: np.ndarray, offsets: np.ndarray, *, budget_tokens: int, most: int, seed: int, seq_len: int, **kwargs
) -> tuple[Rows, int]:
    """(rows, rows of one packing): as many packings of the same documents as fit `budget_tokens`
    (at least 1, at most `most`), each in its own shuffled order, stacked.

    With one fixed packing every document always sits after the same neighbours, and a model can
    lower its loss by memorising rows (QA answers recalled from the row's earlier questions)
    rather than facts about people; several packings put each document in several contexts."""
    parts = [pack(flat_tokens, offsets, seq_len=seq_len, seed=seed * 1000, **kwargs)]
    packings = int(max(1, min(most, budget_tokens // max(1, len(parts[0]) * (seq_len + 1)))))
    parts += [pack(flat_tokens, offsets, seq_len=seq_len, seed=seed * 1000 + index, **kwargs) for index in range(1, packings)]
    rows = Rows(np.concatenate([part.tokens for part in parts]), np.concatenate([part.is_target for part in parts]))
    return rows, len(parts[0])


def concat_documents(pieces: Sequence[Sequence[np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flat tokens, offsets, loss_from) of documents made by joining pieces, e.g. (question,
    answer): targets start at the last piece."""
    lengths = np.array([sum(len(part) for part in parts) for parts in pieces], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    flat = np.concatenate([np.asarray(part, np.int32) for parts in pieces for part in parts]) if pieces else np.zeros(0, np.int32)
    loss_from = np.array([sum(len(part) for part in parts[:-1]) for parts in pieces], np.int64)
    return flat, offsets, loss_from


def device_data(pools: Sequence[Rows]) -> dict[str, jax.Array]:
    """One array of all pools' rows, and where each pool starts, for `draw_batch`."""
    sizes = np.array([len(rows) for rows in pools], np.int32)
    return {
        "tokens": jnp.asarray(np.concatenate([rows.tokens for rows in pools])),
        "is_target": jnp.asarray(np.concatenate([rows.is_target for rows in pools])),
        "pool_start": jnp.asarray(np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int32)),
        "pool_size": jnp.asarray(sizes),
    }


def draw_rows(key: jax.Array, data: dict[str, jax.Array], shares: Sequence[float], batch_size: int):
    """tokens [B, T+1] and is_target [B, T+1]: each row from pool p with probability shares[p],
    uniformly among that pool's rows."""
    pool_key, row_key = jax.random.split(key)
    pool = jax.random.choice(pool_key, len(shares), (batch_size,), p=jnp.asarray(shares, jnp.float32))
    index = data["pool_start"][pool] + jax.random.randint(row_key, (batch_size,), 0, data["pool_size"][pool])
    return data["tokens"][index], data["is_target"][index]


def lm_batch(tokens: jax.Array, is_target: jax.Array) -> Batch:
    """Next-token prediction on packed rows, the loss only where the next token is a target."""
    return Batch(tokens[:, :-1], tokens[:, 1:], is_target[:, 1:].astype(jnp.float32))
