"""The world of one iGSM problem (Part 2.1): its structure graph, parameters, dependencies and
values mod 23, as the authors' released generator (facebookresearch/iGSM) defines them; how a
world is drawn is sizes.py, construct.py and design.py.

- Structure graph: d in {2, 3, 4} consecutive layers of one of four hierarchies (School > Classroom
  > Backpack > Stationery, ...), 2-4 items per layer, edges between items of adjacent layers.
- Parameters are 4-tuples. An *instance* parameter (0, i, j, k) is an edge: "each a's b", how
  many of item k of layer i + 1 one item j of layer i has. An *abstract* parameter (1, i, j, k),
  k > i, is "a's C": how many items of layer k one item j of layer i holds in all; it is never
  stated, a solver derives it from the structure (the sum over j's children x of (0, i, j, x), and
  for k > i + 1 of (0, i, j, x) * (1, i + 1, x, k)). RNG = (-1, 0, 0, 0) is the random-number
  node: an instance parameter that depends on it has a number in its sentence.
- Each stated instance parameter has a `Sentence`: "equals N" (a constant), or an optional
  modifier "N more than" / "N times as much as" over one reference ("equals each x's y", a copy),
  "the sum of" 2-4 references, or "the difference of" 2.
- op of a solution (the released `Graph.op_num`): each solution parameter counts
  max(1, its number of dependencies - 1), the random number included: a constant, a copy and
  "N more than x" are one operation; the solution writes exactly op equations.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os

MOD = 23
_DATA = os.path.join(os.path.dirname(__file__), "data", "categories.json")

INSTANCE, ABSTRACT = 0, 1
RNG = (-1, 0, 0, 0)
Param = tuple  # (kind, i, j, k), see the module docstring

MODIFIERS = ("", "add", "mul")  # none, "N more than", "N times as much as"
COMBINES = ("constant", "single", "sum", "diff")


@dataclasses.dataclass(frozen=True)
class Difficulty:
    """Sizes of a family of problems: the released IdGen(max_op, max_edge) (iGSM-med:
    IdGen(15, 20), iGSM-hard: IdGen(21, 28)), with the paper's out-of-distribution test ops."""

    name: str
    max_train_op: int  # max_op: training ops are min(t0, t1), t0, t1 uniform in 1..max_train_op
    max_edges: int  # max_edge: instance parameters (edges of the structure graph) at most
    ood_ops: tuple[int, ...]  # out-of-distribution test ops


DIFFICULTIES = {
    "med": Difficulty("med", 15, 20, (20, 21, 22, 23)),
    "hard": Difficulty("hard", 21, 28, (28, 29, 30, 31, 32)),
    # CPU-sized: the released process with a small op range; 12 is the fewest edges every
    # (depth, width) draw allows ((d - 1) * w0 <= 3 * 4).
    "small": Difficulty("small", 4, 12, (5, 6)),
}


@functools.lru_cache(maxsize=1)
def categories() -> tuple[tuple[tuple[str, ...], ...], dict[str, tuple[tuple[str, ...], ...]]]:
    """(hierarchies as layer-name tuples, {layer: sub-categories as item tuples}) from the shipped
    file (facebookresearch/iGSM, MIT; see data/README.md)."""
    with open(_DATA, encoding="utf-8") as handle:
        raw = json.load(handle)
    hierarchies = tuple(tuple(layers) for layers in raw["categorizations"])
    items = {layer: tuple(tuple(group) for group in raw["items"][layer].values()) for layers in hierarchies for layer in layers}
    return hierarchies, items


@dataclasses.dataclass(frozen=True)
class Sentence:
    """How the problem states an instance parameter (its references in sentence order)."""

    modifier: str  # "" , "add" ("N more than") or "mul" ("N times as much as"); "" for a constant
    number: int  # the constant, or the modifier's number
    combine: str  # constant, single, sum or diff
    refs: tuple[Param, ...]


@dataclasses.dataclass(frozen=True, eq=False)
class World:
    """A drawn problem world: structure, the problem's dependency template, sentences, values and
    the solution order (its necessary parameters, question last)."""

    hierarchy: int
    layers: tuple[str, ...]  # the d layer (category) names, top first
    items: tuple[tuple[str, ...], ...]  # per layer, its item names
    edges: frozenset  # (i, j, k): item j of layer i has item k of layer i + 1
    preds: dict  # param -> its dependencies in order (RNG included): the problem's template
    sentences: dict  # instance param -> Sentence, for every stated parameter
    values: dict  # param -> value mod 23, for every parameter (abstract ones included)
    solution: tuple  # necessary parameters in the released solution order, the question last
    sentence_order: tuple  # the stated (instance) parameters in the order the problem states them

    @property
    def question(self) -> Param:
        return self.solution[-1]

    @functools.cached_property
    def children(self) -> dict[tuple[int, int], tuple[int, ...]]:
        """(i, j) -> the items of layer i + 1 that item j of layer i has, in order."""
        out: dict[tuple[int, int], list[int]] = {}
        for i, j, k in sorted(self.edges):
            out.setdefault((i, j), []).append(k)
        return {key: tuple(value) for key, value in out.items()}

    @functools.cached_property
    def params(self) -> tuple[Param, ...]:
        """Every parameter of the world: the instance ones (edges), then the abstract ones."""
        instance = [(INSTANCE, i, j, k) for i, j, k in sorted(self.edges)]
        abstract = [(ABSTRACT, i, j, k) for i in range(len(self.layers) - 1) for j in range(len(self.items[i]))
                    for k in range(i + 1, len(self.layers))]
        return tuple(instance + abstract)

    def whole_preds(self, param: Param) -> tuple[Param, ...]:
        """A parameter's dependencies in the whole template (the released `whole_template`): the
        problem's template where it has the parameter, the structure otherwise (abstract ones)."""
        if param in self.preds:
            return self.preds[param]
        kind, i, j, k = param
        if kind != ABSTRACT:
            return ()
        children = self.children.get((i, j), ())
        out = [(INSTANCE, i, j, x) for x in children]
        if k > i + 1:
            out += [(ABSTRACT, i + 1, x, k) for x in children]
        return tuple(out)

    def ancestors(self, param: Param) -> frozenset:
        """The parameters `param` depends on, directly or not (RNG excluded)."""
        seen: set = set()
        stack = [param]
        while stack:
            for dep in self.whole_preds(stack.pop()):
                if dep != RNG and dep not in seen:
                    seen.add(dep)
                    stack.append(dep)
        return frozenset(seen)

    def closure(self, query: Param) -> frozenset:
        """The necessary parameters of a query: itself and everything it depends on."""
        return self.ancestors(query) | {query}

    def name(self, param: Param) -> tuple[str, str]:
        """(item, other): "item's other", other an item of the next layer or a layer name."""
        kind, i, j, k = param
        return self.items[i][j], (self.items[i + 1][k] if kind == INSTANCE else self.layers[k])

    def own_ops(self, param: Param) -> int:
        """Operations of a parameter's step: max(1, its dependencies - 1), RNG included."""
        return max(1, len(self.whole_preds(param)) - 1)

    def ops(self, steps) -> int:
        return sum(self.own_ops(param) for param in steps)


def abstract_value(children: dict, values: dict, param: Param) -> int:
    """An abstract parameter's value from the values of the parameters below it."""
    _, i, j, k = param
    total = 0
    # apply_operator written out: this runs for every abstract parameter of every world drawn.
    if k > i + 1:
        for x in children.get((i, j), ()):
            total = (total + values[(INSTANCE, i, j, x)] * values[(ABSTRACT, i + 1, x, k)] % MOD) % MOD
    else:
        for x in children.get((i, j), ()):
            total = (total + values[(INSTANCE, i, j, x)]) % MOD
    return total


def sentence_value(sentence: Sentence, values: dict) -> int:
    """An instance parameter's value from its sentence and the values of its references."""
    combine = sentence.combine
    if combine == "constant":
        return sentence.number % MOD
    refs = sentence.refs
    inner = values[refs[0]]
    # apply_operator written out (as in abstract_value)
    if combine == "diff":
        for ref in refs[1:]:
            inner = (inner - values[ref]) % MOD
    else:
        for ref in refs[1:]:
            inner = (inner + values[ref]) % MOD
    modifier = sentence.modifier
    if modifier:
        return (sentence.number + inner) % MOD if modifier == "add" else (sentence.number * inner) % MOD
    return inner


def apply_operator(operator: str, left: int, right: int) -> int:
    """left + - * right mod 23: the one arithmetic of the world's values, solutions and checker."""
    if operator == "+":
        return (left + right) % MOD
    if operator == "-":
        return (left - right) % MOD
    return (left * right) % MOD
