"""Brevo instances (Part 4.1, "reasoning breadth"), drawn as the authors' released generator draws them.

Released definition (facebookresearch/PhysicsLM4, data-synthetic-pretrain/Brevo/brevo.py:
`TopoSortDepthStats` and `topsort_data`; facts and numbers only, the code here is lmphys's own):
- n ~ P(n) proportional to 1/(n + sqrt(N)) on 3..N for training, n = N for testing;
- the DAG: n distinct vertex ids from 1..N in a random order (the order it is built in); the first
  `leaves` ~ U{1..(n-1)//4 + 1} have no parents; every later vertex takes 1..min(4, #candidates)
  parents, uniformly, among the earlier vertices that still have fewer than 4 children;
- the query: as released, a vertex with parents among nodes[max(3n//4, n-1):], which is always the
  last vertex built (`query_from = "last"`); the paper says "a random vertex of the last quarter",
  which `query_from = "last_quarter"` draws (nodes[3n//4:], the `min` the release probably meant);
- the answer: the query's ancestors and the query itself, in a random topological order (Kahn's
  algorithm from the query upward, a uniformly chosen ready vertex each time, then reversed): the
  query comes last;
- depth: the fewest parent hops from the query to a vertex without parents (the paper's Fig 9
  buckets accuracy by it);
- Brevo2 ("multi"): each vertex of an edge is named by a distinct word of 2..4 tokens over V=4
  (the last token shifted by +4), assigned to the vertex ids in sorted order;
- the text: every edge of the whole DAG as "parent child", shuffled, then <query> q <ans> answer
  <eos>; the loss counts <ans>, the answer and <eos>.
The draws happen in the release's order on a `random.Random`, and the ancestor set is built and
iterated in the same insertion order (CPython set order decides which ready vertex index picks),
so the same generator state gives the release's instance (tests/test_brevo.py replays its prints).
"""
from __future__ import annotations

import collections
import dataclasses
import itertools
import math
import random

MIN_SIZE = 3
MAX_PARENTS = 4  # in-degree limit; the same 4 limits the out-degree
QUERY_FROM = ("last", "last_quarter")


def size_law(max_size: int) -> tuple[list[int], list[float]]:
    """(sizes 3..N, cumulative weights) of P(n) proportional to 1 / (n + sqrt(N)), in the
    release's floating-point expression (Depo draws n by the same law)."""
    sizes = list(range(MIN_SIZE, max_size + 1))
    bias = math.pow(max_size, 0.5)
    weights = [1.0 / (size + bias + 1e-12) for size in sizes]
    total = sum(weights)
    return sizes, list(itertools.accumulate(1.0 * weight / total for weight in weights))


def multi_token_words(rng: random.Random, count: int, vocab: int, min_len: int, max_len: int) -> list[tuple[int, ...]]:
    """`count` distinct words (length uniform in min_len..max_len, tokens uniform in 1..vocab, the
    last one + vocab), redrawn on repeats, in set order as released. The same words as Depo's:
    worlds do not import each other (tests/test_layout.py), so each keeps its copy."""
    words: set[tuple[int, ...]] = set()
    while len(words) < count:
        length = rng.randint(min_len, max_len)
        tokens = [rng.randint(1, vocab) for _ in range(length)]
        tokens[-1] += vocab
        words.add(tuple(tokens))
    return list(words)


@dataclasses.dataclass(frozen=True)
class Spec:
    """What sets a Brevo world: N and the vertex names (Brevo1: the id, one token; Brevo2: a word)."""

    max_size: int  # N
    multi: bool = False  # Brevo2
    vocab: int = 4  # V of Brevo2's words
    min_word_len: int = 2
    max_word_len: int = 4
    query_from: str = "last"

    @property
    def name_tokens(self) -> int:
        """Largest name token (release numbering): N ids, or 2V word tokens."""
        return 2 * self.vocab if self.multi else self.max_size


@dataclasses.dataclass(frozen=True)
class Instance:
    """One Brevo instance: `parents[v]` of every vertex with parents (construction order), the
    listed `edges` (parent, child), the `query`, the `answer` (ancestors and query, topological
    order), its `depth`, and `names[v]`, the tokens that name v (release numbering)."""

    parents: dict[int, tuple[int, ...]]
    edges: tuple[tuple[int, int], ...]
    query: int
    answer: tuple[int, ...]
    depth: int
    names: dict[int, tuple[int, ...]]

    @property
    def ancestors(self) -> int:
        """How many ancestors the query has (the answer lists them and the query)."""
        return len(self.answer) - 1


def _build_dag(rng: random.Random, size: int, max_size: int) -> tuple[list[int], dict[int, list[int]]]:
    nodes = rng.sample(range(1, max_size + 1), size)
    parents: dict[int, list[int]] = {}
    children = collections.Counter()
    sources = rng.randint(1, (size - 1) // 4 + 1)
    for index in range(sources, size):
        open_parents = [node for node in nodes[:index] if children[node] < MAX_PARENTS]
        if not open_parents:  # cannot happen (earlier vertices have room), kept as released
            continue
        chosen = rng.sample(open_parents, rng.randint(1, min(len(open_parents), MAX_PARENTS)))
        parents[nodes[index]] = chosen
        for parent in chosen:
            children[parent] += 1
    return nodes, parents


def _closure(parents: dict[int, list[int]], query: int) -> dict[int, list[int]]:
    """The query's ancestors and itself, {vertex: its parents}, keys in the release's order
    (vertices with parents first, then the sources, each group in set order of the DFS)."""
    seen: set[int] = set()
    stack = [query]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        stack += [parent for parent in parents.get(node, ()) if parent not in seen]
    inner = {node: list(parents[node]) for node in seen if parents.get(node)}
    inner.update({node: [] for node in seen if not parents.get(node)})
    return inner


def _random_topological_order(inner: dict[int, list[int]], rng: random.Random) -> list[int]:
    waiting = collections.Counter(parent for node in inner for parent in inner[node])  # children not yet placed
    ready = [node for node in inner if waiting[node] == 0]  # the query: nothing in the closure depends on it
    order = []
    while ready:
        node = ready.pop(rng.randint(0, len(ready) - 1))
        order.append(node)
        for parent in inner[node]:
            waiting[parent] -= 1
            if waiting[parent] == 0:
                ready.append(parent)
    return order[::-1]


def _depth(inner: dict[int, list[int]], query: int) -> int:
    hops = {query: 0}
    frontier = collections.deque([query])
    while frontier:
        node = frontier.popleft()
        for parent in inner[node]:
            if parent not in hops:
                hops[parent] = hops[node] + 1
                frontier.append(parent)
    return min(hops[node] for node in inner if not inner[node])


def draw(rng: random.Random, spec: Spec, test: bool = False, law: tuple[list[int], list[float]] | None = None) -> Instance:
    """One instance, with the release's draws in the release's order."""
    if test:
        size = spec.max_size
    else:
        sizes, cumulative = law or size_law(spec.max_size)
        size = rng.choices(sizes, cum_weights=cumulative)[0]
    nodes, parents = _build_dag(rng, size, spec.max_size)
    first = max(size * 3 // 4, size - 1) if spec.query_from == "last" else size * 3 // 4
    query = rng.choice([node for node in nodes[first:] if parents.get(node)])
    inner = _closure(parents, query)
    answer = _random_topological_order(inner, rng)
    depth = _depth(inner, query)
    if spec.multi:
        named = sorted(set(parents) | {parent for chosen in parents.values() for parent in chosen})
        words = multi_token_words(rng, len(named), spec.vocab, spec.min_word_len, spec.max_word_len)
        names = dict(zip(named, words))
    else:
        names = {node: (node,) for node in nodes}
    edges = [(parent, child) for child, chosen in parents.items() for parent in chosen]
    rng.shuffle(edges)
    return Instance({child: tuple(chosen) for child, chosen in parents.items()}, tuple(edges), query,
                    tuple(answer), depth, names)
