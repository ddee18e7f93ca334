"""Step 1 of drawing an iGSM world: the sizes (the released `IdGen_PT.gen_param_light`,
facebookresearch/iGSM): the op budget s (the target op, or min(t0, t1) of 1..max_op), n <= m <= s
(operations spent on abstract parameters, and all minimal ones), depth d and widths w0 <= w1 in
{2, 3, 4} from a softmax centred by s, the chance p of an extra item, and the edge count e.

The released weighted draw takes a point random() * sum(weights) and subtracts the weights in
order until the point falls below 0 (that index; the last if it never does); the helpers here
are exact shortcuts of it for the two weight tables this step uses.
"""
from __future__ import annotations

import bisect
import functools
import itertools
import math
import random


def draw_sizes(rng: random.Random, max_op: int, max_edge: int, op: int | None,
               target: int) -> tuple[int, int, int, int, int, int, int, float] | None:
    """(s, n, m, d, w0, w1, e, p) as the released gen_param_light draws them, among the draws
    that can give a world of op `target` (None for one that cannot; see below: the release draws
    and rejects the others, which are independent of the rest, so leaving them out changes the
    speed, not the distribution)."""
    # A budget below the target never matches (see below), so s is drawn from the released law
    # min(t0, t1) restricted to s >= target: the same draws the release keeps, without the others.
    # (The uniform draws are _below written out, min and max are comparisons, and the weights'
    # sums are cached: this runs ~7 times per problem. sum() of the same tuple is the same float,
    # so the draws are unchanged.)
    random = rng.random
    if op is None:
        bounds, total = _budget_bounds(max_op, target)
        s = target + bisect.bisect_right(bounds, random() * total)
    else:
        s = op
    a, b = int(random() * s), int(random() * s)
    n = (a if a > b else b) + 1
    m = n + int(random() * (s - n + 1))
    first, second, total = _depth_weights(s, max_edge)
    d = 2 + _index_of_three(random() * total, first, second)
    t0 = 2 + _index_of_three(random() * total, first, second)
    t1 = 2 + _index_of_three(random() * total, first, second)
    w0, w1 = (t0, t1) if t0 < t1 else (t1, t0)
    min_edges = (d - 1) * w0
    span = max_edge - min_edges + 1
    a, b = int(random() * span), int(random() * span)
    e = min_edges + (a if a < b else b)
    clip = (d - 1) * w1 * w1  # Graph.__init__'s clip
    if e > clip:
        e = clip
    if s > target and (m if m < e else e) > target:
        return None
    return s, n, m, d, w0, w1, e, random()


@functools.lru_cache(maxsize=None)
def _budget_bounds(max_op: int, target: int) -> tuple[tuple[int, ...], int]:
    """P(min(t0, t1) = k), t0, t1 uniform in 1..max_op, for k = target..max_op (unnormalised), as
    the released weighted draw reads them: the running sums but the last, and the sum. The weights are
    integers, so its subtractions from the point random() * sum are exact while the point stays
    >= 0: the index it gives is the number of running sums <= the point (bisect_right), the last
    index at most."""
    weights = [2 * (max_op - k) + 1 for k in range(target, max_op + 1)]
    return tuple(itertools.accumulate(weights[:-1])), sum(weights)


@functools.lru_cache(maxsize=None)
def _depth_weights(s: int, max_edge: int) -> tuple[float, float, float]:
    """Softmax weights of depth (and width) 2, 3, 4: centred at 0.2, 0.5, 0.8 of the way from one
    op to max_edge ops; the first two and the sum of all three."""
    relative = (s - 1) / (max_edge - 1)
    weights = tuple(math.exp(-(relative - centre) ** 2) for centre in (0.2, 0.5, 0.8))
    return weights[0], weights[1], sum(weights)


def _index_of_three(point: float, first: float, second: float) -> int:
    """the released weighted draw of three weights for the point random() * their sum (the third weight
    never matters: past the second, the index is 2 either way)."""
    point -= first
    if point < 0:
        return 0
    return 1 if point - second < 0 else 2


# Why a draw can be skipped: a world's op is n_op_min + min(max(n_op_min, s) - n_op_min, room) <= s,
# so a draw with s below the target never matches; above it the op is capped at n_op_min + room,
# and n_op_min >= min(m, e) (choose_param spends one op on every edge an abstract parameter takes,
# and the fixed edges make up the rest of m while edges last), so min(m, e) above the target never
# matches either.
