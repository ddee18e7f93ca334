"""The full-solution checker of iGSM (Part 2.1), on token ids, written for lmphys after the
released `true_correct` (facebookresearch/iGSM, tools/tools_test.py and tools/sol_parser.py) and
stricter than it where the issue of a step's formula arises.

A solution is the model's tokens after <sol>: steps "Define <name> as v; [h = x op y = a op b = c;]*
so v = ... .", then "<ans> N". Steps containing [BACK] (retry mistakes taken back) are dropped
first. Every remaining step must:
- name a parameter of the problem (a stated one or an abstract one), not one defined before;
- use a letter not used before anywhere in the solution (helper letters included), the same
  after "as" and after "so";
- write equations "x = t [op t] [= a op b] = r": operands are numbers or letters defined earlier
  (helpers of the step, or earlier steps), the numeric part repeats the operands' values, and r is
  right mod 23;
- compute the parameter's definition: the step's expression, its helpers expanded, must be the
  parameter's formula in the problem (its operation, dependencies and number), up to the order of
  the terms of a sum or a product and how they are grouped. A consistent solution with the wrong
  operator is wrong even where its numbers happen to agree.
Then the last step must compute the question's parameter, and N must be its value. Steps for
parameters the question does not need are accepted when correct (as the release accepts them)
and counted in `unneeded_steps`. The reason of a rejection names the first bad step.
"""
from __future__ import annotations

import dataclasses
import functools

from lmphys.worlds.igsm.graph import INSTANCE, MOD, World, apply_operator
from lmphys.worlds.igsm.text import LETTERS, definition, tokenizer


@dataclasses.dataclass(frozen=True)
class CheckResult:
    correct: bool
    reason: str
    unneeded_steps: int = 0  # correct steps for parameters the question does not need


class _Reject(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class _Ids:
    """The token ids the checker reads, looked up once."""

    define: int
    as_: int
    so: int
    equals: int
    semicolon: int
    period: int
    s: int
    back: int
    ans: int
    eos: int
    pad: int
    operators: dict  # id -> "+", "-", "*"
    numbers: dict  # id -> 0..22
    letters: frozenset
    names: dict  # id -> item or layer name


@functools.lru_cache(maxsize=1)
def _ids() -> _Ids:
    tok = tokenizer()
    ids = tok.ids
    return _Ids(ids["Define"], ids["as"], ids["so"], ids["="], ids[";"], ids["."], ids["'s"], tok.back_id,
                tok.ans_id, tok.eos_id, tok.pad_id, {ids[op]: op for op in "+-*"},
                {ids[str(n)]: n for n in range(MOD)}, frozenset(ids[letter] for letter in LETTERS),
                {index: token for index, token in enumerate(tok.vocab)})


def canonical(expression) -> tuple:
    """An expression with sums and products flattened into sorted term lists, so that reordering
    or regrouping terms does not change it; a difference keeps its order."""
    tag = expression[0]
    if tag in ("num", "param"):
        return expression
    if tag == "-":
        return ("-", canonical(expression[1]), canonical(expression[2]))
    terms: list = []
    for side in expression[1:]:
        side = canonical(side)
        terms += side[1] if side[0] == tag else [side]
    return (tag, tuple(sorted(terms)))


class _Params:
    """A world's parameters by their (item, other) tokens, with their definitions."""

    def __init__(self, world: World):
        tok = tokenizer()
        self.by_name = {}
        for param in world.params:
            if param[0] == INSTANCE and param not in world.sentences:
                continue
            item, other = world.name(param)
            self.by_name[(tok.ids[item], tok.ids[other])] = param
        self.world = world

    def definition(self, param) -> tuple:
        return canonical(definition(self.world, param))


def check(world: World, question, ids) -> CheckResult:
    """Check a generated solution (token ids after <sol>; see the module docstring)."""
    known = _ids()
    ids = list(ids)
    try:
        if known.ans not in ids:
            raise _Reject("no <ans>: the solution does not end with its answer")
        cut = ids.index(known.ans)
        steps = _steps(ids[:cut], known)
        answer = ids[cut + 1:]
        if known.eos in answer:
            answer = answer[:answer.index(known.eos)]
        params = _Params(world)
        letters: dict[int, tuple] = {}  # letter -> (expression, value)
        defined: list = []
        for number, step in enumerate(steps, 1):
            defined.append(_check_step(step, number, params, letters, defined, known))
        if not defined:
            raise _Reject("no step")
        if defined[-1] != question:
            raise _Reject(f"the last step computes {_named(world, defined[-1])}, not the question's "
                          f"{_named(world, question)}")
        if len(answer) != 1 or answer[0] not in known.numbers:
            raise _Reject("the answer after <ans> is not one number")
        if known.numbers[answer[0]] != world.values[question]:
            raise _Reject(f"the answer is {known.numbers[answer[0]]}, not {world.values[question]}")
    except _Reject as reject:
        return CheckResult(False, str(reject))
    needed = world.closure(question)
    return CheckResult(True, "correct", sum(param not in needed for param in defined))


def _named(world: World, param) -> str:
    item, other = world.name(param)
    return f"{item}'s {other}"


def _steps(ids: list[int], known: _Ids) -> list[list[int]]:
    """The steps (each without its closing "."), those with [BACK] dropped."""
    steps, current = [], []
    for token in ids:
        if token == known.period:
            if known.back not in current:
                steps.append(current)
            current = []
        else:
            current.append(token)
    if current:
        raise _Reject("the solution ends inside a step (no closing \".\")")
    return steps


def _check_step(step: list[int], number: int, params: _Params, letters: dict, defined: list, known: _Ids):
    """The parameter a step defines, after checking it (module docstring); records its letters."""
    where = f"step {number}"
    if len(step) < 7 or step[0] != known.define or step[2] != known.s or step[4] != known.as_ \
            or step[6] != known.semicolon:
        raise _Reject(f"{where}: it must begin \"Define <name> as <letter>;\"")
    param = params.by_name.get((step[1], step[3]))
    name = f"{known.names[step[1]]}'s {known.names[step[3]]}"
    where = f"step {number} ({name})"
    if param is None:
        raise _Reject(f"{where}: the problem has no such parameter")
    if param in defined:
        raise _Reject(f"{where}: it is defined twice")
    own = step[5]
    equations = _split(step[7:], known.semicolon)
    final = equations[-1]
    if len(final) < 3 or final[0] != known.so or final[1] != own:
        raise _Reject(f"{where}: the last equation must be \"so {known.names[own]} = ...\"")
    helpers: dict[int, tuple] = {}
    for equation in equations[:-1]:
        helper, expression, value = _equation(equation, where, letters, helpers, known)
        helpers[helper] = (expression, value)
    _, expression, value = _equation(final[1:], where, letters, helpers, known)
    if canonical(expression) != params.definition(param):
        raise _Reject(f"{where}: it does not compute the parameter's definition")
    letters[own] = (("param", param), value)
    return param


def _split(tokens: list[int], separator: int) -> list[list[int]]:
    parts, current = [], []
    for token in tokens:
        if token == separator:
            parts.append(current)
            current = []
        else:
            current.append(token)
    parts.append(current)
    return parts


def _equation(tokens: list[int], where: str, letters: dict, helpers: dict, known: _Ids) -> tuple:
    """(x, expression, value) of "x = t [op t] [= a op b] = r", x a letter not used before."""
    parts = _split(tokens, known.equals)
    lhs = parts[0]
    if len(lhs) != 1 or lhs[0] not in known.letters:
        raise _Reject(f"{where}: an equation must define one letter")
    letter = lhs[0]
    if letter in letters or letter in helpers:
        raise _Reject(f"{where}: letter {known.names[letter]} is used again")
    result = parts[-1]
    if len(result) != 1 or result[0] not in known.numbers:
        raise _Reject(f"{where}: {known.names[letter]} must end \"= <number>\"")
    value = known.numbers[result[0]]
    middle = parts[1:-1]
    if not middle:  # "x = r": a constant
        expression, computed = ("num", value), value
    else:
        expression, computed = _formula(middle, where, letters, helpers, known)
    if computed != value:
        raise _Reject(f"{where}: {known.names[letter]} is {computed} mod {MOD}, not {value}")
    return letter, expression, value


def _formula(middle: list[list[int]], where: str, letters: dict, helpers: dict, known: _Ids) -> tuple:
    """(expression, computed value) of "t" or "t op t = a op b"."""
    symbolic = middle[0]
    if len(symbolic) == 1:
        if len(middle) != 1:
            raise _Reject(f"{where}: a single term has no numeric part")
        return _operand(symbolic[0], where, letters, helpers, known)
    if len(symbolic) != 3 or symbolic[1] not in known.operators or len(middle) != 2:
        raise _Reject(f"{where}: an equation must be \"t op t = a op b\" (one operation)")
    numeric = middle[1]
    if len(numeric) != 3 or numeric[1] != symbolic[1] or numeric[0] not in known.numbers \
            or numeric[2] not in known.numbers:
        raise _Reject(f"{where}: its numeric part must repeat the operation with numbers")
    operator = known.operators[symbolic[1]]
    sides = []
    for term, shown in ((symbolic[0], numeric[0]), (symbolic[2], numeric[2])):
        expression, value = _operand(term, where, letters, helpers, known)
        if known.numbers[shown] != value:
            raise _Reject(f"{where}: {known.names[term]} is {value}, not {known.numbers[shown]}")
        sides.append((expression, value))
    return (operator, sides[0][0], sides[1][0]), apply_operator(operator, sides[0][1], sides[1][1])


def _operand(token: int, where: str, letters: dict, helpers: dict, known: _Ids) -> tuple:
    if token in known.numbers:
        return ("num", known.numbers[token]), known.numbers[token]
    if token in helpers:
        return helpers[token]
    if token in letters:
        return letters[token]
    if token in known.letters:
        raise _Reject(f"{where}: it uses {known.names[token]}, which no earlier equation defines")
    raise _Reject(f"{where}: {known.names[token]!r} is not a number or a letter")

