"""Part 1 measurements against the true grammar (Physics of LMs, "Hierarchical Language Structures":
KL to the true next-token distribution, diversity / entropy of generated strings).

The grammar's generative distribution picks every rule uniformly among its symbol's rules, so a
derivation's probability is the product of 1/num_rules over its nodes and a string's probability sums
over its (possibly many) derivations. Two exact dynamic programs over the layered grammar give
everything here, in float64 on the host:

- inside tables, bottom-up: I[Y](i, s) = P(Y =>* w[i:i+s]) for each level's symbols, only for span
  lengths s in the level's band [min, max] (every symbol of a layered grammar derives strings of a
  bounded length), built from rule prefixes of equal length stacked into one array;
- forward weights, top-down: F_l(j, Y) = P(some level-l node labelled Y starts at j and the tree's
  yield before j is w[:j]), everything right of j marginalised. A level-(l+1) node starts where its
  left siblings (whose inside probability is known) end, so each level is a banded mat-vec. At the
  terminal level, F(t, x) = P(the string starts with w[:t] x), and the root's inside probability
  from 0 to t is P(the string is exactly w[:t]): together they are the next-token distribution.

Probabilities of long strings underflow float64, so every table is scaled by exp(rate)**span, where
`rate` is the grammar's derivation entropy per token; prefix probabilities of w[:t] then carry the
common factor exp(rate * t), which cancels in every ratio. Sampled strings stay within a few tenths
of a nat per token of `rate`, so this is exact to rounding; only a prefix of t tokens whose mean
surprisal exceeds rate + 708 / t nats reads as impossible (its scaled probability underflows), and a
span far more probable than the rate overflows, which raises DataError. Cost per string of n tokens:
sum over levels of rules * n * band_width * child_band_width multiply-adds (cfg3f, n = 250: ~20 ms).
`robust.py` reuses the same layered table builder for min-plus edit costs.
"""
from __future__ import annotations

import functools
import math
from typing import Callable, Optional

import numpy as np
from numpy.typing import ArrayLike

from lmphys.errors import DataError
from lmphys.worlds.cfg.grammar import Grammar

TABLE_BUDGET = 300_000  # float64 entries per table and pass: small tables stay in cache (measured fastest)

# compose(first [B, N, P, Wa], first_lo, second [B, N, P, Wb], second_lo, max_span) -> (lo, [B, N, P, W])
Compose = Callable[[np.ndarray, int, np.ndarray, int, int], tuple[int, np.ndarray]]
# merge(target [B, P, W] view, rule table [B, P, W], num_rules of the symbol): in-place accumulate
Merge = Callable[[np.ndarray, np.ndarray, int], None]


def level_tables(rules: tuple, child: np.ndarray, child_lo: int, band: tuple[int, int],
                 compose: Compose, merge: Merge, fill: float) -> np.ndarray:
    """One level's tables [B, K, P, W] over spans band[0]..band[1] from its children's [B, Kc, P, Wc].

    Rule prefixes c1..cm of equal length m are stacked and extended by one child per step, so a level
    costs max_rule_len compose calls whatever the number of rules; each rule's full table is then
    merged into its symbol's (spans outside the band are dropped).
    """
    batch, _, positions, _ = child.shape
    lo, hi = band
    out = np.full((batch, len(rules), positions, max(hi - lo + 1, 0)), fill, child.dtype)
    longest = max(len(r) for sym in rules for r in sym)
    row_of = {1: {(c,): c for c in range(child.shape[1])}}
    built = {1: (child_lo, child)}
    for m in range(2, longest + 1):
        wanted = sorted({r[:m] for sym in rules for r in sym if len(r) >= m})
        prev_lo, prev = built[m - 1]
        first = prev[:, [row_of[m - 1][p[:-1]] for p in wanted]]
        second = child[:, [p[-1] for p in wanted]]
        built[m] = compose(first, prev_lo, second, child_lo, positions - 1)
        row_of[m] = {p: i for i, p in enumerate(wanted)}
    for x, sym in enumerate(rules):
        for rule in sym:
            table_lo, table = built[len(rule)]
            start, stop = max(lo, table_lo), min(hi, table_lo + table.shape[-1] - 1)
            if start <= stop:
                merge(out[:, x, :, start - lo:stop - lo + 1],
                      table[:, row_of[len(rule)][rule], :, start - table_lo:stop - table_lo + 1], len(sym))
    return out


def _compose_sum(first: np.ndarray, first_lo: int, second: np.ndarray, second_lo: int,
                 max_span: int) -> tuple[int, np.ndarray]:
    """Inside of a concatenation: out(i, a + b) = sum_a first(i, a) * second(i + a, b)."""
    positions, width_a, width_b = first.shape[2], first.shape[3], second.shape[3]
    lo = first_lo + second_lo
    width = max(min(width_a + width_b - 1, max_span - lo + 1), 0)
    out = np.zeros(first.shape[:3] + (width,))
    for a in range(min(width_a, width)):
        shift = first_lo + a
        span = min(width_b, width - a)
        if shift >= positions:
            break
        out[:, :, :positions - shift, a:a + span] += (
            first[:, :, :positions - shift, a, None] * second[:, :, shift:, :span])
    return lo, out


def _merge_sum(target: np.ndarray, table: np.ndarray, num_rules: int) -> None:
    target += table / num_rules


def _advance(weights: np.ndarray, inside: np.ndarray, lo: int) -> np.ndarray:
    """Forward step over one child: out(j) = sum_s weights(j - s) * inside(j - s, s)."""
    positions = weights.shape[-1]
    spread = weights[..., None] * inside
    out = np.zeros_like(weights)
    for w in range(inside.shape[-1]):
        shift = lo + w
        if shift >= positions:
            break
        out[..., shift:] += spread[..., :positions - shift, w]
    return out


@functools.lru_cache(maxsize=None)
def scale_rate(g: Grammar) -> float:
    """Expected -log P(derivation) per token (nats): the per-token scale of the probability tables."""
    length = [np.ones(g.num_terminals)]
    surprise = [np.zeros(g.num_terminals)]
    for level in reversed(g.rules):
        length.insert(0, np.array([np.mean([sum(length[0][c] for c in r) for r in sym]) for sym in level]))
        surprise.insert(0, np.array([math.log(len(sym)) + np.mean([sum(surprise[0][c] for c in r) for r in sym])
                                     for sym in level]))
    return float(surprise[0][0] / length[0][0])


def level_bands(g: Grammar, max_span: int, slack: int = 0) -> list[tuple[int, int]]:
    """Per level: (lowest, highest) span any of its symbols covers, widened by `slack`, capped."""
    return [(max(int(lo.min()) - slack, 0), min(int(hi.max()) + slack, max_span)) for lo, hi in g.length_bounds]


def _inside_tables(g: Grammar, tokens_BT: np.ndarray, log_scale: float) -> list[tuple[int, np.ndarray]]:
    """(lo, tables [B, K, T+1, W]) of levels 1..terminals (index 0 unused: the root is never tabulated)."""
    batch, width = tokens_BT.shape
    bands = level_bands(g, width)
    terminal = np.zeros((batch, g.num_terminals, width + 1, 1))
    terminal[:, :, :width, 0] = (tokens_BT[:, None, :] == np.arange(1, g.num_terminals + 1)[None, :, None])
    terminal *= math.exp(log_scale)
    tables: list = [None] * g.num_levels
    tables[-1] = (1, terminal)
    for level in range(g.num_levels - 2, 0, -1):
        child_lo, child = tables[level + 1]
        tables[level] = (bands[level][0], level_tables(g.rules[level], child, child_lo, bands[level],
                                                       _compose_sum, _merge_sum, 0.0))
    return tables


def _forward(g: Grammar, tokens_BT: np.ndarray, log_scale: float,
             root_only: bool = False) -> tuple[Optional[np.ndarray], np.ndarray]:
    """Scaled (prefix-then-terminal weights [B, k, T+1], exact-prefix weights [B, T+1]).

    [b, x, t] = P(string starts with w[:t] x) * exp(log_scale * t); [b, t] = P(string == w[:t]) * same.
    root_only: stop after the root's rules (the first result is then None).
    """
    batch, width = tokens_BT.shape
    tables = _inside_tables(g, tokens_BT, log_scale)
    weights = np.zeros((batch, 1, width + 1))
    weights[:, 0, 0] = 1.0
    complete = None
    for level in range(1 if root_only else g.num_levels - 1):
        child_lo, child = tables[level + 1]
        rules = [(x, r) for x, sym in enumerate(g.rules[level]) for r in sym]
        chains = weights[:, [x for x, _ in rules]] / np.array([len(g.rules[level][x]) for x, _ in rules])[:, None]
        below = np.zeros((batch, g.sizes[level + 1], width + 1))
        for m in range(max(len(r) for _, r in rules)):
            active = [n for n, (_, r) in enumerate(rules) if len(r) > m]
            for n in active:
                below[:, rules[n][1][m]] += chains[:, n]
            if level > 0:  # below the root, a chain past its rule's last child is never used
                active = [n for n in active if len(rules[n][1]) > m + 1]
            chains[:, active] = _advance(chains[:, active], child[:, [rules[n][1][m] for n in active]], child_lo)
        if level == 0:
            complete = chains.sum(axis=1)
        weights = below
    return (None if root_only else weights), complete


def _check_strings(g: Grammar, tokens: ArrayLike, lengths: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    tokens = np.asarray(tokens)
    lengths = np.asarray(lengths).astype(np.int64).reshape(-1)
    if tokens.ndim == 1:
        tokens = tokens[None]
    if tokens.ndim != 2 or len(tokens) != len(lengths):
        raise DataError(f"expected tokens [B, T] and lengths [B], got shapes {tokens.shape} and {lengths.shape}.")
    if len(lengths) and (lengths.min() < 0 or lengths.max() > tokens.shape[1]):
        raise DataError(f"lengths must lie in 0..{tokens.shape[1]} (the token rows' width), got "
                        f"{int(lengths.min())}..{int(lengths.max())}.")
    return tokens.astype(np.int64), lengths


def _row_cost(g: Grammar, width: int) -> int:
    """float64 entries of the widest table of one string of `width` tokens."""
    return max(k * (width + 1) * max(hi - lo + 1, 1) for k, (lo, hi) in zip(g.sizes[1:], level_bands(g, width)[1:]))


def _chunks(g: Grammar, lengths: np.ndarray):
    """Groups of rows of similar length whose tables fit TABLE_BUDGET: yields (rows, their max length)."""
    order = np.argsort(lengths, kind="stable")
    start = 0
    while start < len(order):
        stop = start + 1
        while stop < len(order) and (stop - start + 1) * _row_cost(g, int(lengths[order[stop]])) <= TABLE_BUDGET:
            stop += 1
        yield order[start:stop], int(lengths[order[stop - 1]])
        start = stop


def next_token_distributions(g: Grammar, tokens_BT: ArrayLike, lengths_B: ArrayLike) -> np.ndarray:
    """float64 [B, max(lengths) + 1, V]: row [b, t] is the grammar's exact distribution of the token
    after the prefix tokens_BT[b, :t] (t = 0 is right after BOS), for t = 0..lengths_B[b].

    Only the terminals 1..k and EOS (the string ends here) get mass. Rows whose prefix the grammar
    cannot produce (probability 0), and rows past a string's length, are all zeros.
    """
    tokens, lengths = _check_strings(g, tokens_BT, lengths_B)
    width = int(lengths.max()) if len(lengths) else 0
    out = np.zeros((len(lengths), width + 1, g.vocab_size))
    log_scale = scale_rate(g)
    for rows, chunk_width in _chunks(g, lengths):
        prefix_terminal, exact = _forward(g, tokens[rows, :chunk_width], log_scale)
        total = prefix_terminal.sum(axis=1) + exact  # [b, t]: scaled P(prefix w[:t])
        if not np.all(np.isfinite(total)):
            raise DataError(f"grammar {g.name!r}: probability tables overflowed float64 for strings of "
                            f"{chunk_width} tokens.")
        safe = np.where(total > 0, total, 1.0)
        chunk = np.zeros((len(rows), chunk_width + 1, g.vocab_size))
        chunk[:, :, 1:g.num_terminals + 1] = np.swapaxes(prefix_terminal, 1, 2) / safe[..., None]
        chunk[:, :, g.eos_id] = exact / safe
        live = np.arange(chunk_width + 1)[None] <= lengths[rows][:, None]
        out[rows, :chunk_width + 1] = np.where(live[..., None], chunk, 0.0)
    return out


def next_token_distribution(g: Grammar, tokens: ArrayLike, length: int) -> np.ndarray:
    """float64 [length + 1, V]: row t is the exact distribution of the token after tokens[:t]
    (see `next_token_distributions`)."""
    tokens = np.asarray(tokens).reshape(-1)
    return next_token_distributions(g, tokens[None, :max(int(length), 0)], [int(length)])[0]


def string_log_probs(g: Grammar, tokens_BT: ArrayLike, lengths_B: ArrayLike) -> np.ndarray:
    """float64 [B]: natural-log probability that the grammar generates exactly tokens_BT[b, :lengths_B[b]]
    (summed over all derivations); -inf for strings outside the language."""
    tokens, lengths = _check_strings(g, tokens_BT, lengths_B)
    out = np.full(len(lengths), -np.inf)
    log_scale = scale_rate(g)
    for rows, chunk_width in _chunks(g, lengths):
        _, exact = _forward(g, tokens[rows, :chunk_width], log_scale, root_only=True)
        value = exact[np.arange(len(rows)), lengths[rows]]
        if not np.all(np.isfinite(value)):
            raise DataError(f"grammar {g.name!r}: probability tables overflowed float64 for strings of "
                            f"{chunk_width} tokens.")
        with np.errstate(divide="ignore"):
            out[rows] = np.log(value) - log_scale * lengths[rows]
    return out


def string_log_prob(g: Grammar, tokens: ArrayLike, length: int) -> float:
    """log P(the grammar generates exactly tokens[:length]); -inf if it is not in the language."""
    tokens = np.asarray(tokens).reshape(-1)
    return float(string_log_probs(g, tokens[None, :max(int(length), 0)], [int(length)])[0])


def kl_to_grammar(g: Grammar, tokens_BT: ArrayLike, lengths_B: ArrayLike,
                  model_log_probs_BTV: ArrayLike) -> dict[str, float]:
    """KL(p_true || p_model) of next-token distributions along documents, in nats.

    tokens_BT: documents BOS s_1 .. s_L EOS (row b has lengths_B[b] string tokens, padding after).
    model_log_probs_BTV[b, t]: the model's log-distribution of the token at position t + 1 given
    positions <= t (a causal LM's log_softmax(logits) for the row); its V may exceed g.vocab_size.
    Every position t = 0..L of every row (L + 1 predictions: the L string tokens, then EOS) counts once.
    Returns kl (mean over positions), kl_max, kl_positions (positions counted) and kl_skipped
    (positions whose prefix the grammar cannot produce, so p_true is undefined; 0 on grammar samples).
    A model giving -inf to a token the grammar allows yields inf.
    """
    tokens = np.asarray(tokens_BT)
    lengths = np.asarray(lengths_B).astype(np.int64)
    log_q = np.asarray(model_log_probs_BTV, np.float64)
    if tokens.ndim != 2 or log_q.ndim != 3 or log_q.shape[:2] != tokens.shape[:2] or log_q.shape[2] < g.vocab_size:
        raise DataError(f"kl_to_grammar: expected tokens [B, T] and model log-probs [B, T, >= {g.vocab_size}], got "
                        f"{tokens.shape} and {log_q.shape}.")
    if len(lengths) and (tokens[:, 0] != g.bos_id).any():
        raise DataError(f"kl_to_grammar: documents must start with BOS ({g.bos_id}): pass BOS s_1 .. s_L EOS rows.")
    if len(lengths) and lengths.max() + 1 > tokens.shape[1]:
        raise DataError(f"kl_to_grammar: a document of {int(lengths.max())} tokens needs {int(lengths.max()) + 2} "
                        f"positions (BOS, string, EOS), rows have {tokens.shape[1]}.")
    p = next_token_distributions(g, tokens[:, 1:], lengths)
    width = p.shape[1]
    log_q = log_q[:, :width, :g.vocab_size]
    positions = np.arange(width)[None] <= lengths[:, None]
    support = p > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(support, p * (np.log(np.where(support, p, 1.0)) - log_q), 0.0)
    kl = terms.sum(axis=-1)
    valid = positions & support.any(axis=-1)
    values = kl[valid]
    return {"kl": float(values.mean()) if values.size else float("nan"),
            "kl_max": float(values.max()) if values.size else float("nan"),
            "kl_positions": float(values.size), "kl_skipped": float((positions & ~valid).sum())}


def tempered_log_probs(model_log_probs_BTV: ArrayLike, temperature: float) -> np.ndarray:
    """float64 [B, T, V]: the log-distribution a sampler at `temperature` draws from, given a model's
    log-probs: log_softmax(log_probs / temperature) (the same as of logits / temperature); at
    temperature 0 (greedy) the argmax token gets log-prob 0 and the others -inf."""
    log_q = np.asarray(model_log_probs_BTV, np.float64)
    if temperature < 0:
        raise DataError(f"temperature must be zero (greedy) or positive, got {temperature}.")
    if temperature == 0:
        best = log_q.argmax(axis=-1)[..., None]
        return np.where(np.arange(log_q.shape[-1]) == best, 0.0, -np.inf)
    scaled = log_q / temperature
    top = scaled.max(axis=-1, keepdims=True)
    return scaled - top - np.log(np.exp(scaled - top).sum(axis=-1, keepdims=True))


def document_log_probs(tokens_BT: ArrayLike, lengths_B: ArrayLike, model_log_probs_BTV: ArrayLike) -> np.ndarray:
    """float64 [B]: a causal model's natural-log probability of each document's string and its EOS,
    sum over t = 0..L of model_log_probs_BTV[b, t, tokens_BT[b, t + 1]] (layout as in `kl_to_grammar`):
    the `log_probs_B` that `diversity` needs for strings the model sampled (pass the log-probs of
    the distribution sampled: `tempered_log_probs` at the sampler's temperature)."""
    tokens = np.asarray(tokens_BT)
    lengths = np.asarray(lengths_B).astype(np.int64)
    log_q = np.asarray(model_log_probs_BTV, np.float64)
    targets = tokens[:, 1:]
    picked = np.take_along_axis(log_q[:, :targets.shape[1]], targets[..., None], axis=-1)[..., 0]
    return np.where(np.arange(targets.shape[1])[None] <= lengths[:, None], picked, 0.0).sum(axis=1)


def diversity(g: Grammar, strings: ArrayLike, lengths: ArrayLike,
              log_probs_B: Optional[ArrayLike] = None) -> dict[str, float]:
    """How varied n strings drawn independently from some distribution p (a model or the grammar) are.

    distinct: number of distinct strings; distinct_fraction: distinct / n.
    entropy_bits: the mean of -log2 p(s_i), an unbiased Monte-Carlo estimate of the entropy
    H(p) = E_{s ~ p}[-log2 p(s)] of whole strings (EOS included); entropy_stderr_bits: its standard error.
    log_probs_B: p's natural-log probability of each sample, e.g. `document_log_probs` of the model that
    sampled them (of the distribution actually sampled: with a temperature, the tempered one).
    Without it p is taken to be the grammar (`string_log_probs`), which estimates the grammar's entropy
    from its own samples; for samples of another producer that is the cross-entropy instead, and inf
    once a string is outside the language.
    """
    tokens, lengths = _check_strings(g, strings, lengths)
    count = len(lengths)
    if count == 0:
        raise DataError("diversity: needs at least one string.")
    distinct = len({tuple(row[:n]) for row, n in zip(tokens.tolist(), lengths.tolist())})
    log_p = string_log_probs(g, tokens, lengths) if log_probs_B is None else np.asarray(log_probs_B, np.float64)
    if log_p.shape != (count,):
        raise DataError(f"diversity: log_probs_B must have shape ({count},), got {log_p.shape}.")
    bits = -log_p / math.log(2)
    spread = float(bits.std(ddof=1) / math.sqrt(count)) if count > 1 and np.all(np.isfinite(bits)) else float("nan")
    return {"distinct": float(distinct), "distinct_fraction": distinct / count,
            "entropy_bits": float(bits.mean()), "entropy_stderr_bits": spread}
