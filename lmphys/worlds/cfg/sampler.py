"""On-device sampler of layered CFGs (Part 1: the training strings are fresh samples every step).

Derivation trees are grown level by level in fixed-width arrays: every node owns max_rule_len child
slots (unused slots hold a null symbol that expands to nulls), so expanding a level is one table
gather and a reshape, never a search. Each rule is chosen uniformly with 16 random bits per node.
Once the leaves are known, subtree lengths are summed bottom-up and start offsets passed top-down,
which gives every terminal its position in the string; one scatter then writes the compact string.
`sample_with_labels` grows the same trees and also scatters, per token, each non-terminal level's
ancestor and whether the token ends that ancestor's subtree (the labels the Part 1 probes predict).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from lmphys.errors import DataError
from lmphys.worlds.cfg.grammar import Grammar

CHUNK = 2048  # strings per sequential chunk: measured fastest on 2 CPU cores (1024-2048)


@functools.lru_cache(maxsize=None)
def _tables(g: Grammar) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Per non-terminal level: children [K+1, R, S] (row K is the null symbol) and degrees [K+1]."""
    slots, max_rules = g.max_rule_len, g.max_rules
    out = []
    for depth, level in enumerate(g.rules):
        null_child = g.sizes[depth + 1]
        children = np.full((len(level) + 1, max_rules, slots), null_child, np.int32)
        degrees = np.ones(len(level) + 1, np.uint32)
        for k, sym in enumerate(level):
            degrees[k] = len(sym)
            for r, rule in enumerate(sym):
                children[k, r, :len(rule)] = rule
        out.append((children.reshape(-1, slots), degrees))
    return tuple(out)


def _grow_trees(g: Grammar, key: jax.Array, n: int):
    """n derivation trees, max_rule_len-ary to full depth (3**6 = 729 leaves for cfg3f).

    Returns (symbols per level [n, slots**level], root first, leaves last; subtree sizes per level;
    start offsets per level), where a leaf slot holding a terminal has size 1 and non-terminal
    levels count the terminals below each node.
    """
    slots, max_rules = g.max_rule_len, g.max_rules
    widths = [slots ** depth for depth in range(len(g.rules))]  # nodes per non-terminal level
    bits = jax.random.bits(key, (n, sum(widths) // 2 + 1), jnp.uint32)  # one generator call: fast to compile
    uniform16 = jnp.concatenate([bits & 0xFFFF, bits >> 16], axis=1)
    symbols = [jnp.zeros((n, 1), jnp.int32)]
    for depth, (children, degrees) in enumerate(_tables(g)):
        width = widths[depth]
        uniform = uniform16[:, sum(widths[:depth]):sum(widths[:depth + 1])]
        # multiply-shift maps 16 uniform bits onto 0..degree-1 (bias below 2**-16 per rule)
        rule = ((uniform * jnp.asarray(degrees)[symbols[-1]]) >> 16).astype(jnp.int32)
        symbols.append(jnp.asarray(children)[symbols[-1] * max_rules + rule].reshape(n, width * slots))
    sizes = [(symbols[-1] < g.num_terminals).astype(jnp.int32)]
    for _ in g.rules:  # subtree sizes, bottom-up
        sizes.insert(0, sizes[0].reshape(n, -1, slots).sum(-1))
    offsets = [jnp.zeros((n, 1), jnp.int32)]
    for level_sizes in sizes[1:]:  # start offsets, top-down
        grouped = level_sizes.reshape(n, -1, slots)
        before = jnp.cumsum(grouped, axis=-1) - grouped
        offsets.append((offsets[-1][..., None] + before).reshape(n, -1))
    return symbols, sizes, offsets


def _leaf_offsets(g: Grammar, symbols, offsets) -> jax.Array:
    """Each leaf slot's position in the string; g.max_len (dropped by scatters) for empty slots."""
    return jnp.where(symbols[-1] < g.num_terminals, offsets[-1], g.max_len)


def _sample_chunk(g: Grammar, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    symbols, sizes, offsets = _grow_trees(g, key, n)
    rows = jnp.arange(n)[:, None]
    strings = jnp.zeros((n, g.max_len), jnp.uint8).at[rows, _leaf_offsets(g, symbols, offsets)].set(
        (symbols[-1] + 1).astype(jnp.uint8), mode="drop")
    return strings.astype(jnp.int32), sizes[0][:, 0]


def _labelled_chunk(g: Grammar, key: jax.Array, n: int):
    """_sample_chunk plus, per non-terminal level, each token's ancestor and whether it ends it."""
    symbols, sizes, offsets = _grow_trees(g, key, n)
    num_leaves = symbols[-1].shape[1]
    leaf_offsets = _leaf_offsets(g, symbols, offsets)
    per_leaf = []  # [n, leaves] per level: ancestor symbol * 2 + (leaf is its subtree's last token)
    for level in range(len(g.rules)):
        under = num_leaves // symbols[level].shape[1]  # leaf slots below one level-l node
        ancestor = jnp.repeat(symbols[level], under, axis=1, total_repeat_length=num_leaves)
        last = jnp.repeat(offsets[level] + sizes[level] - 1, under, axis=1, total_repeat_length=num_leaves)
        per_leaf.append(ancestor * 2 + (offsets[-1] == last))
    rows = jnp.arange(n)[:, None]
    labels = jnp.full((n, g.max_len, len(g.rules)), -2, jnp.int32).at[rows, leaf_offsets].set(
        jnp.stack(per_leaf, axis=-1), mode="drop").transpose(0, 2, 1)  # one scatter for every level
    strings = jnp.zeros((n, g.max_len), jnp.int32).at[rows, leaf_offsets].set(symbols[-1] + 1, mode="drop")
    ancestors = jnp.where(labels >= 0, labels >> 1, -1)
    return strings, sizes[0][:, 0], ancestors, (labels >= 0) & ((labels & 1) == 1)


def _check_terminals(g: Grammar) -> None:
    if g.num_terminals > 255:
        raise DataError(f"grammar {g.name!r}: the sampler packs terminals into uint8, so at most 255 terminals.")


def _chunked(chunk_fn, g: Grammar, key: jax.Array, n: int):
    """chunk_fn(g, key, n) for n <= CHUNK, else CHUNK-sized chunks on split keys, cut to n rows;
    n = 0 gives the outputs' shapes with no rows."""
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise DataError(f"the number of strings to sample must be a non-negative integer, got {n!r}.")
    if n == 0:
        shapes = jax.eval_shape(lambda k: chunk_fn(g, k, 1), key)
        return tuple(jnp.zeros((0,) + x.shape[1:], x.dtype) for x in shapes)
    if n <= CHUNK:
        return chunk_fn(g, key, n)
    num_chunks = -(-n // CHUNK)
    outputs = jax.lax.map(lambda k: chunk_fn(g, k, CHUNK), jax.random.split(key, num_chunks))
    return tuple(x.reshape((-1,) + x.shape[2:])[:n] for x in outputs)


@functools.partial(jax.jit, static_argnums=(0, 2))
def sample(g: Grammar, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    """n fresh strings of `g`: tokens int32 [n, g.max_len] (terminal ids, 0-padded), lengths int32 [n].

    Pure and jittable (g and n static), vmappable over keys; large n runs in chunks of CHUNK.
    """
    _check_terminals(g)
    return _chunked(_sample_chunk, g, key, n)


@functools.partial(jax.jit, static_argnums=(0, 2))
def sample_with_labels(g: Grammar, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """`sample(g, key, n)` (the same strings) plus the derivation tree's labels of every token.

    Returns (tokens [n, max_len], lengths [n], ancestors int32 [n, num_levels - 1, max_len],
    ends bool [n, num_levels - 1, max_len]). For non-terminal level l (0 = root) and token t,
    ancestors[:, l, t] is the index within level l of the symbol whose subtree holds t, and
    ends[:, l, t] says t is that subtree's last token (an NT boundary, the probing target of Part 1).
    Padding: ancestors -1, ends False.
    """
    _check_terminals(g)
    return _chunked(_labelled_chunk, g, key, n)
