"""Part 3.1 probing: P/Q probe inputs read the intended tokens, encoders see only the prefix, the
embedding update is rank r and starts at zero, and the probes decode information that is planted in
a crafted model while finding nothing when it is not there."""
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmphys import probe
from lmphys.errors import ConfigError, DataError
from lmphys.models import transformer
from lmphys.worlds import bio
from lmphys.worlds.bio import pieces, probes, text

TOKENIZER = pieces.tokenizer()


def tiny_model(kind: str = "gpt", seed: int = 0):
    cfg = transformer.ModelConfig(kind=kind, vocab_size=TOKENIZER.vocab_size, num_layers=2, num_heads=2, width=32,
                                  max_len=128)
    return cfg, *transformer.init_model(cfg, jax.random.key(seed))


def identity_gpt(embedding_VD: np.ndarray):
    """A 2-layer GPT whose blocks add nothing (zero output projections), so hidden[-1] at a position
    is the embedding of the token there: what a probe can read is exactly what the embeddings hold."""
    _, graphdef, params = tiny_model("gpt")
    blocks = params["stack"]["blocks"]
    blocks["attention"]["out"] = jax.tree.map(jnp.zeros_like, blocks["attention"]["out"])
    blocks["mlp_out"] = jax.tree.map(jnp.zeros_like, blocks["mlp_out"])
    params["token_embed"]["embedding"] = jnp.asarray(embedding_VD, jnp.float32)
    return graphdef, params


def random_embedding(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(TOKENIZER.vocab_size, 32)).astype(np.float32)


@pytest.fixture(scope="module")
def world():
    people = bio.sample_people(3, 300)
    return people, text.biographies(people, 3)


@pytest.fixture(scope="module")
def identity_fits(world):
    """P probes of the identity model at the right tokens (before each value) and one token later."""
    people, documents = world
    graphdef, params = identity_gpt(random_embedding(2))
    labels, num_classes = probes.attribute_labels(people)
    inputs = probes.p_probe_inputs(documents, bos_id=TOKENIZER.bos_id, pad_id=TOKENIZER.pad_id,
                                      mask_id=TOKENIZER.mask_id, causal=True)
    full_rows = (inputs.tokens[-1],) * 6  # every value start lies inside the last position's rows
    right = probes.ProbeInputs(full_rows, inputs.positions_PN, inputs.person_N)
    shifted = probes.ProbeInputs(full_rows, inputs.positions_PN + 1, inputs.person_N)
    train_rows, test_rows = probes.split_rows(len(people), 0.5, jax.random.key(0))
    fits = {"inputs": right, "train_rows": train_rows}
    for name, probe_inputs in (("right", right), ("shifted", shifted)):
        fits[name] = probes.fit_embedding_probes(
            graphdef, params, probe_inputs, labels, num_classes, train_rows, test_rows, rank=2, steps=40,
            learning_rate=1e-2, batch_size=16, key=jax.random.key(3))
    return fits


def test_p_inputs_read_the_token_just_before_each_value(world):
    people, documents = world
    inputs = probes.p_probe_inputs(documents, bos_id=TOKENIZER.bos_id, pad_id=TOKENIZER.pad_id,
                                      mask_id=TOKENIZER.mask_id, causal=True)
    assert inputs.num_positions == 6 and inputs.positions_PN.shape == (6, len(people))
    np.testing.assert_array_equal(inputs.person_N, np.arange(len(people)))
    assert len({tokens.shape for tokens in inputs.tokens}) == 1, "a decoder reads the same whole rows everywhere"
    for p, tokens_NT in enumerate(inputs.tokens):
        for n in range(0, len(people), 7):
            document, start = documents.document(n), documents.value_spans[n, p, 0]
            position = inputs.positions_PN[p, n]
            assert tokens_NT[n, 0] == TOKENIZER.bos_id
            np.testing.assert_array_equal(tokens_NT[n, 1:position + 1], document[:position])
            assert tokens_NT[n, position] == document[start - 1], "the token before the value, not the value"


def test_decoder_rows_end_at_the_last_probe_token_and_give_the_features_of_whole_rows(world):
    _, documents = world
    inputs = probes.p_probe_inputs(documents, bos_id=TOKENIZER.bos_id, pad_id=TOKENIZER.pad_id,
                                   mask_id=TOKENIZER.mask_id, causal=True)
    cut_NT = inputs.tokens[0]
    whole_NT = text.bos_rows([np.asarray(documents.document(int(n))) for n in inputs.person_N],
                                   TOKENIZER.bos_id, TOKENIZER.pad_id)
    assert cut_NT.shape[1] == inputs.positions_PN.max() + 1 < whole_NT.shape[1]
    cut_NT, whole_NT = cut_NT[:64], whole_NT[:64]
    _, graphdef, params = tiny_model("gpt")
    update = probe.init_embedding_update(jax.random.key(1), params["token_embed"]["embedding"], 2)
    update["a"] = jax.random.normal(jax.random.key(2), update["a"].shape)  # a moved update, as in training
    for positions_N in inputs.positions_PN:
        features = [probes.probe_features(graphdef, params, update, jnp.asarray(rows), jnp.asarray(positions_N[:64]))
                    for rows in (cut_NT, whole_NT)]
        np.testing.assert_allclose(*features, rtol=1e-5, atol=1e-6)


def test_encoder_inputs_mask_everything_after_the_probe(world):
    _, documents = world
    decoder = probes.p_probe_inputs(documents, bos_id=TOKENIZER.bos_id, pad_id=TOKENIZER.pad_id,
                                       mask_id=TOKENIZER.mask_id, causal=True)
    encoder = probes.p_probe_inputs(documents, bos_id=TOKENIZER.bos_id, pad_id=TOKENIZER.pad_id,
                                       mask_id=TOKENIZER.mask_id, causal=False)
    np.testing.assert_array_equal(encoder.positions_PN, decoder.positions_PN)
    assert len({tokens.shape for tokens in encoder.tokens}) == 1, "one full-length row set per position"
    for p, tokens_NT in enumerate(encoder.tokens):
        columns = np.arange(tokens_NT.shape[1])[None]
        after = columns > encoder.positions_PN[p][:, None]
        assert np.all(tokens_NT[after] == TOKENIZER.mask_id)
        prefix = decoder.tokens[p]
        np.testing.assert_array_equal(np.where(after[:, :prefix.shape[1]], prefix, tokens_NT[:, :prefix.shape[1]]),
                                      prefix)
        assert not np.any(tokens_NT[~after] == TOKENIZER.mask_id)


def test_encoder_inputs_read_at_the_value_mask_it_and_everything_after(world):
    _, documents = world
    before = probes.p_probe_inputs(documents, bos_id=TOKENIZER.bos_id, pad_id=TOKENIZER.pad_id,
                                   mask_id=TOKENIZER.mask_id, causal=False)
    at_value = probes.p_probe_inputs(documents, bos_id=TOKENIZER.bos_id, pad_id=TOKENIZER.pad_id,
                                     mask_id=TOKENIZER.mask_id, causal=False, read="value")
    np.testing.assert_array_equal(at_value.positions_PN, before.positions_PN + 1)
    first = np.unique(np.asarray(documents.person), return_index=True)[1]
    value_starts_NP = np.asarray(documents.value_spans)[first, :, 0] + 1  # + 1 for the BOS
    np.testing.assert_array_equal(at_value.positions_PN, value_starts_NP.T)
    for p, (tokens_NT, read_tokens_NT) in enumerate(zip(before.tokens, at_value.tokens)):
        rows = np.arange(len(tokens_NT))
        read_at = at_value.positions_PN[p]
        assert np.all(tokens_NT[rows, read_at] == TOKENIZER.mask_id), "the value's first token was masked before too"
        # the same rows: only the read token differs from the before-value reading, and it is the mask
        np.testing.assert_array_equal(read_tokens_NT, tokens_NT)
        original = np.asarray([documents.document(int(d))[read_at[n] - 1] for n, d in enumerate(first)])
        assert not np.any(original == TOKENIZER.mask_id)


def test_a_decoder_cannot_read_at_the_value(world):
    _, documents = world
    with pytest.raises(ConfigError, match="encoders"):
        probes.p_probe_inputs(documents, bos_id=TOKENIZER.bos_id, pad_id=TOKENIZER.pad_id,
                              mask_id=TOKENIZER.mask_id, causal=True, read="value")
    with pytest.raises(ConfigError, match="read"):
        probes.p_probe_inputs(documents, bos_id=TOKENIZER.bos_id, pad_id=TOKENIZER.pad_id,
                              mask_id=TOKENIZER.mask_id, causal=False, read="after")


def test_q_inputs_are_bos_and_the_full_name(world):
    people, documents = world
    inputs = probes.q_probe_inputs(people, TOKENIZER)
    (rows,) = inputs.tokens
    for n in range(0, len(people), 11):
        name = TOKENIZER.encode(people.full_name(n))
        position = inputs.positions_PN[0, n]
        assert position == len(name) and rows[n, 0] == TOKENIZER.bos_id
        np.testing.assert_array_equal(rows[n, 1:position + 1], name)
        assert np.all(rows[n, position + 1:] == TOKENIZER.pad_id)
        _, end = documents.name_spans[n]
        assert rows[n, position] == documents.document(n)[end - 1], "the last token of the name as written"


@pytest.mark.slow
def test_update_starts_at_zero_and_keeps_its_rank(world, identity_fits):
    people, documents = world
    _, graphdef, params = tiny_model("gpt")
    inputs = probes.p_probe_inputs(documents, bos_id=TOKENIZER.bos_id, pad_id=TOKENIZER.pad_id,
                                      mask_id=TOKENIZER.mask_id, causal=True)
    _, num_classes = probes.attribute_labels(people)
    initial = probes.init_probe_params(jax.random.key(0), params["token_embed"]["embedding"], 6, 2, num_classes)
    assert not np.any(np.asarray(probe.embedding_update(jax.tree.map(lambda a: a[5], initial["update"]))))
    tokens, positions = inputs.tokens[5][:16], inputs.positions_PN[5, :16]
    features = jax.jit(probes.probe_features)(graphdef, params, jax.tree.map(lambda a: a[5], initial["update"]),
                                                 jnp.asarray(tokens), jnp.asarray(positions))
    _, hidden = jax.jit(lambda p, t: transformer.apply(graphdef, p, t, return_hidden=True))(params, jnp.asarray(tokens))
    np.testing.assert_allclose(features, np.asarray(hidden)[-1, np.arange(16), positions], rtol=1e-5, atol=1e-6)

    trained = identity_fits["right"].probe_params["update"]
    seen = np.unique(identity_fits["inputs"].tokens[0][identity_fits["train_rows"]])
    unseen = np.setdiff1d(np.arange(TOKENIZER.vocab_size), seen)
    for position in range(6):
        update_VD = np.asarray(probe.embedding_update(jax.tree.map(lambda a: a[position], trained)))
        assert update_VD.shape == params["token_embed"]["embedding"].shape
        assert np.linalg.matrix_rank(update_VD, tol=1e-6 * np.abs(update_VD).max()) == 2, "rank 2, and trained"
        assert not np.any(update_VD[unseen]), "tokens no training input holds keep the frozen embedding"


@pytest.mark.parametrize("shuffle", [False, True])
def test_q_probe_reads_knowledge_planted_on_the_name(shuffle):
    """The identity model's name representation is its last name's embedding. Give everyone a major
    that their last name determines (6 majors) and plant that major's code in the last name's
    embedding: Q-probing reads the major of held-out people, and nothing else. Plant the code of an
    unrelated major instead (inputs shuffled against the labels): held-out people stay at chance."""
    rng = np.random.default_rng(0)
    people = bio.sample_people(5, 300)
    major_of_last_name = rng.integers(0, 6, size=people.last.max() + 1)
    people = dataclasses.replace(people, major=major_of_last_name[people.last])
    planted = rng.permutation(major_of_last_name) if shuffle else major_of_last_name
    embedding = random_embedding(1)
    codes = 3.0 * rng.normal(size=(6, embedding.shape[1]))
    for n in range(len(people)):
        last_token = TOKENIZER.encode(people.full_name(n))[-1]
        embedding[last_token] = codes[planted[people.last[n]]] + 0.3 * rng.normal(size=embedding.shape[1])
    graphdef, params = identity_gpt(embedding)
    accuracy = probes.q_probe(graphdef, params, people, steps=100, batch_size=32, learning_rate=1e-2,
                                 key=jax.random.key(2))
    assert set(accuracy) == {f"Q.{attribute}" for attribute in bio.ATTRIBUTES}
    major_counts = np.bincount(people.major, minlength=6)
    chance = major_counts.max() / major_counts.sum()
    if shuffle:
        assert accuracy["Q.major"] < chance + 0.15
    else:
        assert accuracy["Q.major"] > 0.95
        assert accuracy["Q.birth_city"] < 0.1 and accuracy["Q.employer"] < 0.1


def test_p_probe_at_the_right_token_cannot_see_the_value(identity_fits):
    """With the identity model a probe sees only the token it reads. The token before a value tells
    nothing about it; one token later (the value's first word: the off-by-one bug) tells a lot."""
    right, shifted = identity_fits["right"], identity_fits["shifted"]
    assert right.accuracy_PA.shape == (6, 6)
    own_right, own_shifted = np.diag(right.accuracy_PA), np.diag(shifted.accuracy_PA)
    assert np.all(own_right <= right.majority_A + 0.05)
    # a city, university, major or employer shows in its first word (a birth date's is the month)
    assert np.all(own_shifted[1:] > right.majority_A[1:] + 0.1)
    assert own_shifted[1:].mean() > 0.3


@pytest.mark.slow
def test_probe_run_on_an_encoder_is_json_and_summarized(world, monkeypatch):
    people, _ = world
    cfg, graphdef, params = tiny_model("bert")
    few = people.subset(np.arange(24))
    calls, fit_embedding_probes = [], probes.fit_embedding_probes

    def recording_fit(graphdef, params, inputs, *args, **kwargs):
        calls.append((params["token_embed"]["embedding"], inputs))
        return fit_embedding_probes(graphdef, params, inputs, *args, **kwargs)

    monkeypatch.setattr(probes, "fit_embedding_probes", recording_fit)
    result = probes.probe_run(graphdef, params, cfg, few, text.biographies(few, 3), key=jax.random.key(0),
                                 p_kwargs=dict(steps=2, batch_size=4), q_kwargs=dict(steps=2, batch_size=4))
    # the model's P (before the value), Q, P at the value; then the same three on its random twin
    assert [inputs.num_positions for _, inputs in calls] == [6, 1, 6, 6, 1, 6]
    p_inputs, at_value_inputs = calls[0][1], calls[2][1]
    for tokens_NT, positions_N in zip(p_inputs.tokens, p_inputs.positions_PN):
        after = np.arange(tokens_NT.shape[1])[None] > positions_N[:, None]
        assert np.all(tokens_NT[after] == TOKENIZER.mask_id), "an encoder model gets masked P inputs"
    np.testing.assert_array_equal(at_value_inputs.positions_PN, p_inputs.positions_PN + 1)
    assert all(calls[i][0] is params["token_embed"]["embedding"] for i in range(3))
    assert not np.allclose(calls[3][0], calls[0][0]), "the baseline runs on a fresh model"
    assert set(result) == {"p", "q", "p_at_value", "p_random", "q_random", "p_at_value_random"}
    assert list(result["p"]) == [f"P{p}.{a}" for p in range(1, 7) for a in bio.ATTRIBUTES]
    assert list(result["p_at_value"]) == list(result["p"])
    assert list(result["q"]) == [f"Q.{a}" for a in bio.ATTRIBUTES]
    assert all(0.0 <= value <= 1.0 for part in result.values() for value in part.values())
    assert json.loads(json.dumps(result)) == result
    summary = probes.summarize(result)
    headline = {"p1_mean", "p_diagonal_mean", "q_mean", "p1_at_value_mean", "p_diagonal_at_value_mean"}
    assert set(summary) == headline | {name + "_random_init" for name in headline}
    report = probes.ProbeReport.from_run(result, "Q")
    assert report.accuracy == result["q"] and report.random_init == result["q_random"]


def test_a_decoders_probes_compile_once_each_for_the_model_and_its_random_twin(world):
    people, _ = world
    cfg, graphdef, params = tiny_model("gpt")
    few = people.subset(np.arange(40))
    lowered = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, seconds, fun_name="", **_: lowered.append(fun_name)
        if event == "/jax/core/compile/jaxpr_to_mlir_module_duration" else None)
    probes.probe_run(graphdef, params, cfg, few, text.biographies(few, 3), key=jax.random.key(0),
                     p_kwargs=dict(steps=2, batch_size=4), q_kwargs=dict(steps=2, batch_size=4))
    probe_programs = [name for name in lowered if "_train" in name or "_group_features" in name]
    # P and Q: one training program and one feature program each (6 positions were 6 programs each)
    assert sorted(probe_programs) == sorted(["jit(_train)", "jit(_group_features)"] * 2), probe_programs


def test_summary_takes_the_first_position_and_the_diagonal():
    attributes = bio.ATTRIBUTES
    p = {f"P{j + 1}.{a}": float(j == k) * 0.5 + float(j == 0) * 0.25 for j in range(6) for k, a in enumerate(attributes)}
    q = {f"Q.{a}": k / 10 for k, a in enumerate(attributes)}
    summary = probes.summarize({"p": p, "q": q})
    assert summary["p1_mean"] == pytest.approx(0.25 + 0.5 / 6)
    assert summary["p_diagonal_mean"] == pytest.approx(0.5 + 0.25 / 6)
    assert summary["q_mean"] == pytest.approx(0.25)
    assert "q_mean_random_init" not in summary


def test_bad_arguments_are_typed_errors(world):
    people, documents = world
    _, graphdef, params = tiny_model("gpt")
    with pytest.raises(ConfigError, match="train_fraction"):
        probes.q_probe(graphdef, params, people, train_fraction=1.0, key=jax.random.key(0))
    with pytest.raises(DataError, match="people"):
        probes.p_probe(graphdef, params, people.subset(np.arange(10)), documents, key=jax.random.key(0))
    with pytest.raises(ConfigError, match="rank"):
        probes.q_probe(graphdef, params, people, rank=0, key=jax.random.key(0))
