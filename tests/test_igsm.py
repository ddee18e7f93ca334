"""iGSM (Part 2.1/2.2): generated problems are solvable from their text alone, solutions pass the
full checker, corrupted solutions are rejected for the right reason, the op law, the split, the
tokenizer, retry data and the task's rows and evaluation."""
import collections
import random
import re

import jax
import numpy as np
import pytest

from lmphys.errors import DataError
from lmphys.worlds import igsm
from lmphys.worlds.base import ModelFns
from lmphys.worlds.igsm import graph
from lmphys.worlds.igsm.graph import MOD
from lmphys.worlds.igsm.text import LETTERS, RETRY_KINDS


def _problems(difficulty, count, **kwargs):
    return [igsm.generate(seed, difficulty, **kwargs) for seed in range(count)]


def _solve_from_text(problem):
    """An independent solver that reads only the problem text and the question: instance
    parameters from the sentences, abstract ones from the structure the sentences imply."""
    # Which layer each item is in (an item name can occur in two layers' pools, e.g. Popcorn).
    layer_of = {item: layer for layer, items in zip(problem.world.layers, problem.world.items) for item in items}
    names = sorted({*layer_of, *problem.world.layers}, key=len, reverse=True)
    ref = "(each )?(" + "|".join(map(re.escape, names)) + ")'s (" + "|".join(map(re.escape, names)) + ")"
    definitions, edges = {}, collections.defaultdict(list)
    for sentence in re.findall(r"The number of each (.+?) equals (.+?)\.(?= The| How|$)", problem.problem):
        target, expression = sentence
        _, item, other = re.fullmatch(ref, target).groups()
        edges[item].append(other)
        definitions[(item, other)] = expression

    def value(item, other, depth=0):
        assert depth < 200, "cyclic definitions"
        if (item, other) in definitions:
            expression = definitions[(item, other)]
            found = [(m.group(2), m.group(3)) for m in re.finditer(ref, expression)]
            values = [value(a, b, depth + 1) for a, b in found]
            rest = re.sub(ref, "X", expression)
            if rest.isdigit():
                return int(rest)
            match = re.fullmatch(r"(?:(\d+) (more than|less than|times as much as) )?(.*)", rest)
            constant, modifier, inner = match.groups()
            if inner == "X":
                total = values[0]
            elif inner.startswith("the sum of"):
                total = sum(values)
            elif inner.startswith("the difference of"):
                total = values[0] - values[1]
            else:
                assert inner.startswith("the product of"), inner
                total = values[0] * values[1]
            if modifier == "more than":
                total += int(constant)
            elif modifier == "less than":
                total -= int(constant)
            elif modifier:
                total *= int(constant)
            return total % MOD
        # An abstract parameter: every `other` (a layer name) inside one `item`.
        total = 0
        for child in edges[item]:
            count = value(item, child, depth + 1)
            total += count if layer_of[child] == other else count * value(child, other, depth + 1)
        return total % MOD

    question = re.fullmatch(r"How many (.+) does (each )?(.+) have\?", problem.question)
    return value(question.group(3), question.group(1))


@pytest.mark.parametrize("difficulty", ["small", "med", "hard"])
def test_solutions_pass_and_answers_match_the_text(difficulty):
    for problem in _problems(difficulty, 40):
        assert igsm.check_solution(problem, problem.solution).correct, problem.solution
        assert 0 <= problem.answer < MOD
        assert problem.answer == _solve_from_text(problem)
        assert problem.solution.endswith(f"The answer is {problem.answer}.")


def test_op_counts_the_solution_operations_and_follows_min_of_two_uniforms():
    ops = collections.Counter()
    for problem in _problems("small", 1600):
        letter_parts = [part.split(" = ")[1] for part in re.split(r"; so |; ", problem.solution) if " = " in part]
        written = sum(len(re.findall(r" [-+*] ", expression)) for expression in letter_parts)
        assert written == problem.op
        ops[problem.op] += 1
    top = graph.DIFFICULTIES["small"].max_train_op
    for op in range(1, top + 1):
        expected = (2 * (top - op) + 1) / top**2
        assert abs(ops[op] / 1600 - expected) < 0.035, (op, ops)


@pytest.mark.parametrize("difficulty,op", [("med", 21), ("small", 6)])
def test_requested_ood_ops_are_exact(difficulty, op):
    for problem in _problems(difficulty, 6, op=op, split="test"):
        assert problem.op == op and igsm.check_solution(problem, problem.solution).correct


def _shape(problem):
    world, steps = problem.world, problem.steps
    position = {index: rank for rank, index in enumerate(steps)}
    return repr([(p.kind, p.combine, p.modifier, tuple(position[d] for d in p.deps)) for p in (world.params[i] for i in steps)])


def test_train_and_test_templates_are_disjoint():
    train = {_shape(p) for p in _problems("small", 1200, split="train")}
    test = [igsm.generate(seed, "small", split="test") for seed in range(400)]
    assert all(p.template >= 17 for p in test)
    assert not train & {_shape(p) for p in test}


def test_world_is_a_dag_with_every_instance_parameter_stated_once():
    for problem in _problems("med", 30):
        world = problem.world
        rank = {index: r for r, index in enumerate(world.order)}
        assert sorted(rank) == list(range(len(world.params)))
        for index, param in enumerate(world.params):
            assert all(rank[dep] < rank[index] for dep in param.deps)
            if param.kind == "instance":
                assert len(param.deps) <= 4
        stated = re.findall(r"The number of each (.+?) equals", problem.problem)
        assert sorted(stated) == sorted(p.name for p in world.params if p.kind == "instance")


def test_formats_and_reask():
    base = igsm.generate(5, "med", op=4)
    question_first = igsm.generate(5, "med", op=4, fmt="qp")
    ids, problem_end, question_end = question_first.prompt_ids()
    assert question_end < problem_end and ids[-1] == igsm.tokenizer().sol_id
    reasked = igsm.generate(5, "med", op=4, reask=True)
    assert reasked.problem == base.problem and reasked.query != base.query
    assert igsm.check_solution(reasked, reasked.solution).correct
    assert not igsm.check_solution(reasked, base.solution).correct


def test_tokenizer_round_trips():
    tok = igsm.tokenizer()
    for problem in _problems("hard", 20) + _problems("small", 20, fmt="qp"):
        for ids in (problem.problem_ids, problem.question_ids, problem.solution_tokens(0.5, "miss", seed=1)[0]):
            text = tok.decode(ids)
            assert tok.encode(text) == ids
            assert tok.decode(tok.encode(text)) == text
    with pytest.raises(DataError):
        tok.encode("The number of each Unicorn's Horn equals 3.")


def _steps(solution):
    return re.findall(r"Define .+?\.(?= Define| The answer)", solution)


def _letter(step):
    return re.match(r"Define .+? as (\w);", step).group(1)


def _reason(problem, steps, answer=None):
    text = " ".join(steps) + f" The answer is {problem.answer if answer is None else answer}."
    result = igsm.check_solution(problem, text)
    assert not result.correct
    return result.reason


def test_checker_rejects_corruptions_with_the_first_bad_step():
    rng = random.Random(0)
    checked = collections.Counter()
    for problem in _problems("med", 60, op=6):
        steps = _steps(problem.solution)
        assert len(steps) == len(problem.steps)
        # A wrong number in the last computation of a step.
        computed = [i for i, s in enumerate(steps) if s.count("=") >= 3]
        if computed:
            i = rng.choice(computed)
            value = int(re.search(r"= (\d+)\.$", steps[i]).group(1))
            bad = steps[:i] + [re.sub(r"= \d+\.$", f"= {(value + 1) % MOD}.", steps[i])] + steps[i + 1:]
            assert f"step {i + 1} " in _reason(problem, bad) and "mod 23, not" in _reason(problem, bad)
            checked["number"] += 1
        # Two consecutive steps swapped where the second uses the first.
        for i in range(len(steps) - 1):
            if re.search(rf"[=+*-] {_letter(steps[i])}\b", steps[i + 1]):
                bad = steps[:i] + [steps[i + 1], steps[i]] + steps[i + 2:]
                assert _reason(problem, bad).startswith(f"step {i + 1} ") and f"before step {i + 2} defines" in _reason(problem, bad)
                checked["swap"] += 1
                break
        # A letter that no step defines.
        used = set(re.findall(r"\b[a-zA-Z]\b", problem.solution))
        free = next(letter for letter in LETTERS if letter not in used)
        for i, step in enumerate(steps):
            uses = re.findall(r"so \w = (\w) ", step)
            if uses and uses[0].isalpha():
                bad = steps[:i] + [step.replace(f"= {uses[0]} ", f"= {free} ", 1)] + steps[i + 1:]
                assert _reason(problem, bad).startswith(f"step {i + 1} ") and "no earlier step defines" in _reason(problem, bad)
                checked["undefined"] += 1
                break
        # An unnecessary step: a correct computation of a parameter the question does not need.
        needless = [i for i, p in enumerate(problem.world.params) if i not in problem.world.closure(problem.query) and not p.deps]
        if needless:
            param = problem.world.params[needless[0]]
            extra = f"Define {param.name} as {free}; so {free} = {param.constant}."
            assert _reason(problem, [extra] + steps).startswith("step 1 ") and "does not need" in _reason(problem, [extra] + steps)
            checked["needless"] += 1
        # A wrong final answer.
        assert "the answer is" in _reason(problem, steps, answer=(problem.answer + 1) % MOD)
        checked["answer"] += 1
        # A step left out.
        assert "no earlier step defines" in _reason(problem, steps[1:]) or "never computes" in _reason(problem, steps[1:])
    assert min(checked.values()) >= 10 and len(checked) == 5, checked


def test_checker_reports_unreadable_and_duplicate_steps():
    problem = igsm.generate(2, "med", op=5)
    steps = _steps(problem.solution)
    assert "cannot be read" in igsm.check_solution(problem, "Define %% as x.").reason
    assert "does not end with" in igsm.check_solution(problem, " ".join(steps)).reason
    assert "already defined" in _reason(problem, steps[:1] + steps)


@pytest.mark.parametrize("kind", RETRY_KINDS)
def test_retry_solutions_pass_and_mark_only_the_mistakes(kind):
    tok = igsm.tokenizer()
    backs = 0
    for seed, problem in enumerate(_problems("med", 20, op=8)):
        ids, mistakes, _ = problem.solution_tokens(0.5, kind, seed=seed)
        text = tok.decode(ids)
        assert igsm.check_solution(problem, text).correct
        backs += ids.count(tok.back_id)
        # Each mistake is "Define <name> as" right before [BACK]; nothing else is marked.
        for position, token in enumerate(ids):
            if token == tok.back_id:
                assert mistakes[position - 5:position] == [True] * 5 and not mistakes[position]
        assert sum(mistakes) == 5 * ids.count(tok.back_id)
        if kind == "retry":
            done = set()
            for sentence in re.split(r"(?<=\.) ", text):
                for wrong in re.findall(r"Define (.+?) as \[BACK\]", sentence):
                    param = problem.world.params[problem.world.by_name[wrong]]
                    assert not all(dep in done for dep in param.deps)
                for name in re.findall(r"Define (.+?) as \w;", sentence.split("[BACK] ")[-1]):
                    done.add(problem.world.by_name[name])
    assert backs > 20


def test_generate_rejects_bad_arguments():
    for kwargs in ({"difficulty": "easy"}, {"op": 0}, {"fmt": "xy"}, {"split": "dev"}):
        with pytest.raises(DataError):
            igsm.generate(0, **kwargs)
    with pytest.raises(DataError, match="harder difficulty"):
        igsm.generate(0, "small", op=30)


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
    tok = igsm.tokenizer()
    for row in range(4):
        targets, counted = first.targets[row], first.loss_mask[row] > 0
        sol = int(np.flatnonzero(first.inputs[row] == tok.sol_id)[0])
        assert not counted[:sol].any()  # the prompt is not trained on
        assert targets[counted][-1] == tok.eos_id
        back = np.flatnonzero(targets == tok.back_id)
        assert counted[back].all() and not counted[np.concatenate([back - k for k in range(1, 6)])].any()
    held = task.host_batch(3, 7, held_out=True)
    assert not np.array_equal(first.inputs, held.inputs)


def test_a_config_saved_before_pack_existed_still_loads():
    config = igsm.default_config()
    del config["pack"]
    assert igsm.IGSMTask(config).pack is False


def test_packed_rows_hold_whole_problems_of_the_row_and_fill_it():
    plain, packed = _task(batch_size=8), _task(batch_size=8, pack=True)
    tok = igsm.tokenizer()
    loose, full = plain.host_batch(5, 2), packed.host_batch(5, 2)
    assert all(np.array_equal(a, b) for a, b in zip(full, packed.host_batch(5, 2)))
    fill = [(batch.inputs != tok.pad_id).mean() for batch in (loose, full)]
    assert fill[1] > fill[0] + 0.15
    base = (5 * 2) << 48 | 2 << 16  # host_batch's row seeds for data seed 5, step 2
    problems = 0
    for row in range(8):
        ids = np.concatenate([full.inputs[row], full.targets[row, -1:]])
        counted = np.concatenate([[0.0], full.loss_mask[row]]) > 0
        # the row's own problems, in the order it draws them
        candidates = [packed.row((base | row) * 1024 + part) for part in range(40)]
        starts = list(np.flatnonzero(ids == tok.bos_id))
        assert starts[0] == 0
        last = -1
        for begin, end in zip(starts, starts[1:] + [len(ids)]):
            piece = ids[begin:end]
            piece = piece[piece != tok.pad_id].tolist()
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
        tok = igsm.tokenizer()
        out = np.array(rows)
        for row, length in zip(out, lengths):
            solution = list(self.solutions[tuple(row[:length].tolist())])
            if self.corrupt:
                solution[-2] = tok.ids[str((int(tok.vocab[solution[-2]]) + 1) % MOD)]
            if self.loop:
                solution = tok.encode("Define " + " Define ".join(["a as [BACK]"] * len(row)))
            written = (solution + [tok.eos_id])[:len(row) - length]
            row[length:length + len(written)] = written
        return out


def test_evaluation_scores_an_oracle_one_and_a_wrong_model_zero():
    task = _task(eval_problems=3, eval_ops="1,2,5", eval_len=400)
    problems = [p for op in (1, 2, 5) for p in task.eval_problems_of(op)]
    assert all(p.template >= 17 for p in problems)
    perfect = task.evaluate(ModelFns(_Oracle(problems), None), key=jax.random.key(0))
    assert perfect == {"acc_op1": 1.0, "acc_op2": 1.0, "acc_op5": 1.0, "acc_id": 1.0, "acc_ood": 1.0,
                       "answer_id": 1.0, "answer_ood": 1.0, "finished_id": 1.0, "finished_ood": 1.0}
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
    assert attempts[0].text.startswith("Define a as [BACK] Define a as [BACK]")
    solved = task.attempt(ModelFns(_Oracle(problems), None), problems, jax.random.key(0))
    assert [a.text for a in solved] == [p.solution for p in problems] and all(a.verdict.correct for a in solved)


def test_train_tokens_sets_steps_for_equal_tokens():
    clean = _task(train_tokens=200_000)
    retry = _task(train_tokens=200_000, retry_rate=0.5)
    assert retry.train_steps(1) < clean.train_steps(1)
    assert _task().train_steps(123) == 123
