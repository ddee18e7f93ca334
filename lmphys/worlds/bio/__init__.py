"""Part 3 of Physics of Language Models (Knowledge: storage, extraction, manipulation, capacity):
the biography world.

Public API:
    people = bio.sample_people(seed, n)                 the table of made-up people
    texts  = bio.biographies(people, seed, augment=bio.Augment(multi=5, permute=True))
    qa     = bio.qa_pairs(people)                       6 (question, answer, attribute) per person
    tok    = bio.tokenizer()                            closed word-level vocabulary
    task   = bio.BioTask(config.task)                   packed rows on device, QA accuracy
    task.qa_answers(model, persons, key)                each greedy answer beside the truth (bio.Answer)

Modules: people (the table and its pools), templates (sentences, questions, the word rule),
pieces (the tokenizer and the pre-tokenized pieces), text (biographies, forward and reversed, and
QA), manipulation (Part 3.2 questions), biod (Part 3.3's bioD worlds), pack (documents packed into
rows), task (the training task), probes (P- and Q-probing of a trained model), capacity (Part 3.3's
bits of knowledge).
"""
from lmphys.worlds.bio import capacity, probes
from lmphys.worlds.bio.people import ATTRIBUTES, People, sample_people
from lmphys.worlds.bio.task import (
    AUGMENTATIONS,
    Answer,
    BioTask,
    attribute_accuracy,
    default_config,
    task_from_config,
    validate,
    validate_config,
)
from lmphys.worlds.bio.pieces import tokenizer
from lmphys.worlds.bio.text import Augment, Documents, biographies, qa_pairs, qa_tokens

# Analyses of a trained model (sweep `analyses`, scripts/probe.py): name -> fn(task, graphdef, params).
ANALYSES = {"capacity": capacity.analyze_run, "knowledge_probes": probes.analyze_run}

__all__ = ["ATTRIBUTES", "AUGMENTATIONS", "Answer", "Augment", "attribute_accuracy", "Documents", "People", "BioTask",
           "biographies", "qa_pairs", "qa_tokens", "sample_people", "tokenizer", "default_config", "validate", "validate_config",
           "task_from_config", "ANALYSES"]
