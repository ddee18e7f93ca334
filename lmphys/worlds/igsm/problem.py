"""One iGSM problem (Part 2.1): `generate(seed, ...)` draws a world, a query of the requested op, a
solution order and letters, and renders the token ids; `Problem` holds them with the text views.

Everything is a function of the seed (an int of any size; the task seeds with (seed, step, row)).
Train/test split (the paper's): a problem's solution template (graph.template_hash) lands in
a bin 0..22; "train" keeps bins 0..16, "test" bins 17..22, so no template is on both sides.
"""
from __future__ import annotations

import dataclasses
import functools
import random

from lmphys.errors import DataError
from lmphys.worlds.igsm import check, graph
from lmphys.worlds.igsm.graph import DIFFICULTIES, World
from lmphys.worlds.igsm.text import Renderer, assign_letters, render_solution, tokenizer

FORMATS = ("pq", "qp")  # problem then question, or question first
SPLITS = ("train", "test", "any")
TRAIN_BINS = 17  # template bins 0..16 train, 17..22 test
MAX_OP = 40
_ATTEMPTS = 2000


@dataclasses.dataclass(frozen=True, eq=False)
class Problem:
    """A problem, its question and its shortest solution, as token ids (text on demand)."""

    world: World
    query: int
    steps: tuple[int, ...]  # the solution's parameters in order, the query last
    letters: dict[int, int]  # parameter -> position in LETTERS
    helpers: dict[int, int]  # parameter -> helper letter of its step
    sentence_order: tuple[int, ...]  # the instance parameters in the order the problem states them
    fmt: str
    difficulty: str
    template: int  # 0..22

    @property
    def op(self) -> int:
        return self.world.ops(self.query)

    @property
    def answer(self) -> int:
        return self.world.values[self.query]

    @functools.cached_property
    def problem_ids(self) -> list[int]:
        renderer = _renderer()
        return [token for index in self.sentence_order for token in renderer.problem_sentence(self.world, index)]

    @functools.cached_property
    def question_ids(self) -> list[int]:
        return _renderer().question(self.world.params[self.query])

    def solution_tokens(self, retry_rate: float = 0.0, retry_kind: str = "retry",
                        seed: int = 0) -> tuple[list[int], list[bool], list[int]]:
        """(ids, mistake flags, index of each step's ".") of the solution, optionally with retry
        mistakes (render_solution); retries are drawn from `seed`."""
        rng = random.Random(seed) if retry_rate > 0 else None
        return render_solution(_renderer(), self.world, self.steps, self.letters, self.helpers,
                                         retry_rate, retry_kind, rng)

    @functools.cached_property
    def solution_ids(self) -> list[int]:
        return self.solution_tokens()[0]

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


@functools.lru_cache(maxsize=1)
def _renderer() -> Renderer:
    return Renderer(tokenizer())


def check_solution(problem: Problem, text: str) -> check.CheckResult:
    """Whether `text` is a correct full solution of `problem` (check), with the reason."""
    return check.check(problem.world, problem.query, text)


def draw_op(rng: random.Random, difficulty: str) -> int:
    """The paper's training op: min(t0, t1), t0, t1 uniform in 1..max_train_op (easy ones commoner)."""
    top = DIFFICULTIES[difficulty].max_train_op
    return min(rng.randint(1, top), rng.randint(1, top))


def in_split(template: int, split: str) -> bool:
    return split == "any" or (template < TRAIN_BINS) == (split == "train")


def generate(seed: int, difficulty: str = "med", op: int | None = None, fmt: str = "pq", reask: bool = False,
             split: str = "train") -> Problem:
    """A problem whose shortest solution has `op` operations (None: the training draw min(t0, t1)).

    `reask`: the same problem (world and sentences as for `reask=False`) asked about another
    parameter, of the same op where the world has one. `split` keeps solution templates of the
    train or test bins ("any": either).
    """
    _check_arguments(difficulty, op, fmt, split)
    rng = random.Random(seed)
    target = draw_op(rng, difficulty) if op is None else op
    for _ in range(_ATTEMPTS):
        world = graph.build_world(rng, DIFFICULTIES[difficulty])
        ops = graph.ops_of_every_param(world)
        candidates = [index for index, value in enumerate(ops) if value == target]
        if not candidates:
            continue
        query = rng.choice(candidates)
        sentence_order = tuple(rng.sample(range(world.num_instance), world.num_instance))
        if reask:
            others = [index for index in candidates if index != query] or \
                [index for index, value in enumerate(ops) if value > 0 and index != query]
            if not others:
                continue
            query = random.Random(rng.getrandbits(64)).choice(others)
        problem = _solve(world, query, sentence_order, fmt, difficulty, split, rng)
        if problem is not None:
            return problem
    raise DataError(f"could not make a {difficulty} problem with op = {target} in the {split} split "
                    f"after {_ATTEMPTS} worlds; ops this large need a harder difficulty")


def _solve(world, query, sentence_order, fmt, difficulty, split, rng) -> Problem | None:
    """A solution order in the split (a few orders are tried) with letters, or None."""
    for _ in range(8):
        steps = graph.solution_order(world, query, rng)
        template = graph.template_hash(world, steps)
        if not in_split(template, split):
            continue
        assigned = assign_letters(world, steps, rng)
        if assigned is None:
            return None
        return Problem(world, query, tuple(steps), assigned[0], assigned[1], sentence_order, fmt, difficulty, template)
    return None


def _check_arguments(difficulty: str, op: int | None, fmt: str, split: str) -> None:
    if difficulty not in DIFFICULTIES:
        raise DataError(f"difficulty {difficulty!r} is not one of {', '.join(DIFFICULTIES)}")
    if op is not None and not (isinstance(op, int) and 1 <= op <= MAX_OP):
        raise DataError(f"op = {op!r}: it must be an integer in 1..{MAX_OP}")
    if fmt not in FORMATS:
        raise DataError(f"fmt {fmt!r} is not one of {', '.join(FORMATS)}")
    if split not in SPLITS:
        raise DataError(f"split {split!r} is not one of {', '.join(SPLITS)}")
