"""Print problems of the iGSM world (Part 2.1), to read what a model is trained on, or what a
trained model writes.

    python scripts/generate.py                                   # 2 med problems of the training law
    python scripts/generate.py --difficulty=hard --op=30 --split=test --count=1
    python scripts/generate.py --retry_rate=0.5 --retry_kind=weak # Part 2.2 retry data
    python scripts/generate.py --workdir=runs/<run> --split=test --op=2 --count=50

Each problem is printed with its question, its shortest solution (optionally with retry mistakes),
its op and answer, and the full-solution checker's verdict on that solution. With --workdir, the
solution is the trained model's (greedy at the run's task.temperature 0, the run's difficulty and
format, at most task.eval_len tokens with the prompt), and a last line sums up: how many solutions
ended, were whole and right, had the right answer, and how many [BACK] they used.

Exit status 0, or 2 with `error: <sentence>` for a bad flag (e.g. --retry_rate outside [0, 1)) or a
workdir that holds no trained iGSM run.
"""
import jax
from absl import app, flags

from lmphys import cli
from lmphys.errors import DataError
from lmphys.train import runs
from lmphys.worlds import igsm

_SEED = flags.DEFINE_integer("seed", 0, "Seed of the first problem; the others follow.", lower_bound=0)
_COUNT = flags.DEFINE_integer("count", 2, "How many problems.", lower_bound=1)
_DIFFICULTY = flags.DEFINE_enum("difficulty", "med", list(igsm.DIFFICULTIES), "Problem sizes.")
_OP = flags.DEFINE_integer("op", None, "Operations of the shortest solution (default: the training law).",
                           lower_bound=1)
_FMT = flags.DEFINE_enum("fmt", "pq", list(igsm.FORMATS), "pq: problem then question; qp: question first.")
_SPLIT = flags.DEFINE_enum("split", "train", list(igsm.SPLITS), "Solution-template split.")
_BINS = flags.DEFINE_enum("bins", "paper", list(igsm.BIN_SPLITS),
                          "Template bins of the split: paper (train 0..16) or released (train 0..15).")
_REASK = flags.DEFINE_bool("reask", False, "Ask the same problem about another parameter.")
_RETRY_RATE = flags.DEFINE_float("retry_rate", 0.0, "Part 2.2: chance of a mistake taken back before each step.")
# At rate 1 every step would be preceded by mistakes forever.
flags.register_validator("retry_rate", lambda rate: 0 <= rate < 1, message="it must lie in [0, 1)")
_RETRY_KIND = flags.DEFINE_enum("retry_kind", "retry", list(igsm.RETRY_KINDS), "Which wrong parameters.")
_WORKDIR = flags.DEFINE_string("workdir", None, "A trained iGSM run: print its model's solutions instead.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if _WORKDIR.value:
        _print_model_solutions(_WORKDIR.value)
    else:
        _print_problems()


def _print_problems() -> None:
    tok = igsm.tokenizer()
    for seed in range(_SEED.value, _SEED.value + _COUNT.value):
        problem = igsm.generate(seed, _DIFFICULTY.value, op=_OP.value, fmt=_FMT.value, reask=_REASK.value,
                                split=_SPLIT.value, bins=_BINS.value)
        solution = tok.decode(problem.solution_tokens(_RETRY_RATE.value, _RETRY_KIND.value, seed=seed)[0])
        verdict = igsm.check_solution(problem, solution)
        parts = [problem.problem, problem.question] if problem.fmt == "pq" else [problem.question, problem.problem]
        print(f"--- seed {seed}: op {problem.op}, answer {problem.answer}, template bin {problem.template}")
        print("\n".join(parts))
        print(f"Solution: {solution}")
        print(f"checker: {verdict.reason}\n")


def _print_model_solutions(workdir: str) -> None:
    config = runs.load_config(workdir)
    if config.task.name != "igsm":
        raise DataError(f"{workdir} trained on the {config.task.name} task, not igsm")
    run = runs.load_trained(workdir)
    task = run.task
    model = runs.make_model_fns(run.graphdef, run.config, task)(run.params)
    problems, seeds, too_long = [], [], 0
    for seed in range(_SEED.value, _SEED.value + _COUNT.value):
        problem = igsm.generate(seed, task.difficulty, op=_OP.value, fmt=task.fmt, reask=_REASK.value, split=_SPLIT.value,
                                bins=task.bins)
        if len(problem.prompt_ids()[0]) + len(problem.solution_ids) + 1 <= task.eval_len:
            problems.append(problem)
            seeds.append(seed)
        else:
            too_long += 1
    if not problems:
        raise DataError(f"none of the {_COUNT.value} problems fits the run's task.eval_len = {task.eval_len}")
    print(f"{workdir} at step {run.step} ({task.describe()}): {len(problems)} problems"
          + (f", {too_long} skipped (longer than task.eval_len = {task.eval_len})" if too_long else "") + "\n")
    attempts = task.attempt(model, problems, jax.random.key(_SEED.value))
    for seed, attempt in zip(seeds, attempts):
        problem = attempt.problem
        parts = [problem.problem, problem.question] if problem.fmt == "pq" else [problem.question, problem.problem]
        print(f"--- seed {seed}: op {problem.op}, answer {problem.answer}")
        print("\n".join(parts))
        print(f"Model: {attempt.text}")
        print(f"checker: {attempt.verdict.reason if attempt.finished else 'unfinished (no <eos> within task.eval_len)'}\n")
    count = len(attempts)
    print(f"{sum(a.finished for a in attempts)}/{count} finished, "
          f"{sum(a.verdict is not None and a.verdict.correct for a in attempts)}/{count} whole solutions right, "
          f"{sum(a.answer_right for a in attempts)}/{count} answers right, "
          f"{sum(a.text.count('[BACK]') for a in attempts) / count:.1f} [BACK] per solution")


if __name__ == "__main__":
    cli.run(main)
