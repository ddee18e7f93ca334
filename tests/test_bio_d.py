"""Part 3.3 bioD(N, K, C, D, L, T) world: documents state exactly the chunk-table values of their person,
names are unique pool triples, spans point at the right tokens, and everything is seeded."""
import numpy as np
import pytest

from lmphys.errors import ConfigError, DataError
from lmphys.worlds import bio
from lmphys.worlds.bio import biod

SPEC = biod.BioDSpec(num_people=300, num_attributes=4, chunks=3, diversity=7, chunk_len=2, value_vocab=5)


@pytest.fixture(scope="module")
def world():
    return biod.make_world(SPEC, seed=3)


def test_documents_state_the_chunk_table_values_of_their_person(world):
    docs = biod.documents(world, seed=0, copies=2)
    assert len(docs) == 2 * SPEC.num_people and len(docs.tokens) == len(docs) * SPEC.document_len
    for i in range(0, len(docs), 37):
        document, person = docs.document(i), docs.person[i]
        for attribute in range(SPEC.num_attributes):
            start, end = docs.value_spans[i, attribute]
            chunks = world.values[person, attribute]
            np.testing.assert_array_equal(document[start:end], world.chunk_table[attribute, chunks].reshape(-1))
            assert document[start - 1] == world.attribute_tokens[attribute], "the marker precedes its value"
        np.testing.assert_array_equal(document[slice(*docs.name_spans[i])], world.name_tokens[person])
    assert np.all(docs.pronoun_positions == -1)


def test_world_tables_have_the_spec_shapes_and_distinct_chunks(world):
    assert world.chunk_table.shape == (4, 7, 2) and world.values.shape == (300, 4, 3)
    assert world.values.min() == 0 and world.values.max() == SPEC.diversity - 1
    for attribute in range(SPEC.num_attributes):
        assert len(np.unique(world.chunk_table[attribute], axis=0)) == SPEC.diversity
    value_tokens = [world.vocab[t] for t in np.unique(world.chunk_table)]
    assert all(token.startswith("v") for token in value_tokens)
    assert world.vocab[:5] == ("<pad>", "<bos>", "<eos>", "<mask>", "<useful>") and world.useful_id == 4


def test_names_are_unique_pool_triples(world):
    assert len(np.unique(world.name_tokens, axis=0)) == SPEC.num_people
    pools = bio.people.pools()
    for person in range(0, SPEC.num_people, 29):
        first, middle, last = world.decode(world.name_tokens[person]).split(" ")
        assert first in pools.first_names and middle in pools.middle_names and last in pools.last_names
    assert biod.name_space() == len(pools.first_names) * len(pools.middle_names) * len(pools.last_names)


def test_permute_shuffles_attributes_per_document_and_copy(world):
    fixed = biod.documents(world, seed=0, permute=False)
    assert np.all(fixed.attribute_order == np.arange(SPEC.num_attributes))
    shuffled = biod.documents(world, seed=0, copies=2)
    orders = shuffled.attribute_order
    assert np.all(np.sort(orders, axis=1) == np.arange(SPEC.num_attributes)), "every attribute exactly once"
    assert (orders != np.arange(SPEC.num_attributes)).any(axis=1).mean() > 0.9  # 23/24 orders differ from fixed
    assert (orders[0::2] != orders[1::2]).any(axis=1).mean() > 0.9, "a person's copies get fresh orders"
    markers = shuffled.tokens.reshape(len(shuffled), -1)[:, biod.NAME_LEN::1 + SPEC.value_len]
    np.testing.assert_array_equal(markers, world.attribute_tokens[orders])


def test_seeds_determine_worlds_and_documents(world):
    again = biod.make_world(SPEC, seed=3)
    for field in ("name_tokens", "chunk_table", "values"):
        np.testing.assert_array_equal(getattr(world, field), getattr(again, field))
    other = biod.make_world(SPEC, seed=4)
    assert not np.array_equal(world.values, other.values) and not np.array_equal(world.name_tokens, other.name_tokens)
    docs = biod.documents(world, seed=1, copies=2)
    np.testing.assert_array_equal(docs.tokens, biod.documents(again, seed=1, copies=2).tokens)
    assert not np.array_equal(docs.tokens, biod.documents(world, seed=2, copies=2).tokens)
    persons = np.array([250, 7, 42])
    subset = biod.documents(world, seed=1, copies=2, persons=persons)
    for j, person in enumerate(persons):
        for copy in range(2):
            np.testing.assert_array_equal(subset.document(2 * j + copy), docs.document(2 * person + copy))


def test_chunk_continuation_spans_cover_each_chunk_after_its_first_token(world):
    docs = biod.documents(world, seed=0)
    spans = biod.chunk_continuation_spans(docs)
    assert spans.shape == (len(docs), SPEC.num_attributes * SPEC.chunks, 2)
    document, person = docs.document(5), docs.person[5]
    for attribute in range(SPEC.num_attributes):
        for chunk in range(SPEC.chunks):
            start, end = spans[5, attribute * SPEC.chunks + chunk]
            expected = world.chunk_table[attribute, world.values[person, attribute, chunk], 1:]
            np.testing.assert_array_equal(document[start:end], expected)


def test_decode_is_readable_and_invalid_specs_are_refused(world):
    docs = biod.documents(world, seed=0, permute=False)
    words = docs.text(0).split(" ")
    assert len(words) == SPEC.document_len and words[3] == "attr0:" and words[4].startswith("v")
    with pytest.raises(ConfigError, match="diversity"):
        biod.make_world(biod.BioDSpec(10, 2, 1, diversity=26, chunk_len=2, value_vocab=5), seed=0)
    with pytest.raises(ConfigError, match="num_people"):
        biod.make_world(biod.BioDSpec(biod.name_space() + 1, 1, 1, 1, 1, 1), seed=0)
    with pytest.raises(ConfigError, match="chunks"):
        biod.make_world(biod.BioDSpec(10, 2, 0, 2, 2, 5), seed=0)
    with pytest.raises(DataError):
        biod.documents(world, seed=0, persons=np.array([SPEC.num_people]))
