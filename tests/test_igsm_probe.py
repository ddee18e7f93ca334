"""Part 2.1 V-probing: labels follow the world on a hand-made problem, probe inputs are the prefix
unchanged plus the probe query, a model that cannot see the prefix scores no better than the
majority, a label planted at <probe_end> is read at every layer (a shuffled one is not), and a run
probes its model next to a random-init twin."""
import dataclasses
import json
import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmphys.errors import ConfigError
from lmphys.models import transformer
from lmphys.worlds import cfg, igsm
from lmphys.worlds.igsm import text, vprobe
from lmphys.worlds.igsm.graph import MOD, RNG, Sentence, World, abstract_value, sentence_value

TOKENIZER = igsm.tokenizer()
RENDERER = text.Renderer(TOKENIZER)
MAX_LEN = 160  # shorter than some small problems' longest probe input, so a few are skipped
# One training setting for every test, so that they share compiled code (the test time is mostly compiling).
FIT = dict(steps=60, batch_size=16, learning_rate=1e-2)


def tiny_model(kind: str = "gpt", seed: int = 0):
    cfg = transformer.ModelConfig(kind=kind, vocab_size=TOKENIZER.vocab_size, num_layers=2, num_heads=2, width=32,
                                  max_len=MAX_LEN)
    return transformer.init_model(cfg, jax.random.key(seed))


def identity_gpt():
    """A GPT whose blocks add nothing (zero output projections): every layer's hidden state at a
    position is the embedding of the token there, so a probe at <probe_end> sees nothing else."""
    graphdef, params = tiny_model()
    blocks = params["stack"]["blocks"]
    blocks["attention"]["out"] = jax.tree.map(jnp.zeros_like, blocks["attention"]["out"])
    blocks["mlp_out"] = jax.tree.map(jnp.zeros_like, blocks["mlp_out"])
    return graphdef, params


A, B, C, D = (0, 0, 0, 0), (0, 0, 0, 1), (0, 1, 0, 0), (0, 1, 1, 0)  # the hand problem's stated parameters


def hand_problem() -> igsm.Problem:
    """Walmart has Canned Beans (A) = 5 and Canned Fruits (B) = 3 more than A, so 8; Canned Beans
    has Basil (C) = A + B = 13; Canned Fruits has Basil (D) = 7. Abstract ones (never stated):
    Walmart's Product = A + B = 13, Canned Beans's Ingredient = C = 13, Canned Fruits's Ingredient
    = D = 7, Walmart's Ingredient = A * 13 + B * 7 = 121 = 6 mod 23. The question asks for C. In
    world.params order: A B C D (0-3), then Walmart's Product (4), Walmart's Ingredient (5),
    Canned Beans's Ingredient (6), Canned Fruits's Ingredient (7)."""
    sentences = {A: Sentence("", 5, "constant", ()), B: Sentence("add", 3, "single", (A,)),
                 C: Sentence("", 0, "sum", (A, B)), D: Sentence("", 7, "constant", ())}
    preds = {A: (RNG,), B: (A, RNG), C: (A, B), D: (RNG,)}
    world = World(0, ("Supermarket", "Product", "Ingredient"), (("Walmart",), ("Canned Beans", "Canned Fruits"),
                                                                  ("Basil",)),
                  frozenset(param[1:] for param in sentences), preds, sentences, {}, (A, B, C), (A, B, C, D))
    values = {A: 5, B: 8, C: 13, D: 7, (1, 0, 0, 1): 13, (1, 1, 0, 2): 13, (1, 1, 1, 2): 7, (1, 0, 0, 2): 6}
    world = dataclasses.replace(world, values=values)
    assert [sentence_value(sentences[p], values) for p in (A, B, C, D)] == [5, 8, 13, 7], "a consistent world"
    assert abstract_value(world.children, values, (1, 0, 0, 2)) == 6
    ids, ends, letters = RENDERER.solution(world, world.solution, random.Random(0))
    return igsm.Problem(world, world.solution, tuple(ids), tuple(ends), letters, "pq", "small", 0)


def test_labels_of_a_hand_checked_problem():
    problem = hand_problem()
    assert problem.solution.startswith("Define Walmart's Canned Beans as ") and problem.solution.endswith("<ans> 13")
    assert igsm.check_solution(problem, problem.solution_ids).correct
    nece = {example.params[0]: example.labels["nece"] for example in vprobe.question_examples(problem, RENDERER)}
    assert nece == {0: 1, 1: 1, 2: 1, 3: 0, 4: 0, 5: 0, 6: 0, 7: 0}

    depends = {(1, 0), (2, 0), (2, 1), (4, 0), (4, 1), (5, 0), (5, 1), (5, 2), (5, 3), (5, 6), (5, 7),
               (6, 0), (6, 1), (6, 2), (7, 3)}
    pairs = vprobe.pair_examples(problem, RENDERER, np.random.default_rng(0), pairs_per_problem=100)
    assert {example.params for example in pairs if example.labels["dep"]} == depends, "every dependent pair"
    assert sum(example.labels["dep"] == 0 for example in pairs) == len(depends), "as many independent ones"
    assert all(example.labels["dep"] == (example.params in depends) for example in pairs)

    expected = {  # steps done: (known with values, can_next, nece_next)
        0: ({}, {0, 3}, {0}),
        1: ({0: 5}, {1, 3}, {1}),
        2: ({0: 5, 1: 8}, {2, 3, 4}, {2}),
        3: ({0: 5, 1: 8, 2: 13}, {3, 4, 6}, set()),
    }
    examples = vprobe.step_examples(problem, RENDERER)
    assert len(examples) == 4 * 8
    for steps_done, (known, can_next, nece_next) in expected.items():
        here = {example.params[0]: example.labels for example in examples if example.steps_done == steps_done}
        assert {index for index, labels in here.items() if labels["known"]} == set(known)
        assert {index: labels["value"] for index, labels in here.items() if labels["known"]} == known
        assert all(labels["value"] == vprobe.NOT_COUNTED for index, labels in here.items() if index not in known)
        assert {index for index, labels in here.items() if labels["can_next"]} == can_next
        assert {index for index, labels in here.items() if labels["nece_next"]} == nece_next


def test_probe_inputs_are_the_prefix_then_the_query():
    problem = hand_problem()
    prompt, problem_end, question_end = problem.prompt_ids()
    solution, _, step_ends = problem.solution_tokens()
    sequence = prompt + solution
    dot, question_mark = TOKENIZER.ids["."], TOKENIZER.ids["?"]
    families = {
        "question": vprobe.question_examples(problem, RENDERER),
        "pair": vprobe.pair_examples(problem, RENDERER, np.random.default_rng(0), 6),
        "steps": vprobe.step_examples(problem, RENDERER),
    }
    for family, examples in families.items():
        for example in examples:
            tokens, cut = list(example.tokens), example.prefix_len
            assert tokens[:cut] == sequence[:cut], "the prefix is the training sequence, unchanged"
            names = [RENDERER.name(problem.world, problem.world.params[index]) for index in example.params]
            query = [TOKENIZER.probe_id] + names[0] + \
                ([TOKENIZER.probe_sep_id] + names[1] if len(names) == 2 else []) + [TOKENIZER.probe_end_id]
            assert tokens[cut:] == query
            if family == "pair":
                assert cut == problem_end + 1 and tokens[cut - 1] == dot, "dep reads the end of the problem"
            elif example.steps_done == 0:
                assert cut == question_end + 1 and tokens[cut - 1] == question_mark
            else:
                assert cut == len(prompt) + step_ends[example.steps_done - 1] + 1 and tokens[cut - 1] == dot
                assert TOKENIZER.sol_id in tokens[:cut]

    rows, used = vprobe.probe_rows([problem], max_len=MAX_LEN)
    assert list(used) == [0]
    for family, examples in families.items():
        family_rows = rows[family]
        assert np.all(family_rows.tokens_NT[np.arange(len(family_rows.read_N)), family_rows.read_N]
                      == TOKENIZER.probe_end_id)
        if family != "pair":  # pairs are drawn anew, in their own order
            np.testing.assert_array_equal(family_rows.tokens_NT[0, :len(examples[0].tokens)], examples[0].tokens)


@pytest.fixture(scope="module")
def problems():
    return [igsm.generate(seed, difficulty="small") for seed in range(48)]


@pytest.mark.slow
def test_a_model_that_cannot_see_the_prefix_makes_one_guess_for_every_row(problems):
    """The identity model's hidden state at <probe_end> is that token's embedding on every row, so
    each layer's probe predicts one class for all rows: its accuracy is exactly the held-out share
    of that class, whichever class it settles on. A probe reading the wrong position (a prefix
    token) or labels leaking into the input would score other values."""
    graphdef, params = identity_gpt()
    rows, used = vprobe.probe_rows(problems, max_len=MAX_LEN)
    assert 0 < len(used) < len(problems), "problems too long for max_len are left out, not cut"
    half = len(used) // 2
    for family, tasks in vprobe.FAMILIES.items():
        family_rows = rows[family]
        scores = vprobe.fit_family(graphdef, params, family_rows, used[:half], used[half:], rank=8,
                                       key=jax.random.key(0), **FIT)
        assert list(scores) == list(tasks)
        test_rows = np.isin(family_rows.problem_N, used[half:])
        for task, task_scores in scores.items():
            labels = family_rows.labels[task][test_rows]
            labels = labels[labels != vprobe.NOT_COUNTED]
            shares = np.bincount(labels, minlength=vprobe.NUM_CLASSES[task]) / len(labels)
            assert len(task_scores["accuracy"]) == 2 and task_scores["num_test"] == len(labels) > 0
            for accuracy in task_scores["accuracy"]:
                assert np.min(np.abs(shares - accuracy)) < 1e-9, (task, accuracy, shares)
    pairs = rows["pair"].labels["dep"]
    assert np.mean(pairs) == pytest.approx(0.5), "dep pairs are balanced"


@pytest.mark.parametrize("shuffle", [False, True])
def test_a_label_planted_at_probe_end_is_read_and_a_shuffled_one_is_not(problems, shuffle):
    """Give every known row a value class (cycling through all 23, so each is trained on) and put
    that number's token in place of <probe_end>: the identity model shows it to every layer, so
    known and value are read almost perfectly. Planting another row's marker leaves held-out
    problems at chance: what the probe learns must come from the read position."""
    rows, used = vprobe.probe_rows(problems, max_len=MAX_LEN)
    steps_rows = rows["steps"]
    known_N = steps_rows.labels["known"] == 1
    value_N = np.where(known_N, np.cumsum(known_N) % MOD, vprobe.NOT_COUNTED)
    number_ids = np.array([TOKENIZER.ids[str(value)] for value in range(MOD)])
    marker_N = np.where(known_N, number_ids[np.maximum(value_N, 0)], TOKENIZER.probe_end_id)
    if shuffle:
        marker_N = np.random.default_rng(0).permutation(marker_N)
    tokens_NT = steps_rows.tokens_NT.copy()
    probe_end_N = np.argmax(tokens_NT == TOKENIZER.probe_end_id, axis=1)
    tokens_NT[np.arange(len(tokens_NT)), probe_end_N] = marker_N
    planted = vprobe.ProbeRows(tokens_NT, steps_rows.read_N, steps_rows.problem_N,
                                   {**steps_rows.labels, "value": value_N.astype(np.int32)})
    graphdef, params = identity_gpt()
    half = len(used) // 2
    scores = vprobe.fit_family(graphdef, params, planted, used[:half], used[half:], rank=8, key=jax.random.key(0),
                                   **FIT)
    for task in ("known", "value"):
        if shuffle:
            assert max(scores[task]["accuracy"]) < scores[task]["majority"] + 0.1, task
        else:
            assert min(scores[task]["accuracy"]) > 0.95, task


@pytest.mark.slow
def test_v_probe_run_compares_with_random_init_and_summarizes(monkeypatch):
    task = igsm.IGSMTask(igsm.default_config())
    graphdef, trained = tiny_model(seed=7)
    seen, v_probe = [], vprobe.v_probe

    def recording_v_probe(graphdef, params, problems, **kwargs):
        seen.append((params, problems))
        return v_probe(graphdef, params, problems, **kwargs)

    monkeypatch.setattr(vprobe, "v_probe", recording_v_probe)
    result = vprobe.analyze_run(task, graphdef, trained, num_problems=24, **FIT)
    assert seen[0][0] is trained and seen[0][1] is seen[1][1], "both models probe the same problems"
    leaves = zip(jax.tree.leaves(seen[0][0]), jax.tree.leaves(seen[1][0]))
    assert not all(np.allclose(a, b) for a, b in leaves), "the baseline is a fresh model"
    assert all(problem.difficulty == "small" and problem.template < 17 for problem in seen[0][1]), "training split"
    assert set(result) == {"summary", "trained", "random_init"}
    assert list(result["trained"]["tasks"]) == list(vprobe.TASKS)
    assert result["trained"]["num_problems"] + result["trained"]["num_skipped"] == 24
    assert set(result["summary"]) == {f"vprobe_{task}_{kind}" for task in vprobe.TASKS
                                      for kind in ("last", "random", "majority")}
    assert result["summary"]["vprobe_nece_random"] == result["random_init"]["tasks"]["nece"]["accuracy"][-1]
    assert json.loads(json.dumps(result)) == result


def test_bad_requests_are_typed_errors(problems):
    graphdef, params = tiny_model()
    with pytest.raises(ConfigError, match="tasks"):
        vprobe.v_probe(graphdef, params, problems, tasks=("nece", "answer"))
    with pytest.raises(ConfigError, match="decoder"):
        vprobe.v_probe(*tiny_model("bert"), problems)
    with pytest.raises(ConfigError, match="igsm"):
        vprobe.v_probe_run(cfg.CFGTask(cfg.load_grammar("cfg_small"), batch_size=2, seq_len=32), graphdef, params)
