"""The pieces bioS texts are glued from, and the closed word-level tokenizer they go through.

    tok = tokenizer()                      every word any Part 3 text writes, encode / decode exact
    compiled = compile_pieces(templates)   every template fragment and value, tokenized once
    gather(piece ids, ...)                 pieces concatenated row by row with numpy, never word by word

text.py assembles biographies (forward and reversed) and QA pairs from these; manipulation texts
are encoded with the same tokenizer.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import numpy as np

from lmphys.errors import DataError
from lmphys.worlds.bio.people import (
    DAYS_PER_MONTH,
    DAYS_PER_YEAR,
    FIRST_YEAR,
    MONTHS,
    NUM_DATES,
    NUM_YEARS,
    People,
    date_text,
    pools,
)
from lmphys.worlds.bio.templates import (
    ATTACHED,
    DEFAULT_TEMPLATES,
    MANIPULATION_PHRASES,
    QUESTION_TEMPLATES,
    SPECIAL_TOKENS,
    SUBJECT,
    TEMPLATE_SETS,
    VALUE,
    Tokenizer,
    biography_templates,
    vocabulary_words,
)


# Tokenizer (the word rule and the Tokenizer class live in templates.py)

# Piece pronoun_base + 4 * (possessive: the template has "{subject}'s") + 2 * (inside the sentence) + gender.
_PRONOUNS = ("He", "She", "he", "she", "His", "Her", "his", "her")


def gender_words() -> tuple[np.ndarray, np.ndarray]:
    """(token ids, gender 0/1 of each): every word a biography writes for its person's gender in
    place of the name (the first one is Documents.pronoun_positions)."""
    tok = tokenizer()
    return (np.array([tok.id(word) for word in _PRONOUNS], np.int32),
            np.arange(len(_PRONOUNS), dtype=np.int32) % 2)


@functools.cache
def tokenizer() -> Tokenizer:
    """Built from the pools, every template set (so the vocabulary does not depend on the set a run
    uses), the QA questions, numbers 0..2099, month names and the manipulation questions' phrases;
    sorted, so the vocabulary is the same however it is built."""
    p = pools()
    texts = [*p.first_names, *p.middle_names, *p.last_names, *p.cities, *p.universities, *p.majors,
             *p.employers, *p.employer_cities, *MONTHS, *QUESTION_TEMPLATES,
             *(template for name in TEMPLATE_SETS for templates in biography_templates(name) for template in templates),
             *_PRONOUNS, *ATTACHED, *(str(number) for number in range(FIRST_YEAR + NUM_YEARS)),
             *MANIPULATION_PHRASES]
    words = {word for text in texts for word in vocabulary_words(text)} - set(SPECIAL_TOKENS)
    return Tokenizer(SPECIAL_TOKENS + tuple(sorted(words)))


# ---------------------------------------------------------------------------------------------
# Pieces: every token sequence a biography or question is glued from, tokenized once.


class _PieceTable:
    """Token sequences stored back to back; piece k is tokens[start[k]:start[k] + length[k]]."""

    def __init__(self):
        self._pieces: list[list[int]] = []

    def add(self, token_ids: Sequence[int]) -> int:
        self._pieces.append(list(token_ids))
        return len(self._pieces) - 1

    def add_text(self, text: str) -> int:
        return self.add(tokenizer().encode(text) if text else [])

    def freeze(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lengths = np.array([len(piece) for piece in self._pieces], np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        tokens = np.array([token for piece in self._pieces for token in piece], np.int32)
        return tokens, starts, lengths


@dataclasses.dataclass(frozen=True)
class Compiled:
    """The pieces of all templates and values (everything but the people's names)."""

    tokens: np.ndarray  # int32, all pieces back to back
    starts: np.ndarray  # int64 [num_pieces]
    lengths: np.ndarray  # int64 [num_pieces]
    ends_with_period: np.ndarray  # bool [num_pieces]
    template_base: np.ndarray  # int64 [6]: global index of each attribute's first template
    num_templates: np.ndarray  # int64 [6]
    template_pieces: np.ndarray  # int64 [G, 5]: pre, subject, mid, value, post (slots hold -1)
    subject_capital: np.ndarray  # bool [G]: the subject opens the sentence
    subject_possessive: np.ndarray  # bool [G]: "{subject}'s" (a pronoun then becomes His/Her)
    mid_without_possessive: np.ndarray  # int64 [G]: the fragment after the subject minus its leading "'s"
    post_without_period: np.ndarray  # int64 [G]: the fragment after the value minus its leading "."
    reversed_fragments: np.ndarray  # int64 [G, 4]: pre, mid, mid minus "'s", post minus its final "." word-reversed
    period: int  # the piece "." that ends every reversed sentence
    pronoun_base: int
    value_base: np.ndarray  # int64 [6]: piece of class 0 of each attribute (employer_city: per employer)
    question_pieces: np.ndarray  # int64 [6, 2]: before and after {name}
    name_word_ids: tuple[np.ndarray, np.ndarray, np.ndarray]  # token of every first, middle, last name


def _template_parts(template: str) -> tuple[list[str], list[str], list[str]]:
    """The words before the subject, between subject and value, and after the value."""
    subject, value = SUBJECT, VALUE
    if (template.count(subject) != 1 or template.count(value) != 1 or not template.endswith(".")
            or template.index(subject) > template.index(value)):
        raise DataError(f"template {template!r} needs one {subject}, then one {value}, and a final '.'")
    pre, rest = template.split(subject)
    mid, post = rest.split(value)
    return vocabulary_words(pre), vocabulary_words(mid), vocabulary_words(post)


def _fragment(table: _PieceTable, words: Sequence[str]) -> int:
    """A template fragment such as [",", "so"] or ["was", "born", "on"]."""
    return table.add([tokenizer().id(word) for word in words])


@functools.cache
def compile_pieces(templates: str = DEFAULT_TEMPLATES) -> Compiled:
    """The pieces of one template set (templates.TEMPLATE_SETS)."""
    tok = tokenizer()
    p = pools()
    table = _PieceTable()
    sentence_templates = biography_templates(templates)
    rows, subject_capital, post_without_period, possessive, mid_without_possessive = [], [], [], [], []
    reversed_words = []
    for templates_of_attribute in sentence_templates:
        for template in templates_of_attribute:
            pre, mid, post = _template_parts(template)
            post_id, mid_id = _fragment(table, post), _fragment(table, mid)
            rows.append([_fragment(table, pre), -1, mid_id, -1, post_id])
            subject_capital.append(not pre)
            post_without_period.append(_fragment(table, post[1:]) if post[:1] == ["."] else post_id)
            possessive.append(mid[:1] == ["'s"])
            mid_without_possessive.append(_fragment(table, mid[1:]) if possessive[-1] else mid_id)
            reversed_words.append((pre[::-1], mid[::-1], (mid[1:] if possessive[-1] else mid)[::-1], post[:-1][::-1]))
    pronoun_base = table.add([tok.id(_PRONOUNS[0])])
    for pronoun in _PRONOUNS[1:]:
        table.add([tok.id(pronoun)])
    # The piece of value class c of attribute a is value_base[a] + c (employer_city: per employer).
    value_base = [table.add_text(date_text(FIRST_YEAR, 1, 1))]
    for label in range(1, NUM_DATES):
        table.add_text(date_text(FIRST_YEAR + label // DAYS_PER_YEAR, label % DAYS_PER_YEAR // DAYS_PER_MONTH + 1,
                                 label % DAYS_PER_MONTH + 1))
    for values in (p.cities, p.universities, p.majors, p.employers, p.employer_cities):
        value_base.append(table.add_text(values[0]))
        for text in values[1:]:
            table.add_text(text)
    questions = []
    for template in QUESTION_TEMPLATES:
        before, after = template.split("{name}")
        questions.append([_fragment(table, vocabulary_words(before)), _fragment(table, vocabulary_words(after))])
    # Added after every other piece, so the pieces of forward texts keep their numbers.
    reversed_fragments = [[_fragment(table, words) for words in fragments] for fragments in reversed_words]
    period_piece = _fragment(table, ["."])
    names = []
    for pool in (p.first_names, p.middle_names, p.last_names):
        ids = [tok.encode(name) for name in pool]
        if any(len(word_ids) != 1 for word_ids in ids):
            raise DataError("every first, middle and last name must be a single word of the vocabulary")
        names.append(np.array([word_ids[0] for word_ids in ids], np.int32))
    tokens, starts, lengths = table.freeze()
    period = tok.id(".")
    last_token = tokens[np.maximum(starts + lengths - 1, 0)]
    return Compiled(
        tokens=tokens, starts=starts, lengths=lengths, ends_with_period=(lengths > 0) & (last_token == period),
        template_base=np.cumsum([0] + [len(t) for t in sentence_templates[:-1]]).astype(np.int64),
        num_templates=np.array([len(t) for t in sentence_templates], np.int64),
        template_pieces=np.array(rows, np.int64), subject_capital=np.array(subject_capital, bool),
        subject_possessive=np.array(possessive, bool), mid_without_possessive=np.array(mid_without_possessive, np.int64),
        post_without_period=np.array(post_without_period, np.int64),
        reversed_fragments=np.array(reversed_fragments, np.int64), period=period_piece, pronoun_base=pronoun_base,
        value_base=np.array(value_base, np.int64), question_pieces=np.array(questions, np.int64),
        name_word_ids=tuple(names),
    )


def with_names(compiled: Compiled, people: People) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The piece table plus one 3-token name piece per person: (tokens, starts, lengths, name_base)."""
    first_ids, middle_ids, last_ids = compiled.name_word_ids
    name_tokens = np.stack([first_ids[people.first], middle_ids[people.middle], last_ids[people.last]], axis=1)
    n = len(people)
    tokens = np.concatenate([compiled.tokens, name_tokens.reshape(-1)])
    starts = np.concatenate([compiled.starts, len(compiled.tokens) + 3 * np.arange(n, dtype=np.int64)])
    lengths = np.concatenate([compiled.lengths, np.full(n, 3, np.int64)])
    return tokens, starts, lengths, len(compiled.starts)


def person_value_pieces(compiled: Compiled, people: People) -> np.ndarray:
    """int64 [n, 6]: the piece of each person's value of each attribute."""
    columns = [people.labels("birth_date"), people.birth_city, people.university, people.major,
               people.employer, people.employer]
    return compiled.value_base[None, :] + np.stack(columns, axis=1).astype(np.int64)


def gather(piece_ids_RK: np.ndarray, tokens: np.ndarray, starts: np.ndarray, lengths: np.ndarray):
    """Concatenate pieces row by row: (flat int32 tokens, row offsets int64 [R+1], start of every
    piece inside its row int64 [R, K], piece lengths int64 [R, K])."""
    lengths_RK = lengths[piece_ids_RK]
    flat_lengths = lengths_RK.reshape(-1)
    ends = np.cumsum(flat_lengths)
    total = int(ends[-1]) if ends.size else 0
    shift = np.repeat(starts[piece_ids_RK.reshape(-1)] - (ends - flat_lengths), flat_lengths)
    flat = tokens[shift + np.arange(total, dtype=np.int64)]
    row_lengths = lengths_RK.sum(axis=1)
    offsets = np.concatenate([[0], np.cumsum(row_lengths)]).astype(np.int64)
    inside = np.cumsum(lengths_RK, axis=1) - lengths_RK
    return flat, offsets, inside, lengths_RK
