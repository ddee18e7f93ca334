"""Layered context-free grammars of Part 1 (Physics of LMs, "Hierarchical Language Structures").

A layered grammar has `num_levels` levels: the root level (one symbol), non-terminal levels, and the
terminal level. Every rule of a level-l symbol lists 1..len_max symbols of level l+1, so every leaf of
a derivation tree sits at the same depth. This module owns the immutable `Grammar`, reading and
writing the rule tables of the papers (JSON, see data/cfg/README.md) and drawing new random grammars.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from typing import Sequence

import jax
import numpy as np

from lmphys.errors import DataError

DATA_DIR = os.path.join(os.path.dirname(__file__), "data")
SHIPPED = ("cfg3b", "cfg3i", "cfg3h", "cfg3g", "cfg3f", "cfg3e1", "cfg3e2", "cfg3j", "cfg3k", "cfg_small", "cfg_mid")

# rules[level][symbol] is a tuple of rules; each rule is a tuple of positions into level+1's symbols.
Rules = tuple[tuple[tuple[tuple[int, ...], ...], ...], ...]


@dataclasses.dataclass(frozen=True)
class Grammar:
    """An immutable layered CFG; hashable, so it can be a static argument of `jax.jit`.

    Token ids: 0 pad, 1..num_terminals terminals (the table ids), eos_id and mask_id from the table,
    bos_id = mask_id + 1 (the slot the tables name `sep_token`, which no task here uses).
    """

    name: str
    rules: Rules  # non-terminal levels only: len(rules) == num_levels - 1
    num_terminals: int
    eos_id: int
    mask_id: int

    def __post_init__(self):
        _validate_rules(self.rules, self.num_terminals, self.name)
        if self.eos_id <= self.num_terminals or self.mask_id <= self.num_terminals or self.eos_id == self.mask_id:
            raise DataError(
                f"grammar {self.name!r}: eos_token ({self.eos_id}) and mask_token ({self.mask_id}) must be "
                f"distinct ids above the terminals 1..{self.num_terminals}."
            )

    @property
    def num_levels(self) -> int:
        """Levels including the root level and the terminal level."""
        return len(self.rules) + 1

    @property
    def sizes(self) -> tuple[int, ...]:
        """Number of symbols per level, root first, terminals last."""
        return tuple(len(level) for level in self.rules) + (self.num_terminals,)

    @property
    def bos_id(self) -> int:
        return max(self.eos_id, self.mask_id) + 1

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def vocab_size(self) -> int:
        """Covers pad 0, the terminals, eos, mask and bos."""
        return self.bos_id + 1

    @functools.cached_property
    def length_bounds(self) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
        """Per level: (min, max) derivable string length of each symbol, as int arrays."""
        bounds = [(np.ones(self.num_terminals, np.int64), np.ones(self.num_terminals, np.int64))]
        for level in reversed(self.rules):
            low, high = bounds[0]
            bounds.insert(0, (
                np.array([min(sum(int(low[c]) for c in rule) for rule in sym) for sym in level]),
                np.array([max(sum(int(high[c]) for c in rule) for rule in sym) for sym in level]),
            ))
        return tuple(bounds)

    @property
    def min_len(self) -> int:
        """Shortest string the root derives."""
        return int(self.length_bounds[0][0].min())

    @property
    def max_len(self) -> int:
        """Longest string the root derives (the sampler's output width)."""
        return int(self.length_bounds[0][1].max())

    @property
    def max_rules(self) -> int:
        return max(len(sym) for level in self.rules for sym in level)

    @property
    def max_rule_len(self) -> int:
        return max(len(rule) for level in self.rules for sym in level for rule in sym)


def _validate_rules(rules: Rules, num_terminals: int, name: str) -> None:
    if num_terminals < 1 or len(rules) < 1 or len(rules[0]) != 1:
        raise DataError(f"grammar {name!r}: needs one root symbol, at least one level and terminals.")
    sizes = [len(level) for level in rules] + [num_terminals]
    for depth, level in enumerate(rules):
        for k, sym in enumerate(level):
            if not sym:
                raise DataError(f"grammar {name!r}: symbol {k} of level {depth} has no rule.")
            for rule in sym:
                if not rule or any(not 0 <= c < sizes[depth + 1] for c in rule):
                    raise DataError(
                        f"grammar {name!r}: rule {list(rule)} of symbol {k}, level {depth} must list "
                        f"positions 0..{sizes[depth + 1] - 1} of level {depth + 1}."
                    )


def grammar_from_json(table: dict, name: str) -> Grammar:
    """A Grammar from a parsed rule table (the papers' format, see data/cfg/README.md)."""
    try:
        idx, levels = table["idx"], table["all"]
        if len(idx) != len(levels) or len(idx) < 2 or levels[-1] and any(s.get("children") for s in levels[-1]):
            raise DataError(f"grammar {name!r}: 'idx' and 'all' must list the same levels, terminals last.")
        terminals = [int(t) for t in idx[-1]]
        if terminals != list(range(1, len(terminals) + 1)):
            raise DataError(f"grammar {name!r}: terminal ids must be 1..k, got {terminals}.")
        rules = tuple(
            tuple(tuple(tuple(int(c) for c in rule) for rule in sym["children"]) for sym in level)
            for level in levels[:-1]
        )
        for depth, level in enumerate(levels[:-1]):
            if len(level) != len(idx[depth]):
                raise DataError(f"grammar {name!r}: level {depth} has {len(level)} symbols but idx lists {len(idx[depth])}.")
        eos = int(table.get("eos_token", len(terminals) + 1))
        mask = int(table.get("mask_token", eos + 1))
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, DataError):
            raise
        raise DataError(f"grammar {name!r}: malformed rule table ({type(err).__name__}: {err}).") from None
    return Grammar(name=name, rules=rules, num_terminals=len(terminals), eos_id=eos, mask_id=mask)


def load_grammar(name_or_path: str) -> Grammar:
    """A shipped grammar by name (cfg3b cfg3i cfg3h cfg3g cfg3f cfg3e1 cfg3e2 cfg3j cfg3k cfg_small cfg_mid)
    or a path to a .json rule table."""
    if name_or_path in SHIPPED:
        path, name = os.path.join(DATA_DIR, name_or_path + ".json"), name_or_path
    elif name_or_path.endswith(".json") and os.path.isfile(name_or_path):
        path, name = name_or_path, os.path.splitext(os.path.basename(name_or_path))[0]
    else:
        raise DataError(
            f"unknown grammar {name_or_path!r}: use one of {', '.join(SHIPPED)} or a path to an existing .json table."
        )
    try:
        with open(path) as f:
            table = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"grammar {name!r}: cannot read {path} ({err}).") from None
    return grammar_from_json(table, name)


def grammar_to_json(g: Grammar) -> dict:
    """The papers' table format; non-terminal ids count up from above eos/mask/bos, deepest level first."""
    sizes = g.sizes
    ids: list[list[int]] = [list(range(1, g.num_terminals + 1))]
    next_id = g.bos_id + 1
    for size in reversed(sizes[:-1]):
        ids.insert(0, list(range(next_id, next_id + size)))
        next_id += size
    levels = []
    for depth, size in enumerate(sizes):
        level = []
        for k in range(size):
            children = [list(rule) for rule in g.rules[depth][k]] if depth < len(g.rules) else None
            level.append({"depth": depth, "id": ids[depth][k], "name": f"L{depth}S{k}", "children": children})
        levels.append(level)
    rule_lens = [len(r) for level in g.rules for sym in level for r in sym]
    degrees = [len(sym) for level in g.rules for sym in level]
    # The generator's two flags, as properties of these rules (true of them however they were made).
    no_repeated_rule = all(len({r for sym in level for r in sym}) == sum(len(sym) for sym in level) for level in g.rules)
    no_repeated_symbol = all(len(set(r)) == len(r) for level in g.rules for sym in level for r in sym)
    return {
        "depth": g.num_levels - 1, "num_sym": max(sizes[1:]), "vocab_size": g.num_terminals,
        "deg_min": min(degrees), "deg_max": max(degrees), "len_min": min(rule_lens), "len_max": max(rule_lens),
        "disallow_duplicate_seq": no_repeated_rule, "disallow_duplicate_sym": no_repeated_symbol,
        "eos_token": g.eos_id, "mask_token": g.mask_id, "sep_token": g.bos_id, "sizes": list(sizes),
        "idx": ids, "all": levels, "count": next_id - 1,
    }


def save_grammar(g: Grammar, path: str) -> None:
    """Writes `g` as a JSON rule table that `load_grammar(path)` reads back."""
    with open(path, "w") as f:
        json.dump(grammar_to_json(g), f)


def random_grammar(
    key: jax.Array,
    sizes: Sequence[int] = (1, 3, 3, 3, 3, 3, 3),
    *,
    deg_min: int = 2,
    deg_max: int = 3,
    len_min: int = 2,
    len_max: int = 3,
    disallow_duplicate_seq: bool = True,
    disallow_duplicate_sym: bool = False,
    require_reachable: bool = True,
    name: str = "random",
    max_tries: int = 1000,
) -> Grammar:
    """A new layered grammar drawn as the authors' generator draws one.

    It follows `CFG_Config.build_graph` of the Lano-cfg generator in facebookresearch/PhysicsLM4
    (data-synthetic-pretrain/Lano-cfg/data_cfg.py), the code that made the nine shipped tables, draw
    for draw, with numpy's generator seeded from `key` in place of Python's `random`: level by level
    from the root, each symbol draws its degree uniformly in [deg_min, deg_max]; each of its rules
    draws a length uniformly in [len_min, len_max], then each child uniformly among the next level's
    symbols (sizes: symbols per level, root first, terminals last).
    - disallow_duplicate_sym: a child already in the rule is drawn again, so no rule repeats a symbol
      (the release's flag; cfg3b was made with it).
    - disallow_duplicate_seq: a rule equal to one already drawn anywhere on the same level (for any
      symbol) is drawn again, length included (the release's flag; all nine tables were made with
      it). Off, duplicate rules are allowed, even within one symbol, as in the release.
    - require_reachable: not in the release, which never checks reachability (cfg3e1 has symbols
      the root never reaches). On (the default), a grammar in which some symbol of some level is
      unreachable from the root is drawn again, up to max_tries times, else DataError; off
      reproduces the release.
    The defaults are cfg3h's knobs. Where the release would loop forever (a level that cannot hold
    deg_max distinct rules per symbol) this raises DataError.
    """
    sizes = tuple(int(s) for s in sizes)
    if len(sizes) < 2 or sizes[0] != 1 or min(sizes) < 1:
        raise DataError(f"random_grammar: sizes must start with 1 (the root) and list >= 2 levels, got {sizes}.")
    if not 1 <= deg_min <= deg_max or not 1 <= len_min <= len_max:
        raise DataError("random_grammar: need 1 <= deg_min <= deg_max and 1 <= len_min <= len_max.")
    for depth in range(len(sizes) - 1):
        width, wanted = sizes[depth + 1], sizes[depth] * deg_max if disallow_duplicate_seq else 1
        if _rule_count(width, len_min, len_max, disallow_duplicate_sym) < wanted:
            raise DataError(f"random_grammar: level {depth + 1} ({width} symbols) allows fewer than the {wanted} "
                            f"distinct rules level {depth} may need; widen it or allow longer or repeated rules.")
    seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    for _ in range(max_tries):
        rules = []
        for depth in range(len(sizes) - 1):
            width, level, drawn = sizes[depth + 1], [], set()
            for _ in range(sizes[depth]):
                sym = []
                for _ in range(int(rng.integers(deg_min, deg_max + 1))):
                    rule = _draw_rule(rng, width, len_min, len_max, disallow_duplicate_sym)
                    while disallow_duplicate_seq and rule in drawn:
                        rule = _draw_rule(rng, width, len_min, len_max, disallow_duplicate_sym)
                    drawn.add(rule)
                    sym.append(rule)
                level.append(tuple(sym))
            rules.append(tuple(level))
        if not require_reachable or all(_reachable(rules, depth) == set(range(sizes[depth + 1]))
                                        for depth in range(len(rules))):
            return Grammar(name=name, rules=tuple(rules), num_terminals=sizes[-1],
                           eos_id=sizes[-1] + 1, mask_id=sizes[-1] + 2)
    raise DataError(f"random_grammar: no grammar with every symbol reachable in {max_tries} tries; use wider levels.")


def _draw_rule(rng: np.random.Generator, width: int, len_min: int, len_max: int, distinct: bool) -> tuple[int, ...]:
    """One rule: a uniform length, then uniform children (a repeated child redrawn when `distinct`)."""
    rule: list[int] = []
    for _ in range(int(rng.integers(len_min, len_max + 1))):
        child = int(rng.integers(0, width))
        while distinct and child in rule:
            child = int(rng.integers(0, width))
        rule.append(child)
    return tuple(rule)


def _rule_count(width: int, len_min: int, len_max: int, distinct: bool) -> int:
    """How many different rules of len_min..len_max children over `width` symbols exist."""
    return sum(math.perm(width, n) if distinct else width ** n for n in range(len_min, len_max + 1))


def _reachable(rules: list, depth: int) -> set[int]:
    """Positions of level depth+1 used by rules of symbols of level `depth` that the root reaches."""
    live = {0}
    for d in range(depth + 1):
        live = {c for k in live for rule in rules[d][k] for c in rule}
    return live
