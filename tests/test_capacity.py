"""Part 3.3 capacity measure: the bit lower bound by hand, bioS's 47.6 bits per person, the reachable
ceiling, span losses against a hand-made bigram model, what each bioS loss is read from, and int8 /
int4 quantization."""
import dataclasses
import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmphys.errors import DataError
from lmphys.models import transformer
from lmphys.worlds import bio
from lmphys.worlds.bio import biod, capacity

LN2 = math.log(2)


def test_biod_bits_equals_hand_computation():
    spec = biod.BioDSpec(num_people=10, num_attributes=2, chunks=2, diversity=4, chunk_len=3, value_vocab=8)
    bits = capacity.biod_bits(spec, name_loss=LN2, value_loss=LN2, chunk_loss=LN2, name_space=1010)
    # names: 10 * (log2(1010 - 10) - 1) = 10 * (9.965784284662087 - 1)
    assert bits["name"] == pytest.approx(89.65784284662087)
    # values: N*K = 20 values of C=2 chunks out of D=4: 20 * (2 * 2 - 1)
    assert bits["value"] == pytest.approx(60.0)
    # chunks: K*D = 8 chunks of L=3 tokens out of T=8, p3 = ln 8 + ln 2 = ln 16: 8 * (9 - 4)
    assert bits["chunk"] == pytest.approx(40.0)
    assert bits["total"] == pytest.approx(189.65784284662087)


def test_biod_terms_clip_at_zero_and_chunk_term_is_optional():
    spec = biod.BioDSpec(num_people=10, num_attributes=2, chunks=2, diversity=4, chunk_len=3, value_vocab=8)
    worse_than_chance = capacity.biod_bits(spec, name_loss=50.0, value_loss=50.0, chunk_loss=50.0, name_space=1010)
    assert worse_than_chance == {"name": 0.0, "value": 0.0, "chunk": 0.0, "total": 0.0}
    mixed = capacity.biod_bits(spec, name_loss=50.0, value_loss=0.0, chunk_loss=None, name_space=1010)
    assert mixed["name"] == 0.0 and mixed["chunk"] == 0.0
    assert mixed["value"] == pytest.approx(20 * 2 * 2) and mixed["total"] == pytest.approx(mixed["value"])


def test_bios_zero_loss_is_its_information_content():
    zero = {attribute: 0.0 for attribute in capacity.BIOS_CHOICES}
    bits = capacity.bios_bits(1000, {**zero, "employer_city": 0.0}, gender_loss=0.0)
    assert bits["per_person"] == pytest.approx(47.6, abs=0.1)
    exact = math.log2(200 * 12 * 28) + math.log2(200) + math.log2(300) + math.log2(100) + math.log2(263) + 1
    assert bits["total"] == pytest.approx(1000 * exact)
    no_gender = capacity.bios_bits(1000, zero, gender_loss=None)
    assert bits["total"] - no_gender["total"] == pytest.approx(1000.0)


def test_bios_bits_clip_per_attribute_and_reject_missing_attributes():
    losses = {attribute: 0.0 for attribute in capacity.BIOS_CHOICES}
    losses["major"] = 100.0  # far worse than chance: must not subtract from the others
    bits = capacity.bios_bits(10, losses, gender_loss=5.0)
    assert bits["major"] == 0.0 and bits["gender"] == 0.0
    assert bits["birth_city"] == pytest.approx(10 * math.log2(200))
    half = capacity.bios_bits(10, {**losses, "birth_city": math.log(200) / 2}, gender_loss=None)
    assert half["birth_city"] == pytest.approx(10 * math.log2(200) / 2)
    with pytest.raises(DataError, match="missing"):
        capacity.bios_bits(10, {"birth_city": 0.0}, gender_loss=None)


def test_the_ceiling_is_what_a_perfect_model_can_reach():
    """A model must generate a name with nothing before it: its best name loss is ln N (Part 3.3,
    Cor. 3.3), so the docs' bioD worlds hold at most 12,690 and 24,212 bits, not 14,219 and 27,669."""
    for people, ceiling in ((200, 12_689.9), (400, 24_211.9)):
        spec = biod.BioDSpec(num_people=people, num_attributes=4, chunks=2, diversity=32, chunk_len=2, value_vocab=64)
        assert capacity.biod_ceiling(spec) == pytest.approx(ceiling, abs=0.1)
        n0 = biod.name_space()
        assert capacity.biod_ceiling(spec) == pytest.approx(
            people * math.log2((n0 - people) / people) + people * 4 * 2 * 5 + 4 * 32 * 6)
    n0 = bio.people.max_people()
    assert capacity.bios_ceiling(300) == pytest.approx(300 * (math.log2((n0 - 300) / 300) + 47.592), abs=1)
    zero = {attribute: 0.0 for attribute in capacity.BIOS_CHOICES}
    named = capacity.bios_bits(300, zero, gender_loss=0.0, name_loss=math.log(300))
    assert named["name"] == pytest.approx(300 * math.log2((n0 - 300) / 300))
    assert named["total"] == pytest.approx(capacity.bios_ceiling(300))


def test_bits_per_parameter_without_the_embeddings():
    for tie in (True, False):
        cfg = transformer.ModelConfig(kind="gpt", vocab_size=50, num_layers=1, num_heads=2, width=16, max_len=8,
                                      tie_embeddings=tie)
        _, params = transformer.init_model(cfg, jax.random.key(0))
        assert capacity.embedding_parameters(params) == 50 * 16 * (1 if tie else 2)


def planted_model(documents, seq_len, vocab_size, changes):
    """A model certain of every next token of the documents (fed as bos + document), except that
    changes[(doc, document offset)] = {token: probability} sets the law of that document token."""
    table = {}
    for d in range(len(documents)):
        row = np.zeros(seq_len, np.int32)
        row[0] = 1
        tokens = documents.document(d)[:seq_len - 1]
        row[1:1 + len(tokens)] = tokens
        law = np.full((seq_len, vocab_size), -1e9)
        law[np.arange(seq_len - 1), row[1:]] = 0.0
        for (doc, offset), probabilities in changes.items():
            if doc == d:
                law[offset] = -1e9
                for token, probability in probabilities.items():
                    law[offset, token] = math.log(probability)
        table[row.tobytes()] = law

    def log_probs(tokens_BT):
        rows = np.asarray(tokens_BT)
        return jnp.asarray(np.stack([table.get(row.tobytes(), np.zeros((seq_len, vocab_size))) for row in rows]))

    return log_probs


def test_bios_losses_are_read_where_only_the_knowledge_is_uncertain():
    pools = bio.people.pools()
    people = bio.sample_people(seed=0, n=6)
    business, administration = pools.majors.index("Business"), pools.majors.index("Business Administration")
    people = dataclasses.replace(people, major=np.r_[business, administration, people.major[2:]])
    docs = bio.biographies(people, seed=0)
    tok = bio.tokenizer()
    seq_len = int(np.diff(docs.offsets).max()) + 2
    major = bio.ATTRIBUTES.index("major")
    changes = {}
    for d in range(len(docs)):
        # the gender is known, whether the template writes it He or he is not: no gender loss
        pronoun = int(docs.pronoun_positions[d])
        said = tok.vocab[int(docs.document(d)[pronoun])]
        other_case = said.lower() if said[0].isupper() else said.capitalize()
        changes[(d, pronoun)] = {tok.id(said): 0.5, tok.id(other_case): 0.5}
    # after "Business" the model half expects "Administration": it is unsure the value has ended
    end = int(docs.value_spans[0, major, 1])
    changes[(0, end)] = {int(docs.document(0)[end]): 0.5, tok.id("Administration"): 0.5}
    model = planted_model(docs, seq_len, tok.vocab_size, changes)
    bits = capacity.measure_bios_bits(model, docs, people, bos_id=tok.bos_id, pad_id=tok.pad_id, seq_len=seq_len,
                                      batch_size=4)
    assert bits["gender"] == pytest.approx(6.0)
    assert bits["major"] == pytest.approx(6 * math.log2(100) - 1)
    n0 = bio.people.max_people()
    assert bits["name"] == pytest.approx(6 * math.log2(n0 - 6))  # it is certain of the names, after bos alone
    assert bits["ceiling"] == pytest.approx(capacity.bios_ceiling(6))


def test_measurement_feeds_the_domain_token_the_run_trained_with():
    docs = types.SimpleNamespace(tokens=np.array([2, 3]), offsets=np.array([0, 2]))  # [a b]
    # after bos, then "b" (the domain token here): a|b = ln 2, b|a = ln 4
    got = capacity.span_losses(bigram_log_probs, docs, np.array([[0, 2]]), bos_id=1, pad_id=0, seq_len=4, prefix=(3,))
    np.testing.assert_allclose(got, [3 * LN2], rtol=1e-6)


# A bigram model over the vocabulary pad 0, bos 1, a 2, b 3: row = the current token, column = the next.
BIGRAM = np.log(np.array([
    [1 / 4, 1 / 4, 1 / 4, 1 / 4],  # after pad
    [1 / 8, 1 / 8, 1 / 2, 1 / 4],  # after bos: a costs ln 2, b costs ln 4
    [1 / 8, 1 / 8, 1 / 2, 1 / 4],  # after a: b costs ln 4
    [1 / 4, 1 / 8, 1 / 2, 1 / 8],  # after b: a costs ln 2, b costs ln 8
]))


def bigram_log_probs(tokens_BT):
    return jnp.asarray(BIGRAM)[tokens_BT]


def test_span_losses_match_hand_sums_with_bos_in_front():
    docs = types.SimpleNamespace(tokens=np.array([2, 3, 3, 3, 2]), offsets=np.array([0, 3, 5]))  # [a b b], [b a]
    spans = np.array([[[0, 3], [1, 2], [2, 3]], [[0, 2], [1, 2], [0, 0]]])
    # doc 0: a|bos = ln2, b|a = ln4, b|b = ln8; doc 1: b|bos = ln4, a|b = ln2
    expected = LN2 * np.array([[1 + 2 + 3, 2, 3], [2 + 1, 1, 0]])
    for batch_size in (1, 2, 8):  # batches that split the documents, and one padded past them
        got = capacity.span_losses(bigram_log_probs, docs, spans, bos_id=1, pad_id=0, seq_len=5, batch_size=batch_size)
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    single = capacity.span_losses(bigram_log_probs, docs, spans[:, 0], bos_id=1, pad_id=0, seq_len=4)
    np.testing.assert_allclose(single, expected[:, 0], rtol=1e-6)
    with pytest.raises(DataError, match="seq_len"):
        capacity.span_losses(bigram_log_probs, docs, spans, bos_id=1, pad_id=0, seq_len=3)


def test_measure_biod_bits_of_a_perfect_and_a_uniform_model():
    world = biod.make_world(biod.BioDSpec(num_people=20, num_attributes=2, chunks=2, diversity=3, chunk_len=4, value_vocab=5), seed=0)
    docs = biod.documents(world, seed=0)
    seq_len = world.spec.document_len + 1

    def oracle(tokens_BT):  # reads the next token off its input: zero loss everywhere
        next_BT = jnp.concatenate([tokens_BT[:, 1:], tokens_BT[:, -1:]], axis=1)
        return jnp.where(jax.nn.one_hot(next_BT, world.vocab_size) > 0, 0.0, -1e9)

    def uniform(tokens_BT):
        return jnp.full((*tokens_BT.shape, world.vocab_size), -math.log(world.vocab_size))

    perfect = capacity.measure_biod_bits(oracle, docs, seq_len=seq_len, batch_size=8)
    n0 = biod.name_space()
    assert perfect["name"] == pytest.approx(20 * math.log2(n0 - 20))
    assert perfect["value"] == pytest.approx(20 * 2 * 2 * math.log2(3))
    assert perfect["chunk"] == pytest.approx(2 * 3 * 3 * math.log2(5))  # (L - 1) tokens per chunk credited
    chance = capacity.measure_biod_bits(uniform, docs, seq_len=seq_len, batch_size=8)
    assert chance["value_loss"] == pytest.approx(2 * 4 * math.log(world.vocab_size), rel=1e-5)
    assert chance["total"] == 0.0


def stacked_params(key):
    k1, k2, k3 = jax.random.split(key, 3)
    kernel = jax.random.normal(k1, (2, 64, 8))
    kernel = kernel.at[1].multiply(1e-3)  # a layer of tiny weights: its scales must be its own
    embedding = jax.random.normal(k3, (600, 8))  # columns long enough to need every int8 level
    return {"layers": {"kernel": kernel, "bias": jax.random.normal(k2, (2, 8))[0]},
            "embed": {"embedding": embedding}, "norm": {"scale": jnp.ones(8) * 1.2345}}


def relative_error(original, quantized):
    return float(jnp.max(jnp.abs(original - quantized) / jnp.max(jnp.abs(original), axis=-2, keepdims=True)))


def test_quantize_error_levels_and_untouched_vectors():
    params = stacked_params(jax.random.key(0))
    int8, int4 = capacity.quantize(params, 8), capacity.quantize(params, 4)
    assert relative_error(params["layers"]["kernel"], int8["layers"]["kernel"]) <= 0.5 / 127 + 1e-6
    # per layer: the tiny layer keeps int8 precision relative to its own range
    assert relative_error(params["layers"]["kernel"][1], int8["layers"]["kernel"][1]) <= 0.5 / 127 + 1e-6
    err8 = relative_error(params["embed"]["embedding"], int8["embed"]["embedding"])
    err4 = relative_error(params["embed"]["embedding"], int4["embed"]["embedding"])
    assert err8 <= 0.5 / 127 + 1e-6 and err4 > 4 * err8 and err4 <= 0.5 / 7 + 1e-6
    for quantized in (int8, int4):
        np.testing.assert_array_equal(quantized["layers"]["bias"], params["layers"]["bias"])
        np.testing.assert_array_equal(quantized["norm"]["scale"], params["norm"]["scale"])
        assert quantized["layers"]["kernel"].dtype == jnp.float32
    for bits, quantized in ((8, int8), (4, int4)):
        for matrix in (*np.asarray(quantized["layers"]["kernel"]), np.asarray(quantized["embed"]["embedding"])):
            for column in matrix.T:
                assert len(np.unique(column)) <= 2**bits


def test_bits_per_parameter_counts_every_entry():
    params = stacked_params(jax.random.key(1))
    count = 2 * 64 * 8 + 8 + 600 * 8 + 8
    assert capacity.bits_per_parameter(2.0 * count, params) == pytest.approx(2.0)


def test_measure_bios_bits_on_biographies_reaches_the_information_content():
    people = bio.sample_people(seed=0, n=6)
    docs = bio.biographies(people, seed=0)
    tok = bio.tokenizer()
    seq_len = int(np.diff(docs.offsets).max()) + 1

    def oracle(tokens_BT):  # certain of the true next token: every value and the pronoun cost 0
        next_BT = jnp.concatenate([tokens_BT[:, 1:], tokens_BT[:, -1:]], axis=1)
        return jnp.where(jax.nn.one_hot(next_BT, tok.vocab_size) > 0, 0.0, -1e9)

    bits = capacity.measure_bios_bits(oracle, docs, people, bos_id=tok.bos_id, pad_id=tok.pad_id, seq_len=seq_len,
                                      batch_size=4)
    n0 = bio.people.max_people()
    assert bits["per_person"] - math.log2(n0 - 6) == pytest.approx(47.6, abs=0.1)  # and the name
    assert bits["gender"] == pytest.approx(6.0)
    uniform = capacity.measure_bios_bits(lambda t: jnp.full((*t.shape, tok.vocab_size), -math.log(tok.vocab_size)),
                                         docs, people, bos_id=tok.bos_id, pad_id=tok.pad_id, seq_len=seq_len)
    assert uniform["total"] == 0.0
