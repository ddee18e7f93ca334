"""How an iGSM world is drawn: the released generator's process (facebookresearch/iGSM,
`IdGen_PT.gen_param_light`, `Graph` and `Problem` of math_gen/), step by step, written for lmphys.
Every step keeps the released semantics, including their quirks, so problems follow the released
distributions (tests/test_igsm_stats.py compares them); randomness is one `random.Random`.

1. Sizes (`draw_sizes`): the op budget s (the target op, or min(t0, t1) of 1..max_op), n <= m <= s
   (operations spent on abstract parameters, and all minimal ones), depth d and widths w0 <= w1 in
   {2, 3, 4} from a softmax centred by s, the chance p of an extra item, and the edge count e.
2. Structure (`Draft.init`): layer sizes grown from w0 towards w1 until e edges fit; each lower
   item gets one random parent, then random extra edges up to e. Names (`draw_names`): a
   hierarchy, a window of d of its layers, one sub-category per layer, items sampled from it.
3. Necessary parameters (`choose_param`): abstract parameters (each with the edges and deeper
   abstract ones below it) while their op cost fits n, then m - n random edges.
4. Solution order (`reasonable_sort`): picked backwards from a random sink, the question, through
   a stack of the picks' dependencies; an instance pick may get one extra dependency.
5. Dependencies and op (`design`): n_op = n_op_min + min(max(n_op_min, s) - n_op_min, extra room);
   each necessary instance parameter draws 1-4 dependencies among RNG and the earlier parameters.
6. Distractors (`design_unused`): every other edge becomes a stated parameter over RNG and either
   other distractors or anything computable so far; nothing necessary depends on them.

Speed: the draws are the release's, in its order, and must stay so (tests/test_golden.py). The hot
loops write small helpers out (`_below`, `_choice`, `_weighted_index`, `_add_edge`) and keep
derived records beside the released ones (candidates per span, free edges per item, stated
abstract parameters), each where a comment says what it reproduces; a change here is checked by
hashing many problems before and after.
"""
from __future__ import annotations

import bisect
import functools
import itertools
import math
import random

from lmphys.worlds.igsm.graph import ABSTRACT, INSTANCE, RNG, categories

_EXP = (1.0, math.e, math.e ** 2)  # softmax weights of scores 0, 1, 2 (times the sort's bias)
_STRUCTURE_TRIES = 1000  # the released try_num: structures per size draw before drawing new sizes
_MAX_REFS = 4  # the released max_param: dependencies of one sentence at most


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
    `_weighted_index` reads them: the running sums but the last, and the sum. The weights are
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
    """`_weighted_index` of three weights for the point random() * their sum (the third weight
    never matters: past the second, the index is 2 either way)."""
    point -= first
    if point < 0:
        return 0
    return 1 if point - second < 0 else 2


@functools.lru_cache(maxsize=None)
def _edge_grid(i: int, upper: int, lower: int) -> tuple[tuple[int, int, int], ...]:
    """Every possible edge (i, j, k) between layers of these sizes, in (j, k) order."""
    return tuple((i, j, k) for j in range(upper) for k in range(lower))


@functools.lru_cache(maxsize=None)
def _abstract_keys(d: int, sizes: tuple[int, ...]) -> tuple[frozenset, tuple]:
    """The abstract keys (i, j, k) of a structure with these layer sizes (a frozenset: a set copied
    from it keeps the hashes), and per span k - i (index 1..d-1; 0 is empty) the keys of that span
    in the released order (layer, item, lower layer)."""
    keys = tuple((i, j, k) for i in range(d - 1) for j in range(sizes[i]) for k in range(i + 1, d))
    spans = tuple(tuple(key for key in keys if key[2] - key[0] == diff) for diff in range(d))
    return frozenset(keys), spans


# Why a draw can be skipped: a world's op is n_op_min + min(max(n_op_min, s) - n_op_min, room) <= s,
# so a draw with s below the target never matches; above it the op is capped at n_op_min + room,
# and n_op_min >= min(m, e) (choose_param spends one op on every edge an abstract parameter takes,
# and the fixed edges make up the rest of m while edges last), so min(m, e) above the target never
# matches either.


def _below(rng: random.Random, count: int) -> int:
    """Uniform in 0..count-1 (random() scaled: uniform to within 2^-45, and several times faster
    than randrange; these draws are the generator's hot loop, and most of them write it out as
    int(random() * count))."""
    return int(rng.random() * count)


def _choice(rng: random.Random, options):
    return options[int(rng.random() * len(options))]


def _sample(rng: random.Random, population, count: int) -> list:
    """`count` distinct elements in random order (a partial Fisher-Yates shuffle)."""
    return _sample_from(rng, list(population), count)


def _sample_from(rng: random.Random, pool: list, count: int) -> list:
    """`_sample` of a list it may reorder (no copy)."""
    size = len(pool)
    for index in range(count):
        other = index + int(rng.random() * (size - index))
        pool[index], pool[other] = pool[other], pool[index]
    return pool[:count]


class Draft:
    """A world being drawn (steps 2-6 of the module docstring). The released names are kept
    (remain, inter, chosen: edges not yet used, abstract parameters not yet used, parameters in
    use) so each step can be read beside its original."""

    def __init__(self, rng: random.Random, d: int, w0: int, w1: int, e: int, p: float):
        self.rng = rng
        self.d, self.w0, self.w1, self.p = d, w0, w1, p
        self.e = e

    # -- step 2: structure ---------------------------------------------------------------------

    def init(self) -> None:
        """Layer sizes, edges and the three records, as `Graph.init` draws them."""
        rng, d, e = self.rng, self.d, self.e
        random = rng.random
        sizes = self.sizes = [self.w0] * d
        while True:
            most = least = 0
            for i in range(d - 1):
                most += sizes[i] * sizes[i + 1]
                least += sizes[i + 1]
            if most < e:
                self._add_item()
            elif least == e:
                break
            elif random() < self.p:
                if self._add_item():
                    break
            else:
                break
        remain: list[tuple[int, int, int]] = []
        others = []
        # children: (i, j) -> j's children in increasing order (the dict's own order is unused).
        children: dict[tuple[int, int], list[int]] = {}
        for i in range(d - 1):
            upper, lower = sizes[i], sizes[i + 1]
            # The layer's possible edges (i, j, k) in (j, k) order; the parent edge of k is at
            # parent * lower + k. The others are the rest, in the same order.
            grid = _edge_grid(i, upper, lower)
            positions = []
            for k in range(lower):
                parent = int(random() * upper)
                position = parent * lower + k
                positions.append(position)
                remain.append(grid[position])
                kids = children.get((i, parent))
                if kids is None:
                    children[(i, parent)] = [k]
                else:
                    kids.append(k)
            block = list(grid)
            for position in sorted(positions, reverse=True):
                del block[position]
            others += block
        if e > len(remain):
            extra = _sample_from(rng, others, e - len(remain))
            remain += extra
            for i, j, k in extra:
                kids = children.get((i, j))
                if kids is None:
                    children[(i, j)] = [k]
                else:
                    bisect.insort(kids, k)
        self.remain = remain
        self.children = children
        self.edge_list = tuple(remain)
        # inter: a set (only membership and removal matter, but for choose_param's order of
        # candidates, kept per span in _spans); both are the same for every world of these sizes.
        keys, self._span_keys = _abstract_keys(d, tuple(sizes))
        self.inter = set(keys)
        self.chosen: list[tuple] = []
        total = len(remain)
        free = self._free = {}  # per item, its edges still in remain (see _abstract_cost)
        for pair, kids in children.items():
            count = free[pair] = len(kids)
            total += (2 * count - 1) * (d - pair[0] - 2) + (count - 1 if count > 1 else count)
        self.total = total

    def draw_names(self) -> None:
        """A hierarchy, a window of d of its layers, one sub-category per layer, and items sampled
        from it (the released `Data`). Independent of everything else, so drawn last."""
        rng = self.rng
        hierarchies, pools = categories()
        self.hierarchy = rng.randrange(len(hierarchies))
        start = rng.randrange(len(hierarchies[self.hierarchy]) - self.d + 1)
        self.layers = hierarchies[self.hierarchy][start:start + self.d]
        self.items = tuple([tuple(rng.sample(rng.choice(pools[layer]), size)) for layer, size in zip(self.layers, self.sizes)])

    def _add_item(self) -> bool:
        """One more item in a random layer below w1; True if every layer is full."""
        open_layers = [i for i, size in enumerate(self.sizes) if size < self.w1]
        if not open_layers:
            return True
        self.sizes[_choice(self.rng, open_layers)] += 1
        return False

    def _kids(self, i: int, j: int) -> list[int]:
        return self.children.get((i, j), [])

    # -- step 3: necessary parameters ----------------------------------------------------------

    def _abstract_cost(self, key: tuple[int, int, int], taken: set) -> int:
        """The op cost of adding abstract parameter `key` with what it needs (the released
        `try_inter`), without adding it: `taken` collects the abstract keys it would take from
        `inter`, so a key reached twice is counted once. The edges it would take are, per item
        (i, j) it reaches, all of (i, j)'s edges still in `remain`: that is `_free[(i, j)]`, since
        every key of one cost has the same k, so no item is reached twice, and adding any key of
        (i, j) takes all of (i, j)'s edges at once (the release's set of taken edges never
        refuses one)."""
        i, j, k = key
        taken.add(key)
        kids = self.children.get((i, j), ())
        count = self._free.get((i, j), 0)
        if i + 1 == k:
            return count + (len(kids) - 1 if len(kids) > 1 else 1)
        inter, children, free = self.inter, self.children, self._free
        leaf = i + 2 == k
        for x in kids:
            deeper = (i + 1, x, k)
            if deeper in inter and deeper not in taken:
                if leaf:  # the span-1 case above, written out
                    taken.add(deeper)
                    pair = (i + 1, x)
                    below = len(children.get(pair, ()))
                    count += free.get(pair, 0) + (below - 1 if below > 1 else 1)
                else:
                    count += self._abstract_cost(deeper, taken)
        return count + max(2 * len(kids) - 1, 1)

    def _take_abstract(self, key: tuple[int, int, int], remain: set) -> None:
        """Add abstract parameter `key` and what it needs to `chosen`, in the order `try_inter`
        moves them (the order later steps read `chosen` in)."""
        i, j, k = key
        self.inter.remove(key)
        self._spans[k - i].remove(key)
        self.chosen.append((ABSTRACT, i, j, k))
        for x in self.children.get((i, j), ()):
            deeper = (i + 1, x, k)
            if i + 1 != k and deeper in self.inter:
                self._take_abstract(deeper, remain)
            edge = (i, j, x)
            if edge in remain:
                remain.discard(edge)
                self.remain.remove(edge)
                self.chosen.append((INSTANCE, i, j, x))
        self._free.pop((i, j), None)  # no edge of (i, j) is left in remain

    def choose_param(self, n: int, m: int) -> None:
        """The released `choose_param`: sweep the spans k - i = 1..d-1, each sweep adding the
        widest-span random abstract parameter whose cost still fits n; then the fixed edges.
        (The release costs each candidate on a copy of its records and keeps the copy of the one
        it adds; costing without copying and adding the chosen one gives the same records, since
        the records do not change between a candidate's costing and its adding.)
        The candidates of a span are `inter`'s keys of that span in their released order
        (layer, item, lower layer): kept in `_spans`, which `_take_abstract` keeps in step with
        `inter`, instead of filtering `inter` again at every pick."""
        random = self.rng.random
        n = min(n, self.total)
        n_fix = m - n
        remain = set(self.remain)  # every edge, still
        spans = self._spans = [list(keys) for keys in self._span_keys]
        children, free = self.children, self._free  # (free: the same dict _take_abstract updates)
        previous, previous_count = None, 0
        lowest, highest = 1, self.d - 1
        while n > 0:
            candidates_seen = False
            for diff in range(1, self.d):
                options = spans[diff]
                if not options:
                    if diff == lowest:
                        lowest += 1
                    elif diff == highest:
                        highest -= 1
                    continue
                candidates_seen = True
                key = options[int(random() * len(options))]  # _choice
                if diff == 1:  # _abstract_cost of a key of span 1, written out
                    pair = key[:2]
                    below = len(children.get(pair, ()))
                    count = free.get(pair, 0) + (below - 1 if below > 1 else 1)
                else:
                    count = self._abstract_cost(key, set())
                if diff == lowest and count > n:
                    fixed = min(n + n_fix, len(self.remain))
                    self._choose_edges(fixed)
                    self.n_op_min = m - n - n_fix + fixed
                    return
                if count <= n:
                    if diff < highest:
                        previous, previous_count = key, count
                    else:
                        self._take_abstract(key, remain)
                        n -= count
                        break
                else:
                    if previous is not None:
                        self._take_abstract(previous, remain)
                    n -= previous_count
                    break
            if not candidates_seen:  # nothing left to add (the released loop would spin here)
                break
        fixed = min(n_fix, len(self.remain))
        self._choose_edges(fixed)
        self.n_op_min = m - n_fix + fixed

    def _choose_edges(self, count: int) -> None:
        """`count` random edges of `remain` join `chosen` (remain keeps its order)."""
        if count <= 0:  # (no draws either way)
            return
        picked = _sample(self.rng, self.remain, count)
        self.chosen += [(INSTANCE, i, j, k) for i, j, k in picked]
        picked_set = set(picked)
        self.remain = [edge for edge in self.remain if edge not in picked_set]

    def setup_template(self) -> None:
        """The template over the chosen parameters: each abstract one depends on its structure."""
        nodes = self.nodes = list(self.chosen)
        preds = self.preds = {param: [] for param in self.chosen}
        children = self.children
        for param in self.chosen:
            kind, i, j, k = param
            if kind != ABSTRACT:
                continue
            kids = children.get((i, j), ())
            sources = preds[param]
            # _add_edge(source, param) written out (param is a node already)
            for x in kids:
                source = (INSTANCE, i, j, x)
                if source not in preds:
                    preds[source] = []
                    nodes.append(source)
                if source not in sources:
                    sources.append(source)
            if k - i > 1:
                for x in kids:
                    source = (ABSTRACT, i + 1, x, k)
                    if source not in preds:
                        preds[source] = []
                        nodes.append(source)
                    if source not in sources:
                        sources.append(source)

    def _add_node(self, param) -> None:
        if param not in self.preds:
            self.preds[param] = []
            self.nodes.append(param)

    def _add_edge(self, source, target) -> None:
        """source -> target, adding either as a node first if new (_add_node written out)."""
        preds = self.preds
        if source not in preds:
            preds[source] = []
            self.nodes.append(source)
        sources = preds.get(target)
        if sources is None:
            sources = preds[target] = []
            self.nodes.append(target)
        if source not in sources:
            sources.append(source)

    # -- step 4: solution order ----------------------------------------------------------------

    def reasonable_sort(self) -> bool:
        """The released `reasonable_sort`: False when the order gets stuck (a new structure is
        then drawn). Sets `self.order`, the solution order with the question last."""
        rng = self.rng
        random = rng.random
        p0 = random()
        bias = abs(rng.gauss(0.0, 1.0))
        # The released weight of a node is exp(score) ** bias; the three powers are computed once
        # (the same float expressions, so the same weights).
        powers = (_EXP[0] ** bias, _EXP[1] ** bias, _EXP[2] ** bias)
        nodes, preds = self.nodes, self.preds
        out_degree = dict.fromkeys(nodes, 0)
        for sources in preds.values():  # (the same keys as nodes)
            for source in sources:
                out_degree[source] += 1
        sinks = [node for node in nodes if out_degree[node] == 0]
        in_sinks = set(sinks)
        stack: set = set()  # only membership matters
        remain = list(nodes)
        picks: list = []
        pool = sinks  # the first pick: any sink; later ones: a sink in the stack
        while remain:
            if not pool:
                return False
            picked = pool[int(random() * len(pool))]  # _choice
            picks.append(picked)
            remain.remove(picked)
            sinks.remove(picked)
            in_sinks.discard(picked)
            for source in preds[picked]:
                out_degree[source] -= 1
                if out_degree[source] == 0:
                    sinks.append(source)
                    in_sinks.add(source)
            stack.discard(picked)
            need_to_pick = in_sinks.isdisjoint(stack)
            if picked[0] == INSTANCE:
                if (random() < p0 or need_to_pick) and remain:
                    if need_to_pick:  # among the sinks, none in the stack: score 1 or 2
                        pool = sinks
                        weights = [powers[(node[0] == ABSTRACT) + 1] for node in pool]
                    else:
                        pool = remain
                        weights = [powers[(node[0] == ABSTRACT) + (node not in stack)] for node in pool]
                    point, index = random() * sum(weights), len(weights) - 1  # _weighted_index
                    for position, weight in enumerate(weights):
                        point -= weight
                        if point < 0:
                            index = position
                            break
                    extra = pool[index]
                    sources = preds[picked]  # _add_edge(extra, picked): both are nodes already
                    if extra not in sources:
                        sources.append(extra)
                    stack.add(extra)
                    if need_to_pick:  # no sink was in the stack, so now only `extra` is
                        pool = [extra]
                        continue
            else:
                stack.update(preds[picked])
            pool = [node for node in sinks if node in stack]
        picks.reverse()
        self.order = picks
        return True

    def op_budget(self, s: int) -> int:
        """The released design's op count: n_op_min raised towards s as far as the order allows."""
        room = [(0 if index < 2 else 1 if index == 2 else 2) if param[0] == INSTANCE else 0  # max(min(index + 1, 4) - 2, 0)
                for index, param in enumerate(self.order)]
        self.room = room
        return self.n_op_min + min(max(self.n_op_min, s) - self.n_op_min, sum(room))

    # -- step 5: dependencies ------------------------------------------------------------------

    def design(self, n_op: int) -> None:
        """Spread the extra operations, then give each necessary instance parameter its
        dependencies among RNG and the earlier parameters (the released `design`)."""
        rng = self.rng
        extra = [0] * len(self.order)
        addable = [index for index, room in enumerate(self.room) if room > 0]
        for _ in range(n_op - self.n_op_min):
            index = _choice(rng, addable)
            extra[index] += 1
            if extra[index] == self.room[index]:
                addable.remove(index)
        self._add_node(RNG)
        used = self.used_edges = set()
        order, preds, add_edge, random = self.order, self.preds, self._add_edge, rng.random
        for index, param in enumerate(order):
            if param[0] != INSTANCE:
                continue
            used.add(param[1:])
            pool = [RNG] + order[:index]
            wanted = (1 if random() < 0.5 else 2) if extra[index] == 0 else extra[index] + 2
            wanted = min(wanted, index + 1, _MAX_REFS)
            if wanted != len(pool):
                for source in preds[param]:
                    pool.remove(source)
                    wanted -= 1
                if random() < 0.5 and wanted > 0:
                    wanted -= 1
                    add_edge(RNG, param)
                    pool.remove(RNG)
                pool = _sample_from(rng, pool, wanted)  # (pool is this step's own list)
            for source in pool:
                add_edge(source, param)

    def fill_all(self) -> None:
        """The released `fill_all`: abstract parameters already computable join `chosen`."""
        inter, used, children = self.inter, self.used_edges, self.children
        for upper in range(self.d - 1):
            for j in range(self.sizes[upper]):
                key = (upper, j, upper + 1)
                if key in inter and all([(upper, j, x) in used for x in children.get((upper, j), ())]):
                    inter.remove(key)
                    self.chosen.append((ABSTRACT,) + key)
        for upper in range(self.d - 1):
            self._fill_upper(upper, range(upper + 2, self.d))

    # -- step 6: distractors -------------------------------------------------------------------

    def design_unused(self) -> None:
        """Every remaining edge becomes a stated distractor (the released `design_unused`)."""
        rng = self.rng
        random, remain, chosen, add_edge = rng.random, self.remain, self.chosen, self._add_edge
        stated = self.stated = list(self.order)
        # The abstract parameters in `stated` (_state_abstract's test, without scanning the list).
        self._stated_abstract = {param for param in stated if param[0] == ABSTRACT}
        independent: list = []
        while remain:
            edge = remain[int(random() * len(remain))]  # _choice
            param = (INSTANCE,) + edge
            self._add_node(param)
            alone = random() < 0.5
            pool = independent if alone else chosen
            wanted, most = 1, min(len(pool) + 1, _MAX_REFS)
            while wanted < most and random() > 0.5:
                wanted += 1
            if wanted == len(pool) + 1:
                add_edge(RNG, param)
                sources = list(pool)
            else:
                if random() < 0.5:
                    add_edge(RNG, param)
                    wanted -= 1
                sources = _sample(rng, pool, wanted)
            for source in sources:
                add_edge(source, param)
                if source[0] == ABSTRACT:
                    self._state_abstract(source)
            remain.remove(edge)
            chosen.append(param)
            self._fill_chosen(param)
            if alone:
                independent.append(param)
            stated.append(param)

    def _state_abstract(self, param) -> None:
        """The released `add_param`: an abstract dependency joins the template with its structure."""
        kind, i, j, k = param
        if kind != ABSTRACT or param in self._stated_abstract:
            return
        for x in self._kids(i, j):
            self._add_edge((INSTANCE, i, j, x), param)
            if k != i + 1:
                self._add_edge((ABSTRACT, i + 1, x, k), param)
                if (ABSTRACT, i + 1, x, k) not in self._stated_abstract:
                    self._state_abstract((ABSTRACT, i + 1, x, k))
        self.stated.append(param)
        self._stated_abstract.add(param)

    def _fill_chosen(self, param) -> None:
        """The released `fill_chosen`: abstract parameters the new edge makes computable."""
        _, i, j, _ = param
        used = self.used_edges
        used.add(param[1:])
        kids = self.children.get((i, j), ())
        for x in kids:
            if (i, j, x) not in used:
                return
        self._move_to_chosen((i, j, i + 1))
        inter = self.inter
        for lower in range(i + 2, self.d):
            if any((i + 1, x, lower) in inter for x in kids):
                break
            self._move_to_chosen((i, j, lower))
        for upper in range(i - 1, -1, -1):
            self._fill_upper(upper, range(i + 1, self.d))

    def _fill_upper(self, upper: int, lowers: range) -> None:
        """The scan fill_all and fill_chosen share: for each lower layer in turn, every item of
        `upper` whose own count is known moves its count of `lower` to `chosen`, until the first
        such item with a child whose count of `lower` is still unknown; that ends the scan of this
        upper layer (the released loops' `stuck` flag, which no later layer resets)."""
        inter, children, chosen = self.inter, self.children, self.chosen
        items = range(self.sizes[upper])
        for lower in lowers:
            for item in items:
                if (upper, item, upper + 1) in inter:
                    continue
                for x in children.get((upper, item), ()):
                    if (upper + 1, x, lower) in inter:
                        return
                key = (upper, item, lower)
                if key in inter:  # _move_to_chosen
                    inter.remove(key)
                    chosen.append((ABSTRACT, upper, item, lower))

    def _move_to_chosen(self, key) -> None:
        if key in self.inter:
            self.inter.remove(key)
            self.chosen.append((ABSTRACT,) + key)


def draft_with_order(rng: random.Random, d: int, w0: int, w1: int, e: int, p: float, n: int, m: int) -> Draft | None:
    """A structure whose necessary parameters sort into a solution order (the released
    `Problem.gen`: up to 1000 structures per size draw), or None."""
    for _ in range(_STRUCTURE_TRIES):
        draft = Draft(rng, d, w0, w1, e, p)
        draft.init()
        draft.choose_param(n, m)
        draft.setup_template()
        if draft.reasonable_sort():
            return draft
    return None


def _weighted_index(rng: random.Random, weights) -> int:
    """An index drawn with probability proportional to `weights`. (The hot loops write this out,
    or an exact shortcut of it, where the comments say so; this is the draw they reproduce.)"""
    point = rng.random() * sum(weights)
    for index, weight in enumerate(weights):
        point -= weight
        if point < 0:
            return index
    return len(weights) - 1
