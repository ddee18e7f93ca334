"""Part 1 of Physics of Language Models ("Hierarchical Language Structures"): layered CFG worlds.

Public API:
    g = load_grammar("cfg3f")             shipped tables cfg3b..cfg3k, cfg_small, cfg_mid, or a .json path
    g = random_grammar(key, sizes, ...)   new layered grammars with the papers' knobs
    tokens, lengths = sample(g, key, n)   jittable on-device sampler
    ok = accepts(g, tokens, lengths)      exact batched membership test
    task = CFGTask(g, ...)                training batches (packed LM or one-document MLM rows) and
                                          generation / completion accuracy for the training loop

Modules: grammar (tables), sampler, parse (the exact parser), measure (next-token law, KL,
diversity), robust (edit distance to the language, corruption), task (the training task),
structure (Part 1's probes of a trained model), temperatures (the robustness metrics at the
paper's low sampling temperatures), speed (throughput for scripts/bench.py).
"""
from lmphys.worlds.cfg import structure, temperatures
from lmphys.worlds.cfg.grammar import (
    SHIPPED,
    Grammar,
    grammar_from_json,
    grammar_to_json,
    load_grammar,
    random_grammar,
    save_grammar,
)
from lmphys.worlds.cfg.parse import accepts, accepts_padded
from lmphys.worlds.cfg.sampler import sample, sample_with_labels
from lmphys.worlds.cfg.task import (
    CFGTask,
    apply_variant,
    document_rows,
    strings_until_eos,
    task_from_config,
    validate_config,
)

# Analyses of a trained model (sweep `analyses`, scripts/probe.py): name -> fn(task, graphdef, params).
ANALYSES = {"structure": structure.analyze_run, "low_temperature": temperatures.analyze_run}

__all__ = [
    "SHIPPED", "Grammar", "load_grammar", "save_grammar", "random_grammar", "grammar_from_json",
    "grammar_to_json", "document_rows", "sample", "sample_with_labels", "accepts", "accepts_padded", "CFGTask",
    "task_from_config", "validate_config", "apply_variant", "strings_until_eos", "ANALYSES",
]
