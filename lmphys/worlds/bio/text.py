"""Part 3.1 of Physics of Language Models (knowledge storage and extraction): bioS texts.

This module renders the biographies of the made-up people (people.py) and the six QA pairs per
person, through the closed word-level tokenizer of pieces.py:
    docs = biographies(people, seed, Augment())  tokenized documents with value/name spans
    qa_pairs(people) / qa_tokens(people)         the six retrieval questions and their answers

Biographies are assembled from pre-tokenized pieces (pieces.py: template fragments, pronouns, pool
values, names) with numpy gathers, never word by word, so 100k people x 5 renderings take seconds. Every
random choice of a rendering (template per attribute, sentence order) is a hash of (seed, person
index, rendering number), so a person's text does not depend on which other people are rendered.
Rendering 0 with the person's fixed templates is bioS "single"; see `Augment` for the others.
The QA pairs live here too: they are glued from the same compiled pieces as the biographies.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

from lmphys.errors import ConfigError
from lmphys.worlds.bio.people import ATTRIBUTES, NUM_DATES, People, check_persons, pools
from lmphys.worlds.bio.pieces import compile_pieces, gather, person_value_pieces, tokenizer, with_names
from lmphys.worlds.bio.templates import DEFAULT_TEMPLATES, QUESTION_TEMPLATES

SENTENCES = len(ATTRIBUTES)  # one sentence per attribute
_CHUNK_DOCS = 32768  # documents assembled per numpy pass: bounds memory, keeps arrays in cache


# ---------------------------------------------------------------------------------------------
# Biographies


@dataclasses.dataclass(frozen=True)
class Augment:
    """The paper's knowledge augmentations. Augment() is bioS single; multi5 + permute is
    Augment(multi=5, permute=True); permute1 / permute5 are multi 1 / 5 with permute=True and
    fresh_templates=False; fullname is Augment(fullname=True).

    reverse (Part 3.2's remedy for inverse search, "knowledge written in reverse" in pretraining):
    each rendering is followed by its reversed twin, written with the entity-preserving word reversal
    of reverse training (Golovneva, Allen-Zhu et al. 2024, arXiv 2403.13799): the sentences run last to
    first and each sentence's words last to first, its final "." staying last, while the person's
    name, the pronouns and every value keep their own order. "Carter Nicholas Bray was born on
    January 1, 1951." becomes "January 1, 1951 on born was Carter Nicholas Bray.", so a causal model
    reads the values before the name. The paper does not give its reversed format; this is lmphys's
    choice and says so in docs/part3-knowledge.md."""

    multi: int = 1  # M renderings per person
    permute: bool = False  # each rendering's sentence order shuffled
    fullname: bool = False  # every sentence names the person in full (else the first only, then he/she)
    fresh_templates: bool = True  # renderings after the first draw fresh templates (else reuse the first's)
    reverse: bool = False  # each rendering also written in reverse (2M documents per person)

    def __post_init__(self):
        if not isinstance(self.multi, (int, np.integer)) or self.multi < 1:
            raise ConfigError(f"augment.multi must be a positive integer, got {self.multi!r}")

    @property
    def documents_per_person(self) -> int:
        return int(self.multi) * (2 if self.reverse else 1)


@dataclasses.dataclass(frozen=True)
class Documents:
    """Tokenized documents back to back (no bos/eos: the packer adds them); all spans and positions
    are token offsets inside the document."""

    tokens: np.ndarray  # int32 [total]
    offsets: np.ndarray  # int64 [num_docs + 1]
    person: np.ndarray  # int32 [num_docs]: index into the People the documents were made from
    value_spans: np.ndarray  # int32 [num_docs, 6, 2]: (start, end) of each value, ATTRIBUTES order
    name_spans: np.ndarray  # int32 [num_docs, 2]: (start, end) of the first full name
    pronoun_positions: np.ndarray  # int32 [num_docs]: first gender word (He, she, His, ...), -1 if none (fullname)

    def __len__(self) -> int:
        return int(self.person.shape[0])

    def document(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i]:self.offsets[i + 1]]

    def text(self, i: int) -> str:
        return tokenizer().decode(self.document(i))

    def first_of_each_person(self) -> tuple[np.ndarray, np.ndarray]:
        """The persons the documents are about (sorted) and each one's first document index."""
        return np.unique(np.asarray(self.person), return_index=True)


def bos_rows(sequences: list[np.ndarray], bos_id: int, pad_id: int) -> np.ndarray:
    """[N, 1 + longest] int32 rows: BOS, the sequence, then padding (what probes and the cloze feed)."""
    rows = np.full((len(sequences), 1 + max(len(s) for s in sequences)), pad_id, np.int32)
    rows[:, 0] = bos_id
    for n, sequence in enumerate(sequences):
        rows[n, 1:1 + len(sequence)] = sequence
    return rows


_STREAM_TEMPLATE, _STREAM_ORDER = 0x7E3A, 0x0D2B  # separate hash streams for the two choices


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: a bijection of uint64 that scrambles every bit."""
    with np.errstate(over="ignore"):
        values = (values ^ (values >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        values = (values ^ (values >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return values ^ (values >> np.uint64(31))


def _hash(seed: int, stream: int, *coordinates: np.ndarray) -> np.ndarray:
    """A uniform uint64 per element of the broadcast coordinates, a pure function of them."""
    state = _mix(np.array([(int(seed) % 2**64) ^ (stream << 48)], np.uint64))
    for coordinate in coordinates:
        with np.errstate(over="ignore"):
            state = _mix(state ^ (np.asarray(coordinate).astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)))
    return state


def _below(hashes: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Uniform ints in [0, upper) from uniform uint64 hashes (upper < 2**32)."""
    return ((hashes >> np.uint64(32)) * np.asarray(upper).astype(np.uint64) >> np.uint64(32)).astype(np.int64)


def rendering_plan(seed: int, persons: np.ndarray, augment: Augment = Augment(),
                   templates: str = DEFAULT_TEMPLATES) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What `biographies` renders: (person [D], template index per attribute [D, 6] in ATTRIBUTES
    order, order [D, 6] = the attribute of each sentence), D = M per person, consecutively.
    Rendering k of person p depends on (seed, p, k) only; rendering 0 uses p's fixed templates."""
    persons = np.asarray(persons, np.int64)
    multi = int(augment.multi)
    person = np.repeat(persons, multi)
    rendering = np.tile(np.arange(multi, dtype=np.int64), len(persons))
    template_rendering = rendering if augment.fresh_templates else np.zeros_like(rendering)
    attribute = np.arange(SENTENCES, dtype=np.int64)[None, :]
    chosen = _below(_hash(seed, _STREAM_TEMPLATE, person[:, None], template_rendering[:, None], attribute),
                    compile_pieces(templates).num_templates[None, :])
    if augment.permute:
        order = np.argsort(_hash(seed, _STREAM_ORDER, person[:, None], rendering[:, None], attribute), axis=1)
    else:
        order = np.broadcast_to(attribute, (len(person), SENTENCES))
    return person, chosen, np.ascontiguousarray(order, np.int64)


_PRE, _SUBJECT, _MID, _VALUE, _POST = range(5)  # the pieces of one sentence
# A reversed sentence: its words from last to first, the subject and the value kept as written.
_R_POST, _R_VALUE, _R_MID, _R_SUBJECT, _R_PRE, _R_PERIOD = range(6)


def _reversed_pieces(compiled, pieces, template_global, drop_possessive):
    """The pieces [D, 6, 6] of the reversed documents: the sentences last to first, each one's
    template words last to first and its final "." kept last; names, pronouns and values (the
    entities) keep their own word order, so every value still reads as in the forward text."""
    fragments = compiled.reversed_fragments[template_global]  # [D, 6, 4]
    out = np.empty(pieces.shape[:2] + (6,), np.int64)
    out[..., _R_POST] = fragments[..., 3]
    out[..., _R_VALUE] = pieces[..., _VALUE]
    out[..., _R_MID] = np.where(drop_possessive, fragments[..., 2], fragments[..., 1])
    out[..., _R_SUBJECT] = pieces[..., _SUBJECT]
    out[..., _R_PRE] = fragments[..., 0]
    out[..., _R_PERIOD] = compiled.period
    return out[:, ::-1]


def _render_chunk(compiled, table, value_pieces, gender, person, templates, order, fullname, reverse=False):
    """Token arrays of documents (see biographies) for one chunk of the plan; `reverse`: each
    document written in reverse (see Augment.reverse)."""
    tokens, starts, lengths, name_base = table
    docs = len(person)
    rows = np.arange(docs)[:, None]
    template_global = compiled.template_base[order] + templates[rows, order]  # [D, 6] in sentence order
    pieces = compiled.template_pieces[template_global]  # [D, 6, 5]
    value_piece = value_pieces[person[:, None], order]
    names = fullname | (np.arange(SENTENCES) == 0)[None, :]
    possessive = compiled.subject_possessive[template_global]
    pronoun = (compiled.pronoun_base + 4 * possessive + 2 * (~compiled.subject_capital[template_global])
               + gender[person][:, None])
    pieces[..., _SUBJECT] = np.where(names, name_base + person[:, None], pronoun)
    pieces[..., _MID] = np.where(possessive & ~names, compiled.mid_without_possessive[template_global], pieces[..., _MID])
    pieces[..., _VALUE] = value_piece
    pieces[..., _POST] = np.where(compiled.ends_with_period[value_piece],
                                  compiled.post_without_period[template_global], pieces[..., _POST])
    if reverse:
        pieces = _reversed_pieces(compiled, pieces, template_global, possessive & ~names)
        order = order[:, ::-1]
        named_sentence = 0 if fullname else SENTENCES - 1
        value_slot, subject_slot, first_pronoun_sentence = _R_VALUE, _R_SUBJECT, 0
    else:
        value_slot, subject_slot, named_sentence, first_pronoun_sentence = _VALUE, _SUBJECT, 0, 1
    slots = pieces.shape[2]
    flat, offsets, inside, piece_lengths = gather(pieces.reshape(docs, SENTENCES * slots), tokens, starts, lengths)
    inside = inside.reshape(docs, SENTENCES, slots)
    value_start = inside[..., value_slot]
    value_spans = np.zeros((docs, SENTENCES, 2), np.int32)
    value_spans[rows, order, 0] = value_start
    value_spans[rows, order, 1] = value_start + piece_lengths.reshape(docs, SENTENCES, slots)[..., value_slot]
    # The first full name of the text (without fullname the forward text's first sentence names the
    # person, so once reversed that sentence comes last).
    name_start = inside[:, named_sentence, subject_slot]
    name_spans = np.stack([name_start, name_start + 3], axis=1).astype(np.int32)
    # Without fullname every other sentence's subject is a pronoun: the first one in the text.
    pronoun_positions = (np.full(docs, -1, np.int32) if fullname
                         else inside[:, first_pronoun_sentence, subject_slot].astype(np.int32))
    return flat, offsets, value_spans, name_spans, pronoun_positions


def biographies(people: People, seed: int, augment: Augment = Augment(), persons: np.ndarray | None = None,
                templates: str = DEFAULT_TEMPLATES) -> Documents:
    """M = augment.multi tokenized biographies of each person in `persons` (default all),
    consecutive per person; one sentence per attribute, from the template set `templates`
    (templates.TEMPLATE_SETS). With augment.reverse a person's M renderings are followed by their M
    reversed twins (same templates and sentence order, written backwards). A function of (seed,
    people, augment, templates); a person's documents do not depend on which other persons are
    rendered."""
    persons = check_persons(people, persons)
    forward = _render(people, seed, augment, persons, templates, reverse=False)
    if not augment.reverse:
        return forward
    backward = _render(people, seed, augment, persons, templates, reverse=True)
    # Person i's documents: its M forward renderings (rows i*M ...), then their M twins (rows D + i*M ...).
    blocks = np.arange(len(forward)).reshape(len(persons), int(augment.multi))
    order = np.concatenate([blocks, blocks + len(forward)], axis=1).reshape(-1)
    tokens = np.concatenate([forward.tokens, backward.tokens])
    starts = np.concatenate([forward.offsets[:-1], backward.offsets[:-1] + len(forward.tokens)])
    lengths = np.concatenate([np.diff(forward.offsets), np.diff(backward.offsets)])
    flat, offsets, _, _ = gather(order[:, None], tokens, starts, lengths)

    def both(field):
        return np.concatenate([getattr(forward, field), getattr(backward, field)])[order]

    return Documents(tokens=flat.astype(np.int32), offsets=offsets, person=both("person"),
                     value_spans=both("value_spans"), name_spans=both("name_spans"),
                     pronoun_positions=both("pronoun_positions"))


def _render(people: People, seed: int, augment: Augment, persons: np.ndarray, templates: str,
            reverse: bool) -> Documents:
    """The M renderings per person of `biographies`, all forward or all reversed."""
    compiled = compile_pieces(templates)
    table = with_names(compiled, people)
    value_pieces = person_value_pieces(compiled, people)
    gender = np.asarray(people.gender, np.int64)
    person, chosen, order = rendering_plan(seed, persons, augment, templates)
    parts = []
    for begin in range(0, len(person), _CHUNK_DOCS):
        chunk = slice(begin, begin + _CHUNK_DOCS)
        parts.append(_render_chunk(compiled, table, value_pieces, gender, person[chunk], chosen[chunk],
                                   order[chunk], bool(augment.fullname), reverse))
    if not parts:
        return Documents(np.zeros(0, np.int32), np.zeros(1, np.int64), np.zeros(0, np.int32),
                         np.zeros((0, SENTENCES, 2), np.int32), np.zeros((0, 2), np.int32), np.zeros(0, np.int32))
    chunk_offsets = [part[1] for part in parts]
    shifts = np.cumsum([0] + [int(offsets[-1]) for offsets in chunk_offsets[:-1]])
    offsets = np.concatenate([[0]] + [offsets[1:] + shift for offsets, shift in zip(chunk_offsets, shifts)])
    return Documents(
        tokens=np.concatenate([part[0] for part in parts]),
        offsets=offsets.astype(np.int64),
        person=person.astype(np.int32),
        value_spans=np.concatenate([part[2] for part in parts]),
        name_spans=np.concatenate([part[3] for part in parts]),
        pronoun_positions=np.concatenate([part[4] for part in parts]),
    )


@functools.cache
def _value_extensions() -> tuple[dict[tuple[int, ...], tuple[int, ...]], ...]:
    """Per attribute: each value's tokens -> the tokens that follow them in the longer values of the
    same pool that start with them ("Business" -> "Administration", ...); absent if there are none."""
    compiled, p = compile_pieces(), pools()
    counts = (NUM_DATES, len(p.cities), len(p.universities), len(p.majors), len(p.employers), len(p.employers))
    out = []
    for base, count in zip(compiled.value_base, counts):
        values = {tuple(compiled.tokens[compiled.starts[piece]:compiled.starts[piece] + compiled.lengths[piece]].tolist())
                  for piece in range(int(base), int(base) + count)}
        extensions: dict[tuple[int, ...], set[int]] = {}
        for value in values:
            for cut in range(1, len(value)):
                if value[:cut] in values:
                    extensions.setdefault(value[:cut], set()).add(value[cut])
        out.append({value: tuple(sorted(tokens)) for value, tokens in extensions.items()})
    return tuple(out)


def value_extensions(people: People, persons: np.ndarray | None = None) -> np.ndarray:
    """int32 [P, 6, E] (-1 padded): for each person's value of each attribute, the tokens that would
    continue it into a longer value of the same pool. A value is over only where the next token is
    none of these, so its probability is P(its tokens) * (1 - P(next token in this set)); capacity.py
    measures values that way (10 values of the pools are, word for word, the start of others:
    "Business" of "Business Administration", "Caterpillar" of "Caterpillar Inc.")."""
    persons = check_persons(people, persons)
    compiled = compile_pieces()
    pieces = person_value_pieces(compiled, people)[persons]
    tables = _value_extensions()
    found = [[tables[a].get(tuple(compiled.tokens[compiled.starts[k]:compiled.starts[k] + compiled.lengths[k]].tolist()), ())
              for a, k in enumerate(row)] for row in pieces.tolist()]
    width = max([len(tokens) for row in found for tokens in row] + [1])
    out = np.full((len(persons), SENTENCES, width), -1, np.int32)
    for i, row in enumerate(found):
        for a, tokens in enumerate(row):
            out[i, a, :len(tokens)] = tokens
    return out


# ---------------------------------------------------------------------------------------------
# QA


@dataclasses.dataclass(frozen=True)
class QA:
    question: str
    answer: str  # exactly people.value(person, attribute)
    attribute: str
    person: int  # index into the People table


def qa_pairs(people: People, persons: np.ndarray | None = None) -> list[QA]:
    """Six questions per person (ATTRIBUTES order), persons in the given order."""
    pairs = []
    for person in check_persons(people, persons).tolist():
        name = people.full_name(person)
        for attribute, template in zip(ATTRIBUTES, QUESTION_TEMPLATES):
            pairs.append(QA(template.format(name=name), people.value(person, attribute), attribute, person))
    return pairs


def qa_tokens(people: People, persons: np.ndarray | None = None) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """The token ids of qa_pairs(people, persons) without building strings: (questions, answers,
    attribute index [6 * len(persons)])."""
    persons = check_persons(people, persons)
    compiled = compile_pieces()
    tokens, starts, lengths, name_base = with_names(compiled, people)
    count = len(persons) * SENTENCES
    if count == 0:
        return [], [], np.zeros(0, np.int64)
    before = np.broadcast_to(compiled.question_pieces[None, :, 0], (len(persons), SENTENCES))
    after = np.broadcast_to(compiled.question_pieces[None, :, 1], (len(persons), SENTENCES))
    name = np.broadcast_to((name_base + persons)[:, None], (len(persons), SENTENCES))
    question_pieces = np.stack([before, name, after], axis=2).reshape(count, 3)
    questions, question_offsets, _, _ = gather(question_pieces, tokens, starts, lengths)
    answer_pieces = person_value_pieces(compiled, people)[persons].reshape(count, 1)
    answers, answer_offsets, _, _ = gather(answer_pieces, tokens, starts, lengths)
    attribute = np.tile(np.arange(SENTENCES, dtype=np.int64), len(persons))
    return (np.split(questions, question_offsets[1:-1]), np.split(answers, answer_offsets[1:-1]), attribute)
