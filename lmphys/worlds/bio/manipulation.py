"""Part 3.2 of Physics of Language Models ("Knowledge Manipulation"): question/answer data that asks a
model to *use* the bioS facts it stored rather than repeat them.

Kinds of question (FACTS.md, Part 3.2), all about the birth date, the attribute with internal structure:
    retrieval_year        partial retrieval: the birth year alone
    classify_month_2      classification: is the birth month even (Yes / No)
    classify_month_6/12   classification: the birth month (1..12) modulo 6 or 12, a number
    compare_birth         comparison: was person A born earlier than person B (Yes / No)
    inverse_birth         inverse search: who was born on a given date in a given city (a full name)

With chain of thought (`cot=True`) the answer first states the fact(s) the question depends on, then
", so the answer is " and the final answer, so a model can retrieve before it manipulates; the paper
finds CoT accuracy then follows retrieval accuracy, while without CoT classification and comparison
need far more training data and inverse search stays near 0%. Inverse search has no natural forward
chain of thought (the fact to state *is* the answer): its CoT form restates the given date and city
("The person was born on ... in ..., so the answer is <name>"), which keeps the format uniform across
kinds and lets experiments confirm that such a restatement does not help.

Texts use only words of the bioS vocabulary plus `PHRASES` (the templates' fixed words, from
templates.py), which `pieces.tokenizer()` adds to it.
"""
from __future__ import annotations

import dataclasses
import typing

import numpy as np

from lmphys.errors import ConfigError, DataError
from lmphys.worlds.bio.people import MONTHS, People, check_persons
from lmphys.worlds.bio.templates import (
    COT_BRIDGE,
    MANIPULATION_PHRASES as PHRASES,
    MANIPULATION_QUESTIONS,
    MANIPULATION_STATEMENTS,
    NO,
    YES,
)

__all__ = ["KINDS", "PHRASES", "ManipulationQA", "manipulation_pairs", "final_answer", "accuracy"]

KINDS = ("retrieval_year", "classify_month_2", "classify_month_6", "classify_month_12", "compare_birth", "inverse_birth")

_MONTH_MODULUS = {"classify_month_2": 2, "classify_month_6": 6, "classify_month_12": 12}


@dataclasses.dataclass(frozen=True)
class ManipulationQA:
    """One manipulation question. `answer` is the text the model must produce: without chain of
    thought it equals `final`; with it, it states the needed attribute(s) and ends with `final`."""

    question: str
    answer: str
    final: str
    kind: str
    persons: tuple[int, ...]  # indices into the People table the question is about (two for compare_birth)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ConfigError(f"manipulation kind must be one of {KINDS}, got {kind!r}")


def _date_keys(people: People) -> np.ndarray:
    """An integer per person that orders birth dates chronologically (equal only for equal dates)."""
    year = np.asarray(people.birth_year, np.int64)
    return (year * 13 + np.asarray(people.birth_month, np.int64)) * 32 + np.asarray(people.birth_day, np.int64)


def _unique_date_and_city(people: People) -> np.ndarray:
    """Boolean [n]: whether nobody else in `people` shares this person's (birth date, birth city),
    the condition for an inverse-search question to have one right answer."""
    city = np.asarray(people.birth_city, np.int64)
    keys = _date_keys(people) * (int(city.max(initial=0)) + 1) + city
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    return counts[inverse] == 1


def _cap(persons: np.ndarray, count: int | None, rng: np.random.Generator) -> np.ndarray:
    """At most `count` of `persons`, a seeded random subset kept in the given order."""
    if count is None or count >= len(persons):
        return persons
    return persons[np.sort(rng.choice(len(persons), count, replace=False))]


def _draw_pairs(people: People, persons: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """[count, 2] ordered pairs from `persons` whose birth dates differ (so the comparison has an answer)."""
    keys = _date_keys(people)
    if len(np.unique(keys[persons])) < 2:
        raise DataError("compare_birth needs persons with at least two distinct birth dates")
    pairs = rng.choice(persons, (count, 2))
    tied = keys[pairs[:, 0]] == keys[pairs[:, 1]]
    while tied.any():  # redraw only the ties; each redraw ties with probability < 1, so this ends fast
        pairs[tied] = rng.choice(persons, (int(tied.sum()), 2))
        tied = keys[pairs[:, 0]] == keys[pairs[:, 1]]
    return pairs


def _month_answer(kind: str, month: int) -> str:
    modulus = _MONTH_MODULUS[kind]
    if modulus == 2:
        return YES if month % 2 == 0 else NO
    return str(month % modulus)


def _single_person_qa(people: People, kind: str, person: int, cot: bool) -> ManipulationQA:
    name = people.full_name(person)
    date = people.value(person, "birth_date")
    month = int(people.birth_month[person])
    if kind == "retrieval_year":
        final = str(int(people.birth_year[person]))
        slots = {"name": name, "date": date}
    elif kind == "inverse_birth":
        final = name
        slots = {"date": date, "city": people.value(person, "birth_city")}
    else:
        final = _month_answer(kind, month)
        slots = {"name": name, "month": MONTHS[month - 1]}
    answer = MANIPULATION_STATEMENTS[kind].format(**slots) + COT_BRIDGE + final if cot else final
    return ManipulationQA(MANIPULATION_QUESTIONS[kind].format(**slots), answer, final, kind, (int(person),))


def _compare_qa(people: People, first: int, second: int, earlier: bool, cot: bool) -> ManipulationQA:
    final = YES if earlier else NO
    slots = {
        "first": people.full_name(first), "second": people.full_name(second),
        "first_date": people.value(first, "birth_date"), "second_date": people.value(second, "birth_date"),
    }
    answer = MANIPULATION_STATEMENTS["compare_birth"].format(**slots) + COT_BRIDGE + final if cot else final
    question = MANIPULATION_QUESTIONS["compare_birth"].format(**slots)
    return ManipulationQA(question, answer, final, "compare_birth", (int(first), int(second)))


def manipulation_pairs(
    people: People,
    kind: str,
    persons: np.ndarray,
    seed: int,
    cot: bool,
    count: int | None = None,
) -> list[ManipulationQA]:
    """Manipulation questions of one `kind` about `persons` (indices into `people`), deterministic in
    (people, kind, persons, seed, count).

    Single-person kinds ask one question per person, in the order of `persons`; `count` keeps a seeded
    random subset of that size. inverse_birth asks only about people whose (birth date, birth city) is
    unique within the whole `people` table. compare_birth draws `count` (default len(persons)) ordered
    pairs from `persons` with replacement, never two people with the same birth date.
    """
    _check_kind(kind)
    persons = check_persons(people, persons)
    if count is not None and count < 0:
        raise ConfigError(f"count must be >= 0 or None, got {count}")
    rng = np.random.default_rng(seed)
    if kind == "compare_birth":
        num_pairs = len(persons) if count is None else count
        if num_pairs == 0:
            return []
        pairs = _draw_pairs(people, persons, num_pairs, rng)
        keys = _date_keys(people)
        earlier = (keys[pairs[:, 0]] < keys[pairs[:, 1]]).tolist()
        return [_compare_qa(people, int(a), int(b), first_earlier, cot) for (a, b), first_earlier in zip(pairs, earlier)]
    if kind == "inverse_birth":
        persons = persons[_unique_date_and_city(people)[persons]]
    return [_single_person_qa(people, kind, int(p), cot) for p in _cap(persons, count, rng)]


def final_answer(kind: str, generated: str) -> str:
    """The final answer inside a generated answer: the text after the last ", so the answer is " of a
    chain of thought, or the whole (stripped) text when there is none; a trailing "." is ignored."""
    _check_kind(kind)
    text = generated.strip()
    _, bridge, after = text.rpartition(COT_BRIDGE)
    final = after if bridge else text
    return final.strip().removesuffix(".").strip()


class Grade(typing.NamedTuple):
    """One generated answer against its question: the whole answer exact, and the final answer right
    (what the paper scores; a chain of thought may go wrong on the way and still end right)."""
    exact: bool
    final: bool

    def describe(self) -> str:
        return "right" if self.exact else "final answer right" if self.final else "wrong"


def grade(qa: ManipulationQA, generated: str) -> Grade:
    """Grade one generated answer to `qa` (surrounding whitespace ignored)."""
    return Grade(exact=generated.strip() == qa.answer, final=final_answer(qa.kind, generated) == qa.final)


def accuracy(pairs: list[ManipulationQA], generated: list[str]) -> dict[str, float]:
    """The shares of `grade`'s two verdicts over the generated answers to `pairs`: the whole answer
    exact ("answer_exact") and the final answer right ("final_correct")."""
    if len(pairs) != len(generated):
        raise DataError(f"{len(pairs)} questions but {len(generated)} generated answers")
    if not pairs:
        return {"answer_exact": 0.0, "final_correct": 0.0}
    grades = [grade(qa, g) for qa, g in zip(pairs, generated)]
    return {"answer_exact": float(np.mean([g.exact for g in grades])),
            "final_correct": float(np.mean([g.final for g in grades]))}
