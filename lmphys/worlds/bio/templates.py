"""The text side of bioS (Part 3.1): sentence and question templates, and the word rule with the
`Tokenizer` that applies it (text.py builds the vocabulary).

Two sets of sentence templates, by name (`task.templates`):
- "capo" (the default): the authors' released bioS templates, 46-52 per attribute, from the Capo
  generator of facebookresearch/PhysicsLM4 (Apache-2.0; data/capo_bios_templates.json, verbatim, see
  data/README.md). Every one starts with the person; their possessives are gender-neutral ("their"),
  as released. "{name}'s" (three birth-date templates) becomes His/Her when the sentence has the
  pronoun rather than the name (the release always puts the birth date first, with the name).
- "lmphys": 43-45 per attribute written for lmphys before the release was at hand; the subject may
  follow other words ("The records show that he was born on ..."), and no word but the subject
  depends on the person's gender.

Each biography sentence states one attribute and has two slots: `{subject}` (the full name, or the
pronoun He/She at the start of a sentence and he/she inside it) and then `{value}` (the
attribute's value). The subject always comes before the value, so a document names its person
before stating any attribute and a causal model predicts every value knowing whose it is (as in
the paper; Part 3.3 measures knowledge by those predictions). A value that ends with "."
("Washington D.C.") absorbs the period that would follow it, as in ordinary English, so sentences
never end in ".." (the release writes "D.C..").
"""
from __future__ import annotations

import functools
import json
import os
import re
import string
from typing import Iterable, Sequence

import numpy as np

from lmphys.errors import DataError
from lmphys.worlds.bio.people import ATTRIBUTES, DATA_DIR

SUBJECT = "{subject}"
VALUE = "{value}"

TEMPLATE_SETS = ("capo", "lmphys")
DEFAULT_TEMPLATES = "capo"
# Each set's file in data/ (attribute -> templates) and the placeholder it writes for each slot.
_TEMPLATE_FILES = {"capo": "capo_bios_templates.json", "lmphys": "lmphys_bios_templates.json"}
_PLACEHOLDERS = {
    "capo": {"name": "{name}", "birth_date": "{birthday}", "birth_city": "{birthcity}", "university": "{university}",
             "major": "{field}", "employer": "{company1name}", "employer_city": "{company1city}"},
    "lmphys": {"name": SUBJECT, **{attribute: VALUE for attribute in ATTRIBUTES}},
}


@functools.cache
def biography_templates(templates: str = DEFAULT_TEMPLATES) -> tuple[tuple[str, ...], ...]:
    """The sentence templates of one set (TEMPLATE_SETS), one tuple per attribute in ATTRIBUTES
    order, written with the {subject} and {value} slots."""
    if templates not in TEMPLATE_SETS:
        raise DataError(f"unknown template set {templates!r}: use one of {', '.join(TEMPLATE_SETS)}")
    path = os.path.join(DATA_DIR, _TEMPLATE_FILES[templates])
    try:
        with open(path, encoding="utf-8") as handle:
            written = json.load(handle)
    except (OSError, json.JSONDecodeError) as error:
        raise DataError(f"bioS template file {path} is missing or unreadable ({error}); reinstall lmphys") from error
    placeholders = _PLACEHOLDERS[templates]
    return tuple(tuple(template.replace(placeholders["name"], SUBJECT).replace(placeholders[attribute], VALUE)
                       for template in written[attribute]) for attribute in ATTRIBUTES)


# One question per attribute, in ATTRIBUTES order; the answer is the attribute's value.
QUESTION_TEMPLATES = (
    "What is the birth date of {name}?",
    "What is the birth city of {name}?",
    "Which university did {name} study?",
    "What major did {name} study?",
    "Which company did {name} work for?",
    "Where did {name} work?",
)


# Part 3.2 manipulation questions (manipulation.py), one per kind, and what a chain of thought
# states before the final answer: the facts the question depends on.
MANIPULATION_QUESTIONS = {
    "retrieval_year": "In which year was {name} born?",
    "classify_month_2": "Was {name} born in an even month?",
    "classify_month_6": "What is the birth month of {name} modulo 6?",
    "classify_month_12": "What is the birth month of {name} modulo 12?",
    "compare_birth": "Was {first} born earlier than {second}?",
    "inverse_birth": "Who was born on {date} in {city}?",
}
MANIPULATION_STATEMENTS = {
    "retrieval_year": "{name} was born on {date}",
    "classify_month_2": "{name} was born in {month}",
    "classify_month_6": "{name} was born in {month}",
    "classify_month_12": "{name} was born in {month}",
    "compare_birth": "{first} was born on {first_date} and {second} was born on {second_date}",
    "inverse_birth": "The person was born on {date} in {city}",
}
COT_BRIDGE = ", so the answer is "
YES, NO = "Yes", "No"


def _fixed_fragments(templates: Iterable[str]) -> tuple[str, ...]:
    """The literal text between the slots of `templates`, trimmed of spaces and of the leading
    punctuation that always attaches to a slot value (the bioS vocabulary already has , . ?)."""
    fragments = []
    for template in templates:
        for literal, _, _, _ in string.Formatter().parse(template):
            cleaned = literal.strip().lstrip(string.punctuation).strip()
            if cleaned and cleaned not in fragments:
                fragments.append(cleaned)
    return tuple(fragments)


# Every fixed word the manipulation questions and answers use; the tokenizer adds them to its vocabulary.
MANIPULATION_PHRASES: tuple[str, ...] = _fixed_fragments(
    (*MANIPULATION_QUESTIONS.values(), *MANIPULATION_STATEMENTS.values(), COT_BRIDGE, YES, NO))

# ---------------------------------------------------------------------------------------------
# The word rule: words are space-separated chunks with , . ? 's ' split off their end; those split-off
# tokens are written without a space before them, which makes decode the exact inverse of encode.

ATTACHED = ("'s", ",", ".", "?", "'")
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<mask>", "<useful>")
_ATTACHED_SET = frozenset(ATTACHED)


def _split_chunk(chunk: str) -> list[str]:
    """"Inc.," -> ["Inc", ".", ","]; a chunk is never peeled down to nothing."""
    suffixes = []
    peeled = True
    while peeled:
        peeled = False
        for mark in ATTACHED:
            if len(chunk) > len(mark) and chunk.endswith(mark):
                suffixes.append(mark)
                chunk = chunk[:-len(mark)]
                peeled = True
                break
    return [chunk, *reversed(suffixes)]


def split_words(text: str) -> list[str]:
    """The word rule. Raises DataError for text that would not survive a round trip (empty words
    from doubled, leading or trailing spaces; a bare , . ? 's ' standing alone)."""
    words = []
    for chunk in text.split(" "):
        if not chunk:
            raise DataError(f"cannot tokenize {text!r}: leading, trailing or doubled space")
        if chunk in _ATTACHED_SET:
            raise DataError(f"cannot tokenize {text!r}: {chunk!r} must follow a word without a space")
        words.extend(_split_chunk(chunk))
    return words


def vocabulary_words(text: str) -> list[str]:
    """Lenient split for collecting vocabulary: any whitespace, `{slot}` placeholders dropped."""
    return [word for chunk in re.sub(r"\{[a-z_]+\}", " ", text).split() for word in _split_chunk(chunk)]


class Tokenizer:
    """Closed word-level vocabulary: the special tokens, then every word sorted."""

    pad_id, bos_id, eos_id, mask_id = 0, 1, 2, 3

    def __init__(self, vocab: Sequence[str]):
        if tuple(vocab[:len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise DataError(f"a vocabulary must start with {SPECIAL_TOKENS}")
        self.vocab = tuple(vocab)
        self._ids = {word: index for index, word in enumerate(self.vocab)}
        if len(self._ids) != len(self.vocab):
            raise DataError("the vocabulary has repeated words")
        self.useful_id = self._ids["<useful>"]
        self._attached = [word in _ATTACHED_SET for word in self.vocab]

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def id(self, token: str) -> int:
        try:
            return self._ids[token]
        except KeyError:
            raise DataError(f"{token!r} is not in the bioS vocabulary") from None

    def encode(self, text: str) -> list[int]:
        ids = self._ids
        words = split_words(text)
        try:
            return [ids[word] for word in words]
        except KeyError:
            unknown = next(word for word in words if word not in ids)
            raise DataError(f"cannot tokenize {text!r}: the word {unknown!r} is not in the bioS vocabulary") from None

    def encode_many(self, texts: Iterable[str]) -> list[np.ndarray]:
        return [np.asarray(self.encode(text), np.int32) for text in texts]

    def decode(self, ids) -> str:
        """Words joined by spaces, except that , . ? 's ' attach to the word before them."""
        parts: list[str] = []
        for token_id in np.asarray(ids).tolist():
            word = self.vocab[token_id]
            if parts and self._attached[token_id]:
                parts[-1] += word
            else:
                parts.append(word)
        return " ".join(parts)
