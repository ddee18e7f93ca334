"""Part 1 probing: derivation labels from the sampler, linear probes, and the structure analysis of a
briefly trained model against the same architecture at random init."""
import jax
import numpy as np
import pytest

from lmphys import parallel
from lmphys.config import load_config_file
from lmphys.models import transformer
from lmphys.probe import train_linear_probes
from lmphys.train import optim, stack, step as step_lib
from lmphys.worlds import cfg
from lmphys.worlds.cfg.structure import compare_with_random_init
from tests.conftest import REPO


def segments(ends):
    """[(start, stop)] of the runs that end where `ends` is True."""
    stops = np.flatnonzero(ends) + 1
    return list(zip(np.concatenate([[0], stops[:-1]]), stops))


def check_derivation(g: cfg.Grammar, string, ancestors, ends):
    """Sampler-free check that the labels describe a derivation tree of `string` under `g`: every
    level-l subtree (a run ending at an end mark) has one symbol, lies inside one parent subtree, and
    its children's symbols (the next level's runs, or the terminals) form a rule of that symbol."""
    n = len(string)
    assert np.all(ancestors[0] == 0) and list(np.flatnonzero(ends[0])) == [n - 1], "root spans the string"
    for level in range(g.num_levels - 1):
        runs = segments(ends[level])
        assert runs and runs[-1][1] == n, f"level {level} ends at the last token"
        if level + 1 < g.num_levels - 1:
            child_runs = segments(ends[level + 1])
            child_symbol = {start: int(ancestors[level + 1][start]) for start, _ in child_runs}
        else:  # children are the terminals themselves
            child_runs = [(t, t + 1) for t in range(n)]
            child_symbol = {t: int(string[t]) - 1 for t in range(n)}
        child_starts = [start for start, _ in child_runs]
        for start, stop in runs:
            symbol = int(ancestors[level][start])
            assert np.all(ancestors[level][start:stop] == symbol), "one symbol per subtree"
            assert start in child_starts and stop in [s for _, s in child_runs], "children nest in parents"
            children = tuple(child_symbol[s] for s in child_starts if start <= s < stop)
            assert children in g.rules[level][symbol], f"level {level} symbol {symbol} has no rule {children}"


@pytest.mark.parametrize("name,n", [("cfg_small", 64), ("cfg3f", 8)])
def test_labels_are_a_derivation_of_each_string(name, n):
    g = cfg.load_grammar(name)
    tokens, lengths, ancestors, ends = (np.asarray(x) for x in cfg.sample_with_labels(g, jax.random.key(5), n))
    assert ancestors.shape == ends.shape == (n, g.num_levels - 1, g.max_len)
    assert ancestors.dtype == np.int32 and ends.dtype == bool
    for i in range(n):
        length = lengths[i]
        assert np.all(ancestors[i, :, length:] == -1) and not ends[i, :, length:].any(), "padding"
        check_derivation(g, tokens[i, :length], ancestors[i, :, :length], ends[i, :, :length])


def test_derivation_check_rejects_wrong_labels():
    g = cfg.load_grammar("cfg_small")
    tokens, lengths, ancestors, ends = (np.asarray(x) for x in cfg.sample_with_labels(g, jax.random.key(6), 16))
    rejected = 0
    for i in range(16):
        wrong = ancestors[i, :, :lengths[i]].copy()
        wrong[-1] = (wrong[-1] + 1) % g.sizes[-2]  # every bottom-level symbol relabelled
        try:
            check_derivation(g, tokens[i, :lengths[i]], wrong, ends[i, :, :lengths[i]])
        except AssertionError:
            rejected += 1
    assert rejected >= 12


@pytest.mark.parametrize("name,n", [("cfg_small", 2100), ("cfg3f", 16)])  # 2100 > CHUNK: the chunked path
def test_labelled_strings_equal_sample(name, n):
    g = cfg.load_grammar(name)
    key = jax.random.key(11)
    tokens, lengths = cfg.sample(g, key, n)
    labelled = cfg.sample_with_labels(g, key, n)
    np.testing.assert_array_equal(labelled[0], tokens)
    np.testing.assert_array_equal(labelled[1], lengths)


def test_probe_decodes_a_linear_label_and_not_a_random_one():
    rng = np.random.default_rng(0)
    layers, rows, seq, width, classes = 3, 120, 16, 24, 4
    hidden = rng.normal(size=(layers, rows, seq, width)).astype(np.float32)
    labels = rng.integers(0, classes, size=(rows, seq))
    hidden[1] += 3.0 * rng.normal(size=(classes, width))[labels]  # class means apart: decodable at layer 1 only
    mask = rng.random((rows, seq)) < 0.8
    result = train_linear_probes(hidden, labels, mask, classes, jax.random.key(0))
    assert result.accuracy_per_layer.shape == (layers,)
    assert result.accuracy_per_layer[1] == 1.0 and result.best_layer == 1
    assert np.all(result.accuracy_per_layer[[0, 2]] < result.majority_baseline + 0.1)
    assert result.num_train + result.num_test == mask.sum()
    shuffled = train_linear_probes(hidden, rng.permutation(labels.ravel()).reshape(rows, seq), mask, classes,
                                   jax.random.key(1))
    assert shuffled.best_accuracy < shuffled.majority_baseline + 0.1


def test_probe_rejects_labels_out_of_range():
    hidden = np.zeros((2, 4, 3, 5), np.float32)
    with pytest.raises(ValueError, match="labels"):
        train_linear_probes(hidden, np.full((4, 3), 2), np.ones((4, 3), bool), 2, jax.random.key(0))


@pytest.mark.slow
def test_trained_model_encodes_the_trees_better_than_random_init():
    """200 steps of a 2-layer GPT on cfg_small already make the bottom level's ancestors and boundaries
    far more decodable than the same architecture's random features do, and attention starts to go
    from boundary to boundary."""
    steps = 200
    config = load_config_file(f"{REPO}/configs/default.py")
    config.model.num_layers, config.model.width = 2, 64
    config.model.max_len = config.task.seq_len = 32
    config.optim.warmup_steps = 20
    task = cfg.task_from_config(config.task)
    model_cfg = transformer.ModelConfig.from_config(config.model, vocab_size=task.vocab_size)
    graphdef, params = transformer.init_model(model_cfg, jax.random.key(0))
    optimizer = optim.make_optimizer(config.optim)
    state = stack.stack([step_lib.init_state(params, optimizer, config.optim)])  # K = 1 stacked model
    mesh = parallel.make_mesh(config.parallel, devices=jax.devices()[:1])
    schedule = optim.Schedule.from_config(config.optim, steps)
    step_fn = step_lib.make_step_fn(graphdef, optimizer, schedule, task.batch, False, mesh, state)
    data_keys, dropout_keys = stack.stack([jax.random.key(1)]), stack.stack([jax.random.key(2)])
    for _ in range(steps):
        state, _ = step_fn(state, data_keys, dropout_keys)

    results = compare_with_random_init(
        graphdef, stack.unstack(state["params"], 0), task.grammar, jax.random.key(3), num_strings=128, probe_steps=200)
    trained, random_init = results["trained"], results["random_init"]
    bottom = task.grammar.num_levels - 2
    assert trained["levels"] == [1, bottom] and trained["num_strings"] == 128
    assert trained["nt_ancestor_acc_per_layer"][bottom].shape == (model_cfg.num_layers + 1,)
    assert trained["attention_to_prev_boundary"][bottom].shape == (model_cfg.num_layers, model_cfg.num_heads)
    assert trained["nt_ancestor_acc"][bottom] > random_init["nt_ancestor_acc"][bottom] + 0.1
    assert trained["nt_ancestor_acc"][bottom] > trained["nt_ancestor_majority"][bottom] + 0.3
    assert trained["nt_boundary_acc"][bottom] > random_init["nt_boundary_acc"][bottom] + 0.1
    assert trained["attention_ratio_max"][bottom] > random_init["attention_ratio_max"][bottom]
