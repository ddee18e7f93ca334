"""The iGSM checker on mutation families: each wrong solution is rejected with the reason naming
its first bad step, including consistent recomputations (a wrong operator, dependency or number
carried through every later step, so that all the arithmetic agrees); valid alternatives (other
letters, other topological orders, commuted and regrouped operands, retry data, a correct but
unneeded step) are accepted."""
import dataclasses
import random

import pytest

from lmphys.worlds import igsm
from lmphys.worlds.igsm.graph import ABSTRACT, INSTANCE, MOD, RNG, Sentence, abstract_value, sentence_value
from lmphys.worlds.igsm.text import Renderer

TOKENIZER = igsm.tokenizer()
RENDERER = Renderer(TOKENIZER)


def _problems(count=40, difficulty="med", **kwargs):
    return [igsm.generate(seed, difficulty, split="any", **kwargs) for seed in range(count)]


def _with_values(world, sentences):
    """The world with other sentences, every solution value recomputed from them."""
    values = dict(world.values)
    for param in world.solution:
        if param[0] == INSTANCE:
            values[param] = sentence_value(sentences[param], values)
        else:
            values[param] = abstract_value(world.children, values, param)
    return dataclasses.replace(world, sentences=sentences, values=values)


def _written(world, steps, seed=0):
    """A consistent solution of `world` (letters from `seed`) with its answer."""
    ids, _, _ = RENDERER.solution(world, steps, random.Random(seed))
    return ids + RENDERER.answer(world.values[steps[-1]])


def _verdict(problem, ids):
    return igsm.check_solution(problem, ids)


def _first_step_of(problem, predicate):
    return next((rank for rank, param in enumerate(problem.steps) if predicate(param)), None)


def test_own_solutions_other_letters_and_other_orders_are_accepted():
    for problem in _problems():
        world = problem.world
        assert _verdict(problem, _written(world, problem.steps, seed=99)).correct, "other letters"
        # another topological order of the same steps (the question stays last)
        order, rng, done = [], random.Random(1), set()
        waiting = list(problem.steps[:-1])
        while waiting:
            ready = [p for p in waiting if set(world.whole_preds(p)) - {RNG} <= done]
            param = ready[rng.randrange(len(ready))]
            order.append(param)
            done.add(param)
            waiting.remove(param)
        assert _verdict(problem, _written(world, order + [problem.question_param])).correct, "other order"


def _equations(ids):
    """(start, end) of every equation "x = t op t = a op b = r" in a solution's token ids."""
    out, start = [], None
    for index, token in enumerate(ids):
        if token in (TOKENIZER.ids[";"], TOKENIZER.ids["."], TOKENIZER.ans_id):
            if start is not None:
                out.append((start, index))
            start = None
        elif token == TOKENIZER.ids["="] and start is None:
            start = index - 1
    return out


def test_commuted_and_regrouped_operands_are_accepted():
    swapped_some = 0
    for problem in _problems():
        ids = list(problem.solution_ids)
        for start, end in _equations(ids):
            part = ids[start:end]
            if len(part) == 11 and TOKENIZER.vocab[part[3]] in "+*":  # x = a op b = n op m = r
                part[2], part[4], part[6], part[8] = part[4], part[2], part[8], part[6]
                ids[start:end] = part
                swapped_some += 1
        assert _verdict(problem, ids).correct
    assert swapped_some > 20
    # a sum of three written as a + (b + c) instead of (a + b) + c
    regrouped = 0
    for problem in _problems(80):
        world = problem.world
        rank = _first_step_of(problem, lambda p: p[0] == INSTANCE and world.sentences[p].combine == "sum"
                              and len(world.sentences[p].refs) == 3 and not world.sentences[p].modifier)
        if rank is None:
            continue
        param = problem.steps[rank]
        rng, letters = random.Random(0), {}
        pool = list(RENDERER.letters)
        ids = []
        for step in problem.steps:
            if step != param:
                ids += RENDERER.step(world, step, letters, pool, rng)
                continue
            a, b, c = world.sentences[param].refs
            helper, own = pool.pop(), pool.pop()
            values = world.values
            inner = (values[b] + values[c]) % MOD
            ids += TOKENIZER.encode(f"Define {'%s' % _name(world, param)} as {TOKENIZER.vocab[own]}; "
                                    f"{TOKENIZER.vocab[helper]} = {_letter(letters[b])} + {_letter(letters[c])} = "
                                    f"{values[b]} + {values[c]} = {inner}; so {TOKENIZER.vocab[own]} = "
                                    f"{_letter(letters[a])} + {TOKENIZER.vocab[helper]} = {values[a]} + {inner} = "
                                    f"{values[param]}.")
            letters[param] = own
        assert _verdict(problem, ids + problem.answer_ids).correct
        regrouped += 1
    assert regrouped >= 3


def _name(world, param):
    item, other = world.name(param)
    return f"{item}'s {other}"


def _letter(token):
    return TOKENIZER.vocab[token]


def _mutated(problem, change):
    """A consistent solution of the problem's world with one sentence changed by `change`
    (sentence -> new sentence), and the step it first differs at; None if no step can change."""
    world = problem.world
    for rank, param in enumerate(problem.steps):
        if param[0] != INSTANCE:
            continue
        new = change(world.sentences[param], world)
        if new is not None and new != world.sentences[param]:
            mutated = _with_values(world, {**world.sentences, param: new})
            return _written(mutated, problem.steps), rank, param
    return None


@pytest.mark.parametrize("name,change", [
    # a sum written as a difference (or back), numbers recomputed all the way down
    ("operator", lambda s, w: dataclasses.replace(s, combine="diff" if s.combine == "sum" else "sum")
     if len(s.refs) == 2 else None),
    # "N more than" written as "N times as much as", or the other way
    ("modifier", lambda s, w: dataclasses.replace(s, modifier="mul" if s.modifier == "add" else "add",
                                                  number=max(s.number, 1)) if s.modifier else None),
    # the wrong number: another constant, or another modifier number
    ("number", lambda s, w: dataclasses.replace(s, number=(s.number + 5) % MOD or 1)
     if s.combine == "constant" or s.modifier else None),
    # a copy of the wrong parameter
    ("dependency", lambda s, w: None),
])
def test_a_consistent_solution_of_another_formula_is_rejected_at_that_step(name, change):
    rejected = 0
    for problem in _problems(60):
        if name == "dependency":
            mutation = _wrong_dependency(problem)
        else:
            mutation = _mutated(problem, change)
        if mutation is None:
            continue
        ids, rank, param = mutation
        verdict = _verdict(problem, ids)
        assert not verdict.correct, name
        assert verdict.reason.startswith(f"step {rank + 1} ({_name(problem.world, param)})"), verdict.reason
        assert "definition" in verdict.reason
        rejected += 1
    assert rejected >= 10, name


def _wrong_dependency(problem):
    """A copy sentence of a parameter that refers to another earlier parameter than its own."""
    world = problem.world
    for rank, param in enumerate(problem.steps):
        if param[0] == INSTANCE and world.sentences[param].combine == "single" and rank >= 2:
            others = [p for p in problem.steps[:rank] if p not in world.sentences[param].refs]
            if others:
                new = dataclasses.replace(world.sentences[param], refs=(others[0],))
                mutated = _with_values(world, {**world.sentences, param: new})
                return _written(mutated, problem.steps), rank, param
    return None


def test_a_value_that_happens_to_agree_is_still_checked_by_its_formula():
    """x + 0 and x * 1 agree with x: written instead of a copy, the numbers all agree, yet the
    step is not the parameter's definition."""
    checked = 0
    for problem in _problems(60):
        world = problem.world
        rank = _first_step_of(problem, lambda p: p[0] == INSTANCE and world.sentences[p].combine == "single"
                              and not world.sentences[p].modifier)
        if rank is None:
            continue
        param = problem.steps[rank]
        mutated = _with_values(world, {**world.sentences, param: Sentence("mul", 1, "single", world.sentences[param].refs)})
        assert mutated.values == world.values
        verdict = _verdict(problem, _written(mutated, problem.steps))
        assert not verdict.correct and verdict.reason.startswith(f"step {rank + 1} ")
        checked += 1
    assert checked >= 10


def test_token_level_corruptions_name_the_first_bad_step():
    tok = TOKENIZER
    for problem in _problems(30):
        ids = list(problem.solution_ids)
        ends = problem.step_ends
        # a wrong result number in the first equation
        first_result = ends[0] - 1
        bad = list(ids)
        bad[first_result] = tok.ids[str((int(tok.vocab[ids[first_result]]) + 1) % MOD)]
        assert _verdict(problem, bad).reason.startswith("step 1 ")
        # the wrong final answer
        bad = list(ids)
        bad[-1] = tok.ids[str((problem.answer + 1) % MOD)]
        assert "the answer is" in _verdict(problem, bad).reason
        # no answer at all
        assert "no <ans>" in _verdict(problem, ids[:-2]).reason
        if len(ends) >= 2:
            # swapped first two steps: the second uses a letter not yet defined, or the answer moves
            second = ids[ends[0] + 1:ends[1] + 1]
            swapped = second + ids[:ends[0] + 1] + ids[ends[1] + 1:]
            if problem.steps[0] in problem.world.whole_preds(problem.steps[1]):
                assert "no earlier equation defines" in _verdict(problem, swapped).reason
            # the first step dropped: a later step uses its letter
            assert not _verdict(problem, ids[ends[0] + 1:]).correct
            # the same letter for two steps
            own_first, own_second = ids[5], ids[ends[0] + 6]
            reused = [own_first if token == own_second else token for token in ids]
            assert "used again" in _verdict(problem, reused).reason
            # the last step left out: the solution ends with another parameter
            assert "not the question's" in _verdict(problem, ids[:ends[-2] + 1] + problem.answer_ids).reason
        # a step defined twice
        twice = ids[:ends[0] + 1] + ids[:ends[0] + 1] + ids[ends[0] + 1:]
        assert "defined twice" in _verdict(problem, twice).reason


def test_an_unneeded_correct_step_is_accepted_and_counted_and_a_wrong_one_is_not():
    counted = 0
    for problem in _problems(30):
        world = problem.world
        extra = [p for p in world.sentence_order if p not in problem.steps
                 and world.sentences[p].combine == "constant"]
        if not extra:
            continue
        param = extra[0]
        rng, letters, pool = random.Random(3), {}, list(RENDERER.letters)
        ids = RENDERER.step(world, param, letters, pool, rng)
        for step in problem.steps:
            ids += RENDERER.step(world, step, letters, pool, rng)
        verdict = _verdict(problem, ids + problem.answer_ids)
        assert verdict.correct and verdict.unneeded_steps == 1
        wrong = list(ids)
        wrong[8] = TOKENIZER.ids[str((world.values[param] + 1) % MOD)]  # "so x = N": the wrong constant
        assert not _verdict(problem, wrong + problem.answer_ids).correct
        counted += 1
    assert counted >= 10


def test_a_parameter_the_problem_does_not_have_is_rejected():
    problem = igsm.generate(0, "med")
    world = problem.world
    missing = next((0, i, j, k) for i in range(len(world.layers) - 1) for j in range(len(world.items[i]))
                   for k in range(len(world.items[i + 1])) if (i, j, k) not in world.edges)
    text = f"Define {_name(world, missing)} as a; so a = 3. " + problem.solution
    assert "no such parameter" in _verdict(problem, TOKENIZER.encode(text)).reason


@pytest.mark.parametrize("kind", igsm.RETRY_KINDS)
def test_retry_solutions_pass_and_mark_only_the_mistakes(kind):
    backs = 0
    for problem in _problems(30):
        ids, mistakes, ends = problem.solution_tokens(0.5, kind, seed=4)
        assert igsm.check_solution(problem, ids).correct
        assert [ids[end] for end in ends] == [TOKENIZER.ids["."]] * len(problem.steps)
        text = TOKENIZER.decode(ids)
        backs += text.count("[BACK]")
        marked = [token for token, mistake in zip(ids, mistakes) if mistake]
        assert TOKENIZER.back_id not in marked and len(marked) == 5 * text.count("[BACK]")
        clean = [token for token, mistake in zip(ids, mistakes) if not mistake]
        assert TOKENIZER.decode(clean).replace("[BACK]. ", "") == problem.solution
    assert backs > 10


def test_retry_mistakes_are_the_released_candidates():
    for problem in _problems(20):
        world = problem.world
        for rank in range(len(problem.steps)):
            done = set(problem.steps[:rank])
            retry = igsm.text.retry_candidates(world, problem.steps, rank, "retry")
            assert problem.steps[rank] not in retry, "the next step is computable"
            for param in retry:
                assert param not in done and not set(world.whole_preds(param)) - {RNG} <= done
            weak = igsm.text.retry_candidates(world, problem.steps, rank, "weak")
            assert weak == list(problem.steps[rank:])
            assert all(p[0] in (INSTANCE, ABSTRACT) for p in retry)
