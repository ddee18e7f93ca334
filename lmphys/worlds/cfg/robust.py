"""Part 1 robustness (Physics of LMs, "Hierarchical Language Structures": corrupted prefixes and
perturbed training strings): exact edit distance to the language, on-device corruption, and the
success test of completing a corrupted prefix.

Edit distance is an error-correcting CYK over the layered grammar: E[Y](i, s) is the fewest
insertions, deletions and substitutions turning w[i:i+s] into a string that Y derives. A terminal x
costs 1 on an empty span (insert x) and (s - 1) + [x not in the span] on s >= 1 tokens (keep or
substitute one, delete the rest); a rule takes the min over splits of its children's costs (children
may cover empty spans). With edits a symbol covers any span length, but never for less than the gap
between that length and its derivable band [min, max]; so if the answer is at most `slack`, every
node of an optimal edit covers a span within `slack` of its band, and the tables restricted to those
widened bands are exact. Restricted tables always give the cost of a real edit, an upper bound, so
`edit_distance_to_language` runs once with a small slack and, only if its result exceeds it, once
more with the slack set to that result; `within_edits` needs a single pass with slack = budget.

The distance to the language's prefixes (a corrupted prefix's own distance to being the start of
some string) adds, per symbol Y and start i, P[Y](i): the fewest edits turning w[i:n] into a prefix
of a string Y derives. A prefix of Y's rule c1..ck is whole c1..c(j-1) followed by a prefix of cj,
so P is one right-to-left chain per rule over the whole-span tables, and a terminal's P is 0 on
the empty rest, else (n - i - 1) + [x not in w[i:n]]. The same slack argument holds, since only
the whole children are band-restricted.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from lmphys.errors import DataError
from lmphys.worlds.cfg.grammar import Grammar
from lmphys.worlds.cfg.measure import level_bands, level_tables

INF = 1 << 28  # "no edit" cost; sums of two stay inside int32 and are clipped back
FIRST_SLACK = 4  # first-pass slack of edit_distance_to_language: enough for most near-misses


def _compose_min(first: np.ndarray, first_lo: int, second: np.ndarray, second_lo: int,
                 max_span: int) -> tuple[int, np.ndarray]:
    """Cost of a concatenation: out(i, a + b) = min_a first(i, a) + second(i + a, b)."""
    positions, width_a, width_b = first.shape[2], first.shape[3], second.shape[3]
    lo = first_lo + second_lo
    width = max(min(width_a + width_b - 1, max_span - lo + 1), 0)
    out = np.full(first.shape[:3] + (width,), INF, np.int32)
    for a in range(min(width_a, width)):
        shift = first_lo + a
        span = min(width_b, width - a)
        if shift >= positions:
            break
        view = out[:, :, :positions - shift, a:a + span]
        np.minimum(view, first[:, :, :positions - shift, a, None] + second[:, :, shift:, :span], out=view)
    np.minimum(out, INF, out=out)
    return lo, out


def _merge_min(target: np.ndarray, table: np.ndarray, num_rules: int) -> None:
    np.minimum(target, table, out=target)


def _terminal_costs(g: Grammar, tokens: np.ndarray, width: int) -> np.ndarray:
    """[1, k, n + 1, width]: cost of turning tokens[i:i+s] into terminal x, s = 0..width - 1."""
    length = len(tokens)
    counts = np.zeros((g.num_terminals, length + 1), np.int64)
    counts[:, 1:] = np.cumsum(tokens[None, :] == np.arange(1, g.num_terminals + 1)[:, None], axis=1)
    start = np.arange(length + 1)[:, None]
    span = np.arange(width)[None, :]
    end = start + span
    inside = end <= length
    end = np.minimum(end, length)
    present = (counts[:, end] - counts[:, start]) > 0  # [k, n + 1, width]
    cost = np.where(span == 0, 1, span - 1 + ~present)
    return np.where(inside, cost, INF).astype(np.int32)[None]


def _whole_span_tables(g: Grammar, tokens: np.ndarray, slack: int) -> list:
    """(lo, costs [1, K, n + 1, W]) of levels 1..terminals for spans within `slack` of each band."""
    bands = level_bands(g, len(tokens), slack)
    tables: list = [None] * g.num_levels
    tables[-1] = (0, _terminal_costs(g, tokens, bands[-1][1] + 1))
    for level in range(g.num_levels - 2, 0, -1):
        child_lo, child = tables[level + 1]
        tables[level] = (bands[level][0], level_tables(g.rules[level], child, child_lo, bands[level],
                                                       _compose_min, _merge_min, INF))
    return tables


def _edit_cost(g: Grammar, tokens: np.ndarray, slack: int) -> int:
    """Cost of the best edit whose every node covers a span within `slack` of its symbol's band:
    an upper bound on the edit distance, equal to it whenever the distance is <= slack."""
    length = len(tokens)
    child_lo, child = _whole_span_tables(g, tokens, slack)[1]
    best = INF
    for rule in g.rules[0][0]:  # root: chains of children from position 0, read at the string's end
        cost = np.full(length + 1, INF, np.int64)
        cost[0] = 0
        for c in rule:
            step = np.full(length + 1, INF, np.int64)
            for w in range(child.shape[-1]):
                shift = child_lo + w
                if shift > length:
                    break
                np.minimum(step[shift:], cost[:length + 1 - shift] + child[0, c, :length + 1 - shift, w],
                           out=step[shift:])
            cost = np.minimum(step, INF)
        best = min(best, int(cost[length]))
    return best


def _prefix_cost(g: Grammar, tokens: np.ndarray, slack: int) -> int:
    """Cost of the best edit of the string into a prefix of a string of the language whose every
    whole node covers a span within `slack` of its band: exact whenever the distance is <= slack."""
    length = len(tokens)
    tables = _whole_span_tables(g, tokens, slack)
    # rest[k, i]: terminal x = k + 1 from w[i:n]: nothing if the rest is empty, else keep or
    # substitute one token and delete the others.
    present = np.zeros((g.num_terminals, length + 1), bool)
    for i in range(length - 1, -1, -1):
        present[:, i] = present[:, i + 1] | (np.arange(1, g.num_terminals + 1) == tokens[i])
    prefix = np.maximum(length - np.arange(length + 1) - 1, 0)[None] + ~present
    prefix[:, length] = 0
    for level in range(g.num_levels - 2, -1, -1):
        child_lo, child = tables[level + 1]
        out = np.full((len(g.rules[level]), length + 1), INF, np.int64)
        for y, sym in enumerate(g.rules[level]):
            for rule in sym:
                chain = prefix[rule[-1]].astype(np.int64)
                for c in reversed(rule[:-1]):  # whole c, then the chain's prefix; or a prefix of c alone
                    step = np.full(length + 1, INF, np.int64)
                    for w in range(child.shape[-1]):
                        shift = child_lo + w
                        if shift > length:
                            break
                        np.minimum(step[:length + 1 - shift], child[0, c, :length + 1 - shift, w] + chain[shift:],
                                   out=step[:length + 1 - shift])
                    chain = np.minimum(np.minimum(step, INF), prefix[c])
                np.minimum(out[y], chain, out=out[y])
        prefix = out
    return int(prefix[0, 0])


def prefix_distance_to_language(g: Grammar, tokens: ArrayLike, length: int) -> int:
    """Fewest single-token insertions, deletions or substitutions turning tokens[:length] into a
    prefix of a string the grammar derives (the empty string and whole strings included). Exact.
    A corrupted prefix's own distance: often below the number of changes injected into it."""
    string = _string(tokens, length)
    cost = _prefix_cost(g, string, FIRST_SLACK)
    return cost if cost <= FIRST_SLACK else _prefix_cost(g, string, cost)


def _string(tokens: ArrayLike, length: int) -> np.ndarray:
    tokens = np.asarray(tokens).reshape(-1).astype(np.int64)
    if not 0 <= int(length) <= len(tokens):
        raise DataError(f"length {int(length)} must lie in 0..{len(tokens)} (the number of tokens given).")
    return tokens[:int(length)]


def edit_distance_to_language(g: Grammar, tokens: ArrayLike, length: int) -> int:
    """Fewest single-token insertions, deletions or substitutions (terminals only) turning tokens[:length]
    into a string the grammar derives. Exact; any non-terminal id in the string must be deleted or
    substituted."""
    string = _string(tokens, length)
    low, high = (int(b) for b in (g.length_bounds[0][0][0], g.length_bounds[0][1][0]))
    slack = max(FIRST_SLACK, low - len(string), len(string) - high)
    cost = _edit_cost(g, string, slack)
    if cost <= slack:
        return cost
    if cost >= INF:  # no restricted edit at all: fall back to a bound that always holds
        cost = max(len(string), low)
    return _edit_cost(g, string, cost)


def edit_distances(g: Grammar, tokens_BT: ArrayLike, lengths_B: ArrayLike) -> np.ndarray:
    """int64 [B]: `edit_distance_to_language` of each row."""
    tokens = np.asarray(tokens_BT)
    return np.array([edit_distance_to_language(g, row, n) for row, n in zip(tokens, np.asarray(lengths_B))], np.int64)


def within_edits(g: Grammar, tokens: ArrayLike, length: int, budget: int) -> bool:
    """Is tokens[:length] at most `budget` edits from the language? One pass with slack = budget."""
    string = _string(tokens, length)
    return budget >= 0 and _edit_cost(g, string, int(budget)) <= budget


def _check_corruptible(g: Grammar) -> None:
    if g.num_terminals < 2:
        raise DataError(f"grammar {g.name!r}: corruption needs at least 2 terminals to change a token.")


@functools.partial(jax.jit, static_argnums=0)
def corrupt(g: Grammar, key: jax.Array, strings: jax.Array, lengths: jax.Array,
            rate: float) -> tuple[jax.Array, jax.Array]:
    """Each of the first lengths[b] tokens of row b is, with probability `rate`, replaced by a uniformly
    random terminal different from it (so every replacement is a real change); padding is untouched.
    Returns (corrupted int32 [B, T], num_changed int32 [B]). Jitted; rate may be traced.
    """
    _check_corruptible(g)
    strings = jnp.asarray(strings, jnp.int32)
    hit_key, value_key = jax.random.split(key)
    inside = jnp.arange(strings.shape[1])[None] < jnp.asarray(lengths)[:, None]
    hit = inside & (jax.random.uniform(hit_key, strings.shape) < rate)
    offset = jax.random.randint(value_key, strings.shape, 1, g.num_terminals)  # 1..k-1 steps round the ring
    replaced = (strings - 1 + offset) % g.num_terminals + 1
    return jnp.where(hit, replaced, strings), hit.sum(axis=1, dtype=jnp.int32)


@functools.partial(jax.jit, static_argnums=0)
def corrupt_some(g: Grammar, key: jax.Array, strings: jax.Array, lengths: jax.Array, fraction: float,
                 rate: float) -> tuple[jax.Array, jax.Array, jax.Array]:
    """`corrupt` applied to round(fraction * B) rows chosen uniformly at random, the others unchanged
    (Part 1's perturbed training data: a fraction of the strings replaced by corrupted ones).
    Returns (strings int32 [B, T], num_changed int32 [B], chosen bool [B]). Jitted.
    """
    choose_key, corrupt_key = jax.random.split(key)
    batch = strings.shape[0]
    rank = jnp.argsort(jax.random.uniform(choose_key, (batch,)))
    chosen = jnp.zeros(batch, bool).at[rank].set(jnp.arange(batch) < jnp.round(fraction * batch))
    corrupted, changed = corrupt(g, corrupt_key, strings, lengths, rate)
    return (jnp.where(chosen[:, None], corrupted, jnp.asarray(strings, jnp.int32)),
            jnp.where(chosen, changed, 0), chosen)


def corrupted_completion_ok(g: Grammar, prefixes_BP: ArrayLike, prefix_lengths_B: ArrayLike,
                            completions_BT: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Did the model complete each corrupted prefix without adding an error of its own?

    Row b's string is prefixes_BP[b, :prefix_lengths_B[b]] followed by completions_BT[b] (the tokens
    the model generated after the prefix) up to, not including, its first EOS. Its budget is the
    prefix's own distance to the language's prefixes (`prefix_distance_to_language`, which no
    completion can undo); it succeeds iff it has an EOS and the whole string is within the budget of
    the language, i.e. exactly that far. Rows without an EOS fail. Returns (ok bool [B], budget int64 [B]).
    """
    prefixes, completions = np.asarray(prefixes_BP), np.asarray(completions_BT)
    prefix_lengths = np.asarray(prefix_lengths_B)
    budgets = np.array([prefix_distance_to_language(g, row, n) for row, n in zip(prefixes, prefix_lengths)], np.int64)
    is_eos = completions == g.eos_id
    has_eos = is_eos.any(axis=1)
    ends = np.where(has_eos, is_eos.argmax(axis=1), 0)
    ok = np.zeros(len(prefix_lengths), bool)
    for b in np.flatnonzero(has_eos):
        string = np.concatenate([prefixes[b, :prefix_lengths[b]], completions[b, :ends[b]]])
        ok[b] = within_edits(g, string, len(string), int(budgets[b]))
    return ok, budgets
