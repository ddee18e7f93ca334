"""Depo instances (Part 4.1, "reasoning depth"), drawn as the authors' released generator draws them.

Released definition (facebookresearch/PhysicsLM4, data-synthetic-pretrain/Depo/depo.py, function
`depo_data`; facts and numbers only, the code here is lmphys's own):
- n distinct multi-token words form one directed cycle w_0 -> w_1 -> ... -> w_{n-1} -> w_0; the n
  edges "x y" are listed in a random order, key word directly followed by value word (the word
  boundary is its last token, which lies in V+1..2V; the other tokens lie in 1..V);
- then min(n, M) queries on distinct start words ask for the k-th successor: "<query_k> q <ans> a".
- Training: n ~ P(n) proportional to 1/(n + sqrt(N)) on 3..N and k uniform on 1..K (k may exceed n:
  the answer wraps around the cycle). Test: n = N and k drawn from the powers of two up to K
  (with K appended if it is not one, and the release's extra 24 when K = 32).
- Loss labels: 1 on <ans> and on every answer token, 0 elsewhere.
The random draws happen in the release's order on a `random.Random`, so with the same generator
state the same instance comes out (tests/test_depo.py replays the release's own printed samples).
Word sets come out in CPython's set iteration order, as in the release, before they are shuffled.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import random

MIN_SIZE = 3  # the smallest n the training law draws


def size_law(max_size: int) -> tuple[list[int], list[float]]:
    """(sizes 3..N, cumulative weights) of P(n) proportional to 1 / (n + sqrt(N)), with the
    release's floating-point expression (so `random.choices` picks the release's n)."""
    sizes = list(range(MIN_SIZE, max_size + 1))
    bias = math.pow(max_size, 0.5)
    weights = [1.0 / (size + bias + 1e-12) for size in sizes]
    total = sum(weights)
    return sizes, list(itertools.accumulate(1.0 * weight / total for weight in weights))


def multi_token_words(rng: random.Random, count: int, vocab: int, min_len: int, max_len: int) -> list[tuple[int, ...]]:
    """`count` distinct words: a length uniform in min_len..max_len, then that many tokens uniform
    in 1..vocab, the last one shifted by +vocab (the end-of-word mark). A repeated word is drawn
    again, so short lengths are rarer than uniform when few short words exist."""
    words: set[tuple[int, ...]] = set()
    while len(words) < count:
        length = rng.randint(min_len, max_len)
        tokens = [rng.randint(1, vocab) for _ in range(length)]
        tokens[-1] += vocab
        words.add(tuple(tokens))
    return list(words)  # set order, as released


def eval_hops(max_hops: int) -> list[int]:
    """The k a test query draws from (uniformly, repeats included): the powers of two up to K,
    then 24 if K = 32, then K itself unless the list already ends with it (K = 32 thus lists 32
    twice: a quirk of the release, kept)."""
    hops = [2 ** i for i in range(max_hops.bit_length()) if 2 ** i <= max_hops]
    if max_hops == 32:
        hops.append(24)
    if hops[-1] != max_hops:
        hops.append(max_hops)
    return hops


@dataclasses.dataclass(frozen=True)
class Spec:
    """What sets a Depo world: N, K, M and the word shape (Depo1: V=50, 1-2 tokens; Depo2 as
    released: V=3, 5-7 tokens; the paper's text says V=4 for Depo2)."""

    max_size: int  # N
    max_hops: int  # K
    queries: int = 10  # M
    vocab: int = 3  # V ("mini_vocab")
    min_word_len: int = 5
    max_word_len: int = 7
    separator: bool = False  # a separator token before each edge (off in the paper's runs)


@dataclasses.dataclass(frozen=True)
class Query:
    start: int  # index into Instance.cycle of the query word
    hops: int  # k

    def answer(self, size: int) -> int:
        """Index of the k-th successor (k counted around the cycle)."""
        return (self.start + self.hops) % size


@dataclasses.dataclass(frozen=True)
class Instance:
    """One Depo instance in word form: `cycle[j]` -> `cycle[(j + 1) % n]`, the edges listed in
    `edge_order` (indices of their key word), then the queries in order."""

    cycle: tuple[tuple[int, ...], ...]
    edge_order: tuple[int, ...]
    queries: tuple[Query, ...]

    @property
    def size(self) -> int:
        return len(self.cycle)

    def successor(self, word: tuple[int, ...], hops: int) -> tuple[int, ...]:
        return self.cycle[(self.cycle.index(word) + hops) % self.size]


def draw(rng: random.Random, spec: Spec, test: bool = False, law: tuple[list[int], list[float]] | None = None) -> Instance:
    """One instance, with the release's draws in the release's order (pass `law` = size_law(N)
    to skip recomputing it)."""
    if test:
        size = spec.max_size
    else:
        sizes, cumulative = law or size_law(spec.max_size)
        size = rng.choices(sizes, cum_weights=cumulative)[0]
    cycle = multi_token_words(rng, size, spec.vocab, spec.min_word_len, spec.max_word_len)
    rng.shuffle(cycle)
    edge_order = rng.sample(range(size), size)
    hops = eval_hops(spec.max_hops) if test else None
    queries = []
    for start in rng.sample(range(size), min(size, spec.queries)):
        k = rng.choice(hops) if test else rng.randint(1, spec.max_hops)
        queries.append(Query(start, k))
    return Instance(tuple(cycle), tuple(edge_order), tuple(queries))


def longest_test_instance(spec: Spec) -> int:
    """An upper bound on the tokens of a test instance (n = N, every word longest)."""
    edge = 2 * spec.max_word_len + int(spec.separator)
    return 1 + spec.max_size * edge + min(spec.max_size, spec.queries) * (2 + 2 * spec.max_word_len)
