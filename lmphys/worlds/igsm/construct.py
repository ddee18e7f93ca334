"""How an iGSM world is drawn: the released generator's process (facebookresearch/iGSM,
`IdGen_PT.gen_param_light`, `Graph` and `Problem` of math_gen/), step by step, written for lmphys.
Every step keeps the released semantics, including their quirks, so problems follow the released
distributions (tests/test_igsm_stats.py compares them); randomness is one `random.Random`.
Step 1 is sizes.py, steps 2-4 are here (`Draft`, `draft_with_order`), steps 5-6 are design.py.

1. Sizes (`sizes.draw_sizes`): op budget s, n <= m <= s, depth d, widths w0 <= w1, extra-item
   chance p and edge count e.
2. Structure (`Draft.init`): layer sizes grown from w0 towards w1 until e edges fit; each lower
   item gets one random parent, then random extra edges up to e. Names (`draw_names`): a
   hierarchy, a window of d of its layers, one sub-category per layer, items sampled from it.
3. Necessary parameters (`choose_param`): abstract parameters (each with the edges and deeper
   abstract ones below it) while their op cost fits n, then m - n random edges.
4. Solution order (`reasonable_sort`): picked backwards from a random sink, the question, through
   a stack of the picks' dependencies; an instance pick may get one extra dependency.
5. Dependencies and op (`design.op_budget`, `design.design`).
6. Distractors (`design.fill_all`, `design.design_unused`).

Speed: the draws are the release's, in its order, and must stay so (tests/test_golden.py). The hot
loops write small helpers out (a uniform index as int(random() * count), `choice`, the weighted
draw, `add_edge`) and keep derived records beside the released ones (candidates per span, free
edges per item, stated abstract parameters), each where a comment says what it reproduces; a
change here is checked by hashing many problems before and after.
"""
from __future__ import annotations

import bisect
import functools
import math
import random

from lmphys.worlds.igsm.graph import ABSTRACT, INSTANCE, categories

_EXP = (1.0, math.e, math.e ** 2)  # softmax weights of scores 0, 1, 2 (times the sort's bias)
_STRUCTURE_TRIES = 1000  # the released try_num: structures per size draw before drawing new sizes
MAX_REFS = 4  # the released max_param: dependencies of one sentence at most


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


def choice(rng: random.Random, options):
    """A uniform element: random() scaled to an index (uniform to within 2^-45 and several times
    faster than randrange; these draws are the generator's hot loop, and the hottest write the
    index out as int(random() * count))."""
    return options[int(rng.random() * len(options))]


def sample(rng: random.Random, population, count: int) -> list:
    """`count` distinct elements in random order (a partial Fisher-Yates shuffle)."""
    return sample_from(rng, list(population), count)


def sample_from(rng: random.Random, pool: list, count: int) -> list:
    """`sample` of a list it may reorder (no copy)."""
    size = len(pool)
    for index in range(count):
        other = index + int(rng.random() * (size - index))
        pool[index], pool[other] = pool[other], pool[index]
    return pool[:count]


class Draft:
    """A world being drawn: steps 2-4 of the module docstring here, steps 5-6 by design.py's
    functions. The released names are kept (remain, inter, chosen: edges not yet used, abstract
    parameters not yet used, parameters in use) so each step can be read beside its original."""

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
            extra = sample_from(rng, others, e - len(remain))
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
        self.sizes[choice(self.rng, open_layers)] += 1
        return False

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
                key = options[int(random() * len(options))]  # choice
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
        picked = sample(self.rng, self.remain, count)
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

    def add_node(self, param) -> None:
        if param not in self.preds:
            self.preds[param] = []
            self.nodes.append(param)

    def add_edge(self, source, target) -> None:
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
            picked = pool[int(random() * len(pool))]  # choice
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
                    point, index = random() * sum(weights), len(weights) - 1  # the released weighted draw
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
