"""Part 4.1 of Physics of Language Models ("Canon layers"): Brevo, the reasoning-breadth task.

The edges of a random DAG (in-degree and out-degree at most 4) are listed in a random order; the
answer lists every ancestor of a query vertex, and the query, in a topological order. The
instances are the authors' released generator's (facebookresearch/PhysicsLM4,
data-synthetic-pretrain/Brevo/brevo.py), reimplemented with the same random draws; Brevo1 names
vertices by one token (their id), Brevo2 by words of 2-4 tokens over V=4.

Public API:
    spec = brevo.Spec(max_size=N, multi=False, query_from="last")
    instance = brevo.draw(random.Random(seed), spec, test=False)   the release's draw order
    tok = brevo.Tokenizer(spec); encoded = tok.encode(instance)     ids, loss labels, prompt length
    verdict = brevo.check_names(instance, names)                    .correct (as released), .strict
    task = brevo.BrevoTask(config.task)                             host-made windows, greedy accuracy

Modules: data (the DAG, query, answer, depth), text (tokenizer), check (the answer checker),
task (the training task).
"""
from lmphys.worlds.brevo.check import Verdict, check_names
from lmphys.worlds.brevo.data import QUERY_FROM, Instance, Spec, draw, multi_token_words, size_law
from lmphys.worlds.brevo.task import BrevoTask, default_config, task_from_config, validate, validate_config
from lmphys.worlds.brevo.text import Tokenizer

ANALYSES: dict = {}  # no analyses of a trained model beyond `evaluate` yet

__all__ = ["Verdict", "check_names", "QUERY_FROM", "Instance", "Spec", "draw", "multi_token_words", "size_law",
           "BrevoTask", "default_config", "task_from_config", "validate", "validate_config", "Tokenizer", "ANALYSES"]
