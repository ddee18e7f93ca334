"""Depo (Part 4.1, reasoning depth): the generator replays the released one draw for draw (its own
printed samples from random.Random(42), and a hand-checked small one), the size and word-length
laws match the released definition, every answer is the k-th successor in the cycle read back
from the listed edges, the labels cover exactly <ans> and the answers, and the task's windows
and evaluation (accuracy by k) score an oracle 1 and a corrupted answer 0."""
import collections
import hashlib
import random

import jax.numpy as jnp
import numpy as np
import pytest

from lmphys.config import load_config_file
from lmphys.errors import ConfigError
from lmphys.train.run_config import validate
from lmphys.worlds import depo
from lmphys.worlds.base import ModelFns
from tests.conftest import REPO

# The release's prints (depo.py, one random.Random(42) for all six calls): Depo1 N = 375, 300, 225
# (K 8, V 50, 1-2 tokens), then Depo2 N = 125, 100, 75 (K 16, V 3, 5-7 tokens): (length, sha256
# of repr((tokens, labels)) in the release's ids, first 16 hex digits), made with the released file.
RELEASED_PRINTS = [
    ((375, 8, 50, 1, 2), 458, "ba890677a7cd508b"), ((300, 8, 50, 1, 2), 110, "5a34cb817d7771fb"),
    ((225, 8, 50, 1, 2), 184, "105bc2ce82c1f553"), ((125, 16, 3, 5, 7), 359, "a2957251a5f9c3a9"),
    ((100, 16, 3, 5, 7), 517, "c3a2e32993cab17b"), ((75, 16, 3, 5, 7), 854, "65b9018a1762db18"),
]
# depo_data(N=12, K=4, M=4, mini_vocab=50, min_tlen=1, max_tlen=2) after random.seed(7), from the
# released code; read by hand: edges 83->53, 55->83, 53->74, 76->55, 74->76 (the cycle
# 83 53 74 76 55), then 4 hops from 76 = 74, 1 from 55 = 83, 2 from 74 = 55, 1 from 53 = 74.
HAND_CHECKED = [9999, 83, 53, 55, 83, 53, 74, 76, 55, 74, 76, 9004, 76, 9500, 74, 9001, 55, 9500, 83, 9002, 74,
                9500, 55, 9001, 53, 9500, 74]
HAND_LABELS = [0] * 13 + [1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1]


def _released(spec, instance):
    tok = depo.Tokenizer(spec.max_hops, spec.vocab)
    encoded = tok.encode(instance, spec.separator)
    return [tok.released_id(token) for token in encoded.tokens], encoded.labels


def test_the_released_samples_come_out_draw_for_draw():
    rng = random.Random(42)
    for (size, hops, vocab, shortest, longest), length, digest in RELEASED_PRINTS:
        spec = depo.Spec(size, hops, 10, vocab, shortest, longest)
        tokens, labels = _released(spec, depo.draw(rng, spec))
        assert len(tokens) == length
        assert hashlib.sha256(repr((tokens, labels)).encode()).hexdigest()[:16] == digest


def test_a_hand_checked_instance_and_the_next_two_from_the_same_generator():
    rng = random.Random(7)
    spec = depo.Spec(12, 4, 4, 50, 1, 2)
    assert _released(spec, depo.draw(rng, spec)) == (HAND_CHECKED, HAND_LABELS)
    depo2 = depo.Spec(6, 4, 3)  # the released defaults: V 3, words of 5..7 tokens
    assert len(_released(depo2, depo.draw(rng, depo2))[0]) == 89
    test_spec = depo.Spec(8, 8, 4)
    instance = depo.draw(rng, test_spec, test=True)
    assert len(_released(test_spec, instance)[0]) == 166 and [q.hops for q in instance.queries] == [2, 2, 2, 2]


@pytest.mark.parametrize("size,mean,first,last", [(375, 109.5, .016, .0009), (300, 90.1, .018, .0011),
                                                  (225, 70.1, .021, .0016), (125, 42.3, .031, .0032),
                                                  (100, 35.0, .035, .0042), (75, 27.5, .043, .0059)])
def test_the_size_law_is_one_over_n_plus_root_n(size, mean, first, last):
    sizes, cumulative = depo.size_law(size)
    probabilities = np.diff([0.0] + cumulative)
    assert sizes[0] == 3 and sizes[-1] == size and cumulative[-1] == pytest.approx(1.0)
    assert probabilities @ sizes == pytest.approx(mean, abs=0.06)
    assert probabilities[0] == pytest.approx(first, abs=6e-4) and probabilities[-1] == pytest.approx(last, abs=6e-5)
    ratio = (3 + size ** 0.5) / (size + size ** 0.5)
    assert probabilities[-1] / probabilities[0] == pytest.approx(ratio)


def test_training_draws_follow_the_size_and_hop_laws():
    spec = depo.Spec(75, 16, 10)
    rng = random.Random(3)
    instances = [depo.draw(rng, spec) for _ in range(400)]
    sizes = [instance.size for instance in instances]
    assert min(sizes) >= 3 and max(sizes) <= 75
    assert np.mean(sizes) == pytest.approx(27.5, abs=3.0)  # SE ~1 at 400 draws
    hops = collections.Counter(query.hops for instance in instances for query in instance.queries)
    assert set(hops) == set(range(1, 17)) and max(hops.values()) / min(hops.values()) < 1.6
    for instance in instances:
        assert len(instance.queries) == min(instance.size, 10)
        assert len({query.start for query in instance.queries}) == len(instance.queries)  # distinct starts


def test_words_are_distinct_with_an_end_of_word_token_and_the_release_length_law():
    words = depo.multi_token_words(random.Random(0), 375, 50, 1, 2)
    assert len(set(words)) == 375
    assert all(all(1 <= t <= 50 for t in word[:-1]) and 51 <= word[-1] <= 100 for word in words)
    # 50 one-token words exist, so nearly all are drawn and the rest are two tokens (spec: ~1.87)
    assert np.mean([len(word) for word in words]) == pytest.approx(1.87, abs=0.02)
    depo2 = depo.multi_token_words(random.Random(1), 125, 3, 5, 7)
    assert collections.Counter(map(len, depo2)).keys() <= {5, 6, 7} and all(4 <= word[-1] <= 6 for word in depo2)


def test_test_instances_at_the_paper_sizes_have_the_release_lengths():
    # The spec's measurements of the released generator: a test instance (n = N) is ~1460 tokens
    # for Depo1 at N = 375 and ~1650-1710 for Depo2 at N = 125; both fit the paper's 2048 context.
    for spec, low, high in ((depo.Spec(375, 8, 10, 50, 1, 2), 1440, 1480), (depo.Spec(125, 16, 10), 1620, 1730)):
        tok = depo.Tokenizer(spec.max_hops, spec.vocab)
        lengths = [len(tok.encode(depo.draw(random.Random(seed), spec, test=True)).tokens) for seed in range(3)]
        assert all(low <= length <= high for length in lengths), lengths
        assert depo.data.longest_test_instance(spec) <= 2049


def _read_back(tok, tokens):
    """(successor map, [(k, query word, answer word)]) parsed from an instance's tokens alone."""
    words, word, queries, successor = [], [], [], {}
    position = 1
    while position < len(tokens) and not tok.query_id(1) <= tokens[position] < tok.word_offset + 1:
        word.append(tokens[position])
        if tokens[position] - tok.word_offset > tok.vocab:
            words.append(tuple(word))
            word = []
        position += 1
    for key, value in zip(words[::2], words[1::2]):
        successor[key] = value
    while position < len(tokens):
        hops = tokens[position] - tok.query_id(1) + 1
        answer_at = tokens.index(tok.ans_id, position)
        query = tuple(tokens[position + 1:answer_at])
        end = answer_at + 1
        while tokens[end] - tok.word_offset <= tok.vocab:
            end += 1
        queries.append((hops, query, tuple(tokens[answer_at + 1:end + 1])))
        position = end + 1
    return successor, queries


@pytest.mark.parametrize("test_mode", [False, True])
def test_every_answer_is_the_kth_successor_read_back_from_the_edges(test_mode):
    spec = depo.Spec(20, 8, 10, 3, 2, 4)
    tok = depo.Tokenizer(spec.max_hops, spec.vocab)
    rng = random.Random(11)
    for _ in range(60):
        instance = depo.draw(rng, spec, test=test_mode)
        encoded = tok.encode(instance)
        successor, queries = _read_back(tok, encoded.tokens)
        assert len(successor) == instance.size and set(successor.values()) == set(successor)  # one cycle's edges
        walk, seen = next(iter(successor)), set()
        while walk not in seen:
            seen.add(walk)
            walk = successor[walk]
        assert len(seen) == instance.size  # a single n-cycle, not several
        for hops, query, answer in queries:
            node = query
            for _ in range(hops):
                node = successor[node]
            assert node == answer
            if test_mode:
                assert hops in (1, 2, 4, 8)
        labelled = [t for t, label in zip(encoded.tokens, encoded.labels) if label]
        assert labelled == [t for _, _, answer in queries for t in (tok.ans_id,) + answer]


def test_test_hops_are_powers_of_two_with_the_release_quirks():
    assert depo.eval_hops(4) == [1, 2, 4] and depo.eval_hops(16) == [1, 2, 4, 8, 16]
    assert depo.eval_hops(6) == [1, 2, 4, 6]
    assert depo.eval_hops(32) == [1, 2, 4, 8, 16, 32, 24, 32]


def test_the_checker_takes_only_the_kth_successor():
    instance = depo.draw(random.Random(5), depo.Spec(10, 4, 5, 50, 1, 2), test=True)
    for query in instance.queries:
        right = instance.cycle[query.answer(instance.size)]
        assert depo.check_answer(instance, query, right)
        assert not depo.check_answer(instance, query, instance.cycle[(query.answer(instance.size) + 1) % 10])
        assert not depo.check_answer(instance, query, right[:-1] + (right[-1] % 100 + 1,))  # one token wrong


def _task(**fields):
    task = depo.default_config()
    task.update(dict(max_size=8, max_hops=4, batch_size=4, seq_len=256, eval_windows=3, **fields))
    return depo.DepoTask(task)


def test_windows_are_left_aligned_deterministic_and_row_independent():
    task = _task()
    batch = task.host_batch(3, 7)
    assert batch.inputs.shape == (4, 256) and (batch.inputs[:, 0] == task.bos_id).all()
    again = task.host_batch(3, 7)
    assert all((a == b).all() for a, b in zip(batch, again))
    part = task.host_batch(3, 7, rows=slice(1, 3))
    assert all((a[1:3] == b).all() for a, b in zip(batch, part))
    assert not (task.host_batch(3, 8).inputs == batch.inputs).all()
    assert (batch.targets[:, :-1] == batch.inputs[:, 1:]).all() and (batch.inputs != task.pad_id).all()
    window = task.window(123)
    assert window.placed[0][0] == 0 and sum(len(e.tokens) for _, e in window.placed[:-1]) < 257
    assert batch.loss_mask.sum() > 0 and set(np.unique(batch.loss_mask)) <= {0.0, 1.0}


def _oracle(task, corrupt=False):
    """log_probs that put all mass on each eval window's true next token (optionally another
    first token of each answer, a wrong word)."""
    truth = {}
    for packed in task.eval_set():
        tokens = np.array(packed.tokens, np.int32)
        following = tokens[1:].copy()
        if corrupt:
            for start, encoded in packed.placed:
                for _, offset, _ in encoded.answers:
                    if start + offset <= 256:
                        first = following[start + offset - 1]
                        following[start + offset - 1] = first + 1 if first + 1 < task.vocab_size else first - 1
        truth[tokens[:-1].tobytes()] = following

    def log_probs(inputs):
        inputs = np.asarray(inputs)
        nexts = np.stack([truth[row.tobytes()] for row in inputs])
        return jnp.log(jnp.eye(task.vocab_size)[nexts] + 1e-9)

    return ModelFns(sample=None, log_probs=log_probs)


def test_evaluation_scores_an_oracle_one_and_a_wrong_word_zero_by_k():
    task = _task()
    metrics = task.evaluate(_oracle(task), None)
    assert metrics["acc"] == 1.0 and metrics["eval_queries"] >= 3 * 8
    assert {name for name in metrics if name.startswith("acc_k")} <= {"acc_k1", "acc_k2", "acc_k4"}
    assert task.evaluate(_oracle(task, corrupt=True), None)["acc"] == 0.0


@pytest.mark.parametrize("field,value,words", [
    ("max_size", 2, "integer >= 3"), ("max_size", 4000, "distinct words"), ("seq_len", 64, "window"),
    ("objective", "mlm", "decoders"), ("max_word_len", 0, "integer >= 5"), ("queries", 0, "integer >= 1")])
def test_bad_task_fields_name_the_field(field, value, words):
    task = depo.default_config()
    task[field] = value
    with pytest.raises(ConfigError, match=f"task.{field}.*{words}"):
        depo.validate(task)


@pytest.mark.parametrize("path,argument", [("small.py", "depo1"), ("small.py", "depo2,nope+canon"),
                                           ("paper.py", "depo1"), ("paper.py", "depo2,75,rope4+canon,12L768D")])
def test_configs_validate_and_bad_arguments_are_one_sentence(path, argument):
    validate(load_config_file(f"{REPO}/configs/depo/{path}", argument))
    with pytest.raises(ConfigError, match="paper sizes"):
        load_config_file(f"{REPO}/configs/depo/paper.py", "depo1,100")
    with pytest.raises(ConfigError, match="architecture"):
        load_config_file(f"{REPO}/configs/depo/small.py", "depo1,alibi")
