"""The text side of bioS (Part 3.1, written for lmphys): sentence and question templates, and the
word rule with the `Tokenizer` that applies it (text.py builds the vocabulary).

Each biography sentence states one attribute and has two slots: `{subject}` (the full name, or the
pronoun He/She at the start of a sentence and he/she inside it) and then `{value}` (the
attribute's value). The subject always comes before the value, so a document names its person
before stating any attribute and a causal model predicts every value knowing whose it is (as in
the paper; Part 3.3 measures knowledge by those predictions). The subject is always the
grammatical subject, so only nominative pronouns occur and no other word depends on the person's
gender. A value that ends with "." ("Washington D.C.") absorbs the period that would follow it, as
in ordinary English, so sentences never end in "..".
"""
from __future__ import annotations

import re
import string
from typing import Iterable, Sequence

import numpy as np

from lmphys.errors import DataError

SUBJECT = "{subject}"
VALUE = "{value}"

BIRTH_DATE = (
    "{subject} was born on {value}.",
    "{subject} came into this world on {value}.",
    "{subject} entered the world on {value}.",
    "{subject} arrived in this world on {value}.",
    "{subject} first saw the light of day on {value}.",
    "{subject} drew a first breath on {value}.",
    "{subject} took a first breath on {value}.",
    "{subject} was welcomed into the world on {value}.",
    "{subject} was brought into the world on {value}.",
    "{subject} has a birth date of {value}.",
    "{subject} lists {value} as the date of birth.",
    "{subject} was born on the date {value}.",
    "{subject} was born to a proud family on {value}.",
    "{subject} was born into a warm family on {value}.",
    "{subject} was born early in the morning on {value}.",
    "{subject} was born late at night on {value}.",
    "{subject} began life on {value}.",
    "{subject} started life on {value}.",
    "{subject} was delivered in a hospital on {value}.",
    "{subject} came into being on {value}.",
    "{subject} has celebrated a birthday every year since {value}.",
    "{subject} made an entrance into the world on {value}.",
    "{subject} joined the world on {value}.",
    "{subject} was born on {value}, according to the family.",
    "{subject} was born on {value}, a day the family remembers well.",
    "The records show that {subject} was born on {value}.",
    "According to the records, {subject} was born on {value}.",
    "Family records show that {subject} was born on {value}.",
    "The birth certificate says that {subject} was born on {value}.",
    "A birth certificate confirms that {subject} was born on {value}.",
    "As the records show, {subject} was born on {value}.",
    "It is known that {subject} was born on {value}.",
    "{subject} was born in the early hours of {value}.",
    "{subject} was born, as the records show, on {value}.",
    "{subject} was born on {value}, as the family records show.",
    "{subject} was born on the morning of {value}.",
    "{subject} was born on the evening of {value}.",
    "{subject} has {value} as a date of birth.",
    "{subject} gives {value} as a date of birth.",
    "{subject} was born to loving parents on {value}.",
    "{subject} was born healthy on {value}.",
    "{subject} entered life on {value}.",
    "According to family records, {subject} was born on {value}.",
    "As family members recall, {subject} was born on {value}.",
)

BIRTH_CITY = (
    "{subject} was born in {value}.",
    "{subject} came into the world in {value}.",
    "{subject} is a native of {value}.",
    "{subject} hails from {value}.",
    "{subject} comes from {value}.",
    "{subject} spent the early years of life in {value}.",
    "{subject} was raised in {value}.",
    "{subject} grew up in {value}.",
    "{subject} started life in {value}.",
    "{subject} began life in {value}.",
    "{subject} was brought up in {value}.",
    "{subject} has roots in {value}.",
    "{subject} calls {value} home.",
    "{subject} was born and raised in {value}.",
    "{subject} spent childhood in {value}.",
    "{subject} took a first breath in {value}.",
    "{subject} arrived in the world in {value}.",
    "{subject} entered the world in {value}.",
    "{subject} is originally from {value}.",
    "{subject} originally comes from {value}.",
    "{subject} was born in the city of {value}.",
    "{subject} has {value} as a birthplace.",
    "{subject} lists {value} as a birthplace.",
    "{subject} considers {value} a hometown.",
    "{subject} proudly calls {value} a hometown.",
    "{subject} spent formative years in {value}.",
    "{subject} was welcomed into the world in {value}.",
    "{subject} was born in a hospital in {value}.",
    "{subject} first lived in {value}.",
    "{subject} came from {value} originally.",
    "{subject} was born in {value}, where the family lived.",
    "Records show that {subject} was born in {value}.",
    "According to the records, {subject} was born in {value}.",
    "{subject} was born in {value}, and the family lived there for years.",
    "{subject} spent the first years of life in {value}.",
    "{subject} was born and grew up in {value}.",
    "{subject} first called {value} home.",
    "{subject} was born in a small hospital in {value}.",
    "{subject} is from {value}.",
    "{subject} was born, as the records show, in {value}.",
    "{subject} was brought into the world in {value}.",
    "{subject} learned to walk and talk in {value}.",
    "{subject} went to elementary school in {value}.",
    "Family records show that {subject} was born in {value}.",
    "As the family tells it, {subject} was born in {value}.",
)

UNIVERSITY = (
    "{subject} studied at {value}.",
    "{subject} graduated from {value}.",
    "{subject} attended {value}.",
    "{subject} received an education at {value}.",
    "{subject} completed a degree at {value}.",
    "{subject} earned a degree from {value}.",
    "{subject} went to college at {value}.",
    "{subject} enrolled at {value}.",
    "{subject} was a student at {value}.",
    "{subject} spent the college years at {value}.",
    "{subject} pursued higher education at {value}.",
    "{subject} holds a degree from {value}.",
    "{subject} is a graduate of {value}.",
    "{subject} is a proud graduate of {value}.",
    "{subject} took classes at {value}.",
    "{subject} did undergraduate work at {value}.",
    "{subject} was educated at {value}.",
    "{subject} received academic training at {value}.",
    "{subject} got a degree at {value}.",
    "{subject} obtained a degree from {value}.",
    "{subject} studied for four years at {value}.",
    "{subject} spent four years studying at {value}.",
    "{subject} chose to study at {value}.",
    "{subject} was admitted to {value}.",
    "{subject} was accepted into {value}.",
    "{subject} completed an education at {value}.",
    "{subject} completed studies at {value}.",
    "{subject} graduated with a degree from {value}.",
    "{subject} was trained at {value}.",
    "{subject} received a diploma from {value}.",
    "{subject} continued an education at {value}.",
    "{subject} spent student days at {value}.",
    "After high school, {subject} went on to {value}.",
    "After finishing high school, {subject} enrolled at {value}.",
    "For higher education, {subject} chose {value}.",
    "{subject} spent the undergraduate years at {value}.",
    "{subject} earned a diploma at {value}.",
    "{subject} went on to study at {value}.",
    "{subject} studied as an undergraduate at {value}.",
    "{subject} was enrolled as a student at {value}.",
    "{subject} finished college at {value}.",
    "{subject} received mentorship from the faculty of {value}.",
    "{subject} took courses and earned a degree at {value}.",
    "In college, {subject} attended {value}.",
)

MAJOR = (
    "{subject} majored in {value}.",
    "{subject} studied {value}.",
    "{subject} specialized in {value}.",
    "{subject} focused on {value} in college.",
    "{subject} earned a degree in {value}.",
    "{subject} completed a degree in {value}.",
    "{subject} received a degree in {value}.",
    "{subject} holds a degree in {value}.",
    "{subject} concentrated on {value}.",
    "{subject} pursued {value}.",
    "{subject} pursued a degree in {value}.",
    "{subject} chose {value} as a major.",
    "{subject} picked {value} as a field of study.",
    "{subject} selected {value} as an academic focus.",
    "{subject} devoted the college years to {value}.",
    "{subject} took up {value} in college.",
    "{subject} gained expertise in {value}.",
    "{subject} was trained in {value}.",
    "{subject} studied the field of {value}.",
    "{subject} earned a bachelor's degree in {value}.",
    "{subject} graduated with a degree in {value}.",
    "{subject} graduated with a major in {value}.",
    "{subject} did coursework in {value}.",
    "{subject} completed coursework in {value}.",
    "{subject} developed a deep knowledge of {value}.",
    "{subject} acquired a solid background in {value}.",
    "{subject} received training in {value}.",
    "{subject} was a student of {value}.",
    "{subject} majored in the field of {value}.",
    "{subject} spent four years studying {value}.",
    "{subject} explored {value} in depth.",
    "In college, {subject} majored in {value}.",
    "At university, {subject} studied {value}.",
    "During college, {subject} focused on {value}.",
    "As an undergraduate, {subject} studied {value}.",
    "In school, {subject} specialized in {value}.",
    "For a major, {subject} chose {value}.",
    "{subject} studied the subject of {value}.",
    "{subject} chose to major in {value}.",
    "{subject} wrote a senior thesis in {value}.",
    "{subject} obtained a degree in {value}.",
    "{subject} took many courses in {value}.",
    "{subject} completed a program in {value}.",
    "For a degree, {subject} studied {value}.",
)

EMPLOYER = (
    "{subject} worked for {value}.",
    "{subject} was employed by {value}.",
    "{subject} was employed at {value}.",
    "{subject} had a job at {value}.",
    "{subject} held a position at {value}.",
    "{subject} took a job with {value}.",
    "{subject} joined {value}.",
    "{subject} worked at {value}.",
    "{subject} built a career at {value}.",
    "{subject} was hired by {value}.",
    "{subject} earned a living at {value}.",
    "{subject} drew a paycheck from {value}.",
    "{subject} was on the staff of {value}.",
    "{subject} was a staff member at {value}.",
    "{subject} was part of the team at {value}.",
    "{subject} spent a career working for {value}.",
    "{subject} accepted a position at {value}.",
    "{subject} landed a job at {value}.",
    "{subject} found employment at {value}.",
    "{subject} found work at {value}.",
    "{subject} served as an employee of {value}.",
    "{subject} was an employee of {value}.",
    "{subject} devoted a career to {value}.",
    "{subject} spent many years at {value}.",
    "{subject} spent years working at {value}.",
    "{subject} was on the payroll of {value}.",
    "{subject} held a job with {value}.",
    "{subject} got a job at {value}.",
    "{subject} signed on with {value}.",
    "{subject} went to work for {value}.",
    "{subject} started working at {value}.",
    "{subject} made a career with {value}.",
    "{subject} was employed full time by {value}.",
    "{subject} secured a position at {value}.",
    "Professionally, {subject} worked for {value}.",
    "After graduation, {subject} joined {value}.",
    "After college, {subject} worked for {value}.",
    "For many years, {subject} worked at {value}.",
    "In a long career, {subject} worked for {value}.",
    "During a long career, {subject} was employed by {value}.",
    "As a professional, {subject} worked for {value}.",
    "{subject} spent years on the team at {value}.",
    "{subject} held a full-time job at {value}.",
)

EMPLOYER_CITY = (
    "{subject} worked in {value}.",
    "{subject} was employed in {value}.",
    "{subject} had a job in {value}.",
    "{subject} spent a career in {value}.",
    "{subject} commuted to an office in {value}.",
    "{subject} worked at an office in {value}.",
    "{subject} was based in {value}.",
    "{subject} worked out of {value}.",
    "{subject} held a job in {value}.",
    "{subject} moved to {value} for work.",
    "{subject} relocated to {value} for a job.",
    "{subject} found work in {value}.",
    "{subject} found employment in {value}.",
    "{subject} built a career in {value}.",
    "{subject} made a living in {value}.",
    "{subject} earned a living in {value}.",
    "{subject} worked at the headquarters in {value}.",
    "{subject} was stationed in {value}.",
    "{subject} reported to an office in {value}.",
    "{subject} went to work each day in {value}.",
    "{subject} spent the working years in {value}.",
    "{subject} pursued a career in {value}.",
    "{subject} worked for years in {value}.",
    "{subject} took a job in {value}.",
    "{subject} accepted a position in {value}.",
    "{subject} was posted to {value}.",
    "{subject} settled in {value} for work.",
    "{subject} had an office in {value}.",
    "{subject} held a position in {value}.",
    "For work, {subject} moved to {value}.",
    "Professionally, {subject} was based in {value}.",
    "Every workday, {subject} commuted to {value}.",
    "During the working years, {subject} lived in {value}.",
    "The job that {subject} held was in {value}.",
    "The office where {subject} worked was in {value}.",
    "{subject} had a workplace in {value}.",
    "{subject} went to an office in {value} every day.",
    "{subject} worked for many years in {value}.",
    "{subject} was employed at an office in {value}.",
    "{subject} took up a post in {value}.",
    "{subject} made a career in {value}.",
    "{subject} worked in the city of {value}.",
    "{subject} spent a working life in {value}.",
    "{subject} earned a salary in {value}.",
)

# In ATTRIBUTES order (people.ATTRIBUTES).
BIOGRAPHY_TEMPLATES = (BIRTH_DATE, BIRTH_CITY, UNIVERSITY, MAJOR, EMPLOYER, EMPLOYER_CITY)

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
