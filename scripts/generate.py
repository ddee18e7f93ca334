"""Print problems of the iGSM world (Part 2.1), to read what a model is trained on.

    python scripts/generate.py                                   # 2 med problems of the training law
    python scripts/generate.py --difficulty=hard --op=30 --split=test --count=1
    python scripts/generate.py --retry_rate=0.5 --retry_kind=weak # Part 2.2 retry data

Each problem is printed with its question, its shortest solution (optionally with retry mistakes),
its op and answer, and the full-solution checker's verdict on that solution.
"""
from absl import app, flags

from lmphys.cli import user_errors
from lmphys.errors import DataError
from lmphys.tasks import igsm

_SEED = flags.DEFINE_integer("seed", 0, "Seed of the first problem; the others follow.")
_COUNT = flags.DEFINE_integer("count", 2, "How many problems.")
_DIFFICULTY = flags.DEFINE_enum("difficulty", "med", list(igsm.DIFFICULTIES), "Problem sizes.")
_OP = flags.DEFINE_integer("op", None, "Operations of the shortest solution (default: the training law).")
_FMT = flags.DEFINE_enum("fmt", "pq", list(igsm.FORMATS), "pq: problem then question; qp: question first.")
_SPLIT = flags.DEFINE_enum("split", "train", list(igsm.SPLITS), "Solution-template split.")
_REASK = flags.DEFINE_bool("reask", False, "Ask the same problem about another parameter.")
_RETRY_RATE = flags.DEFINE_float("retry_rate", 0.0, "Part 2.2: chance of a mistake taken back before each step.")
_RETRY_KIND = flags.DEFINE_enum("retry_kind", "retry", list(igsm.RETRY_KINDS), "Which wrong parameters.")


def main(argv):
    del argv
    with user_errors():
        _print_problems()


def _print_problems() -> None:
    tok = igsm.tokenizer()
    if _COUNT.value < 1:
        raise DataError(f"--count = {_COUNT.value}: it must be at least 1")
    for seed in range(_SEED.value, _SEED.value + _COUNT.value):
        problem = igsm.generate(seed, _DIFFICULTY.value, op=_OP.value, fmt=_FMT.value, reask=_REASK.value,
                                split=_SPLIT.value)
        solution = tok.decode(problem.solution_tokens(_RETRY_RATE.value, _RETRY_KIND.value, seed=seed)[0])
        verdict = igsm.check_solution(problem, solution)
        parts = [problem.problem, problem.question] if problem.fmt == "pq" else [problem.question, problem.problem]
        print(f"--- seed {seed}: op {problem.op}, answer {problem.answer}, template bin {problem.template}")
        print("\n".join(parts))
        print(f"Solution: {solution}")
        print(f"checker: {verdict.reason}\n")


if __name__ == "__main__":
    app.run(main)
