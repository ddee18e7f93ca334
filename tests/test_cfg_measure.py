"""Part 1 measurements: exact next-token distributions, KL, diversity, edit distance, corruption."""
import collections
import itertools
import math

import jax
import numpy as np
import pytest

from lmphys.worlds import cfg
from lmphys.worlds.cfg import measure, robust

# Root -> A B | B A | A A B, A -> 1 | 1 2, B -> 2 | 2 2 | 1: ambiguous ("1 2 2" has two derivations).
AMBIGUOUS = cfg.Grammar(name="ambiguous", rules=(
    (((0, 1), (1, 0), (0, 0, 1)),),
    (((0,), (0, 1)), ((1,), (1, 1), (0,))),
), num_terminals=2, eos_id=3, mask_id=4)


def tiny_grammars():
    return [
        AMBIGUOUS,
        cfg.random_grammar(jax.random.key(3), (1, 2, 2), deg_min=1, deg_max=3, len_min=1, len_max=3),
        cfg.random_grammar(jax.random.key(4), (1, 2, 2, 2), deg_min=2, deg_max=3, len_min=1, len_max=2),
        cfg.random_grammar(jax.random.key(0), (1, 2, 2, 3), deg_min=1, deg_max=2, len_min=1, len_max=3),
    ]


def derivations(g, level, symbol):
    """Every derivation of `symbol` as (string, probability); no aggregation."""
    if level == g.num_levels - 1:
        yield (symbol + 1,), 1.0
        return
    rules = g.rules[level][symbol]
    for rule in rules:
        for parts in itertools.product(*[list(derivations(g, level + 1, c)) for c in rule]):
            yield sum((s for s, _ in parts), ()), math.prod(p for _, p in parts) / len(rules)


def language(g):
    probs = collections.defaultdict(float)
    for string, p in derivations(g, 0, 0):
        probs[string] += p
    return dict(probs)


def brute_next_token(g, probs, prefix):
    """P(next | prefix) over terminals and EOS from the enumerated string probabilities."""
    out = np.zeros(g.vocab_size)
    n = len(prefix)
    for string, p in probs.items():
        if string[:n] == prefix:
            out[string[n] if len(string) > n else g.eos_id] += p
    total = out.sum()
    return out / total if total > 0 else out


def levenshtein(a, b):
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def padded(strings):
    width = max(len(s) for s in strings)
    tokens = np.zeros((len(strings), max(width, 1)), np.int32)
    for i, s in enumerate(strings):
        tokens[i, :len(s)] = s
    return tokens, np.array([len(s) for s in strings])


@pytest.mark.parametrize("index", range(4))
def test_next_token_distribution_and_string_prob_match_brute_force(index):
    g = tiny_grammars()[index]
    probs = language(g)
    assert abs(sum(probs.values()) - 1) < 1e-12
    strings = sorted(probs)
    assert np.asarray(cfg.accepts(g, *padded(strings))).all()
    rows = measure.next_token_distributions(g, *padded(strings))
    for b, string in enumerate(strings):
        for t in range(len(string) + 1):
            np.testing.assert_allclose(rows[b, t], brute_next_token(g, probs, string[:t]), atol=1e-12, rtol=0)
        assert not rows[b, len(string) + 1:].any()
    log_p = measure.string_log_probs(g, *padded(strings))
    np.testing.assert_allclose(log_p, np.log([probs[s] for s in strings]), atol=1e-12, rtol=0)
    # strings outside the language: probability 0, rows after an impossible prefix all zero
    outside = [s[:-1] + (3 - s[-1],) for s in strings if s[:-1] + (3 - s[-1],) not in probs][:5] + [()]
    for string in outside:
        assert measure.string_log_prob(g, string, len(string)) == -np.inf
        row = measure.next_token_distribution(g, string, len(string))
        for t in range(len(string) + 1):
            np.testing.assert_allclose(row[t], brute_next_token(g, probs, string[:t]), atol=1e-12, rtol=0)


def test_ambiguous_string_sums_its_derivations():
    # "1 2 2": Root -> A B with (A = 1 2, B = 2) or (A = 1, B = 2 2): 1/3 * (1/2 * 1/3 + 1/2 * 1/3)
    assert measure.string_log_prob(AMBIGUOUS, [1, 2, 2], 3) == pytest.approx(math.log(1 / 9), abs=1e-14)


@pytest.mark.parametrize("name", ["cfg_small", "cfg3f"])
def test_long_strings_chain_rule_and_normalisation(name):
    g = cfg.load_grammar(name)
    strings, lengths = (np.asarray(x) for x in cfg.sample(g, jax.random.key(5), 3))
    rows = measure.next_token_distributions(g, strings, lengths)
    log_p = measure.string_log_probs(g, strings, lengths)
    for b, n in enumerate(lengths):
        live = rows[b, :n + 1]
        np.testing.assert_allclose(live.sum(-1), 1, atol=1e-12)
        chain = np.log(live[np.arange(n), strings[b, :n]]).sum() + np.log(live[n, g.eos_id])
        assert chain == pytest.approx(log_p[b], abs=1e-9)
        assert np.isfinite(log_p[b]) and log_p[b] < 0
        allowed = np.r_[1:g.num_terminals + 1, g.eos_id]
        assert not np.delete(live, allowed, axis=1).any()
    single = measure.next_token_distribution(g, strings[1], lengths[1])
    np.testing.assert_allclose(single, rows[1, :lengths[1] + 1], atol=1e-15)


def documents(g, strings, lengths):
    tokens = np.zeros((len(lengths), strings.shape[1] + 2), np.int32)
    tokens[:, 0] = g.bos_id
    for b, n in enumerate(lengths):
        tokens[b, 1:n + 1] = strings[b, :n]
        tokens[b, n + 1] = g.eos_id
    return tokens


def test_kl_is_zero_for_the_grammar_and_positive_for_a_perturbed_model():
    g = cfg.load_grammar("cfg_small")
    strings, lengths = (np.asarray(x) for x in cfg.sample(g, jax.random.key(6), 16))
    tokens = documents(g, strings, lengths)
    true = np.zeros(tokens.shape + (g.vocab_size + 3,))  # a model vocab wider than the grammar's
    p = measure.next_token_distributions(g, strings, lengths)
    true[:, :p.shape[1], :g.vocab_size] = p
    exact = measure.kl_to_grammar(g, tokens, lengths, np.log(np.maximum(true, 1e-300)))
    assert abs(exact["kl"]) < 1e-9 and exact["kl_max"] < 1e-9
    assert exact["kl_positions"] == (lengths + 1).sum() and exact["kl_skipped"] == 0
    as_model = measure.document_log_probs(tokens, lengths, np.log(np.maximum(true, 1e-300)))
    np.testing.assert_allclose(as_model, measure.string_log_probs(g, strings, lengths), atol=1e-10)
    assert measure.diversity(g, strings, lengths, as_model)["entropy_bits"] == pytest.approx(
        measure.diversity(g, strings, lengths)["entropy_bits"], abs=1e-10)
    mixed = np.log(0.9 * true + 0.1 / true.shape[-1])
    perturbed = measure.kl_to_grammar(g, tokens, lengths, mixed)
    assert 1e-3 < perturbed["kl"] <= perturbed["kl_max"] <= -math.log(0.9) + 1e-12
    uniform = np.full(true.shape, -math.log(true.shape[-1]))
    worse = measure.kl_to_grammar(g, tokens, lengths, uniform)
    assert worse["kl"] > perturbed["kl"]


def test_diversity():
    g = AMBIGUOUS
    strings, lengths = padded([(1, 2), (1, 2), (2, 1), (1, 2, 2)])
    out = measure.diversity(g, strings, lengths, log_probs_B=np.log([0.5, 0.5, 0.25, 0.25]))
    assert out["distinct"] == 3 and out["distinct_fraction"] == 0.75
    assert out["entropy_bits"] == pytest.approx(1.5)
    probs = language(g)
    entropy = -sum(p * math.log2(p) for p in probs.values())
    sample = [np.asarray(x) for x in cfg.sample(g, jax.random.key(7), 4000)]
    estimate = measure.diversity(g, *sample)
    assert estimate["distinct"] <= len(probs)
    assert abs(estimate["entropy_bits"] - entropy) < 4 * estimate["entropy_stderr_bits"]
    assert measure.diversity(g, *padded([(2, 2, 2, 2)]))["entropy_bits"] == np.inf


@pytest.mark.parametrize("index", range(4))
def test_edit_distance_matches_levenshtein_to_the_whole_language(index):
    g = tiny_grammars()[index]
    words = list(language(g))
    rng = np.random.default_rng(index)
    longest = max(len(w) for w in words)
    cases = [()] + [tuple(rng.integers(1, g.num_terminals + 1, rng.integers(1, longest + 8))) for _ in range(40)]
    cases += [w[:2] + (g.eos_id,) + w[2:] for w in words[:5]]  # a non-terminal id inside
    near = [e for w in words[:6] for e in single_edits(w, g.num_terminals)]
    cases += [near[i] for i in rng.choice(len(near), 30, replace=False)]
    for string in cases:
        expected = min(levenshtein(string, w) for w in words)
        assert robust.edit_distance_to_language(g, string, len(string)) == expected, string
        assert robust.within_edits(g, string, len(string), expected)
        assert not robust.within_edits(g, string, len(string), expected - 1)
        for slack in range(expected + 2):  # band-restricted tables: an upper bound, exact once slack >= distance
            cost = robust._edit_cost(g, np.array(string, np.int64), slack)
            assert cost == expected if slack >= expected else cost >= expected


@pytest.mark.parametrize("index", range(4))
def test_prefix_distance_matches_levenshtein_to_every_prefix_of_the_language(index):
    g = tiny_grammars()[index]
    prefixes = {w[:k] for w in language(g) for k in range(len(w) + 1)}
    longest = max(len(p) for p in prefixes)
    rng = np.random.default_rng(10 + index)
    cases = [()] + [tuple(rng.integers(1, g.num_terminals + 1, rng.integers(1, longest + 6))) for _ in range(40)]
    cases += [p[:1] + (g.eos_id,) + p[1:] for p in sorted(prefixes)[:5]]
    for string in cases:
        expected = min(levenshtein(string, p) for p in prefixes)
        assert robust.prefix_distance_to_language(g, string, len(string)) == expected, string
        assert expected <= robust.edit_distance_to_language(g, string, len(string))


def test_a_corrupted_prefix_is_often_closer_to_the_language_than_its_changes():
    """The budget of corrupted_cut_accuracy: cfg3f prefixes of 50 at rate 0.1 (the paper's setting)."""
    g = cfg.load_grammar("cfg3f")
    strings, lengths = (np.asarray(x) for x in cfg.sample(g, jax.random.key(21), 24))
    corrupted, changes = (np.asarray(x) for x in robust.corrupt(g, jax.random.key(22), strings[:, :50],
                                                                 np.full(24, 50), 0.1))
    budgets = np.array([robust.prefix_distance_to_language(g, row, 50) for row in corrupted])
    assert (budgets <= changes).all() and (budgets < changes).mean() > 0.3
    row = int(np.argmax(changes - budgets))  # the true suffix keeps every injected change: over budget
    whole = np.r_[corrupted[row], strings[row, 50:lengths[row]]]
    assert robust.edit_distance_to_language(g, whole, len(whole)) > budgets[row]


def test_edit_distance_second_pass():
    # 11 tokens, 5 above AMBIGUOUS's longest string: the first pass (slack 5) finds 7, the distance is 6
    string = (2, 2, 2, 2, 2, 1, 1, 2, 1, 2, 1)
    assert robust._edit_cost(AMBIGUOUS, np.array(string), 5) == 7
    assert robust.edit_distance_to_language(AMBIGUOUS, string, len(string)) == 6
    assert min(levenshtein(string, w) for w in language(AMBIGUOUS)) == 6


def single_edits(string, num_terminals):
    for i in range(len(string) + 1):
        for x in range(1, num_terminals + 1):
            yield string[:i] + (x,) + string[i:]
    for i in range(len(string)):
        yield string[:i] + string[i + 1:]
        for x in range(1, num_terminals + 1):
            if x != string[i]:
                yield string[:i] + (x,) + string[i + 1:]


def test_edit_distance_one_and_two_agree_with_the_parser_on_cfg_small():
    g = cfg.load_grammar("cfg_small")
    strings, lengths = (np.asarray(x) for x in cfg.sample(g, jax.random.key(8), 6))
    rng = np.random.default_rng(0)
    for b, n in enumerate(lengths):
        clean = tuple(int(t) for t in strings[b, :n])
        assert robust.edit_distance_to_language(g, clean, n) == 0
        once = list(single_edits(clean, g.num_terminals))
        valid = np.asarray(cfg.accepts(g, *padded(once)))
        for string, ok in zip(once[::7], valid[::7]):
            assert robust.edit_distance_to_language(g, string, len(string)) == (0 if ok else 1)
        twice = list(single_edits(once[rng.integers(len(once))], g.num_terminals))[::9]
        twice_valid = np.asarray(cfg.accepts(g, *padded(twice)))
        for string, ok in zip(twice[:6], twice_valid[:6]):  # BFS: 0 if valid, 1 if a single edit fixes it, else 2
            if ok:
                expected = 0
            else:
                neighbours = list(single_edits(string, g.num_terminals))
                expected = 1 if np.asarray(cfg.accepts(g, *padded(neighbours))).any() else 2
            assert robust.edit_distance_to_language(g, string, len(string)) == expected


def test_edit_distance_on_long_cfg3f_strings():
    g = cfg.load_grammar("cfg3f")
    strings, lengths = (np.asarray(x) for x in cfg.sample(g, jax.random.key(9), 2))
    corrupted, changed = (np.asarray(x) for x in robust.corrupt(g, jax.random.key(1), strings, lengths, 0.02))
    assert (robust.edit_distances(g, strings, lengths) == 0).all()
    distances = robust.edit_distances(g, corrupted, lengths)
    assert (distances <= changed).all()
    np.testing.assert_array_equal(distances == 0, np.asarray(cfg.accepts(g, corrupted, lengths)))
    short = robust.edit_distance_to_language(g, strings[0, :10], 10)  # 54 insertions at least
    assert g.min_len - 10 <= short <= g.min_len


def test_corrupt_counts_and_edge_rates():
    g = cfg.load_grammar("cfg_small")
    strings, lengths = cfg.sample(g, jax.random.key(10), 64)
    corrupted, changed = robust.corrupt(g, jax.random.key(11), strings, lengths, 0.3)
    differ = np.asarray(corrupted) != np.asarray(strings)
    np.testing.assert_array_equal(differ.sum(1), np.asarray(changed))
    inside = np.arange(strings.shape[1])[None] < np.asarray(lengths)[:, None]
    assert not differ[~inside].any() and 0.2 < differ[inside].mean() < 0.4
    assert ((np.asarray(corrupted) >= 1) & (np.asarray(corrupted) <= g.num_terminals))[inside].all()
    all_changed, count = robust.corrupt(g, jax.random.key(12), strings, lengths, 1.0)
    assert ((np.asarray(all_changed) != np.asarray(strings)) == inside).all()
    np.testing.assert_array_equal(np.asarray(count), np.asarray(lengths))
    none, count = robust.corrupt(g, jax.random.key(12), strings, lengths, 0.0)
    assert (np.asarray(none) == np.asarray(strings)).all() and not np.asarray(count).any()
    same, count, chosen = robust.corrupt_some(g, jax.random.key(13), strings, lengths, 0.0, 0.5)
    assert (np.asarray(same) == np.asarray(strings)).all() and not np.asarray(chosen).any()
    some, count, chosen = robust.corrupt_some(g, jax.random.key(13), strings, lengths, 0.25, 1.0)
    chosen = np.asarray(chosen)
    assert chosen.sum() == 16
    rows_changed = (np.asarray(some) != np.asarray(strings)).any(1)
    np.testing.assert_array_equal(rows_changed, chosen)
    np.testing.assert_array_equal(np.asarray(count), np.where(chosen, np.asarray(lengths), 0))


def test_corrupt_is_jittable_with_traced_rates_and_keys():
    g = cfg.load_grammar("cfg_small")
    strings, lengths = cfg.sample(g, jax.random.key(14), 8)

    @jax.jit
    def run(key, rate, fraction):
        return robust.corrupt_some(g, key, strings, lengths, fraction, rate)

    keys = jax.random.split(jax.random.key(15), 3)
    out, count, chosen = jax.vmap(run, in_axes=(0, None, None))(keys, 0.5, 0.5)
    assert out.shape == (3,) + strings.shape and (np.asarray(chosen).sum(1) == 4).all()
    np.testing.assert_array_equal((np.asarray(out) != np.asarray(strings)[None]).sum(-1), np.asarray(count))


def test_corrupted_completion_ok():
    g = cfg.load_grammar("cfg_small")
    strings, lengths = (np.asarray(x) for x in cfg.sample(g, jax.random.key(16), 16))
    row = int(np.argmax(lengths))
    string, n = strings[row], int(lengths[row])
    prefix_len = n // 2
    prefix = string[:prefix_len].copy()
    prefix[1] = prefix[1] % g.num_terminals + 1  # one injected change
    budget = robust.prefix_distance_to_language(g, prefix, prefix_len)
    assert budget <= 1
    rest = list(string[prefix_len:n])
    clean = rest + [g.eos_id, 0]
    clean_ok = robust.edit_distance_to_language(g, np.r_[prefix, rest], n) == budget
    extra_error = None
    for position, x in itertools.product(range(len(rest)), range(1, g.num_terminals + 1)):
        candidate = rest[:position] + [x] + rest[position + 1:]
        full = np.r_[prefix, candidate]
        if robust.edit_distance_to_language(g, full, len(full)) == budget + 1:
            extra_error = candidate + [g.eos_id, 0]
            break
    assert extra_error is not None
    no_eos = rest + [rest[-1], rest[-1]]
    completions = np.array([clean, extra_error, no_eos, clean])
    prefixes = np.stack([prefix, prefix, prefix, string[:prefix_len]])
    ok, budgets = robust.corrupted_completion_ok(g, prefixes, [prefix_len] * 4, completions)
    np.testing.assert_array_equal(ok, [clean_ok, False, False, True])
    np.testing.assert_array_equal(budgets, [budget, budget, budget, 0])
