"""Brevo (Part 4.1, reasoning breadth): the generator replays the released one draw for draw (its
six printed samples from random.Random(42)), the DAG keeps the released degree rules, every
answer is the query's ancestor set (re-derived from the listed edges) in a valid topological
order ending with the query, the depth is the fewest hops to a source, and the checker takes any
valid order while rejecting a missing or extra vertex, a wrong order or a wrong token; the task's
evaluation scores an oracle 1 and a reversed answer 0."""
import collections
import hashlib
import random

import jax
import numpy as np
import pytest

from lmphys.config import load_config_file
from lmphys.errors import ConfigError
from lmphys.train.run_config import validate
from lmphys.worlds import brevo
from lmphys.worlds.base import ModelFns
from tests.conftest import REPO

# The release's prints (brevo.py, one random.Random(42) for all six calls): topsort_data(N) for
# N = 110, 90, 70 (Brevo1), then N = 50, 40, 30 with multi=True (Brevo2): (length, sha256 of
# repr((tokens, labels)) in the release's ids, first 16 hex digits), made with the released file.
RELEASED_PRINTS = [((110, False), 219, "32ba0e317b12a612"), ((90, False), 207, "805910669409028e"),
                   ((70, False), 95, "462c3516aa2a0731"), ((50, True), 362, "df08f63c5b43e341"),
                   ((40, True), 52, "facaaee3f913a468"), ((30, True), 41, "c99c4776f84be18a")]


def _released_instances():
    rng = random.Random(42)
    for (size, multi), length, digest in RELEASED_PRINTS:
        spec = brevo.Spec(size, multi)
        yield spec, brevo.draw(rng, spec), length, digest


def test_the_released_samples_come_out_draw_for_draw():
    for spec, instance, length, digest in _released_instances():
        tok = brevo.Tokenizer(spec)
        encoded = tok.encode(instance)
        tokens = [tok.released_id(token) for token in encoded.tokens]
        assert len(tokens) == length
        assert hashlib.sha256(repr((tokens, encoded.labels)).encode()).hexdigest()[:16] == digest


def test_two_released_samples_read_by_hand():
    samples = [instance for _, instance, _, _ in _released_instances()]
    third, sixth = samples[2], samples[5]
    # print #3 (N = 70): query 37; its token_type marks depth 2
    assert third.query == 37 and third.answer == (54, 8, 70, 60, 27, 68, 58, 37) and third.depth == 2
    # print #6 (Brevo2, N = 30): three words answer, the release's parse_tokens_multi accepts them
    assert [third.names[v] for v in third.answer][:2] == [(54,), (8,)]
    assert [sixth.names[v] for v in sixth.answer] == [(4, 1, 7), (2, 1, 4, 7), (4, 1, 2, 8)] and sixth.depth == 1


def _graph_from_tokens(tok, spec, tokens):
    """(parents by name, query name, answer names) read from an instance's tokens alone."""
    query_at, answer_at = tokens.index(tok.query_id), tokens.index(tok.ans_id)
    edge_names, _ = tok.names_in(tokens[1:query_at])
    parents = collections.defaultdict(set)
    for parent, child in zip(edge_names[::2], edge_names[1::2]):
        parents[child].add(parent)
    (query,), _ = tok.names_in(tokens[query_at + 1:answer_at])
    answer, whole = tok.names_in(tokens[answer_at + 1:-1])
    assert whole and tokens[-1] == tok.eos_id and len(edge_names) % 2 == 0
    return parents, query, answer


@pytest.mark.parametrize("multi", [False, True])
@pytest.mark.parametrize("test_mode", [False, True])
def test_answers_are_the_ancestors_in_topological_order_read_back_from_the_edges(multi, test_mode):
    spec = brevo.Spec(30, multi)
    tok = brevo.Tokenizer(spec)
    rng = random.Random(5)
    for _ in range(40):
        instance = brevo.draw(rng, spec, test=test_mode)
        parents, query, answer = _graph_from_tokens(tok, spec, tok.encode(instance).tokens)
        ancestors, frontier, hops = {query}, [query], {query: 0}
        while frontier:  # breadth-first, so hops are the fewest
            node = frontier.pop(0)
            for parent in parents[node]:
                if parent not in ancestors:
                    ancestors.add(parent)
                    hops[parent] = hops[node] + 1
                    frontier.append(parent)
        assert set(answer) == ancestors and len(answer) == len(ancestors) and answer[-1] == query
        placed = set()
        for name in answer:
            assert parents[name] <= placed
            placed.add(name)
        assert instance.depth == min(hops[name] for name in ancestors if not parents[name])
        children = collections.Counter(parent for chosen in parents.values() for parent in chosen)
        assert all(len(chosen) <= 4 for chosen in parents.values()) and max(children.values()) <= 4
        assert query not in children  # as released, the query is the last vertex built: nothing depends on it
        if test_mode and not multi:
            assert len(instance.names) == 30 and set(instance.names) == set(range(1, 31))
        if multi:
            words = list(instance.names.values())
            assert len(set(words)) == len(words) and all(2 <= len(w) <= 4 and 5 <= w[-1] <= 8 for w in words)


def test_the_paper_query_variant_draws_from_the_last_quarter():
    spec = brevo.Spec(40, query_from="last_quarter")
    rng = random.Random(9)
    queried_parents = 0
    for _ in range(60):
        instance = brevo.draw(rng, spec, test=True)
        queried_parents += any(instance.query in chosen for chosen in instance.parents.values())
    assert queried_parents > 0  # not always the last vertex built (which is nobody's parent)


@pytest.mark.parametrize("size,mean", [(110, 37.9), (90, 32.0), (70, 25.9), (50, 19.7), (40, 16.5), (30, 13.1)])
def test_the_size_law_matches_the_spec_table(size, mean):
    sizes, cumulative = brevo.size_law(size)
    assert np.diff([0.0] + cumulative) @ sizes == pytest.approx(mean, abs=0.06)


def test_training_sizes_follow_the_law():
    rng = random.Random(2)
    instances = [brevo.draw(rng, brevo.Spec(30)) for _ in range(300)]
    sizes = [len(instance.names) for instance in instances]  # Brevo1 names every vertex drawn
    assert np.mean(sizes) == pytest.approx(13.1, abs=1.2) and min(sizes) >= 3 and max(sizes) <= 30
    assert all(instance.ancestors >= 1 for instance in instances)  # the query always has a parent


def test_test_instances_at_the_paper_size_match_the_release_statistics():
    # The spec's measurements of the released generator at N = 110: a test instance is ~525 tokens
    # (mean; ~240 edges), and the answer (ancestors and query) holds 39.6 vertices on average.
    spec = brevo.Spec(110)
    tok = brevo.Tokenizer(spec)
    rng = random.Random(0)
    instances = [brevo.draw(rng, spec, test=True) for _ in range(150)]
    assert np.mean([len(tok.encode(instance).tokens) for instance in instances]) == pytest.approx(525, abs=10)
    assert np.mean([len(instance.answer) for instance in instances]) == pytest.approx(39.6, abs=4.5)  # SE ~1.5


def _instance():
    return brevo.draw(random.Random(4), brevo.Spec(12), test=True)


def test_the_checker_takes_any_valid_order_and_rejects_broken_answers():
    instance = _instance()
    names = [instance.names[v] for v in instance.answer]
    assert brevo.check_names(instance, names) == brevo.Verdict(True, True, "right")
    # Another valid order: always place the smallest ready vertex first.
    remaining, other = set(instance.answer), []
    while remaining:
        ready = min(v for v in remaining if set(instance.parents.get(v, ())) <= set(other))
        other.append(ready)
        remaining.remove(ready)
    assert brevo.check_names(instance, [instance.names[v] for v in other]).strict
    assert not brevo.check_names(instance, names[1:]).correct  # an ancestor missing
    assert not brevo.check_names(instance, names[:-1]).correct  # the query missing
    outsider = next(v for v in instance.names if v not in instance.answer)
    assert not brevo.check_names(instance, [instance.names[outsider]] + names).correct  # an extra vertex
    assert not brevo.check_names(instance, names[::-1]).correct  # a child before its parent
    assert not brevo.check_names(instance, [(99,)] + names[1:]).correct  # a token that names nothing
    repeated = brevo.check_names(instance, names + names[-1:])
    assert repeated.correct and not repeated.strict  # the release's rule lets a repeat through


def test_unfinished_words_and_stray_tokens_in_brevo2():
    spec = brevo.Spec(10, multi=True)
    instance = brevo.draw(random.Random(8), spec, test=True)
    tok = brevo.Tokenizer(spec)
    answer = tok.encode(instance).tokens[tok.encode(instance).prompt_len:-1]
    names, whole = tok.names_in(answer)
    assert whole and brevo.check_names(instance, names, whole).strict
    names, whole = tok.names_in(answer + answer[:1])  # a dangling first token of a word
    verdict = brevo.check_names(instance, names, whole)
    assert verdict.correct and not verdict.strict  # the release's splitter drops it
    names, whole = tok.names_in(answer[:1] + [tok.query_id] + answer[1:])  # a special inside a word
    assert not brevo.check_names(instance, names, whole).correct


def _task(**fields):
    task = brevo.default_config()
    task.update(dict(max_size=12, batch_size=4, seq_len=128, eval_instances=6, **fields))
    return brevo.BrevoTask(task)


def _sampler(task, wrong=False):
    """Writes each eval prompt's true answer and <eos> (or the answer reversed)."""
    answers = {}
    for instance, encoded in task.eval_set()[0]:
        answer = encoded.tokens[encoded.prompt_len:-1]
        answers[tuple(encoded.tokens[:encoded.prompt_len])] = (answer[::-1] if wrong else answer) + [task.eos_id]

    def sample(prompts, lengths, key):
        rows = np.array(prompts)
        for row, length in zip(rows, lengths):
            written = answers[tuple(row[:length].tolist())]
            row[length:length + len(written)] = written
        return rows

    return ModelFns(sample=sample, log_probs=None)


def test_evaluation_scores_an_oracle_one_and_a_reversed_answer_zero():
    task = _task()
    metrics = task.evaluate(_sampler(task), jax.random.key(0))
    assert metrics["acc"] == metrics["acc_strict"] == metrics["finished"] == 1.0 and metrics["eval_instances"] == 6
    assert any(name.startswith("acc_depth") for name in metrics) and any(name.startswith("acc_anc") for name in metrics)
    assert task.evaluate(_sampler(task, wrong=True), jax.random.key(0))["acc"] == 0.0


def test_windows_are_left_aligned_with_loss_on_the_answers():
    task = _task()
    batch = task.host_batch(0, 3)
    assert batch.inputs.shape == (4, 128) and (batch.inputs[:, 0] == task.bos_id).all()
    assert all((a[2:] == b).all() for a, b in zip(batch, task.host_batch(0, 3, rows=slice(2, 4))))
    window = task.window(77)
    _, first = window.placed[0]
    assert window.labels[:len(first.tokens)] == first.labels
    assert first.labels.index(1) == first.prompt_len - 1  # <ans> is the first target


@pytest.mark.parametrize("field,value,words", [
    ("max_size", 2, "integer >= 3"), ("seq_len", 20, "median length"), ("query_from", "first", "last_quarter"),
    ("objective", "mlm", "decoders")])
def test_bad_task_fields_name_the_field(field, value, words):
    task = brevo.default_config()
    task[field] = value
    with pytest.raises(ConfigError, match=f"task.{field}.*{words}"):
        brevo.validate(task)


@pytest.mark.parametrize("path,argument", [("small.py", "brevo1"), ("small.py", "brevo2,rope4+canon"),
                                           ("paper.py", "brevo1"), ("paper.py", "brevo2,30,nope+canon,12L768D")])
def test_configs_validate(path, argument):
    validate(load_config_file(f"{REPO}/configs/brevo/{path}", argument))
