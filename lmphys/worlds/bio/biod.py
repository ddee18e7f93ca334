"""Part 3.3 of Physics of Language Models ("Knowledge Capacity Scaling Laws"): the bioD(N, K, C, D, L, T)
world, the paper's knob-by-knob generalization of bioS used to count stored bits exactly.

N people; K attributes; attribute k has a pool of D candidate "chunks", each a fixed random sequence of
L tokens over a value vocabulary of T tokens (the D chunks of an attribute are distinct); a person's
value of attribute k is C chunks drawn independently and uniformly from those D. Names are unique
"first middle last" triples from the bioS name pools (N0 = 400 * 400 * 1000 possible names), one token
per name word. Because every choice is uniform and independent, the information content is known in
closed form, which capacity.py turns into a lower bound on the bits a trained model stores.

A document is the name's 3 tokens, then for each attribute (in a fresh random order per document when
`permute`) that attribute's marker token and its C * L value tokens. Everything is vectorized numpy:
worlds and documents for 100k people take well under a second.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

from lmphys.errors import ConfigError, DataError
from lmphys.worlds.bio.people import pools
from lmphys.worlds.bio.templates import SPECIAL_TOKENS

__all__ = [
    "BioDSpec", "BioDWorld", "BioDDocuments", "make_world", "documents", "chunk_continuation_spans",
    "name_space",
]

NAME_LEN = 3  # first, middle, last: one token each

# Separate random streams, so that e.g. changing N does not change the chunk table of a seed.
_NAME_STREAM, _CHUNK_STREAM, _VALUE_STREAM = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class BioDSpec:
    """bioD(N, K, C, D, L, T) in the paper's letters."""

    num_people: int  # N
    num_attributes: int  # K
    chunks: int  # C: chunks per value
    diversity: int  # D: candidate chunks per attribute
    chunk_len: int  # L: tokens per chunk
    value_vocab: int  # T: distinct value tokens

    @property
    def value_len(self) -> int:
        """Tokens in one attribute's value (C * L)."""
        return self.chunks * self.chunk_len

    @property
    def document_len(self) -> int:
        """Tokens in one document: the name, then a marker and a value per attribute."""
        return NAME_LEN + self.num_attributes * (1 + self.value_len)


@functools.cache
def _name_words() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    name_pools = pools()
    return name_pools.first_names, name_pools.middle_names, name_pools.last_names


def name_space() -> int:
    """N0: how many distinct full names the pools allow (400 * 400 * 1000 for the shipped pools)."""
    first, middle, last = _name_words()
    return len(first) * len(middle) * len(last)


def _validate(spec: BioDSpec) -> None:
    for field in dataclasses.fields(spec):
        value = getattr(spec, field.name)
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"bioD spec.{field.name} must be a positive integer, got {value!r}")
    if spec.num_people > name_space():
        raise ConfigError(f"bioD spec.num_people must be <= {name_space()} (distinct names), got {spec.num_people}")
    if spec.diversity > spec.value_vocab ** spec.chunk_len:
        raise ConfigError(
            f"bioD spec.diversity must be <= value_vocab ** chunk_len = {spec.value_vocab ** spec.chunk_len} "
            f"(the D chunks of an attribute are distinct), got {spec.diversity}"
        )


@dataclasses.dataclass(frozen=True, eq=False)
class BioDWorld:
    """One sampled bioD world: who is called what, the chunk pools, and everyone's values.

    Token ids: the special tokens (pad 0, bos 1, eos 2, mask 3, useful 4: the domain token of the
    junk-data experiments), then the name words, then one marker per attribute, then the T value tokens.
    """

    spec: BioDSpec
    vocab: tuple[str, ...]
    name_tokens: np.ndarray  # int32 [N, 3]
    attribute_tokens: np.ndarray  # int32 [K]: the marker token of each attribute
    chunk_table: np.ndarray  # int32 [K, D, L]: value token ids of each candidate chunk
    values: np.ndarray  # int32 [N, K, C]: chunk indices (into chunk_table[k]) of each person's values
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    mask_id: int = 3
    useful_id: int = 4

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def value_tokens(self, persons: np.ndarray | None = None) -> np.ndarray:
        """int32 [P, K, C*L]: the value tokens of each person's attributes (all people by default)."""
        values = self.values if persons is None else self.values[np.asarray(persons)]
        attribute = np.arange(self.spec.num_attributes)[None, :, None]
        return self.chunk_table[attribute, values].reshape(len(values), self.spec.num_attributes, self.spec.value_len)

    def decode(self, ids) -> str:
        """Readable text of token ids, e.g. "Ann May Lee attr3: v12 v7 ..."."""
        ids = np.asarray(ids).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise DataError(f"token ids must lie in [0, {self.vocab_size}), got [{ids.min()}, {ids.max()}]")
        return " ".join(self.vocab[i] for i in ids.tolist())


def _sample_chunks(spec: BioDSpec, rng: np.random.Generator) -> np.ndarray:
    """[K, D, L] value indices in [0, T), the D chunks of each attribute distinct."""
    num_sequences = spec.value_vocab ** spec.chunk_len
    tables = []
    for _ in range(spec.num_attributes):
        if num_sequences <= 2**62:  # draw distinct base-T numbers and spell out their L digits
            codes = rng.choice(num_sequences, spec.diversity, replace=False)
            digits = spec.value_vocab ** np.arange(spec.chunk_len - 1, -1, -1, dtype=np.int64)
            tables.append((codes[:, None] // digits) % spec.value_vocab)
            continue
        table = rng.integers(0, spec.value_vocab, (spec.diversity, spec.chunk_len))
        while True:  # collisions are astronomically rare at this size, but the D chunks must differ
            _, first_seen = np.unique(table, axis=0, return_index=True)
            repeated = np.setdiff1d(np.arange(spec.diversity), first_seen)
            if not repeated.size:
                break
            table[repeated] = rng.integers(0, spec.value_vocab, (repeated.size, spec.chunk_len))
        tables.append(table)
    return np.stack(tables)


def make_world(spec: BioDSpec, seed: int) -> BioDWorld:
    """Samples the world bioD(spec) deterministically from `seed`."""
    _validate(spec)
    first, middle, last = _name_words()
    name_vocab = sorted(set(first) | set(middle) | set(last))  # a word shared by two pools is one token
    vocab = (
        *SPECIAL_TOKENS,
        *name_vocab,
        *(f"attr{k}:" for k in range(spec.num_attributes)),
        *(f"v{t}" for t in range(spec.value_vocab)),
    )
    word_id = {word: len(SPECIAL_TOKENS) + i for i, word in enumerate(name_vocab)}
    pool_ids = [np.array([word_id[w] for w in pool], np.int32) for pool in (first, middle, last)]
    attribute_base = len(SPECIAL_TOKENS) + len(name_vocab)
    value_base = attribute_base + spec.num_attributes

    # A random index into first x middle x last; distinct indices give distinct token triples
    # because each pool lists distinct words.
    codes = np.random.default_rng([_NAME_STREAM, seed]).choice(name_space(), spec.num_people, replace=False)
    middle_last = len(middle) * len(last)
    name_tokens = np.stack(
        [pool_ids[0][codes // middle_last], pool_ids[1][(codes // len(last)) % len(middle)], pool_ids[2][codes % len(last)]],
        axis=1,
    )
    chunk_table = _sample_chunks(spec, np.random.default_rng([_CHUNK_STREAM, seed])) + value_base
    value_rng = np.random.default_rng([_VALUE_STREAM, seed])
    values = value_rng.integers(0, spec.diversity, (spec.num_people, spec.num_attributes, spec.chunks))
    return BioDWorld(
        spec=spec,
        vocab=vocab,
        name_tokens=name_tokens.astype(np.int32),
        attribute_tokens=np.arange(attribute_base, value_base, dtype=np.int32),
        chunk_table=chunk_table.astype(np.int32),
        values=values.astype(np.int32),
    )


@dataclasses.dataclass(frozen=True, eq=False)
class BioDDocuments:
    """Tokenized bioD documents back to back (no bos/eos: the packer adds them); the same field names
    as text.Documents, with one value span per bioD attribute."""

    world: BioDWorld = dataclasses.field(repr=False)
    tokens: np.ndarray  # int32 [total]
    offsets: np.ndarray  # int64 [num_docs + 1]
    person: np.ndarray  # int32 [num_docs]: index into the world's people
    value_spans: np.ndarray  # int32 [num_docs, K, 2]: (start, end) inside the document, attribute order
    name_spans: np.ndarray  # int32 [num_docs, 2]
    pronoun_positions: np.ndarray  # int32 [num_docs]: always -1 (bioD has no pronouns)
    attribute_order: np.ndarray  # int32 [num_docs, K]: the attribute written in each slot

    def __len__(self) -> int:
        return len(self.person)

    def document(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i]:self.offsets[i + 1]]

    def text(self, i: int) -> str:
        return self.world.decode(self.document(i))


def documents(
    world: BioDWorld,
    seed: int,
    copies: int = 1,
    permute: bool = True,
    persons: np.ndarray | None = None,
) -> BioDDocuments:
    """`copies` documents per person (consecutive), for `persons` (default: everyone), deterministic in
    (world, seed, copies, permute). A person's attribute orders depend on (seed, person, copy) only,
    not on which other persons are asked for."""
    spec = world.spec
    if copies < 1:
        raise ConfigError(f"copies must be >= 1, got {copies}")
    persons = np.arange(spec.num_people) if persons is None else np.asarray(persons).astype(np.int64).reshape(-1)
    if persons.size and (persons.min() < 0 or persons.max() >= spec.num_people):
        raise DataError(f"person indices must lie in [0, {spec.num_people}), got [{persons.min()}, {persons.max()}]")
    num_attributes, num_docs = spec.num_attributes, len(persons) * copies
    doc_person = np.repeat(persons, copies)
    if permute:
        # One row of random keys per (copy, person) of the whole world, sliced to `persons`.
        orders = [
            np.argsort(np.random.default_rng([seed, copy]).random((spec.num_people, num_attributes))[persons], axis=1)
            for copy in range(copies)
        ]
        order = np.stack(orders, axis=1).reshape(num_docs, num_attributes)
    else:
        order = np.broadcast_to(np.arange(num_attributes), (num_docs, num_attributes))

    values = world.value_tokens(persons)  # [P, K, C*L]
    values = np.repeat(values, copies, axis=0)[np.arange(num_docs)[:, None], order]  # [docs, K, C*L] in slot order
    blocks = np.concatenate([world.attribute_tokens[order][..., None], values], axis=2)
    body = np.concatenate([world.name_tokens[doc_person], blocks.reshape(num_docs, -1)], axis=1)

    slot = np.argsort(order, axis=1)  # slot of each attribute
    value_start = NAME_LEN + slot * (1 + spec.value_len) + 1
    return BioDDocuments(
        world=world,
        tokens=body.reshape(-1).astype(np.int32),
        offsets=np.arange(num_docs + 1, dtype=np.int64) * spec.document_len,
        person=doc_person.astype(np.int32),
        value_spans=np.stack([value_start, value_start + spec.value_len], axis=2).astype(np.int32),
        name_spans=np.tile(np.array([0, NAME_LEN], np.int32), (num_docs, 1)),
        pronoun_positions=np.full(num_docs, -1, np.int32),
        attribute_order=np.ascontiguousarray(order, dtype=np.int32),
    )


def chunk_continuation_spans(docs: BioDDocuments) -> np.ndarray:
    """int32 [num_docs, K*C, 2]: each chunk's tokens after its first one, (start, end) inside the
    document. Given a chunk's first token, a model that has learned the D chunks of the attribute
    predicts the rest; capacity.py measures the chunk-table term on these spans."""
    spec = docs.world.spec
    chunk_start = docs.value_spans[:, :, :1] + spec.chunk_len * np.arange(spec.chunks)  # [docs, K, C]
    spans = np.stack([chunk_start + 1, chunk_start + spec.chunk_len], axis=3)
    return spans.reshape(len(docs), spec.num_attributes * spec.chunks, 2).astype(np.int32)
