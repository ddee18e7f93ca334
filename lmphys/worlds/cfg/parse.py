"""Exact, batched membership test for layered CFGs (Part 1: "is the generated string in the language").

Bit-parallel CYK specialised to layered grammars. Every symbol of level l derives strings whose
length lies in the level's band [lo_l, hi_l] (all leaves sit at the same depth), so for each symbol X
and span length s we keep one bitset over start positions: bit i of F[X][s] says X =>* w[i:i+s].
A rule X -> A c2..ck is binarised to the right, A o (c2 o (... o ck)), and
    (A o R)[a + r] |= A[a] & (R[r] >> a)
costs one AND per (a, r) pair of band lengths on words of 32 start positions. Levels from the
terminals up to a `cut` level get these full tables; the few levels above the cut are never
tabulated: the root's rules are expanded top-down into right-to-left "suffix sets" (bit i: the
remaining symbols derive w[i:n]), one band-wide AND per symbol, and the string is accepted iff bit
0 survives. The cut is chosen per grammar by counting word operations.

Compiling is most of the cost of a first call (XLA:CPU, 2 cores: 3-9 s per program for cfg3f), so
`accepts` pads every string to one of a few fixed widths (1, 2, 3, 4, 6, 8, 12, ... words of 32 tokens) and
compiles at most one new program per call: the widest its strings need, unless a program at least
that wide exists; each string then goes through the narrowest program already compiled that holds
it. A grammar's programs therefore compile once each, whatever the widths of the arrays passed in.
"""
from __future__ import annotations

import functools
import os
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from lmphys.errors import DataError
from lmphys.worlds.cfg.grammar import Grammar

UNROLL = 8  # band lengths up to this are unrolled; longer bands loop (smaller programs)
BATCH = 64  # strings per call of a compiled program
MIN_NEW_PROGRAM_STRINGS = 4 * BATCH  # a narrower program compiles only for this many strings (pays off)
# XLA:CPU optimization level 1 compiles a parser program in ~60% of the default level's time and
# runs it about as fast (measured on cfg3f and cfg3b, 2 cores); XLA_FLAGS that set a level win.
_CPU_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}


def words_for(length: int) -> int:
    """Words (of 32 start positions) of the narrowest program width that holds a string of `length`
    tokens, i.e. bit `length`, its end marker: 1, 2, 3, 4, 6, 8, 12, ... (2^k or 3 * 2^k words, so a
    string never pays for more than 1.5x the words it needs)."""
    need = int(length) // 32 + 1
    power = 1 << (need - 1).bit_length()
    return power * 3 // 4 if power >= 4 and power * 3 // 4 >= need else power


def _shift_down(x: jax.Array, amount: int) -> jax.Array:
    """Bitsets along the last axis (little-endian uint32 words) shifted so bit i+amount lands on i."""
    num_words = x.shape[-1]
    q, r = divmod(amount, 32)
    if q >= num_words:
        return jnp.zeros_like(x)
    pad = [(0, 0)] * (x.ndim - 1) + [(0, q + 1)]
    ext = jnp.pad(x, pad)
    low = ext[..., q:q + num_words]
    if r == 0:
        return low
    return (low >> r) | (ext[..., q + 1:q + 1 + num_words] << (32 - r))


def _shift_down_all(x: jax.Array, lo: int, width: int) -> jax.Array:
    """[..., N] bitsets -> [width, ..., N]: x shifted down by lo, lo+1, ..., lo+width-1."""
    num_words = x.shape[-1]
    num_q = (lo + width - 1) // 32 + 1
    ext = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, num_q + 1)])
    r = jnp.arange(32, dtype=jnp.uint32).reshape((32,) + (1,) * x.ndim)
    high = jnp.where(r == 0, jnp.uint32(0), ext[None, ..., 1:] << ((32 - r) & 31))
    funnel = (ext[None, ..., :-1] >> r) | high  # [32, ..., N + num_q]
    parts = jnp.stack([funnel[..., q:q + num_words] for q in range(num_q)])  # [num_q, 32, ..., N]
    return parts.reshape((num_q * 32,) + x.shape)[lo:lo + width]


def _or_reduce(x: jax.Array, axis: int) -> jax.Array:
    return jax.lax.reduce(x, np.uint32(0), jax.lax.bitwise_or, (axis,))


def _compose(first: jax.Array, first_lo: int, rest: jax.Array, rest_lo: int) -> jax.Array:
    """(A o R) over matching rows: [M, Wa, B, N] and [M, Wr, B, N] -> [M, Wa + Wr - 1, B, N]
    with band starting at first_lo + rest_lo."""
    num_a, num_r = first.shape[1], rest.shape[1]
    out = jnp.zeros((first.shape[0], num_a + num_r - 1) + first.shape[2:], jnp.uint32)
    if num_a <= UNROLL:
        for a_index in range(num_a):
            term = first[:, a_index:a_index + 1] & _shift_down(rest, first_lo + a_index)
            out = out.at[:, a_index:a_index + num_r].set(out[:, a_index:a_index + num_r] | term)
        return out
    max_q = (first_lo + num_a - 1) // 32 + 1
    ext = jnp.pad(rest, [(0, 0)] * (rest.ndim - 1) + [(0, max_q + 1)])
    zero = jnp.int32(0)

    def body(a_index, out):
        amount = first_lo + a_index
        q, r = amount // 32, (amount % 32).astype(jnp.uint32)
        start = (zero,) * (rest.ndim - 1)
        low = jax.lax.dynamic_slice(ext, start + (q,), rest.shape)
        high = jax.lax.dynamic_slice(ext, start + (q + 1,), rest.shape)
        shifted = (low >> r) | jnp.where(r == 0, jnp.uint32(0), high << ((32 - r) & 31))
        a_row = jax.lax.dynamic_slice_in_dim(first, a_index, 1, axis=1)
        where = (zero, a_index) + (zero,) * (rest.ndim - 2)
        current = jax.lax.dynamic_slice(out, where, rest.shape)
        return jax.lax.dynamic_update_slice(out, current | (a_row & shifted), where)

    return jax.lax.fori_loop(0, num_a, body, out)


class _Plan:
    """Host-side schedule of one grammar for strings of at most `max_width` tokens."""

    def __init__(self, g: Grammar, max_width: int):
        self.g = g
        bounds = g.length_bounds
        self.band = [(int(lo.min()), min(int(hi.max()), max_width)) for lo, hi in bounds]
        self.cut = min(range(1, g.num_levels - 1), key=self._cost) if g.num_levels > 2 else 1

    def _width(self, level: int) -> int:
        lo, hi = self.band[level]
        return max(hi - lo + 1, 1)

    def _cost(self, cut: int) -> float:
        """Estimated word operations per string and word of start positions: full tables at levels
        >= cut plus the suffix steps above (each shifts a set 32 ways, then ANDs the band)."""
        total = 0.0
        for level in range(cut, self.g.num_levels - 1):
            lo, hi = self.band[level + 1]
            child_width = self._width(level + 1)
            rests = {rule[1:] for sym in self.g.rules[level] for rule in sym}
            groups = {(x, rule[0]) for x, sym in enumerate(self.g.rules[level]) for rule in sym}
            for k in {len(r) for r in rests}:
                total += sum(1 for r in rests if len(r) == k and k >= 2) * child_width * child_width * (k - 1)
            longest = max(len(r) for r in rests)
            total += len(groups) * child_width * (longest * hi - min(len(r) for r in rests) * lo + 1)
        steps = self._count_steps(cut)
        return total + steps * (32 + self._width(cut))

    def _count_steps(self, cut: int, limit: int = 20000) -> float:
        """Distinct suffix steps at the cut level (shared suffixes counted once); inf past `limit`."""
        seen: set = set()

        def suffix(level: int, sym: int, sig) -> tuple:
            node = (level, sym, sig)
            if node in seen or len(seen) > limit:
                return node
            seen.add(node)
            if level < cut:
                for rule in self.g.rules[level][sym]:
                    chain_sig = sig
                    for child in reversed(rule):
                        chain_sig = suffix(level + 1, child, chain_sig)
            return node

        suffix(0, 0, "end")
        return float("inf") if len(seen) > limit else sum(1 for node in seen if node[0] == cut)


def _terminal_tables(g: Grammar, tokens_BT: jax.Array, num_words: int) -> jax.Array:
    """[num_terminals, 1, B, N]: bit i set where token i is that terminal."""
    batch, width = tokens_BT.shape
    padded = jnp.pad(tokens_BT, ((0, 0), (0, num_words * 32 - width)))
    is_term = padded[None] == jnp.arange(1, g.num_terminals + 1, dtype=tokens_BT.dtype)[:, None, None]
    weights = jnp.left_shift(jnp.uint32(1), jnp.arange(32, dtype=jnp.uint32))
    packed = (is_term.reshape(g.num_terminals, batch, num_words, 32).astype(jnp.uint32) * weights).sum(
        -1, dtype=jnp.uint32)
    return packed[:, None]


def _level_tables(g: Grammar, plan: _Plan, level: int, child: jax.Array) -> jax.Array:
    """Full tables of `level` from those of level+1 ([K, W, B, N] in the level's band)."""
    child_lo, child_hi = plan.band[level + 1]
    tail = child.shape[2:]
    rules = g.rules[level]
    rests = sorted({rule[1:] for sym in rules for rule in sym}, key=lambda r: (len(r), r))
    rest_lo = min(len(r) for r in rests) * child_lo
    rest_hi = max(len(r) for r in rests) * child_hi
    rest_width = rest_hi - rest_lo + 1
    # Composite suffixes c2..ck, built shortest first: comp[(c2..ck)] = F[c2] o comp[(c3..ck)];
    # each length k is one array (rows in `row_of[k]`), so a level is a handful of gathers.
    built: dict[int, jax.Array] = {0: jnp.full((1, 1) + tail, 0xFFFFFFFF, jnp.uint32), 1: child}
    row_of: dict[int, dict[tuple, int]] = {0: {(): 0}, 1: {(c,): c for c in range(child.shape[0])}}
    for k in range(2, max(len(r) for r in rests) + 1):
        wanted = sorted({r[len(r) - k:] for r in rests if len(r) >= k})
        row_of[k] = {t: i for i, t in enumerate(wanted)}
        heads = child[np.array([t[0] for t in wanted])]
        tails = built[k - 1][np.array([row_of[k - 1][t[1:]] for t in wanted])]
        built[k] = _compose(heads, child_lo, tails, (k - 1) * child_lo)
    # Every rest embedded in the common band [rest_lo, rest_hi]; row 0 stays empty for padding.
    blocks, rest_row = [jnp.zeros((1, rest_width) + tail, jnp.uint32)], {}
    for k in sorted({len(r) for r in rests}):
        of_k = [r for r in rests if len(r) == k]
        table = built[k][np.array([row_of[k][r] for r in of_k])]
        start = k * child_lo - rest_lo
        table = table[:, :rest_width - start]
        blocks.append(jnp.pad(table, [(0, 0), (start, rest_width - start - table.shape[1])] + [(0, 0)] * len(tail)))
        rest_row.update({r: sum(b.shape[0] for b in blocks[:-1]) + i for i, r in enumerate(of_k)})
    embedded = jnp.concatenate(blocks)
    groups = sorted({(x, rule[0]) for x, sym in enumerate(rules) for rule in sym})
    members = [[rest_row[rule[1:]] for rule in rules[x] if rule[0] == a] for x, a in groups]
    width = max(len(m) for m in members)
    index = np.array([m + [0] * (width - len(m)) for m in members])
    group_rest = _or_reduce(embedded[index], 1)  # [G, Wr, B, N]
    group_first = child[np.array([a for _, a in groups])]
    out = _compose(group_first, child_lo, group_rest, rest_lo)  # band starts at child_lo + rest_lo
    per_symbol = [[i + 1 for i, (x, _) in enumerate(groups) if x == sym] for sym in range(len(rules))]
    width = max(len(m) for m in per_symbol)
    padded_out = jnp.concatenate([jnp.zeros((1,) + out.shape[1:], jnp.uint32), out])
    index = np.array([m + [0] * (width - len(m)) for m in per_symbol])
    tables = _or_reduce(padded_out[index], 1)
    lo, hi = plan.band[level]
    start = lo - (child_lo + rest_lo)
    tables = tables[:, start:start + hi - lo + 1]
    return jnp.pad(tables, [(0, 0), (0, hi - lo + 1 - tables.shape[1])] + [(0, 0)] * len(tail))


def _accepts_words(g: Grammar, num_words: int, tokens_BT: jax.Array, lengths_B: jax.Array) -> jax.Array:
    """Membership of strings that fit in num_words * 32 - 1 tokens; tokens past each length ignored."""
    batch, width = tokens_BT.shape
    plan = _plan(g, num_words * 32 - 1)
    positions = jnp.arange(width)
    inside = positions[None] < lengths_B[:, None]
    tokens_BT = jnp.where(inside, tokens_BT, 0)
    legal = jnp.all(~inside | ((tokens_BT >= 1) & (tokens_BT <= g.num_terminals)), axis=1)
    legal &= (lengths_B >= g.min_len) & (lengths_B <= min(g.max_len, width))
    tables = _terminal_tables(g, tokens_BT, num_words)
    for level in range(g.num_levels - 2, plan.cut - 1, -1):
        tables = _level_tables(g, plan, level, tables)
    cut_lo = plan.band[plan.cut][0]
    cut_width = tables.shape[1]
    word = jnp.arange(num_words)[None, :]
    end = jnp.where(word == lengths_B[:, None] // 32,
                    jnp.left_shift(jnp.uint32(1), (lengths_B[:, None] % 32).astype(jnp.uint32)), jnp.uint32(0))
    memo: dict = {}

    def suffix(level: int, sym: int, sig, sets: jax.Array) -> jax.Array:
        node = (level, sym, sig)
        if node not in memo:
            if level == plan.cut:
                memo[node] = _or_reduce(tables[sym] & _shift_down_all(sets, cut_lo, cut_width), 0)
            else:
                union = jnp.zeros_like(sets)
                for rule in g.rules[level][sym]:
                    chain_sig, chain_sets = sig, sets
                    for child in reversed(rule):
                        chain_sets = suffix(level + 1, child, chain_sig, chain_sets)
                        chain_sig = (level + 1, child, chain_sig)
                    union = union | chain_sets
                memo[node] = union
        return memo[node]

    starts = suffix(0, 0, "end", end.astype(jnp.uint32))
    return legal & ((starts[:, 0] & 1) == 1)


@functools.lru_cache(maxsize=None)
def _plan(g: Grammar, max_width: int) -> _Plan:
    return _Plan(g, max_width)


# (grammar, words) -> compiled program for [BATCH, words * 32 - 1] strings; filled by `_program`.
_PROGRAMS: dict[tuple[Grammar, int], Callable] = {}


def _program(g: Grammar, num_words: int) -> Callable:
    """The compiled membership test of BATCH strings padded to num_words * 32 - 1 tokens."""
    key = (g, num_words)
    if key not in _PROGRAMS:
        shapes = (jax.ShapeDtypeStruct((BATCH, num_words * 32 - 1), jnp.int32), jax.ShapeDtypeStruct((BATCH,), jnp.int32))
        lowered = jax.jit(functools.partial(_accepts_words, g, num_words)).lower(*shapes)
        level_given = "xla_backend_optimization_level" in os.environ.get("XLA_FLAGS", "")
        options = _CPU_COMPILER_OPTIONS if jax.default_backend() == "cpu" and not level_given else None
        _PROGRAMS[key] = lowered.compile(compiler_options=options)
    return _PROGRAMS[key]


def check_strings(g: Grammar, tokens, lengths) -> tuple[np.ndarray, np.ndarray]:
    """(tokens int32 [n, T], lengths int32 [n]) of concrete inputs, or DataError naming what is wrong:
    not integers, not [n, T] and [n], a length outside 0..T, or an id inside a string outside the
    grammar's vocabulary 0..vocab_size - 1 (pad, terminals, EOS, MASK, BOS; only terminals parse)."""
    tokens, lengths = np.asarray(tokens), np.asarray(lengths)
    if tokens.ndim != 2 or lengths.ndim != 1 or len(tokens) != len(lengths):
        raise DataError(f"accepts needs tokens [n, T] and lengths [n], got shapes {tokens.shape} and {lengths.shape}.")
    for name, array in (("tokens", tokens), ("lengths", lengths)):
        if not np.issubdtype(array.dtype, np.integer):
            raise DataError(f"accepts needs integer {name}, got dtype {array.dtype}.")
    if lengths.size and (lengths.min() < 0 or lengths.max() > tokens.shape[1]):
        raise DataError(f"lengths must lie in 0..{tokens.shape[1]} (the token rows' width), got "
                        f"{int(lengths.min())}..{int(lengths.max())}.")
    inside = tokens[np.arange(tokens.shape[1])[None] < lengths[:, None]]
    if inside.size and (inside.min() < 0 or inside.max() >= g.vocab_size):
        raise DataError(f"token ids inside the strings must lie in 0..{g.vocab_size - 1} (grammar {g.name!r}), "
                        f"got {int(inside.min())}..{int(inside.max())}.")
    return tokens.astype(np.int32), lengths.astype(np.int32)


def _choose_programs(g: Grammar, need: np.ndarray) -> np.ndarray:
    """The program width (words) each string goes through: the narrowest compiled one that holds
    it, after adding at most one new program: the widest width needed if none holds it, else the
    width that most strings need if at least MIN_NEW_PROGRAM_STRINGS of them would use a wider one."""
    ready = sorted(words for grammar, words in _PROGRAMS if grammar == g)
    if not ready or ready[-1] < need.max():
        ready.append(int(need.max()))
    else:
        widths, counts = np.unique(need[~np.isin(need, ready)], return_counts=True)
        if counts.size and counts.max() >= MIN_NEW_PROGRAM_STRINGS:
            ready = sorted(ready + [int(widths[counts.argmax()])])
    return np.array(ready)[np.searchsorted(ready, need)]


def accepts_padded(g: Grammar, tokens: jax.Array, lengths: jax.Array) -> jax.Array:
    """Jittable membership test of [n, T] strings in one program wide enough for T tokens."""
    tokens = jnp.asarray(tokens, jnp.int32)
    if tokens.ndim != 2 or jnp.ndim(lengths) != 1 or jnp.shape(lengths)[0] != tokens.shape[0]:
        raise DataError(f"accepts needs tokens [n, T] and lengths [n], got shapes {tokens.shape} and {jnp.shape(lengths)}.")
    return _accepts_words(g, words_for(tokens.shape[1]), tokens, jnp.asarray(lengths, jnp.int32))


def accepts(g: Grammar, tokens, lengths) -> jax.Array:
    """bool [n]: is each string (tokens[i, :lengths[i]]) derivable from the root? Exact.

    Concrete inputs are checked (`check_strings`) and padded to the module's fixed program widths;
    traced inputs (inside jit/vmap) go through `accepts_padded` in a single program.
    """
    if isinstance(tokens, jax.core.Tracer) or isinstance(lengths, jax.core.Tracer):
        return accepts_padded(g, tokens, lengths)
    tokens, lengths = check_strings(g, tokens, lengths)
    result = np.zeros(len(lengths), bool)
    candidates = np.flatnonzero((lengths >= g.min_len) & (lengths <= g.max_len))
    if not candidates.size:
        return jnp.asarray(result)
    need = np.array([words_for(n) for n in lengths[candidates]])
    program_of = _choose_programs(g, need)
    for num_words in np.unique(program_of):
        rows = candidates[program_of == num_words]
        width = int(num_words) * 32 - 1
        function = _program(g, int(num_words))
        for start in range(0, len(rows), BATCH):
            chunk = rows[start:start + BATCH]
            chunk_tokens = np.zeros((BATCH, width), np.int32)
            chunk_tokens[:len(chunk), :min(width, tokens.shape[1])] = tokens[chunk, :width]
            chunk_lengths = np.zeros(BATCH, np.int32)
            chunk_lengths[:len(chunk)] = lengths[chunk]
            result[chunk] = np.asarray(function(chunk_tokens, chunk_lengths))[:len(chunk)]
    return jnp.asarray(result)
