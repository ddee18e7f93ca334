"""Brevo's answer checker: is a list of vertex names all of the query's ancestors (and the query)
in a valid topological order?

The release's checker (`parse_tokens` / `parse_tokens_multi` in brevo.py) accepts any valid order:
the set of listed vertices must equal the ancestor closure including the query, and every listed
vertex must come after all its parents. It does not reject a vertex listed twice (the second copy
also has its parents before it), and its word splitter drops tokens left after the last finished
word. `Verdict.correct` follows the release; `Verdict.strict` also requires each vertex once and no
unfinished word. Any order the checker accepts is a right answer: the data shows one of many.
"""
from __future__ import annotations

import dataclasses

from lmphys.worlds.brevo.data import Instance


@dataclasses.dataclass(frozen=True)
class Verdict:
    correct: bool  # the release's rule
    strict: bool  # also: each vertex once, no unfinished word at the end
    reason: str


def check_names(instance: Instance, names: list[tuple[int, ...]], whole: bool = True) -> Verdict:
    """Judge the listed `names` (release numbering; `whole` False if an unfinished word was left at the end)."""
    by_name = {name: node for node, name in instance.names.items()}
    listed = []
    for name in names:
        if name not in by_name:
            if any(token < 0 for token in name):  # text.Tokenizer.names_in keeps a non-name token as -id
                return Verdict(False, False, "a special token stands where a vertex name should be")
            return Verdict(False, False, f"{'.'.join(map(str, name))} names no vertex of the graph")
        listed.append(by_name[name])
    wanted = set(instance.answer)
    if set(listed) != wanted:
        missing, extra = wanted - set(listed), set(listed) - wanted
        what = []
        if missing:
            what.append(f"misses {len(missing)} of the {len(wanted)} vertices (e.g. {_name(instance, min(missing))})")
        if extra:
            what.append(f"lists {len(extra)} that are not ancestors (e.g. {_name(instance, min(extra))})")
        return Verdict(False, False, " and ".join(what))
    placed: set[int] = set()
    for node in listed:
        early = [parent for parent in instance.parents.get(node, ()) if parent not in placed]
        if early:
            return Verdict(False, False, f"{_name(instance, node)} comes before its parent {_name(instance, early[0])}")
        placed.add(node)
    repeats = len(listed) - len(wanted)
    if repeats or not whole:
        why = [f"{repeats} vertices listed twice"] * bool(repeats) + ["an unfinished word at the end"] * (not whole)
        return Verdict(True, False, "right as released, but " + " and ".join(why))
    return Verdict(True, True, "right")


def _name(instance: Instance, node: int) -> str:
    return ".".join(map(str, instance.names[node]))
