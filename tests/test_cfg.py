"""Part 1 CFG world: grammars, sampler, exact membership test, packed batches, evaluation."""
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmphys.config import load_config_file
from lmphys.errors import ConfigError, DataError
from lmphys.worlds import cfg
from lmphys.worlds.base import ModelFns
from lmphys.worlds.cfg import measure, parse, robust
from tests.conftest import REPO

PAPER = ("cfg3b", "cfg3i", "cfg3h", "cfg3g", "cfg3f", "cfg3e1", "cfg3e2", "cfg3j", "cfg3k")


def reference_accepts(g: cfg.Grammar, string) -> bool:
    """Slow, obviously correct membership: memoized sets of end positions, top-down from the root."""
    string = [int(t) for t in string]
    last = g.num_levels - 1

    @functools.lru_cache(maxsize=None)
    def ends(level, sym, start):
        if level == last:
            return frozenset([start + 1]) if start < len(string) and string[start] == sym + 1 else frozenset()
        out = set()
        for rule in g.rules[level][sym]:
            front = {start}
            for child in rule:
                front = set().union(*[ends(level + 1, child, p) for p in front])
            out |= front
        return frozenset(out)

    return len(string) in ends(0, 0, 0)


def one_bucket(g, strings, lengths):
    """Keeps the strings of the most common length bucket, so a test compiles one parser program."""
    words = np.array([parse.words_for(int(n)) for n in lengths])
    values, counts = np.unique(words, return_counts=True)
    keep = words == values[counts.argmax()]
    return strings[keep], lengths[keep]


def corrupt(strings, lengths, num_terminals, seed=0):
    """One random position of each string changed to another terminal."""
    rng = np.random.default_rng(seed)
    bad = strings.copy()
    for i, n in enumerate(lengths):
        j = rng.integers(n)
        bad[i, j] = (bad[i, j] + rng.integers(1, num_terminals) - 1) % num_terminals + 1
    return bad


def sample_np(g, seed, n):
    strings, lengths = cfg.sample(g, jax.random.key(seed), n)
    return np.asarray(strings), np.asarray(lengths)


@pytest.mark.parametrize("name", PAPER + ("cfg_small", "cfg_mid"))
def test_shipped_grammar_samples_are_accepted(name):
    g = cfg.load_grammar(name)
    assert g.name == name and g.vocab_size == g.bos_id + 1 > max(g.eos_id, g.mask_id)
    strings, lengths = sample_np(g, 0, 24)
    assert strings.shape == (24, g.max_len) and strings.dtype == np.int32
    assert np.all((lengths >= g.min_len) & (lengths <= g.max_len))
    assert np.all((strings > 0).sum(1) == lengths)  # compact: no holes, 0-padded after the string
    assert np.all(strings[:, :][np.arange(g.max_len)[None] < lengths[:, None]] <= g.num_terminals)
    strings, lengths = one_bucket(g, strings, lengths)
    assert np.asarray(cfg.accepts(g, strings, lengths)).all()
    assert all(reference_accepts(g, s[:n]) for s, n in zip(strings[:4], lengths[:4]))


@pytest.mark.parametrize("name", ["cfg_small", "cfg3f"])
def test_accepts_agrees_with_reference_on_corruptions(name):
    g = cfg.load_grammar(name)
    strings, lengths = one_bucket(g, *sample_np(g, 1, 400 if name == "cfg_small" else 96))
    bad = corrupt(strings, lengths, g.num_terminals)
    got = np.asarray(cfg.accepts(g, bad, lengths))
    want = np.array([reference_accepts(g, s[:n]) for s, n in zip(bad, lengths)])
    np.testing.assert_array_equal(got, want)
    assert (~want).sum() >= len(want) // 2  # most corruptions leave the language: rejects are tested
    assert np.asarray(cfg.accepts(g, strings, lengths)).all()


def test_accepts_rejects_bad_lengths_and_tokens():
    g = cfg.load_grammar("cfg_small")
    strings, lengths = sample_np(g, 2, 8)
    strings_ext = np.pad(strings, ((0, 0), (0, 5)))
    assert not np.asarray(cfg.accepts(g, strings_ext, lengths + 1)).any()  # a trailing pad token inside
    assert not np.asarray(cfg.accepts(g, strings, np.full(8, g.min_len - 1))).any()
    with_eos = strings.copy()
    with_eos[:, 0] = g.eos_id
    assert not np.asarray(cfg.accepts(g, with_eos, lengths)).any()
    junk_after = strings_ext.copy()
    junk_after[np.arange(8), lengths] = 3  # tokens past the length are ignored
    assert np.asarray(cfg.accepts(g, junk_after, lengths)).all()


def test_accepts_rejects_malformed_input_with_a_data_error():
    g = cfg.load_grammar("cfg_small")
    strings, lengths = sample_np(g, 4, 4)
    wide = strings.astype(np.int64)
    wide[0, 0] = 2**32 + int(strings[0, 0])  # used to wrap to a valid token and be accepted
    bad_inputs = [
        (strings + 0.7, lengths),  # floats were truncated
        (strings, lengths.astype(np.float32)),
        (wide, lengths),
        (np.where(np.arange(strings.shape[1]) == 0, -1, strings), lengths),
        (strings, np.r_[lengths[:-1], -1]),
        (strings, np.r_[lengths[:-1], strings.shape[1] + 1]),
        (strings, lengths[:3]),
        (strings[0], lengths[:1]),
    ]
    for tokens, lens in bad_inputs:
        with pytest.raises(DataError):
            cfg.accepts(g, tokens, lens)
    assert np.asarray(cfg.accepts(g, strings.astype(np.int64), lengths)).all()  # any integer dtype
    assert not np.asarray(cfg.accepts(g, strings, 0 * lengths)).any()  # empty strings: valid input, rejected


def test_accepts_compiles_each_program_width_once():
    g = cfg.load_grammar("cfg3b")
    strings, lengths = sample_np(g, 5, 96)
    traced = []  # a new parser program is lowered first (whatever the compilation cache holds)
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, seconds, fun_name="", **_: traced.append(fun_name)
        if event == "/jax/core/compile/jaxpr_to_mlir_module_duration" and "_accepts_words" in fun_name else None)
    assert np.asarray(cfg.accepts(g, strings, lengths)).all()
    assert len(traced) <= 1  # at most one new program per call
    for width in (g.max_len, int(lengths.max()) + 1, int(lengths.max()) + 7):  # other input widths: none
        before = len(traced)
        assert np.asarray(cfg.accepts(g, np.pad(strings, ((0, 0), (0, 8)))[:, :width], lengths)).all()
        assert len(traced) == before, width


def test_sampling_no_strings_gives_empty_arrays():
    g = cfg.load_grammar("cfg_small")
    tokens, lengths = cfg.sample(g, jax.random.key(0), 0)
    assert tokens.shape == (0, g.max_len) and lengths.shape == (0,)
    assert [x.shape[0] for x in cfg.sample_with_labels(g, jax.random.key(0), 0)] == [0, 0, 0, 0]
    assert not np.asarray(cfg.accepts(g, tokens, lengths)).size


def test_generation_entropy_uses_the_sampling_temperature_and_fit_shares_are_reported():
    g = cfg.load_grammar("cfg_small")
    task = cfg.CFGTask(g, batch_size=2, seq_len=22, eval_samples=16, eval_prefix_len=4, temperature=0.5,
                       corrupt_rate=0.0)
    fresh, fresh_len = sample_np(g, 9, 16)
    logits = np.log(np.arange(1, task.vocab_size + 1, dtype=np.float64))  # the same at every position

    def sample_fixed(prompts, starts, key):
        prompts = np.array(prompts)
        for i, start in enumerate(np.asarray(starts)):
            n = min(int(fresh_len[i]), task.seq_len - 2)
            prompts[i, start:n + 1] = fresh[i, start - 1:n]
            prompts[i, n + 1] = task.eos_id if fresh_len[i] <= task.seq_len - 2 else 1
        return jnp.asarray(prompts)

    def log_probs(rows):
        return jnp.asarray(np.broadcast_to(logits - np.log(np.exp(logits).sum()), rows.shape + logits.shape))

    metrics = task.evaluate(ModelFns(sample_fixed, log_probs), jax.random.key(0))
    fits = fresh_len <= task.seq_len - 2
    tempered = 2 * logits - np.log(np.exp(2 * logits).sum())  # softmax(logits / 0.5)
    expected = [-(tempered[fresh[i, :n]].sum() + tempered[task.eos_id]) / np.log(2)
                for i, n in enumerate(fresh_len) if fits[i]]
    np.testing.assert_allclose(metrics["gen_entropy_bits"], np.mean(expected), rtol=1e-5)
    assert metrics["gen_fit_fraction"] == fits.mean() < 1
    _, drawn = sample_np(g, 2**31 - 1, 4 * 16)  # the held-out draws
    assert metrics["held_out_fit_fraction"] == np.mean(drawn <= task.seq_len - 2) < 1


@pytest.mark.parametrize("name", ["cfg3j", "cfg3k"])
def test_long_grammar_configs_have_a_context_that_fits_their_strings(name):
    config = load_config_file(os.path.join(REPO, "configs", "cfg", f"{name}.py"))
    assert config.task.grammar == name and config.model.max_len >= config.task.seq_len
    _, lengths = sample_np(cfg.load_grammar(name), 3, 2000)
    assert np.mean(lengths <= config.task.seq_len - 2) >= 0.99  # BOS + string + EOS
    assert np.mean(lengths <= 512 - 2) < 0.6  # Part 1's 512 holds only about half of them


def test_accepts_is_jittable():
    g = cfg.load_grammar("cfg_small")
    strings, lengths = sample_np(g, 3, 16)
    bad = corrupt(strings, lengths, g.num_terminals, seed=3)
    both = np.concatenate([strings, bad]), np.concatenate([lengths, lengths])
    jitted = jax.jit(functools.partial(cfg.accepts, g))(jnp.asarray(both[0]), jnp.asarray(both[1]))
    np.testing.assert_array_equal(np.asarray(jitted), np.asarray(cfg.accepts(g, *both)))


def test_sampler_determinism_jit_and_vmap():
    g = cfg.load_grammar("cfg_small")
    a, a_len = cfg.sample(g, jax.random.key(7), 64)
    b, b_len = cfg.sample(g, jax.random.key(7), 64)
    c, _ = cfg.sample(g, jax.random.key(8), 64)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a_len, b_len)
    assert not np.array_equal(a, c)
    keys = jax.random.split(jax.random.key(9), 3)
    batched, batched_len = jax.jit(jax.vmap(lambda k: cfg.sample(g, k, 16)))(keys)
    assert batched.shape == (3, 16, g.max_len) and batched_len.shape == (3, 16)
    np.testing.assert_array_equal(batched[1], cfg.sample(g, keys[1], 16)[0])
    big, big_len = cfg.sample(g, jax.random.key(1), 5000)  # chunked path (n > CHUNK)
    assert big.shape == (5000, g.max_len) and np.all(np.asarray((big > 0).sum(1)) == np.asarray(big_len))


@pytest.mark.parametrize("name, mean", [("cfg3b", 275.0), ("cfg3f", 250.0)])
def test_length_mean_matches_reference(name, mean):
    g = cfg.load_grammar(name)
    _, lengths = cfg.sample(g, jax.random.key(0), 8192)
    assert abs(float(np.mean(lengths)) / mean - 1) < 0.02


def test_rules_are_chosen_uniformly():
    g = cfg.load_grammar("cfg_small")
    _, lengths = sample_np(g, 4, 20000)
    # root rules are (0, 2) and (2, 0, 1); a length histogram drifts if one rule is favoured
    two = cfg.Grammar("two", ((g.rules[0][0][:1],),) + g.rules[1:], 3, 4, 5)
    three = cfg.Grammar("three", ((g.rules[0][0][1:],),) + g.rules[1:], 3, 4, 5)
    mean_two = float(np.mean(sample_np(two, 5, 20000)[1]))
    mean_three = float(np.mean(sample_np(three, 6, 20000)[1]))
    assert abs(float(np.mean(lengths)) - (mean_two + mean_three) / 2) < 0.15


def test_random_grammar_is_layered_and_its_samples_parse(tmp_path):
    key = jax.random.key(11)
    g = cfg.random_grammar(key, (1, 3, 4, 4, 3), deg_min=2, deg_max=3, len_min=2, len_max=3)
    assert g.sizes == (1, 3, 4, 4, 3) and g.num_levels == 5
    for level in g.rules:
        for sym in level:
            assert 2 <= len(sym) <= 3 and len(set(sym)) == len(sym)
            assert all(2 <= len(rule) <= 3 for rule in sym)
    assert cfg.random_grammar(key, (1, 3, 4, 4, 3)) == g
    strings, lengths = one_bucket(g, *sample_np(g, 0, 64))
    assert np.asarray(cfg.accepts(g, strings, lengths)).all()
    bad = corrupt(strings, lengths, g.num_terminals)
    np.testing.assert_array_equal(np.asarray(cfg.accepts(g, bad, lengths)),
                                  [reference_accepts(g, s[:n]) for s, n in zip(bad, lengths)])
    path = str(tmp_path / "mine.json")
    cfg.save_grammar(g, path)
    loaded = cfg.load_grammar(path)
    assert loaded.rules == g.rules and loaded.name == "mine" and loaded.eos_id == g.eos_id
    assert loaded.bos_id == g.bos_id and loaded.vocab_size == g.vocab_size


def level_duplicates(g):
    return sum(sum(len(sym) for sym in level) - len({r for sym in level for r in sym}) for level in g.rules)


def test_random_grammar_has_the_generators_knobs():
    keys = jax.random.split(jax.random.key(12), 12)
    # cfg3g's knobs (3 rules of 2-3 children): as in the nine tables, no rule repeats on a level
    paper_like = [cfg.random_grammar(k, deg_min=3, deg_max=3) for k in keys]
    assert all(level_duplicates(g) == 0 for g in paper_like)
    assert all(cfg.grammar_to_json(g)["disallow_duplicate_seq"] for g in paper_like)
    released_default = [cfg.random_grammar(k, deg_min=3, deg_max=3, disallow_duplicate_seq=False) for k in keys]
    assert sum(level_duplicates(g) for g in released_default) > 0
    # cfg3b's knobs: 2 rules, no symbol twice in a rule, like the shipped cfg3b
    cfg3b_like = cfg.random_grammar(keys[0], deg_min=2, deg_max=2, disallow_duplicate_sym=True)
    assert all(len(set(r)) == len(r) for level in cfg3b_like.rules for sym in level for r in sym)
    assert cfg.grammar_to_json(cfg3b_like)["disallow_duplicate_sym"]
    assert not all(len(set(r)) == len(r) for g in paper_like for level in g.rules for sym in level for r in sym)
    # reachability: redrawn by default, the release's behaviour (some symbol unreachable) on request
    wide = [cfg.random_grammar(k, (1, 2, 9, 3), deg_min=1, deg_max=1, require_reachable=False) for k in keys]
    unreachable = [g for g in wide if {c for sym in g.rules[1] for r in sym for c in r} != set(range(9))
                   or {c for r in g.rules[0][0] for c in r} != {0, 1}]
    assert unreachable
    with pytest.raises(DataError):
        cfg.random_grammar(keys[0], (1, 2, 9, 3), deg_min=1, deg_max=1, max_tries=3)
    with pytest.raises(DataError, match="distinct rules"):  # 3 symbols x 4 rules > the 3 + 6 rules of 1-2 distinct children
        cfg.random_grammar(keys[0], (1, 3, 3), deg_min=4, deg_max=4, len_min=1, len_max=2, disallow_duplicate_sym=True)


def test_save_load_round_trip_of_paper_table(tmp_path):
    g = cfg.load_grammar("cfg3e1")
    cfg.save_grammar(g, str(tmp_path / "copy.json"))
    loaded = cfg.load_grammar(str(tmp_path / "copy.json"))
    assert (loaded.rules, loaded.num_terminals, loaded.eos_id, loaded.mask_id) == (
        g.rules, g.num_terminals, g.eos_id, g.mask_id)


def test_bad_grammar_names_and_files(tmp_path):
    with pytest.raises(DataError, match="cfg3f.*cfg_small"):
        cfg.load_grammar("cfg9z")
    broken = tmp_path / "broken.json"
    broken.write_text('{"idx": [[5], [1, 2]], "all": [[{"children": [[0, 7]]}], [{}, {}]]}')
    with pytest.raises(DataError, match="positions"):
        cfg.load_grammar(str(broken))
    config = load_config_file(os.path.join(REPO, "configs", "default.py")).task
    config.grammar = "nope"
    with pytest.raises(ConfigError, match="task.grammar.*cfg3b"):
        cfg.task_from_config(config)
    config.grammar, config.objective = "cfg_small", "xl"
    with pytest.raises(ConfigError, match="task.objective"):
        cfg.task_from_config(config)


def split_documents(row, bos, eos):
    """Complete BOS ... EOS documents of a token row."""
    docs, current = [], None
    for token in row:
        if token == bos:
            current = []
        elif token == eos:
            if current is not None:
                docs.append(current)
            current = None
        elif current is not None:
            current.append(int(token))
    return docs


def test_packed_lm_batch_documents_parse():
    g = cfg.load_grammar("cfg_small")
    task = cfg.CFGTask(g, batch_size=4, seq_len=64, objective="lm")
    batch = jax.jit(task.batch)(jax.random.key(0))
    assert batch.inputs.shape == (4, 64) and batch.inputs.dtype == jnp.int32
    np.testing.assert_array_equal(batch.inputs[:, 1:], batch.targets[:, :-1])
    assert float(batch.loss_mask.min()) == 1.0
    stream = np.concatenate([np.asarray(batch.inputs), np.asarray(batch.targets[:, -1:])], 1)
    assert stream[0, 0] == task.bos_id and not (stream == 0).any()
    docs = [d for row in stream for d in split_documents(row, task.bos_id, task.eos_id)]
    assert len(docs) >= 4 * 64 // (g.max_len + 2)
    width = max(len(d) for d in docs)
    strings = np.array([d + [0] * (width - len(d)) for d in docs], np.int32)
    lengths = np.array([len(d) for d in docs], np.int32)
    assert np.asarray(cfg.accepts(g, strings, lengths)).all()
    assert not np.array_equal(np.asarray(task.batch(jax.random.key(1)).inputs), np.asarray(batch.inputs))


def test_mlm_batch_rows_are_whole_documents():
    g = cfg.load_grammar("cfg_small")
    task = cfg.CFGTask(g, batch_size=8, seq_len=24, objective="mlm")  # some strings (<= 27) do not fit
    batch = task.batch(jax.random.key(0))
    rows = np.asarray(batch.targets)
    assert rows.shape == (8, 24) and np.all(rows[:, 0] == task.bos_id)
    for row in rows:
        (eos,) = np.flatnonzero(row == task.eos_id)
        assert np.all(row[eos + 1:] == 0) and reference_accepts(g, row[1:eos])
    chosen = np.asarray(batch.loss_mask) > 0
    assert not np.any(chosen & (rows == 0))
    assert np.all(np.asarray(batch.inputs)[~chosen] == rows[~chosen])


def test_evaluate_with_a_perfect_and_a_broken_model():
    g = cfg.load_grammar("cfg_small")
    task = cfg.CFGTask(g, batch_size=2, seq_len=32, eval_samples=16, eval_prefix_len=4)

    def perfect(prompts, starts, key):
        """Continues each prompt with the rest of a held-out string, or writes a fresh sample."""
        prompts = np.array(prompts)
        held, held_len = task.held_out()
        fresh, fresh_len = sample_np(g, int(jax.random.randint(key, (), 0, 1000)), len(prompts))
        for i, start in enumerate(np.asarray(starts)):
            if start == 1:
                string, n = fresh[i], fresh_len[i]
            else:
                string, n = held[i], held_len[i]
            prompts[i, 1:n + 1] = string[:n]
            prompts[i, n + 1] = task.eos_id
            prompts[i, n + 2:] = 3  # garbage after EOS is ignored
        return jnp.asarray(prompts)

    def true_log_probs(rows):
        """The grammar's own next-token law at every position of BOS + string + EOS rows."""
        rows = np.asarray(rows)
        strings, lengths, _ = cfg.strings_until_eos(rows, np.ones(len(rows), np.int32), task.eos_id)
        law = measure.next_token_distributions(g, strings, lengths)
        out = np.full(rows.shape + (task.vocab_size,), 1.0 / task.vocab_size)
        out[:, : law.shape[1]] = np.where(law.sum(-1, keepdims=True) > 0, law, out[:, : law.shape[1]])
        return jnp.asarray(np.log(np.maximum(out, 1e-300)))

    metrics = task.evaluate(ModelFns(perfect, true_log_probs), jax.random.key(0))
    assert metrics["gen_accuracy"] == 1.0 and metrics["cut_accuracy"] == 1.0
    assert metrics["gen_fit_fraction"] == 1.0 and metrics["held_out_fit_fraction"] == 1.0
    # It continued as if the prefix were clean: right exactly where the corrupted prefix is no closer
    # to the language's prefixes than its injected changes (else the true rest adds errors).
    held, held_len = task.held_out()
    corrupted, changes = (np.asarray(x) for x in robust.corrupt(g, jax.random.key(2**31 - 2), held[:, :4],
                                                                 np.full(len(held), 4), task.corrupt_rate))
    clean_rest_ok = [robust.edit_distance_to_language(g, np.r_[c, h[4:n]], n)
                     == robust.prefix_distance_to_language(g, c, 4) for c, h, n in zip(corrupted, held, held_len)]
    assert metrics["corrupted_cut_accuracy"] == np.mean(clean_rest_ok)
    assert metrics["corrupted_changes"] == changes.mean() >= metrics["corrupted_prefix_distance"]
    assert metrics["kl"] < 1e-6  # float32 log-probs: exact up to rounding
    assert g.min_len <= metrics["gen_mean_len"] <= g.max_len
    assert 0 < metrics["gen_distinct_fraction"] <= 1 and metrics["gen_entropy_bits"] > 0

    def no_eos(prompts, starts, key):
        return jnp.where(jnp.arange(prompts.shape[1])[None] >= starts[:, None], 1, prompts)

    def uniform_log_probs(rows):
        return jnp.full(rows.shape + (task.vocab_size,), -np.log(task.vocab_size))

    metrics = task.evaluate(ModelFns(no_eos, uniform_log_probs), jax.random.key(0))
    assert metrics["gen_accuracy"] == 0.0 and metrics["cut_accuracy"] == 0.0
    assert metrics["corrupted_cut_accuracy"] == 0.0 and metrics["kl"] > 0.1
    assert cfg.CFGTask(g, objective="mlm", seq_len=32).evaluate(ModelFns(None, None), jax.random.key(0)) == {}


def test_low_temperature_accuracies_come_from_the_model_at_each_temperature_with_fixed_keys():
    from lmphys.worlds.cfg import temperatures

    g = cfg.load_grammar("cfg_small")
    task = cfg.CFGTask(g, batch_size=2, seq_len=32, eval_samples=32, eval_prefix_len=4, corrupt_rate=0.2)
    held, held_len = task.held_out()
    keys_seen = []

    def model_at(temperature):
        """Below 0.5, continues each prompt with the rest of its held-out string; above, never ends."""
        def sample(prompts, starts, key):
            keys_seen.append(np.asarray(jax.random.key_data(key)))
            prompts = np.array(prompts)
            if temperature >= 0.5:
                return jnp.where(jnp.arange(prompts.shape[1])[None] >= jnp.asarray(starts)[:, None], 1, prompts)
            for i, n in enumerate(held_len):
                prompts[i, 5:n + 1], prompts[i, n + 1] = held[i, 4:n], task.eos_id
            return jnp.asarray(prompts)
        return ModelFns(sample, None)

    result = temperatures.accuracies_at(task, model_at, (0.1, 1.0))
    clean_rest = task.completion_metrics(model_at(0.1), *jax.random.split(jax.random.key(0)))
    assert result == {"T=0.1": {"cut_accuracy": 1.0, "corrupted_cut_accuracy": clean_rest["corrupted_cut_accuracy"]},
                      "T=1": {"cut_accuracy": 0.0, "corrupted_cut_accuracy": 0.0}}
    assert 0 < clean_rest["corrupted_cut_accuracy"] < 1  # some corrupted prefixes are completable this way, not all
    fixed = np.asarray(jax.random.key_data(jax.random.split(jax.random.key(temperatures._KEY_SEED))))
    assert all(np.array_equal(key, fixed[i % 2]) for i, key in enumerate(keys_seen[:4]))  # cut, corrupted per T
    with pytest.raises(ConfigError, match="must be > 0"):
        temperatures.accuracies_at(task, model_at, (0.2, 0.0))


def test_low_temperature_analysis_samples_a_gpt_and_refuses_an_encoder():
    from lmphys.models import decode, transformer
    from lmphys.worlds.cfg import temperatures

    g = cfg.load_grammar("cfg_small")
    task = cfg.CFGTask(g, batch_size=2, seq_len=32, eval_samples=32, eval_prefix_len=4, corrupt_rate=0.2)
    model_cfg = transformer.ModelConfig(kind="gpt", vocab_size=task.vocab_size, num_layers=1, num_heads=2,
                                        width=32, max_len=32)
    graphdef, params = transformer.init_model(model_cfg, jax.random.key(0))
    result = temperatures.analyze_run(task, graphdef, params, temperatures=(1e-6,))
    greedy = jax.jit(functools.partial(decode.generate, graphdef, greedy=True, eos_id=task.eos_id))
    expected = task.completion_metrics(ModelFns(functools.partial(greedy, params), None),
                                       *jax.random.split(jax.random.key(0)))  # greedy ignores the keys
    assert result == {"T=1e-06": {name: expected[name] for name in ("cut_accuracy", "corrupted_cut_accuracy")}}
    with pytest.raises(ConfigError, match="needs a decoder"):
        temperatures.analyze_run(cfg.CFGTask(g, objective="mlm", seq_len=32), graphdef, params)


def test_cfg_mid_is_the_grammar_its_readme_says_it_was_made_with():
    made = cfg.random_grammar(jax.random.key(1), (1, 3, 3, 3, 3), deg_min=2, deg_max=3, len_min=2, len_max=3,
                              name="cfg_mid")
    shipped = cfg.load_grammar("cfg_mid")
    assert made == shipped and (shipped.min_len, shipped.max_len) == (24, 54)
    assert shipped.max_len + 2 <= load_config_file(os.path.join(REPO, "configs", "cfg", "mid.py")).task.seq_len
