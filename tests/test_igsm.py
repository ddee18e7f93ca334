"""iGSM (Part 2.1/2.2): problems are solvable from their text alone and follow the released
wording, solutions pass the full checker and write one operation per equation, the op count, the
split by the released sketch hash, reask, the tokenizer, and the task's rows and evaluation. The
checker's mutation families are in test_igsm_check.py, the distributions in test_igsm_stats.py."""
import collections
import hashlib
import re

import jax
import numpy as np
import pytest

from lmphys.errors import DataError
from lmphys.worlds import igsm
from lmphys.worlds.base import ModelFns
from lmphys.worlds.igsm.graph import ABSTRACT, MOD, RNG
from lmphys.worlds.igsm.problem import sketch_bin
from lmphys.worlds.igsm.text import LETTERS

TOKENIZER = igsm.tokenizer()


def _problems(difficulty, count, **kwargs):
    return [igsm.generate(seed, difficulty, **kwargs) for seed in range(count)]


def _solve_from_text(problem):
    """An independent solver that reads only the problem text and the question: instance
    parameters from the sentences, abstract ones from the structure the sentences imply."""
    layer_of = {item: layer for layer, items in zip(problem.world.layers, problem.world.items) for item in items}
    names = sorted({*layer_of, *problem.world.layers}, key=len, reverse=True)
    ref = "each (" + "|".join(map(re.escape, names)) + ")'s (" + "|".join(map(re.escape, names)) + ")"
    definitions, edges = {}, collections.defaultdict(list)
    for target, expression in re.findall(r"The number of (.+?) equals (.+?)\.(?= The| How|$)", problem.problem):
        item, other = re.fullmatch(ref, target).groups()
        edges[item].append(other)
        definitions[(item, other)] = expression

    def value(item, other, depth=0):
        assert depth < 200, "cyclic definitions"
        if (item, other) in definitions:
            expression = definitions[(item, other)]
            values = [value(a, b, depth + 1) for a, b in re.findall(ref, expression)]
            rest = re.sub(ref, "X", expression)
            if rest.isdigit():
                return int(rest)
            constant, modifier, inner = re.fullmatch(r"(?:(\d+) (more than|times as much as) )?(.*)", rest).groups()
            if inner == "X":
                total = values[0]
            elif inner.startswith("the sum of"):
                assert re.fullmatch(r"the sum of (X, )*X and X", inner), inner
                total = sum(values)
            else:
                assert inner == "the difference of X and X", inner
                total = values[0] - values[1]
            if modifier == "more than":
                total += int(constant)
            elif modifier:
                total *= int(constant)
            return total % MOD
        total = 0  # an abstract parameter: every `other` (a layer name) inside one `item`
        for child in edges[item]:
            count = value(item, child, depth + 1)
            total += count if layer_of[child] == other else count * value(child, other, depth + 1)
        return total % MOD

    question = re.fullmatch(r"How many (.+) does (.+) have\?", problem.question)
    return value(question.group(2), question.group(1))


@pytest.mark.parametrize("difficulty", ["small", "med", "hard"])
def test_solutions_pass_write_op_equations_and_answers_match_the_text(difficulty):
    for problem in _problems(difficulty, 25):
        verdict = igsm.check_solution(problem, problem.solution_ids)
        assert verdict.correct and verdict.unneeded_steps == 0, verdict.reason
        assert igsm.check_solution(problem, problem.solution).correct, "the text form checks the same"
        assert problem.answer == _solve_from_text(problem) == problem.world.values[problem.question_param]
        steps = problem.solution.split(" <ans> ")[0].removesuffix(".").split(". ")
        equations = [part for step in steps for part in step.split("; ")[1:]]
        assert len(equations) == problem.op, "one equation per operation"
        for equation in equations:  # "x = t op t = a op b = r": at most one operator per part
            assert all(sum(part.count(f" {op} ") for op in "+-*") <= 1 for part in equation.split(" = "))
        assert problem.solution.endswith(f"<ans> {problem.answer}")


def test_op_counts_each_step_as_its_dependencies_minus_one_and_follows_min_of_two_uniforms():
    problems = _problems("med", 600, split="any")
    for problem in problems[:50]:
        world = problem.world
        assert problem.op == sum(max(1, len(world.whole_preds(param)) - 1) for param in problem.steps)
    counts = collections.Counter(problem.op for problem in problems)
    top = igsm.DIFFICULTIES["med"].max_train_op
    for op in (1, 2, 5, 10):  # P(min(t0, t1) = k) = (2 (top - k) + 1) / top^2
        expected = (2 * (top - op) + 1) / top ** 2
        assert abs(counts[op] / len(problems) - expected) < 4 * (expected / len(problems)) ** 0.5 + 0.005, op


@pytest.mark.parametrize("difficulty,op", [("med", 21), ("small", 6), ("small", 1)])
def test_requested_ops_are_exact(difficulty, op):
    for problem in _problems(difficulty, 6, op=op, split="test"):
        assert problem.op == op and igsm.check_solution(problem, problem.solution_ids).correct
        assert problem.template >= 17


def test_the_split_hashes_the_released_sketch():
    """op = 1 problems write "Define X as a; so a = N.": their sketch is the released
    " Define Inst as a. so a = 0." (bin 10: train) or, for an abstract question, " Define Inter as a.
    so a = 0." (bin 20: test), under either bin split."""
    for sketch, expected in ((" Define Inst as a. so a = 0.", 10), (" Define Inter as a. so a = 0.", 20)):
        assert int(hashlib.sha256(sketch.encode()).hexdigest(), 16) % MOD == expected
    for problem in _problems("med", 20, op=1, split="any"):
        assert problem.template == (20 if problem.question_param[0] == ABSTRACT else 10)
    problems = _problems("med", 60, split="any")
    for problem in problems:  # letters do not matter: the sketch renames them in order of appearance
        ids = list(problem.solution_steps)
        swap = {TOKENIZER.ids[a]: TOKENIZER.ids[b] for a, b in zip(LETTERS, LETTERS[::-1])}
        assert sketch_bin([swap.get(token, token) for token in ids]) == problem.template
    train = _problems("med", 40, split="train")
    test = _problems("med", 40, split="test")
    released = [igsm.generate(seed, "med", split="test", bins="released") for seed in range(40)]
    assert all(p.template < 17 for p in train) and all(p.template >= 17 for p in test)
    assert all(p.template >= 16 for p in released) and any(p.template == 16 for p in released)
    assert {p.in_split("train") for p in train} == {True} and {p.in_split("test") for p in test} == {True}


def test_world_structure_and_wording_are_the_released_ones():
    for problem in _problems("med", 60, split="any"):
        world = problem.world
        assert 2 <= len(world.layers) <= 4 and all(2 <= len(items) <= 4 for items in world.items)
        assert all(any((i, j, k) in world.edges for j in range(len(world.items[i])))
                   for i in range(len(world.layers) - 1) for k in range(len(world.items[i + 1]))), "every lower item has a parent"
        stated = [param[1:] for param in world.sentence_order]
        assert sorted(stated) == sorted(world.edges), "every edge is stated exactly once"
        necessary = set(problem.steps)
        for param in problem.steps:
            assert set(world.whole_preds(param)) - {RNG} <= necessary, "necessary parameters need nothing else"
            if param != problem.question_param:
                assert param in world.ancestors(problem.question_param), "every step is needed"
        assert len(problem.steps) == len(set(problem.steps))
        sentences = problem.problem.split(". ")
        assert all(sentence.startswith("The number of each ") for sentence in sentences)
        references = sum(1 + len(sentence.refs) for sentence in world.sentences.values())
        assert len(re.findall(r"\beach ", problem.problem)) == references, "each before every reference"
        assert " less than " not in problem.problem and "product" not in problem.problem
        assert not re.search(r"\beach\b", problem.question)
        kinds = {sentence.combine for sentence in world.sentences.values()}
        assert kinds <= {"constant", "single", "sum", "diff"}
        for sentence in world.sentences.values():
            assert len(sentence.refs) <= 4 and (sentence.combine != "diff" or len(sentence.refs) == 2)
            assert sentence.modifier != "mul" or 1 <= sentence.number < MOD


def test_formats_and_reask():
    pq = igsm.generate(11, "med", fmt="pq")
    qp = igsm.generate(11, "med", fmt="qp")
    assert pq.problem == qp.problem and pq.question == qp.question
    assert qp.prompt_ids()[0][1:1 + len(qp.question_ids)] == qp.question_ids
    for seed in range(20):
        base = igsm.generate(seed, "med", op=4)
        again = igsm.generate(seed, "med", op=4, reask=True)
        assert again.problem == base.problem, "the same problem text"
        assert again.question_param != base.question_param and again.question_param in base.world.preds
        assert again.op == again.world.ops(again.steps)
        assert set(again.steps) == again.world.closure(again.question_param)
        assert igsm.check_solution(again, again.solution_ids).correct


def test_tokenizer_round_trips():
    for problem in _problems("hard", 10) + _problems("small", 10):
        for ids in (problem.problem_ids, problem.question_ids, problem.solution_ids,
                    problem.solution_tokens(0.5, "retry", seed=1)[0]):
            assert TOKENIZER.encode(TOKENIZER.decode(ids)) == ids
    with pytest.raises(DataError):
        TOKENIZER.encode("Define Unobtainium as x")


def test_generate_rejects_bad_arguments(monkeypatch):
    for kwargs in ({"difficulty": "easy"}, {"op": 0}, {"op": 41}, {"fmt": "xy"}, {"split": "dev"}, {"bins": "mine"}):
        with pytest.raises(DataError):
            igsm.generate(0, **kwargs)
    monkeypatch.setattr(igsm.problem, "_SIZE_DRAWS", 0)  # draws that never match end in one sentence
    with pytest.raises(DataError, match="could not draw a small problem with op = 40"):
        igsm.generate(0, "small", op=40)


def _task(**fields):
    config = igsm.default_config()
    config.update(fields)
    return igsm.IGSMTask(config)


def test_host_batches_are_a_function_of_seed_and_step():
    task = _task(batch_size=4, retry_rate=0.3, mask_mistakes=True)
    first = task.host_batch(3, 7)
    assert all(np.array_equal(a, b) for a, b in zip(first, task.host_batch(3, 7)))
    assert not np.array_equal(first.inputs, task.host_batch(3, 8).inputs)
    assert not np.array_equal(first.inputs, task.host_batch(4, 7).inputs)
    for row in range(4):
        targets, counted = first.targets[row], first.loss_mask[row] > 0
        sol = int(np.flatnonzero(first.inputs[row] == TOKENIZER.sol_id)[0])
        assert not counted[:sol].any()  # the prompt is not trained on
        assert targets[counted][-1] == TOKENIZER.eos_id and targets[counted][-3] == TOKENIZER.ans_id
        back = np.flatnonzero(targets == TOKENIZER.back_id)
        assert counted[back].all() and not counted[np.concatenate([back - k for k in range(1, 6)])].any()
    held = task.host_batch(3, 7, held_out=True)
    assert not np.array_equal(first.inputs, held.inputs)


def test_a_config_saved_before_pack_and_split_bins_existed_still_loads():
    config = igsm.default_config()
    del config["pack"]
    del config["split_bins"]
    task = igsm.IGSMTask(config)
    assert task.pack is False and task.bins == "paper"


def test_packed_rows_hold_whole_problems_of_the_row_and_fill_it():
    plain, packed = _task(batch_size=8), _task(batch_size=8, pack=True)
    loose, full = plain.host_batch(5, 2), packed.host_batch(5, 2)
    assert all(np.array_equal(a, b) for a, b in zip(full, packed.host_batch(5, 2)))
    fill = [(batch.inputs != TOKENIZER.pad_id).mean() for batch in (loose, full)]
    assert fill[1] > fill[0] + 0.1
    base = (5 * 2) << 48 | 2 << 16  # host_batch's row seeds for data seed 5, step 2
    problems = 0
    for row in range(8):
        ids = np.concatenate([full.inputs[row], full.targets[row, -1:]])
        counted = np.concatenate([[0.0], full.loss_mask[row]]) > 0
        candidates = [packed.row((base | row) * 1024 + part) for part in range(40)]  # the row's own problems
        starts = list(np.flatnonzero(ids == TOKENIZER.bos_id))
        assert starts[0] == 0
        last = -1
        for begin, end in zip(starts, starts[1:] + [len(ids)]):
            piece = ids[begin:end]
            piece = piece[piece != TOKENIZER.pad_id].tolist()
            part = next(index for index, (tokens, _) in enumerate(candidates) if tokens == piece)  # whole, never cut
            assert part > last
            last = part
            assert counted[begin:begin + len(piece)].tolist() == [flag > 0 for flag in candidates[part][1]]
            problems += 1
    assert problems > 8  # more problems than rows


class _Oracle:
    """A stand-in model that writes each prompt's true (or a corrupted) solution."""

    def __init__(self, problems, corrupt=False, loop=False):
        self.solutions = {tuple(p.prompt_ids()[0]): p.solution_ids for p in problems}
        self.corrupt = corrupt
        self.loop = loop  # retry forever, as an undertrained retry-data model does: never <eos>

    def __call__(self, rows, lengths, key):
        out = np.array(rows)
        for row, length in zip(out, lengths):
            solution = list(self.solutions[tuple(row[:length].tolist())])
            if self.corrupt:
                solution[-1] = TOKENIZER.ids[str((int(TOKENIZER.vocab[solution[-1]]) + 1) % MOD)]
            if self.loop:
                solution = TOKENIZER.encode("Define " + " Define ".join(["Zoo's Bone as [BACK]."] * len(row)))
            written = (solution + [TOKENIZER.eos_id])[:len(row) - length]
            row[length:length + len(written)] = written
        return out


def test_evaluation_scores_an_oracle_one_and_a_wrong_model_zero():
    task = _task(eval_problems=3, eval_ops="1,2,5", eval_len=400)
    problems = [p for op in (1, 2, 5) for p in task.eval_problems_of(op)]
    assert all(p.template >= 17 for p in problems)
    perfect = task.evaluate(ModelFns(_Oracle(problems), None), key=jax.random.key(0))
    assert perfect == {"acc_op1": 1.0, "acc_op2": 1.0, "acc_op5": 1.0, "acc_id": 1.0, "acc_ood": 1.0,
                       "answer_id": 1.0, "answer_ood": 1.0, "finished_id": 1.0, "finished_ood": 1.0,
                       "unneeded_id": 0.0, "unneeded_ood": 0.0}
    wrong = task.evaluate(ModelFns(_Oracle(problems, corrupt=True), None), key=jax.random.key(0))
    assert wrong["acc_id"] == wrong["acc_ood"] == wrong["answer_id"] == wrong["answer_ood"] == 0.0
    assert wrong["finished_id"] == wrong["finished_ood"] == 1.0


def test_a_model_that_never_ends_is_scored_unfinished_and_shown():
    task = _task(eval_problems=2, eval_ops="1,5", eval_len=400)
    problems = task.eval_problems_of(1)
    looping = task.evaluate(ModelFns(_Oracle(problems + task.eval_problems_of(5), loop=True), None), jax.random.key(0))
    assert looping["finished_id"] == looping["finished_ood"] == looping["acc_id"] == looping["answer_id"] == 0.0
    attempts = task.attempt(ModelFns(_Oracle(problems, loop=True), None), problems, jax.random.key(0))
    assert [a.finished for a in attempts] == [False, False] and all(a.verdict is None for a in attempts)
    assert attempts[0].text.startswith("Define Zoo's Bone as [BACK]. Define Zoo's Bone as [BACK].")
    solved = task.attempt(ModelFns(_Oracle(problems), None), problems, jax.random.key(0))
    assert [a.text for a in solved] == [p.solution for p in problems] and all(a.verdict.correct for a in solved)


def test_train_tokens_sets_steps_for_equal_tokens():
    clean = _task(train_tokens=200_000)
    retry = _task(train_tokens=200_000, retry_rate=0.5)
    assert clean.train_steps(10) > retry.train_steps(10) > 0
    assert _task().train_steps(10) == 10
