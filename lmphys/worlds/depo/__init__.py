"""Part 4.1 of Physics of Language Models ("Canon layers"): Depo, the reasoning-depth task.

A shuffled directed cycle over n multi-token words is listed edge by edge; queries ask for the
k-th successor of a word. The instances are the authors' released generator's
(facebookresearch/PhysicsLM4, data-synthetic-pretrain/Depo/depo.py), reimplemented with the same
random draws; Depo1 has 1-2-token words over V=50, Depo2 5-7-token words over V=3 (as released).

Public API:
    spec = depo.Spec(max_size=N, max_hops=K, vocab=V, min_word_len=.., max_word_len=..)
    instance = depo.draw(random.Random(seed), spec, test=False)   the release's draw order
    tok = depo.Tokenizer(K, V); encoded = tok.encode(instance)      ids, loss labels, answer spans
    depo.check_answer(instance, query, word)                        is `word` the k-th successor
    task = depo.DepoTask(config.task)                               host-made windows, acc by k

Modules: data (instances, the size law, words), text (tokenizer), task (the training task).
"""
from lmphys.worlds.depo.data import Instance, Query, Spec, draw, eval_hops, multi_token_words, size_law
from lmphys.worlds.depo.task import DepoTask, default_config, task_from_config, validate, validate_config
from lmphys.worlds.depo.text import Tokenizer


def check_answer(instance: Instance, query: Query, word) -> bool:
    """True when `word` (a tuple of word tokens, release numbering) is the query's answer."""
    return tuple(word) == instance.cycle[query.answer(instance.size)]


ANALYSES: dict = {}  # no analyses of a trained model beyond `evaluate` yet

__all__ = ["Instance", "Query", "Spec", "draw", "eval_hops", "multi_token_words", "size_law", "DepoTask",
           "default_config", "task_from_config", "validate", "validate_config", "Tokenizer", "check_answer", "ANALYSES"]
