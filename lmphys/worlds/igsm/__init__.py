"""Parts 2.1 and 2.2 of Physics of Language Models (grade-school math and the hidden reasoning
process; learning from mistakes): the iGSM world.

The world, its sentences, solutions, split, reask and retry data are the authors' released
generator's (facebookresearch/iGSM), reimplemented; tests/test_igsm_stats.py compares their
statistics with the release's.

Public API:
    p = igsm.generate(seed, difficulty="med", op=None, fmt="pq", reask=False, split="train", bins="paper")
    p.problem, p.question, p.solution, p.answer, p.op     text, text, text ("... <ans> N"), 0..22, int
    r = igsm.check_solution(p, ids_or_text)                r.correct, r.reason (names the first bad step),
                                                           r.unneeded_steps
    tok = igsm.tokenizer()                                 closed vocabulary, round-trips every problem
    task = igsm.IGSMTask(config.task)                      host-made training rows, accuracy by op
Difficulties: "med" (the released IdGen(max_op=15, max_edge=20): training op <= 15, OOD ops 20-23),
"hard" (IdGen(21, 28): op <= 21, OOD 28-32) and "small" (IdGen(4, 12), OOD 5-6: the CPU-sized world).

Modules: graph (the world: structure, parameters, sentences, values mod 23), sizes, construct and design
(how a world is drawn, step by step as released: sizes; structure, necessary parameters and order;
dependencies and distractors), text (tokenizer, sentences, solutions, retry mistakes), check
(the full-solution checker), problem (one problem, the split, reask), task (the training task),
vprobe (Part 2.1's V-probing of a trained model).
"""
from lmphys.worlds.igsm import vprobe
from lmphys.worlds.igsm.check import CheckResult
from lmphys.worlds.igsm.graph import DIFFICULTIES
from lmphys.worlds.igsm.problem import BIN_SPLITS, FORMATS, SPLITS, Problem, check_solution, generate
from lmphys.worlds.igsm.task import Attempt, IGSMTask, default_config, task_from_config, validate, validate_config
from lmphys.worlds.igsm.text import RETRY_KINDS, tokenizer

# Analyses of a trained model (sweep `analyses`, scripts/probe.py): name -> fn(task, graphdef, params).
ANALYSES = {"reasoning_probes": vprobe.analyze_run}

__all__ = ["DIFFICULTIES", "FORMATS", "SPLITS", "BIN_SPLITS", "RETRY_KINDS", "Attempt", "CheckResult", "Problem", "IGSMTask",
           "check_solution", "generate", "tokenizer", "default_config", "validate", "validate_config",
           "task_from_config", "ANALYSES"]
