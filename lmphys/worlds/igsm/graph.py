"""The world of one iGSM problem (Part 2.1, written for lmphys from the paper's definitions): the
structure graph, its instance and abstract parameters, the dependency DAG, values mod 23, and the
number of operations of the shortest solution.

- Structure graph: d in {2, 3, 4} consecutive layers of one of four hierarchies (School > Classroom
  > Backpack > Stationery, ...), a few items per layer (drawn from one sub-category each), and
  edges between items of adjacent layers. Each edge (a, b) is an *instance parameter*, "each a's
  b": how many b each a has.
- Abstract parameters: for an item a and a category C of a lower layer, "a's C" counts every item
  of layer C in one a: the sum over a's children b of (a, b) if C is the next layer, otherwise the
  sum of (a, b) * (b's C). They are never stated; a solver derives them from the structure.
- Dependency DAG: each instance parameter is a random constant, or an expression of up to 4 other
  parameters (instance or abstract) chosen among those defined before it in a random order, so the
  graph is acyclic by construction. An abstract parameter depends on the edges below its item.
- op: the number of arithmetic operations (+, -, *) in the shortest solution of a query, i.e. the
  sum of each necessary parameter's own operations. Everything is mod 23.

A problem asks for one parameter whose op equals the target; every instance parameter of the
world is stated in the problem, so most are distractors.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import random
import zlib

MOD = 23
_DATA = os.path.join(os.path.dirname(__file__), "data", "categories.json")

# Instance-parameter expressions: how the dependencies combine, then an optional modifier by a
# constant. "one" = a single dependency (needs a modifier); "sum" takes 2-4, "diff"/"prod" 2.
COMBINES = ("one", "sum", "diff", "prod")
COMBINE_OPERATORS = {"sum": "+", "diff": "-", "prod": "*"}
MODIFIERS = ("+", "-", "*")  # "c more than", "c less than", "c times as much as"


@dataclasses.dataclass(frozen=True)
class Difficulty:
    """Sizes of a family of problems (iGSM-med / iGSM-hard, and a CPU-sized one)."""

    name: str
    max_instance_params: int  # ip_max: edges of the structure graph
    max_train_op: int  # training ops are drawn as min(t0, t1), t0, t1 uniform in 1..max_train_op
    ood_ops: tuple[int, ...]  # out-of-distribution test ops
    max_items_per_layer: int


DIFFICULTIES = {
    "med": Difficulty("med", 20, 15, (20, 21, 22, 23), 4),
    "hard": Difficulty("hard", 28, 21, (28, 29, 30, 31, 32), 5),
    # CPU-sized: short problems a 4-layer model learns in minutes; OOD ops just past training.
    "small": Difficulty("small", 7, 4, (5, 6), 2),
}


@functools.lru_cache(maxsize=1)
def categories() -> tuple[tuple[tuple[str, ...], ...], dict[str, tuple[tuple[str, ...], ...]]]:
    """(hierarchies as layer-name tuples, {layer: sub-categories as item tuples}) from the shipped
    file (facebookresearch/iGSM, MIT; see data/igsm/README.md)."""
    with open(_DATA, encoding="utf-8") as handle:
        raw = json.load(handle)
    hierarchies = tuple(tuple(layers) for layers in raw["categorizations"])
    items = {layer: tuple(tuple(group) for group in raw["items"][layer].values()) for layers in hierarchies for layer in layers}
    return hierarchies, items


@dataclasses.dataclass(frozen=True)
class Param:
    """One parameter. Instance: `item` has `other` (an item of the next layer) per unit.
    Abstract: `item` has `other` (a lower layer's category name) in total."""

    kind: str  # "instance" or "abstract"
    item: str
    other: str
    deps: tuple[int, ...]  # parameter ids in the order the expression uses them
    combine: str = ""  # instance: "" (a constant) or one of COMBINES; abstract: "sum" or "sumprod"
    modifier: str = ""  # "" or one of MODIFIERS
    constant: int = 0  # the value of a constant parameter, or the modifier's constant

    @property
    def name(self) -> str:
        return f"{self.item}'s {self.other}"

    @property
    def own_ops(self) -> int:
        """Operations of this parameter's own step in a solution."""
        k = len(self.deps)
        if self.kind == "abstract":
            return k - 1  # sum of k values, or of k/2 products: k/2 - 1 adds + k/2 multiplies
        if not self.deps:
            return 0
        return (k - 1) + (1 if self.modifier else 0)


@dataclasses.dataclass(frozen=True)
class World:
    """A problem's parameters (instance ones first), their values, and the order they were made in
    (a topological order: every parameter comes after its dependencies)."""

    hierarchy: int
    layers: tuple[str, ...]
    items: tuple[tuple[str, ...], ...]  # per layer, the items used
    params: tuple[Param, ...]
    values: tuple[int, ...]
    order: tuple[int, ...]
    num_instance: int

    def closure(self, query: int) -> frozenset[int]:
        """The necessary parameters of a query: itself and everything it depends on."""
        seen = {query}
        stack = [query]
        while stack:
            for dep in self.params[stack.pop()].deps:
                if dep not in seen:
                    seen.add(dep)
                    stack.append(dep)
        return frozenset(seen)

    def ops(self, query: int) -> int:
        return sum(self.params[index].own_ops for index in self.closure(query))

    @functools.cached_property
    def by_name(self) -> dict[str, int]:
        return {param.name: index for index, param in enumerate(self.params)}


def evaluate(param: Param, values: list[int]) -> int:
    """A parameter's value mod 23 from the values of its dependencies."""
    deps = [values[dep] for dep in param.deps]
    if param.kind == "abstract":
        if param.combine == "sum":
            return combine("sum", deps)
        return evaluate_expression(deps, ["*" if position % 2 == 0 else "+" for position in range(len(deps) - 1)])
    if not deps:
        return param.constant
    inner = deps[0] if param.combine == "one" else combine(param.combine, deps)
    return apply_modifier(param.modifier, param.constant, inner)


def combine(kind: str, values: list[int]) -> int:
    """sum, diff (first minus second) or prod of `values`, mod 23."""
    return evaluate_expression(values, [COMBINE_OPERATORS[kind]] * (len(values) - 1))


def apply_modifier(modifier: str, constant: int, value: int) -> int:
    """"constant more than" (+), "less than" (-), "times as much as" (*) `value`, or none, mod 23."""
    if not modifier:
        return value % MOD
    return evaluate_expression([constant, value] if modifier == "*" else [value, constant], [modifier])


def evaluate_expression(numbers: list[int], operators: list[str]) -> int:
    """numbers[0] op[0] numbers[1] op[1] ... with + - * at their usual precedence, mod 23: the one
    evaluator of every value, step and checked equation of the world."""
    total, term, sign = 0, numbers[0], 1
    for operator, number in zip(operators, numbers[1:]):
        if operator == "*":
            term *= number
        else:
            total += sign * term
            term, sign = number, (1 if operator == "+" else -1)
    return (total + sign * term) % MOD


def _structure(rng: random.Random, difficulty: Difficulty):
    """Layers, items and edges (parent index, child index per adjacent layer pair) of at most
    `max_instance_params` edges; every item above the last layer has a child and every item below
    the first has a parent, so every abstract parameter has something to count."""
    hierarchies, pools = categories()
    while True:
        hierarchy = rng.randrange(len(hierarchies))
        depth = rng.choice((2, 3, 4))
        first = rng.randrange(0, 4 - depth + 1)
        layers = hierarchies[hierarchy][first:first + depth]
        used: set[str] = set()
        items = []
        for layer in layers:
            group = [name for name in rng.choice(pools[layer]) if name not in used]
            count = rng.randint(2 if depth == 2 else 1, min(difficulty.max_items_per_layer, len(group)))
            chosen = rng.sample(group, count)
            used.update(chosen)
            items.append(tuple(chosen))
        edges = []
        for upper, lower in zip(items, items[1:]):
            pairs = {(rng.randrange(len(upper)), child) for child in range(len(lower))}
            for parent in range(len(upper)):
                if not any(p == parent for p, _ in pairs):
                    pairs.add((parent, rng.randrange(len(lower))))
            extra = [(p, c) for p in range(len(upper)) for c in range(len(lower)) if (p, c) not in pairs]
            pairs.update(rng.sample(extra, rng.randint(0, len(extra))))
            edges.append(sorted(pairs))
        if 2 <= sum(len(e) for e in edges) <= difficulty.max_instance_params:
            return hierarchy, layers, tuple(items), edges


def _instance_expression(rng: random.Random, available: list[int]) -> tuple[tuple[int, ...], str, str, int]:
    """(deps, combine, modifier, constant) of a new instance parameter over the available ones."""
    if not available or rng.random() < 0.25:
        return (), "", "", rng.randrange(MOD)
    count = min(len(available), rng.choice((1, 1, 2, 2, 2, 3, 4)))
    # Lean towards recently defined parameters: it makes long dependency chains, hence large ops.
    pool = available[-8:] if rng.random() < 0.6 else available
    deps = tuple(rng.sample(pool, min(count, len(pool))))
    if len(deps) == 1:
        combine = "one"
    elif len(deps) == 2:
        combine = rng.choice(("sum", "diff", "prod"))
    else:
        combine = "sum"
    modifier = rng.choice(MODIFIERS) if combine == "one" or rng.random() < 0.3 else ""
    constant = rng.randrange(2, MOD) if modifier == "*" else rng.randrange(1, MOD)
    return deps, combine, modifier, constant


def build_world(rng: random.Random, difficulty: Difficulty) -> World:
    """A random world: structure, then instance parameters defined in a random order, each over the
    parameters already defined; an abstract parameter becomes usable once the edges below its item
    are all defined."""
    hierarchy, layers, items, edges = _structure(rng, difficulty)
    instance: list[tuple[int, int, int]] = [(level, p, c) for level, pairs in enumerate(edges) for p, c in pairs]
    instance_id = {key: index for index, key in enumerate(instance)}
    # Abstract parameters (level of item, item, target level), deepest first so children exist.
    abstract_keys = [(level, item, target) for level in range(len(items) - 2, -1, -1)
                     for item in range(len(items[level])) for target in range(level + 1, len(items))]
    num_instance = len(instance)
    abstract_id = {key: num_instance + index for index, key in enumerate(abstract_keys)}
    abstract_deps: dict[int, tuple[int, ...]] = {}
    needs: dict[int, frozenset[int]] = {}  # abstract id -> instance ids it needs (transitively)
    for level, item, target in abstract_keys:
        children = [c for p, c in edges[level] if p == item]
        deps: list[int] = []
        required: set[int] = set()
        for child in children:
            edge = instance_id[(level, item, child)]
            required.add(edge)
            deps.append(edge)
            if target > level + 1:
                below = abstract_id[(level + 1, child, target)]
                deps.append(below)
                required |= needs[below]
        abstract_deps[abstract_id[(level, item, target)]] = tuple(deps)
        needs[abstract_id[(level, item, target)]] = frozenset(required)

    order: list[int] = []
    available: list[int] = []
    pending = dict(needs)
    defined: set[int] = set()
    expressions: dict[int, tuple] = {}
    for index in rng.sample(range(num_instance), num_instance):
        expressions[index] = _instance_expression(rng, available)
        order.append(index)
        available.append(index)
        defined.add(index)
        for key in [a for a, required in pending.items() if required <= defined]:
            del pending[key]
            available.append(key)
    # Abstract parameters join the order once their edges are defined; place them right after.
    order = _with_abstract(order, needs)

    params: list[Param] = [None] * (num_instance + len(abstract_keys))  # type: ignore[list-item]
    for (level, p, c), index in instance_id.items():
        deps, combine, modifier, constant = expressions[index]
        params[index] = Param("instance", items[level][p], items[level + 1][c], deps, combine, modifier, constant)
    for (level, item, target), index in abstract_id.items():
        combine = "sum" if target == level + 1 else "sumprod"
        params[index] = Param("abstract", items[level][item], layers[target], abstract_deps[index], combine)
    values = [0] * len(params)
    for index in order:
        values[index] = evaluate(params[index], values)
    return World(hierarchy, tuple(layers), items, tuple(params), tuple(values), tuple(order), num_instance)


def _with_abstract(instance_order: list[int], needs: dict[int, frozenset[int]]) -> list[int]:
    """The instance order with each abstract parameter inserted right after its last needed edge
    (deeper abstract parameters, which need fewer edges, come first at a tie)."""
    position = {index: rank for rank, index in enumerate(instance_order)}
    after: dict[int, list[int]] = {}
    for abstract, required in sorted(needs.items(), key=lambda item: len(item[1])):
        after.setdefault(max(position[e] for e in required), []).append(abstract)
    order = []
    for rank, index in enumerate(instance_order):
        order.append(index)
        order.extend(after.get(rank, ()))
    return order


def ops_of_every_param(world: World) -> list[int]:
    """op of each parameter as the query, from closure bitmasks built in topological order."""
    masks = [0] * len(world.params)
    for index in world.order:
        mask = 1 << index
        for dep in world.params[index].deps:
            mask |= masks[dep]
        masks[index] = mask
    by_cost: dict[int, int] = {}
    for index, param in enumerate(world.params):
        if param.own_ops:
            by_cost[param.own_ops] = by_cost.get(param.own_ops, 0) | (1 << index)
    return [sum(cost * (mask & members).bit_count() for cost, members in by_cost.items()) for mask in masks]


def solution_order(world: World, query: int, rng: random.Random) -> list[int]:
    """A random topological order of the query's necessary parameters, ending with the query."""
    needed = world.closure(query)
    remaining = {index: {d for d in world.params[index].deps} for index in needed}
    done: list[int] = []
    while remaining:
        ready = [index for index, deps in remaining.items() if not deps and index != query]
        if not ready:
            ready = [query]
        chosen = rng.choice(sorted(ready))
        done.append(chosen)
        del remaining[chosen]
        for deps in remaining.values():
            deps.discard(chosen)
    return done


def template_hash(world: World, steps: list[int]) -> int:
    """The solution's template, in 0..22: its step kinds, expression shapes and which earlier steps
    each uses, without names, letters or numbers (the train/test split is by this hash)."""
    position = {index: rank for rank, index in enumerate(steps)}
    shape = [(p.kind, p.combine, p.modifier, tuple(position[d] for d in p.deps))
             for p in (world.params[index] for index in steps)]
    return zlib.crc32(repr(shape).encode()) % MOD
