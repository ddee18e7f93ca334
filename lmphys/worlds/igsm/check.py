"""The full-solution checker of iGSM (Part 2.1, written for lmphys): a solution is correct only if
every step is right, not just the final number.

A solution is a sequence of steps "Define <parameter> as X; [R = ...;] so X = ... ." and a final
"The answer is N." (see text.py). Any order of the necessary parameters that respects their
dependencies is accepted, with any letters. Checked, step by step:
  the parameter exists and the question needs it; it and its letter are new; every letter it
  uses was defined by an earlier step (or is this step's helper); each equation's numbers are its
  letters' values and its arithmetic is right mod 23; it uses exactly the parameter's
  dependencies; its value is the parameter's value. Then: the question's parameter was computed
  and the answer is its value. A step begun and taken back with [BACK] (retry data, Part 2.2) is
  dropped before checking. The reason of a rejection names the first bad step.
"""
from __future__ import annotations

import dataclasses

from lmphys.errors import DataError
from lmphys.worlds.igsm.graph import MOD, World, evaluate_expression
from lmphys.worlds.igsm.text import LETTERS, Tokenizer, tokenizer

_OPERATORS = ("+", "-", "*")


@dataclasses.dataclass(frozen=True)
class CheckResult:
    correct: bool
    reason: str  # "correct", or what is wrong, naming the first bad step


class _Reject(Exception):
    pass


def check(world: World, query: int, text: str) -> CheckResult:
    tok = tokenizer()
    try:
        tokens = [tok.vocab[i] for i in _without_retries(tok.encode(text), tok)]
        _check_tokens(world, query, tokens)
    except DataError as error:
        return CheckResult(False, f"the solution cannot be read: {error}")
    except _Reject as reject:
        return CheckResult(False, str(reject))
    return CheckResult(True, "correct")


def _without_retries(ids: list[int], tok: Tokenizer) -> list[int]:
    """Drop every step begun and then taken back with [BACK]."""
    kept: list[int] = []
    period = tok.ids["."]
    for token_id in ids:
        if token_id == tok.back_id:
            while kept and kept[-1] != period:
                kept.pop()
        elif token_id not in (tok.bos_id, tok.eos_id, tok.pad_id):
            kept.append(token_id)
    return kept


def _sentences(tokens: list[str]) -> list[list[str]]:
    sentences, current = [], []
    for token in tokens:
        current.append(token)
        if token == ".":
            sentences.append(current[:-1])
            current = []
    if current:
        raise _Reject(f"the solution ends in the middle of a sentence: {' '.join(current[:12])!r}")
    return sentences


def _check_tokens(world: World, query: int, tokens: list[str]) -> None:
    sentences = _sentences(tokens)
    if not sentences or sentences[-1][:3] != ["The", "answer", "is"]:
        raise _Reject("the solution does not end with 'The answer is N.'")
    steps = [_header(number, sentence, world) for number, sentence in enumerate(sentences[:-1], 1)]
    defined_in = {}
    for number, (_, letter, _) in enumerate(steps, 1):
        defined_in.setdefault(letter, number)
    necessary = world.closure(query)
    letter_param: dict[str, int] = {}
    values: dict[str, int] = {}
    for number, (param_index, letter, body) in enumerate(steps, 1):
        param = world.params[param_index]
        where = f"step {number} ({param.name})"
        if param_index not in necessary:
            raise _Reject(f"{where}: the question does not need this parameter")
        if param_index in letter_param.values():
            raise _Reject(f"{where}: the parameter was already defined")
        if letter in letter_param:
            raise _Reject(f"{where}: letter {letter} already names {world.params[letter_param[letter]].name}")
        value, used = _check_body(where, number, letter, body, letter_param, values, defined_in)
        if used != set(param.deps):
            names = sorted(world.params[i].name for i in param.deps) or ["a constant"]
            raise _Reject(f"{where}: computed from {_names(world, used)}, but it depends on {', '.join(names)}")
        if value != world.values[param_index]:
            raise _Reject(f"{where}: the value is {world.values[param_index]}, not {value}")
        letter_param[letter] = param_index
        values[letter] = value
    if query not in letter_param.values():
        raise _Reject(f"the solution never computes {world.params[query].name}, the question's parameter")
    answer = sentences[-1][3:]
    expected = world.values[query]
    if answer != [str(expected)]:
        raise _Reject(f"the answer is {expected}, not {' '.join(answer) or 'missing'}")


def _names(world: World, used: set[int]) -> str:
    return ", ".join(sorted(world.params[i].name for i in used)) or "constants only"


def _header(number: int, sentence: list[str], world: World) -> tuple[int, str, list[str]]:
    """(parameter id, its letter, the tokens after "Define <name> as X ;")."""
    if len(sentence) < 7 or sentence[0] != "Define" or sentence[2] != "'s" or sentence[4] != "as" or sentence[6] != ";":
        raise _Reject(f"step {number} is not 'Define <parameter> as <letter>; ...': {' '.join(sentence[:12])!r}")
    name = f"{sentence[1]}'s {sentence[3]}"
    if name not in world.by_name:
        raise _Reject(f"step {number}: the problem has no parameter {name}")
    if sentence[5] not in LETTERS:
        raise _Reject(f"step {number} ({name}): {sentence[5]!r} is not a letter")
    return world.by_name[name], sentence[5], sentence[7:]


def _check_body(where, number, letter, body, letter_param, values, defined_in) -> tuple[int, set[int]]:
    """Check the equations of one step; return the step's value and the parameters it used."""
    equations = _split(body, ";")
    if not equations or equations[-1][:1] != ["so"]:
        raise _Reject(f"{where}: the step must end with 'so {letter} = ...'")
    equations[-1] = equations[-1][1:]
    helpers: dict[str, tuple[int, set[int]]] = {}
    value, used = 0, set()
    for position, equation in enumerate(equations):
        parts = _split(equation, "=")
        final = position == len(equations) - 1
        if len(parts) < 2 or len(parts[0]) != 1:
            raise _Reject(f"{where}: cannot read the equation {' '.join(equation)!r}")
        lhs = parts[0][0]
        if final and lhs != letter:
            raise _Reject(f"{where}: the step defines {letter} but ends with {lhs} = ...")
        if not final and (lhs in letter_param or lhs in helpers or lhs == letter or lhs not in LETTERS):
            raise _Reject(f"{where}: the helper {lhs} is not a new letter")
        value, used = _check_equation(where, number, parts[1:], letter_param, values, helpers, defined_in)
        helpers[lhs] = (value, used)
    return value, used


def _check_equation(where, number, parts, letter_param, values, helpers, defined_in) -> tuple[int, set[int]]:
    """parts = [letter expression, number expression, value], [expression, value] or [value]."""
    if len(parts[-1]) != 1 or not parts[-1][0].isdigit():
        raise _Reject(f"{where}: an equation must end with '= <number>'")
    value = int(parts[-1][0])
    expressions = parts[:-1]
    if len(expressions) > 2:
        raise _Reject(f"{where}: too many '=' in one equation")
    used: set[int] = set()
    known: dict[str, int] = {}
    if expressions:
        first = expressions[0]
        _check_form(where, first)
        for token in first[0::2]:
            if token.isdigit():
                continue
            if token in helpers:
                known[token], helper_used = helpers[token]
                used |= helper_used
            elif token in letter_param:
                known[token] = values[token]
                used.add(letter_param[token])
            elif token in defined_in and defined_in[token] >= number:
                raise _Reject(f"{where}: uses {token} before step {defined_in[token]} defines it")
            else:
                raise _Reject(f"{where}: uses {token}, which no earlier step defines")
        if len(expressions) == 2:
            substituted = [str(known[t]) if t in known else t for t in first]
            if expressions[1] != substituted:
                raise _Reject(f"{where}: {' '.join(expressions[1])} does not match {' '.join(first)} with "
                              + ", ".join(f"{k} = {v}" for k, v in known.items()))
        numbers = [known[t] if t in known else int(t) for t in first[0::2]]
        computed = evaluate_expression(numbers, first[1::2])
        if computed != value:
            shown = " ".join(expressions[-1])
            raise _Reject(f"{where}: {shown} is {computed} mod {MOD}, not {value}")
    if not 0 <= value < MOD:
        raise _Reject(f"{where}: {value} is not a number mod {MOD}")
    return value, used


def _check_form(where: str, expression: list[str]) -> None:
    operands, operators = expression[0::2], expression[1::2]
    if not operands or len(operands) != len(operators) + 1 or any(op not in _OPERATORS for op in operators) \
            or any(t in _OPERATORS for t in operands):
        raise _Reject(f"{where}: cannot read the expression {' '.join(expression)!r}")


def _split(tokens: list[str], separator: str) -> list[list[str]]:
    parts, current = [], []
    for token in tokens:
        if token == separator:
            parts.append(current)
            current = []
        else:
            current.append(token)
    parts.append(current)
    return parts if tokens else []
