"""Part 4.1 of Physics of Language Models ("Canon layers"): Mano, the knowledge-manipulation task.

An expression over the integers mod 23 in prefix notation, "<bos> <len_l> + * a b - c d <ans_l>
value", answered in one token without intermediate steps: the model must hold the operation
tables as knowledge and compute the value in its layers. The instances are the authors' released
generator's (facebookresearch/PhysicsLM4, data-synthetic-pretrain/Mano/mano.py), reimplemented
with the same random draws, knowledge augmentation included.

Public API:
    spec = mano.Spec(max_ops=L, ops=("+", "-", "*"), knowledge_augment=True)
    instance = mano.draw(random.Random(seed), spec, lengths=None)   the release's draw order
    mano.evaluate_prefix(instance.items) == instance.value           the value, computed again
    tok = mano.Tokenizer(L); encoded = tok.encode(instance)
    mano.check_answer(instance, value)                               is `value` the right answer
    task = mano.ManoTask(config.task)                                host-made windows, acc by length

Modules: data (expressions and their values), text (tokenizer), task (the training task).
"""
from lmphys.worlds.mano.data import MODULUS, Instance, Spec, apply, draw, evaluate_prefix, ops_from_letters
from lmphys.worlds.mano.task import ManoTask, default_config, eval_lengths, task_from_config, validate, validate_config
from lmphys.worlds.mano.text import Tokenizer


def check_answer(instance: Instance, value: int | None) -> bool:
    """True when `value` is the expression's value mod 23."""
    return value == instance.value


ANALYSES: dict = {}  # no analyses of a trained model beyond `evaluate` yet

__all__ = ["MODULUS", "Instance", "Spec", "apply", "draw", "evaluate_prefix", "ops_from_letters", "ManoTask",
           "default_config", "eval_lengths", "task_from_config", "validate", "validate_config", "Tokenizer",
           "check_answer", "ANALYSES"]
