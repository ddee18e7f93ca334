"""One iGSM problem (Part 2.1): `generate(seed, ...)` draws it as the released `IdGen.gen_prob`
does, and `Problem` holds its world, question and solution as token ids, with text views.

The released generator keeps a target op (the requested one, or min(t0, t1) of 1..max_op drawn
once per problem) and redraws whole worlds (sizes.py, construct.py, design.py) until a world's op
equals it and its solution template lands in an allowed bin. lmphys skips the draws that cannot
match early (a world's op never exceeds its budget s), which changes the speed, not the
distribution.

Train/test split: the solution's *sketch* (the released `to_sketch`: every parameter name replaced
by Inst or Inter, every number by 0, ";" by ".", letters renamed a, b, ... in order of first
appearance) hashed with sha256, mod 23. `bins="paper"` keeps bins 0..16 for training and 17..22 for
testing (as the Part 2.1 paper describes); `bins="released"` is the release's 0..15 / 16..22.
(The release replaces names by plain substring search, so an item name inside another, such as
"Bread" in "Pita Bread", leaks into its sketch for ~0.5% of op-1 problems; lmphys abstracts whole
name tokens, so those few problems can land in other bins.)

`reask=True` is the released `re_ask`: the same problem text, world and values, with the question
replaced by another parameter of the problem's template, solved in a uniformly random topological
order of its ancestors with fresh letters. `op` still sets the original problem's op; the reasked
question has its own `Problem.op`.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import random

from lmphys.errors import DataError
from lmphys.worlds.igsm import check, construct, design, sizes
from lmphys.worlds.igsm.graph import (
    ABSTRACT,
    DIFFICULTIES,
    INSTANCE,
    MOD,
    RNG,
    Sentence,
    World,
    abstract_value,
    categories,
    sentence_value,
)
from lmphys.worlds.igsm.text import LETTERS, Renderer, insert_retries, tokenizer

FORMATS = ("pq", "qp")  # problem then question, or question first
SPLITS = ("train", "test", "any")
BIN_SPLITS = {"paper": 17, "released": 16}  # first test bin
MAX_OP = 40
_SIZE_DRAWS = 200_000  # size draws before giving up on a target op the difficulty cannot reach


@dataclasses.dataclass(frozen=True, eq=False)
class Problem:
    """A problem, its question and its solution, as token ids (text on demand)."""

    world: World
    steps: tuple  # the solution's parameters in order, the question last
    solution_steps: tuple  # token ids of the steps (no retries), and below each step's closing "."
    step_ends: tuple
    letters: dict  # param -> letter token id
    fmt: str
    difficulty: str
    template: int  # sketch bin 0..22

    @property
    def question_param(self):
        return self.steps[-1]

    @property
    def op(self) -> int:
        return self.world.ops(self.steps)

    @property
    def answer(self) -> int:
        return self.world.values[self.question_param]

    @functools.cached_property
    def problem_ids(self) -> list[int]:
        sentence, world = _renderer().problem_sentence, self.world
        ids: list[int] = []
        for param in world.sentence_order:
            ids += sentence(world, param)
        return ids

    @functools.cached_property
    def question_ids(self) -> list[int]:
        return _renderer().question(self.world, self.question_param)

    def solution_tokens(self, retry_rate: float = 0.0, retry_kind: str = "retry",
                        seed: int = 0) -> tuple[list[int], list[bool], list[int]]:
        """(ids, mistake flags, index of each step's ".") of the solution and its "<ans> N",
        optionally with retry mistakes (text.insert_retries) drawn from `seed`."""
        steps, ends = list(self.solution_steps), list(self.step_ends)
        mistakes = [False] * len(steps)
        if retry_rate > 0:
            steps, mistakes, ends = insert_retries(_renderer(), self.world, self.steps, steps, ends, retry_rate,
                                                   retry_kind, random.Random(seed))
        return steps + self.answer_ids, mistakes + [False] * len(self.answer_ids), ends

    @functools.cached_property
    def answer_ids(self) -> list[int]:
        """"<ans> N", the end of every solution."""
        return _renderer().answer(self.answer)

    @functools.cached_property
    def solution_ids(self) -> list[int]:
        """The clean solution followed by "<ans> N" (what the model writes after <sol>)."""
        return list(self.solution_steps) + self.answer_ids

    def prompt_ids(self) -> tuple[list[int], int, int]:
        """(ids, problem_end, question_end): the model's input before the solution, "<bos> problem
        question <sol>" (or question first), and the positions of the problem's and the question's
        last tokens in it."""
        tok = tokenizer()
        if self.fmt == "pq":
            ids = [tok.bos_id] + self.problem_ids + self.question_ids
            problem_end, question_end = len(self.problem_ids), len(ids) - 1
        else:
            ids = [tok.bos_id] + self.question_ids + self.problem_ids
            question_end, problem_end = len(self.question_ids), len(ids) - 1
        return ids + [tok.sol_id], problem_end, question_end

    @property
    def problem(self) -> str:
        return tokenizer().decode(self.problem_ids)

    @property
    def question(self) -> str:
        return tokenizer().decode(self.question_ids)

    @property
    def solution(self) -> str:
        return tokenizer().decode(self.solution_ids)

    def in_split(self, split: str, bins: str = "paper") -> bool:
        return in_split(self.template, split, bins)


@functools.lru_cache(maxsize=1)
@functools.lru_cache(maxsize=1)
def _renderer() -> Renderer:
    """The one Renderer of the tokenizer (building one costs about as much as drawing a tenth of a
    problem; it holds id tables only, which no caller changes)."""
    return Renderer(tokenizer())


def check_solution(problem: Problem, solution) -> check.CheckResult:
    """Whether `solution` (token ids or text: the steps, "<ans>", the answer) is a correct full
    solution of `problem` (check.py), with the reason."""
    ids = tokenizer().encode(solution) if isinstance(solution, str) else solution
    return check.check(problem.world, problem.question_param, ids)


def draw_op(rng: random.Random, difficulty: str) -> int:
    """The paper's training op: min(t0, t1), t0, t1 uniform in 1..max_train_op (easy ones commoner)."""
    top = DIFFICULTIES[difficulty].max_train_op
    return min(rng.randint(1, top), rng.randint(1, top))


def in_split(template: int, split: str, bins: str = "paper") -> bool:
    return split == "any" or (template < BIN_SPLITS[bins]) == (split == "train")


def sketch_bin(ids: list[int]) -> int:
    """The released template hash of a solution's step tokens (the module docstring).

    The sketch is the words joined by spaces, with each "." or ";" written as a "." attached to
    the word before it; it is built here as one piece per token (" word", or "."), which joins to
    the same string."""
    pieces, define_id, layer_ids = _sketch_tokens()
    renamed: dict[int, str] = {}
    out: list[str] = []
    position, size = 0, len(ids)
    while position < size:
        token = ids[position]
        piece = pieces[token]
        if piece is not None:  # a word, a number (" 0") or a stop (".")
            out.append(piece)
        elif token == define_id:  # "Define <item> 's <other>": Inter when <other> is a layer's name
            out.append(" Define Inter" if ids[position + 3] in layer_ids else " Define Inst")
            position += 3
        else:  # a letter: renamed a, b, ... in order of first appearance
            letter = renamed.get(token)
            if letter is None:
                letter = renamed[token] = " " + LETTERS[len(renamed)]
            out.append(letter)
        position += 1
    return int(hashlib.sha256("".join(out).encode()).hexdigest(), 16) % MOD


@functools.lru_cache(maxsize=1)
def _sketch_tokens() -> tuple[list[str | None], int, frozenset[int]]:
    """Per token id its sketch piece (None for letters and "Define", which depend on what follows
    or came before), the id of "Define", and the ids of layer names (no layer name is also a
    letter, number or punctuation token, so these are the tokens the release reads as layers)."""
    tok = tokenizer()
    hierarchies, _ = categories()
    layers = {layer for names in hierarchies for layer in names}
    letters, numbers = set(LETTERS), {str(n) for n in range(MOD)}
    pieces: list[str | None] = []
    for token in tok.vocab:
        pieces.append(None if token == "Define" or token in letters else " 0" if token in numbers else
                      "." if token in (";", ".") else " " + token)
    return pieces, tok.ids["Define"], frozenset(tok.ids[layer] for layer in layers)


def generate(seed: int, difficulty: str = "med", op: int | None = None, fmt: str = "pq", reask: bool = False,
             split: str = "train", bins: str = "paper") -> Problem:
    """A problem whose solution has `op` operations (None: the training draw min(t0, t1)), drawn
    as the released generator draws it, from `seed` alone (an int of any size).

    `split` keeps solution templates of the train or test bins of `bins` ("any": either);
    `reask`: the same problem asked about another parameter of its template (module docstring).
    """
    _check_arguments(difficulty, op, fmt, split, bins)
    rng = random.Random(seed)
    level = DIFFICULTIES[difficulty]
    target = draw_op(rng, difficulty) if op is None else op
    renderer = _renderer()
    for _ in range(_SIZE_DRAWS):
        size_draw = sizes.draw_sizes(rng, level.max_train_op, level.max_edges, op, target)
        if size_draw is None:
            continue
        s, n, m, d, w0, w1, e, p = size_draw
        draft = construct.draft_with_order(rng, d, w0, w1, e, p, n, m)
        if draft is None or design.op_budget(draft, s) != target:
            continue
        design.design(draft, target)
        draft.draw_names()
        # The template bin depends on the solution alone: decided before the distractors are drawn.
        world = _world(draft, draft.order, (), rng)
        ids, ends, letters = renderer.solution(world, world.solution, rng)
        template = sketch_bin(ids)
        if not in_split(template, split, bins):
            continue
        design.fill_all(draft)
        design.design_unused(draft)
        stated = [param for param in draft.stated if param[0] == INSTANCE]
        rng.shuffle(stated)
        world = _world(draft, draft.stated, stated, rng, world.sentences,
                       {param: world.values[param] for param in draft.order})
        problem = Problem(world, world.solution, tuple(ids), tuple(ends), letters, fmt, difficulty, template)
        return _reask(problem, rng) if reask else problem
    raise DataError(f"could not draw a {difficulty} problem with op = {target} in the {split} split: "
                    "ops this large need a harder difficulty")


def _world(draft: construct.Draft, params, sentence_order, rng: random.Random, drawn: dict | None = None,
           known: dict | None = None) -> World:
    """The world over `params` (the solution's, or the whole template, in a topological order):
    each instance parameter's sentence (numbers drawn as the released `Problem.parse` draws them,
    unless already `drawn`) and its value; once every edge is stated, every abstract parameter's
    value too (deepest layer first, so each comes after those it counts)."""
    sentences = dict(drawn or {})
    # The values of the solution's parameters, when known: the same sentences give the same values
    # (its parameters come first in `params`, so the dict's order is kept too).
    values: dict = dict(known or {})
    children, all_preds = draft.children, draft.preds
    for param in params:
        if param in values or param == RNG:
            continue
        if param[0] == INSTANCE:
            sentence = sentences.get(param)
            if sentence is None:
                sentence = sentences[param] = _sentence(all_preds[param], rng)
            values[param] = sentence_value(sentence, values)
        else:
            values[param] = abstract_value(children, values, param)
    if len(sentences) == len(draft.edge_list):
        for i in range(draft.d - 2, -1, -1):
            for j in range(draft.sizes[i]):
                for k in range(i + 1, draft.d):
                    key = (ABSTRACT, i, j, k)
                    if key not in values:
                        values[key] = abstract_value(children, values, key)
    preds = {param: tuple(all_preds[param]) for param in params if param != RNG}
    return World(draft.hierarchy, tuple(draft.layers), draft.items, frozenset(draft.edge_list), preds, sentences,
                 values, tuple(draft.order), tuple(sentence_order))


_CONSTANTS = tuple(Sentence("", number, "constant", ()) for number in range(MOD))  # shared: sentences are frozen


def _sentence(preds: list, rng: random.Random) -> Sentence:
    has_rng = RNG in preds  # (a dependency is listed once)
    refs = tuple([dep for dep in preds if dep != RNG]) if has_rng else tuple(preds)
    if not refs:
        return _CONSTANTS[int(rng.random() * MOD)]
    modifier, number = "", 0
    if has_rng:  # a random number among the dependencies
        if rng.random() < 0.5:
            modifier, number = "add", int(rng.random() * MOD)
        else:
            modifier, number = "mul", 1 + int(rng.random() * (MOD - 1))
    combine = "single" if len(refs) == 1 else "sum"
    if len(refs) == 2 and rng.random() >= 0.5:
        combine = "diff"
    return Sentence(modifier, number, combine, refs)


def _reask(problem: Problem, rng: random.Random) -> Problem:
    """The released `re_ask` (module docstring)."""
    world = problem.world
    others = [param for param in world.preds if param != problem.question_param]
    question = rng.choice(others)
    ancestors = world.closure(question)
    steps = _random_topological_order(world, ancestors, rng)
    ids, ends, letters = _renderer().solution(world, steps, rng)
    reasked = dataclasses.replace(world, solution=tuple(steps))
    return Problem(reasked, tuple(steps), tuple(ids), tuple(ends), letters, problem.fmt, problem.difficulty,
                   sketch_bin(ids))


def _random_topological_order(world: World, params: frozenset, rng: random.Random) -> list:
    """A uniformly drawn topological order of `params` (the released random_topological_sort)."""
    waiting = {param: {dep for dep in world.whole_preds(param) if dep in params} for param in params}
    ready = [param for param, deps in waiting.items() if not deps]
    order = []
    while ready:
        param = ready.pop(rng.randrange(len(ready)))
        order.append(param)
        for other, deps in waiting.items():
            if param in deps:
                deps.discard(param)
                if not deps:
                    ready.append(other)
    return order


def _check_arguments(difficulty: str, op: int | None, fmt: str, split: str, bins: str) -> None:
    if difficulty not in DIFFICULTIES:
        raise DataError(f"difficulty {difficulty!r} is not one of {', '.join(DIFFICULTIES)}")
    if op is not None and not (isinstance(op, int) and 1 <= op <= MAX_OP):
        raise DataError(f"op = {op!r}: it must be an integer in 1..{MAX_OP}")
    if fmt not in FORMATS:
        raise DataError(f"fmt {fmt!r} is not one of {', '.join(FORMATS)}")
    if split not in SPLITS:
        raise DataError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    if bins not in BIN_SPLITS:
        raise DataError(f"bins {bins!r} is not one of {', '.join(BIN_SPLITS)}")
