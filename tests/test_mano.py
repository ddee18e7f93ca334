"""Mano (Part 4.1, knowledge manipulation): the generator replays the released one draw for draw
(its printed sample and the next four from random.Random(42), read by hand), every value equals
the expression recomputed independently mod 23 from its tokens, lengths are uniform with 2l + 5
tokens, knowledge augmentation picks each id half the time, division uses the modular inverse,
and the task's windows (loss on every token) and evaluation by length score an oracle 1 and a
wrong value 0."""
import collections
import random

import jax.numpy as jnp
import numpy as np
import pytest

from lmphys.config import load_config_file
from lmphys.errors import ConfigError
from lmphys.train.run_config import validate
from lmphys.worlds import mano
from lmphys.worlds.base import ModelFns
from tests.conftest import REPO

# encode_pure_arithmetic with L = 10, ops + - *, knowledge_augment=True: the release's own print
# (random.Random(42)), then four calls on random.Random(1); the values, read by hand (mod 23),
# follow each. Then, on the same generator, one test-style call (lens = [10]) without augmentation.
RELEASED = [
    ([9999, 20, 5, 5003, 7, 5018, 5013, 24, 5007], (3 + 18 * 13) % 23),
    ([9998, 30, 2, 2, 5006, 5003, 5, 5013, 5019, 34, 5017], ((6 - 3) - (13 + 19)) % 23),
    ([9999, 61, 3, 2, 5016, 5007, 2, 2, 5021, 5007, 6, 5013, 3, 5005, 5020, 65, 5012],
     ((16 - 7) * ((21 - 7) - (13 - 5 * 20))) % 23),
    ([9999, 101, 2, 7, 5, 3, 5, 5016, 2, 5015, 5000, 5009, 7, 5005, 5016, 1, 5012, 3, 5018, 5011, 6, 5016, 5017, 105,
      5020], (((((16 + (15 - 0)) * 9) + 5 * 16) * (12 + 18 * 11)) - (16 - 17)) % 23),
    ([9998, 101, 3, 2, 7, 5007, 3, 3, 5002, 5017, 5, 5002, 5, 5, 5007, 5008, 7, 5011, 5009, 3, 5020, 5022, 5022, 104,
      5018], ((7 * ((2 * 17) * (2 + ((7 + 8) + 11 * 9))) - 20 * 22) * 22) % 23),
]
TEST_STYLE = ([9999, 100, 2, 5007, 1, 1, 5005, 2, 3, 3, 5020, 3, 1, 5012, 5021, 5021, 5009, 5006, 1, 5009, 2, 5013, 5018,
               104, 5016], (7 - ((5 + (((20 * ((12 + 21) * 21)) * 9) - 6)) + (9 + (13 - 18)))) % 23)


def test_the_released_samples_come_out_draw_for_draw():
    spec, tok = mano.Spec(10), mano.Tokenizer(10)
    rngs = [random.Random(42)] + [random.Random(1)] * 4
    for rng, (tokens, value) in zip(rngs, RELEASED):
        instance = mano.draw(rng, spec)
        assert [tok.released_id(t) for t in tok.encode(instance).tokens] == tokens
        assert instance.value == value == tokens[-1] - 5000
    instance = mano.draw(rngs[-1], mano.Spec(10, knowledge_augment=False), lengths=(10,))
    assert [tok.released_id(t) for t in tok.encode(instance).tokens] == TEST_STYLE[0]
    assert instance.value == TEST_STYLE[1] == 16


def _value_from_tokens(tok, tokens):
    """The value of the expression between <len_l> and <ans_l>, read from ids alone (an
    independent prefix evaluator: recursive descent over released ids)."""
    ids = [tok.released_id(t) for t in tokens[2:-2]]
    position = 0

    def parse():
        nonlocal position
        token = ids[position]
        position += 1
        if token >= 5000:
            return token - 5000
        left, right = parse(), parse()
        op = (token - 1) % 4
        if op == 3:
            return None if right == 0 else next(x for x in range(23) if (x * right - left) % 23 == 0)
        return [(left + right), (left - right), (left * right)][op] % 23

    value = parse()
    assert position == len(ids)
    return value


@pytest.mark.parametrize("ops", ["asm", "asmd", "d"])
def test_every_value_is_the_expression_mod_23(ops):
    spec = mano.Spec(8, mano.ops_from_letters(ops))
    tok = mano.Tokenizer(8)
    rng = random.Random(1)
    for _ in range(300):
        instance = mano.draw(rng, spec)
        tokens = tok.encode(instance).tokens
        assert _value_from_tokens(tok, tokens) == instance.value == mano.evaluate_prefix(instance.items)
        assert len(tokens) == 2 * instance.length + 5 and tok.value_of(tokens[-1]) == instance.value
        assert sum(item[0] == "op" for item in instance.items) == instance.length
        assert {item[1] for item in instance.items if item[0] == "op"} <= set(spec.ops)


def test_lengths_are_uniform_and_augmentation_picks_each_id_half_the_time():
    spec = mano.Spec(6)
    rng = random.Random(2)
    instances = [mano.draw(rng, spec) for _ in range(1200)]
    counts = collections.Counter(instance.length for instance in instances)
    assert set(counts) == set(range(1, 7)) and all(150 <= count <= 250 for count in counts.values())
    flags = [flag for instance in instances for flag in (instance.bos_alt, instance.len_alt, instance.ans_alt)]
    flags += [item[2] for instance in instances for item in instance.items if item[0] == "op"]
    assert np.mean(flags) == pytest.approx(0.5, abs=0.03)
    plain = [mano.draw(rng, mano.Spec(6, knowledge_augment=False)) for _ in range(100)]
    assert not any(i.bos_alt or i.len_alt or i.ans_alt or any(it[0] == "op" and it[2] for it in i.items) for i in plain)
    fixed = [mano.draw(rng, spec, lengths=(6,)) for _ in range(20)]
    assert {instance.length for instance in fixed} == {6}


def test_operations_by_hand():
    assert mano.apply("/", 1, 2) == 12 and (12 * 2) % 23 == 1  # the modular inverse
    assert mano.apply("/", 5, 0) is None and mano.apply("+", None, 3) is None
    assert mano.apply("-", 3, 5) == 21 and mano.apply("*", 22, 22) == 1
    # "+ * a b - c d" with a, b, c, d = 4, 7, 2, 9: (4 * 7 + (2 - 9)) mod 23 = 21
    items = [("op", "+", False), ("op", "*", False), ("value", 4), ("value", 7), ("op", "-", True), ("value", 2),
             ("value", 9)]
    assert mano.evaluate_prefix(items) == 21
    instance = mano.Instance(3, tuple(items), 21, False, False, False)
    assert mano.check_answer(instance, 21) and not mano.check_answer(instance, 20)
    tok = mano.Tokenizer(3)
    assert tok.decode(tok.encode(instance).tokens) == "<bos> <len_3> + * 4 7 -' 2 9 <ans_3> 21"


def _task(**fields):
    task = mano.default_config()
    task.update({"max_ops": 4, "batch_size": 4, "seq_len": 64, "eval_windows": 2, **fields})
    return mano.ManoTask(task)


def _oracle(task, wrong=False):
    truth = {}
    for length in task.lengths:
        for packed in task.eval_set(length):
            tokens = np.array(packed.tokens, np.int32)
            following = tokens[1:].copy()
            if wrong:
                for start, encoded in packed.placed:
                    position = start + encoded.answer_position
                    if position <= task.seq_len:
                        value = task.tokenizer.value_of(int(tokens[position]))
                        following[position - 1] = task.tokenizer.value_id((value + 1) % 23)
            truth[tokens[:-1].tobytes()] = following

    def log_probs(inputs):
        nexts = np.stack([truth[row.tobytes()] for row in np.asarray(inputs)])
        return jnp.log(jnp.eye(task.vocab_size)[nexts] + 1e-9)

    return ModelFns(sample=None, log_probs=log_probs)


def test_evaluation_scores_an_oracle_one_and_a_wrong_value_zero_per_length():
    task = _task()
    metrics = task.evaluate(_oracle(task), None)
    assert metrics == {"acc_len1": 1.0, "acc_len2": 1.0, "acc_len3": 1.0, "acc_len4": 1.0, "acc": 1.0}
    assert set(task.evaluate(_oracle(task, wrong=True), None).values()) == {0.0}
    assert _task(eval_lengths="2,4").lengths == (2, 4)


@pytest.mark.parametrize("max_ops,per_window", [(16, 47.5), (10, 64.0)])
def test_a_paper_window_holds_the_spec_count_of_expressions(max_ops, per_window):
    # A training expression has 2l + 5 tokens with l uniform in 1..L: 1024 / (L + 6) per window
    # (the spec: ~48 at L = 16, ~64 at L = 10).
    task = _task(max_ops=max_ops, seq_len=1024)
    counts = [len(task.window(seed).placed) for seed in range(20)]
    assert np.mean(counts) == pytest.approx(per_window, rel=0.06)


def test_windows_are_full_left_aligned_and_trained_on_every_token():
    task = _task()
    batch = task.host_batch(1, 2)
    assert batch.inputs.shape == (4, 64) and (batch.loss_mask == 1).all()
    assert set(batch.inputs[:, 0]) <= {1, 2} and (batch.inputs != task.pad_id).all()  # <bos> or <bos'>
    assert all((a[:1] == b).all() for a, b in zip(batch, task.host_batch(1, 2, rows=slice(0, 1))))
    held = task.host_batch(1, 0, held_out=True)
    assert np.isin(held.inputs[:, 1], [task.tokenizer.length_id(4, False), task.tokenizer.length_id(4, True)]).all()


@pytest.mark.parametrize("field,value,words", [
    ("ops", "asx", "letters of asmd"), ("ops", "", "letters"), ("seq_len", 8, "integer >= 12"),
    ("eval_lengths", "1,9", "lengths in 1..4"), ("max_ops", 0, "integer >= 1")])
def test_bad_task_fields_name_the_field(field, value, words):
    task = mano.default_config()
    task[field] = value
    with pytest.raises(ConfigError, match=f"task.{field}.*{words}"):
        mano.validate(task)


@pytest.mark.parametrize("path,argument", [("small.py", "mano"), ("small.py", "mano,6,nope+canon"),
                                           ("paper.py", "mano"), ("paper.py", "mano,10,rope4+canon,12L768D")])
def test_configs_validate(path, argument):
    validate(load_config_file(f"{REPO}/configs/mano/{path}", argument))
    with pytest.raises(ConfigError, match="lengths L"):
        load_config_file(f"{REPO}/configs/mano/paper.py", "mano,12")
