"""Print problems of the iGSM world (Part 2.1), to read what a model is trained on, or what a
trained model writes.

    python scripts/generate.py                                   # 2 med problems of the training law
    python scripts/generate.py --difficulty=hard --op=30 --split=test --count=1
    python scripts/generate.py --retry_rate=0.5 --retry_kind=weak # Part 2.2 retry data
    python scripts/generate.py --workdir=runs/<run> --split=test --op=2 --count=50

Each problem is printed with its question, its shortest solution (optionally with retry mistakes),
its op and answer, and the full-solution checker's verdict on that solution. With --workdir, the
solution is the trained model's (greedy at the run's task.temperature 0, or sampled at
--temperature, seeded by --seed; the run's difficulty and format, at most task.eval_len tokens with
the prompt), and a last line sums up: how many solutions ended, were whole and right, had the right
answer, and how many [BACK] they used. Sampling shows what greedy decoding hides when the model
spreads its probability over many right tokens (the helper letters) against one wrong one:

    python scripts/generate.py --workdir=runs/<retry run> --split=test --op=2 --count=50 --temperature=1

With --workdir of a knowledge run (Part 3, bioS, a decoder), it prints the model's greedy answers
to the six questions about --count people of each half (the half whose QA is trained, and the
held-out half: extraction), each beside the truth, then a table of the accuracy per attribute on
each half's evaluation people (task.eval_people of each; the run's own qa_* metrics). A Part 3.2
run (task.qa_kind a manipulation kind) is asked its own kind of question instead, and the table
gives the whole-answer and final-answer accuracy (its manip_* metrics):

    python scripts/generate.py --workdir=runs/bio_small_finetune_single --count=3

Part 4.1's worlds (--world=depo1, depo2, brevo1, brevo2 or mano) print instances of the paper's
largest size (Depo1 N = 375, Depo2 N = 125, Brevo1 N = 110, Brevo2 N = 50, Mano L = 16; --size
sets another N or L), of the training law or, with --split=test, of the test law (n = N, l = L),
each with its answers checked; with --workdir of such a run, the model's answers to --count test
instances of the run's own world beside the truth:

    python scripts/generate.py --world=depo1 --size=12 --count=1
    python scripts/generate.py --world=brevo1 --size=10 --split=test
    python scripts/generate.py --world=mano --size=4 --count=3
    python scripts/generate.py --workdir=runs/brevo_small_brevo1_N16_rope --count=5

Exit status 0, or 2 with `error: <sentence>` for a bad flag (e.g. --retry_rate outside [0, 1)) or a
workdir that holds no trained iGSM, bioS, Depo, Brevo or Mano decoder run.
"""
import os
import random

import jax
from absl import app, flags

from lmphys import cli
from lmphys.config import load_config_file
from lmphys.errors import DataError
from lmphys.train import runs
from lmphys.worlds import bio, brevo, depo, igsm, mano

PART4_WORLDS = {"depo1": ("depo", "depo1"), "depo2": ("depo", "depo2"), "brevo1": ("brevo", "brevo1"),
                "brevo2": ("brevo", "brevo2"), "mano": ("mano", "mano")}
CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs")

_SEED = flags.DEFINE_integer("seed", 0, "Seed of the first problem; the others follow.", lower_bound=0)
_COUNT = flags.DEFINE_integer("count", 2, "How many problems (of a knowledge run: people of each half).", lower_bound=1)
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
_WORLD = flags.DEFINE_enum("world", "igsm", ["igsm", *PART4_WORLDS], "Which world's problems to print.")
_SIZE = flags.DEFINE_integer("size", None, "Part 4.1 worlds: N (Depo, Brevo) or L (Mano); default the paper's largest.",
                             lower_bound=1)
_TEMPERATURE = flags.DEFINE_float("temperature", None, "With --workdir of an iGSM run: sample its solutions at this "
                                   "temperature (0: greedy; default: the run's task.temperature).", lower_bound=0)
_WORKDIR = flags.DEFINE_string("workdir", None, "A trained iGSM run: print its model's solutions instead; a "
                                 "knowledge run: its answers beside the truth (--count people of each half).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if _WORKDIR.value:
        _print_trained_run(_WORKDIR.value)
    elif _WORLD.value in PART4_WORLDS:
        _print_part4_instances()
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


def _print_trained_run(workdir: str) -> None:
    config = runs.load_config(workdir)  # what the run is, before its checkpoint is read
    if _TEMPERATURE.value is not None and config.task.name != "igsm":
        raise DataError(f"--temperature samples iGSM solutions only; {workdir} is a {config.task.name} run, whose "
                        "answers are greedy")
    if config.task.name == "igsm":
        _print_model_solutions(workdir, runs.load_trained(workdir))
    elif config.task.name == "bio":
        _check_answers_can_be_shown(workdir, config)
        _print_knowledge_answers(workdir, runs.load_trained(workdir))
    elif config.task.name in ("depo", "brevo", "mano"):
        _print_part4_answers(workdir, runs.load_trained(workdir))
    else:
        raise DataError(f"{workdir} trained on the {config.task.name} task, not igsm, bio, depo, brevo or mano: "
                        "generate.py shows iGSM runs' solutions and the other worlds' answers")


def _print_model_solutions(workdir: str, run: runs.TrainedRun) -> None:
    task, config = run.task, run.config
    if _TEMPERATURE.value is not None:
        config = config.copy_and_resolve_references()
        config.task.temperature = _TEMPERATURE.value
    model = runs.make_model_fns(run.graphdef, config, task)(run.params)
    decoding = "greedy" if config.task.temperature == 0 else f"sampled at temperature {config.task.temperature:g}"
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
    print(f"{workdir} at step {run.step} ({task.describe()}): {len(problems)} problems, {decoding}"
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


def _check_answers_can_be_shown(workdir: str, config) -> None:
    if config.task.world != "bios":
        raise DataError(f"{workdir} trained on a bioD world, which has no questions (its measure is capacity: "
                        f"python scripts/probe.py --workdir={workdir} --analyses=capacity)")
    if config.model.kind != "gpt":
        raise DataError(f"{workdir} is an encoder ({config.model.kind}), which does not generate answers: probe it "
                        f"with python scripts/probe.py --workdir={workdir}")


def _print_knowledge_answers(workdir: str, run: runs.TrainedRun) -> None:
    task = run.task
    model = runs.make_model_fns(run.graphdef, run.config, task)(run.params)
    key = jax.random.key(_SEED.value)
    trained = "QA-trained half" if task.config.qa_fraction > 0 else "QA-training half (this run trained no QA)"
    halves = {"train": trained, "test": "held-out half (its QA never trained: extraction)"}
    shown = _COUNT.value
    if task.config.qa_kind != "attributes":
        _print_manipulation_answers(workdir, run, model, key, halves)
        return
    print(f"{workdir} at step {run.step} ({task.describe()}): greedy answers, "
          f"{shown} {'person' if shown == 1 else 'people'} of each half\n")
    accuracy, people = {}, {}
    for half, persons in task.eval_persons.items():
        answers = task.qa_answers(model, persons, key)
        for first in range(0, min(shown, len(persons)) * len(bio.ATTRIBUTES), len(bio.ATTRIBUTES)):
            print(f"--- {halves[half]}: {task.people.full_name(answers[first].person)}")
            for answer in answers[first:first + len(bio.ATTRIBUTES)]:
                print(f"  {answer.attribute:<14} model: {answer.answer}  | truth: {answer.truth}  "
                      f"({'right' if answer.correct else 'wrong'})")
            print()
        accuracy[half], people[half] = bio.attribute_accuracy(answers), len(persons)
    print(f"| attribute | QA-trained half ({people['train']} people) | held-out half ({people['test']} people) |")
    print("|---|---|---|")
    for attribute in (*bio.ATTRIBUTES, "all"):
        print(f"| {attribute} | {accuracy['train'][attribute]:.3f} | {accuracy['test'][attribute]:.3f} |")


def _print_manipulation_answers(workdir: str, run: runs.TrainedRun, model, key, halves: dict[str, str]) -> None:
    """A Part 3.2 run: its own kind of question (task.qa_kind), the model's answer beside the truth,
    then the whole-answer and final-answer accuracy of each half (the run's manip_* metrics)."""
    task, shown = run.task, _COUNT.value
    kind = task.config.qa_kind + (" with CoT" if task.config.qa_cot else "")
    print(f"{workdir} at step {run.step} ({task.describe()}, {kind} questions): greedy answers, "
          f"{shown} of each half\n")
    scores, asked = {}, {}
    for half, persons in task.eval_persons.items():
        answered = task.manipulation_answers(model, persons, key)
        print(f"--- {halves[half]}")
        for qa, text, ended in answered[:shown]:
            verdict = bio.manipulation.grade(qa, text).describe()
            print(f"  {qa.question}\n    model: {text}{'' if ended else ' ... (no eos)'}\n    truth: {qa.answer}  ({verdict})")
        print()
        pairs, generated, _ = zip(*answered)
        scores[half], asked[half] = bio.manipulation.accuracy(list(pairs), list(generated)), len(answered)
    print(f"| {task.config.qa_kind} | QA-trained half ({asked['train']} questions) | "
          f"held-out half ({asked['test']} questions) |")
    print("|---|---|---|")
    for name, label in (("answer_exact", "whole answer"), ("final_correct", "final answer")):
        print(f"| {label} | {scores['train'][name]:.3f} | {scores['test'][name]:.3f} |")


def _part4_task(world: str):
    """The task of a Part 4.1 world at the paper's largest size (or --size), CPU-sized windows."""
    name, argument = PART4_WORLDS[world]
    config = load_config_file(os.path.join(CONFIGS, name, "paper.py"), argument)
    task = config.task
    if _SIZE.value:
        task["max_ops" if name == "mano" else "max_size"] = _SIZE.value
        if name == "depo":
            task.seq_len = max(depo.data.longest_test_instance(depo.task.spec_of(task)), 16)
    task["eval_instances" if name == "brevo" else "eval_windows"] = 1  # only the instances printed here are made
    return depo.DepoTask(task) if name == "depo" else brevo.BrevoTask(task) if name == "brevo" else mano.ManoTask(task)


def _print_part4_instances() -> None:
    task = _part4_task(_WORLD.value)
    test = _SPLIT.value == "test"
    print(f"{task.describe()}, {'test' if test else 'training'} law\n")
    for seed in range(_SEED.value, _SEED.value + _COUNT.value):
        rng = random.Random(seed)
        tok = task.tokenizer
        if isinstance(task, depo.DepoTask):
            instance = depo.draw(rng, task.spec, test=test)
            print(f"--- seed {seed}: n = {instance.size}, {len(instance.queries)} queries")
            print(tok.decode(tok.encode(instance, task.spec.separator).tokens))
            for query in instance.queries:
                answer = instance.cycle[query.answer(instance.size)]
                right = depo.check_answer(instance, query, answer)
                print(f"  {query.hops} hops from {'.'.join(map(str, instance.cycle[query.start]))}: "
                      f"{'.'.join(map(str, answer))} (checker: {'right' if right else 'WRONG'})")
        elif isinstance(task, brevo.BrevoTask):
            instance = brevo.draw(rng, task.spec, test=test)
            verdict = brevo.check_names(instance, [instance.names[v] for v in instance.answer])
            vertices = f"{len(instance.names)} vertices on edges" if task.spec.multi else f"n = {len(instance.names)}"
            print(f"--- seed {seed}: {vertices}, "
                  f"{len(instance.edges)} edges, {instance.ancestors} ancestors, depth {instance.depth}")
            print(tok.decode(tok.encode(instance).tokens))
            print(f"  checker: {verdict.reason}")
        else:
            lengths = (task.spec.max_ops,) if test else None
            instance = mano.draw(rng, task.spec, lengths)
            right = mano.evaluate_prefix(instance.items) == instance.value
            print(f"--- seed {seed}: {instance.length} operators, value {instance.value} "
                  f"(recomputed: {'same' if right else 'DIFFERENT'})")
            print(tok.decode(tok.encode(instance).tokens))
        print()


def _print_part4_answers(workdir: str, run: runs.TrainedRun) -> None:
    """The model's answers to --count test instances (seeds from --seed) beside the truth."""
    task = run.task
    model = runs.make_model_fns(run.graphdef, run.config, task)(run.params)
    seeds = range(_SEED.value, _SEED.value + _COUNT.value)
    print(f"{workdir} at step {run.step} ({task.describe()}): test instances, seeds {seeds.start}..{seeds.stop - 1}\n")
    tok = task.tokenizer
    if isinstance(task, depo.DepoTask):
        results = task.query_results(model, [task.window(seed, test=True) for seed in seeds])
        for hops, right, guessed in results:
            print(f"  k = {hops}: model {tok.decode(guessed)}  ({'right' if right else 'wrong'})")
        print(f"\n{sum(r for _, r, _ in results)}/{len(results)} answers right")
    elif isinstance(task, brevo.BrevoTask):
        pairs = []
        for seed in seeds:
            instance = brevo.draw(random.Random(seed), task.spec, test=True)
            encoded = tok.encode(instance)
            if len(encoded.tokens) <= task.seq_len:
                pairs.append((instance, encoded))
        if not pairs:
            raise DataError(f"none of the {_COUNT.value} instances fits the run's task.seq_len = {task.seq_len}")
        results = task.answers(model, pairs, jax.random.key(_SEED.value))
        for (instance, encoded), (written, _, verdict) in zip(pairs, results):
            print(f"--- query {tok.decode(encoded.tokens[encoded.prompt_len - 2:encoded.prompt_len - 1])}, "
                  f"{instance.ancestors} ancestors, depth {instance.depth}")
            print(f"  truth: {tok.decode(encoded.tokens[encoded.prompt_len:-1])}")
            print(f"  model: {tok.decode(written)}  ({verdict.reason})")
        print(f"\n{sum(v.correct for _, _, v in results)}/{len(results)} answers right")
    else:
        results = task.answer_results(model, [task.window(seed, (task.spec.max_ops,)) for seed in seeds])
        for right, guessed, truth in results[:50]:
            print(f"  value {truth}: model {guessed if guessed >= 0 else '(no value)'}  ({'right' if right else 'wrong'})")
        print(f"\n{sum(r for r, _, _ in results)}/{len(results)} answers right (l = {task.spec.max_ops})")


if __name__ == "__main__":
    cli.run(main)
