"""Part 3: the knowledge world as a training task.

`BioTask` turns one `config.task` into training rows and evaluations:
- world "bios" (Part 3.1/3.2) or "biod" (Part 3.3's bioD(N, K, C, D, L, T)).
- The people are split once (by `world_seed`): the first `train_fraction` have QA in training,
  the rest are only tested (out-of-distribution extraction). With `celebrity_fraction` > 0 the
  celebrities get multi5+permute biographies, everyone else `augmentation`, and QA is trained on the
  celebrities and tested on the others.
- The mix of a batch, by rows (all rows are packed full): biographies, QA of the training half
  (`qa_fraction`: 0 pretraining, 1 QA fine-tuning, 0.8 the paper's mixed training; the loss is only
  on answers), and junk (`junk_fraction`: biographies of `junk_people` others, each seen rarely;
  `domain_token` puts <useful> in front of every useful biography). `qa_kind` picks the questions:
  "attributes" (the six retrieval questions) or a Part 3.2 manipulation kind, with `qa_cot`.
- `templates`: the sentence templates, "capo" (the authors' released bioS templates, the default)
  or "lmphys" (lmphys's own, used before the release was at hand).
- `reverse` (bios only): every biography is followed by its reversed twin, the sentences and their
  words last to first with names and values kept as written (text.Augment.reverse), so values come
  before the name: Part 3.2's "knowledge written in reverse", the case where inverse search can work.
  The twins come on top: with `exposures` a person's forward biographies are seen that many times,
  as without reverse, and so are the twins, so the run is twice as long (the same forward data).
- `renderings` > 0 renders that many biographies per person, each with fresh templates (and the
  augmentation's permute / fullname; bioD: a fresh attribute order each), in place of the
  augmentation's count: with renderings = exposures each sighting of a person draws one of as many
  fresh texts as it has sightings, Part 3.3's text drawn afresh per exposure as far as a fixed
  packed pool allows (rows are drawn with replacement, so about 63% of the sightings show a text
  not shown before). The pool must fit 2^26 tokens.
- `exposures` > 0 sets the number of training steps so that each person's biographies are seen
  that many times in expectation (Part 3.3: 100 or 1000), and the run says so in one line: the
  config's train.steps is then not used. Sightings count biography rows only: QA and junk rows
  lengthen the run instead (steps scale with 1 / the biography rows' share), so every useful
  person still gets `exposures`; with celebrities the count is that of the others (`augmentation`),
  and a celebrity (multi5+permute) is seen 5 / multi times as often.
- Evaluation: greedy exact-match QA accuracy per attribute on both halves, `qa_train[_<attribute>]`
  and `qa_test[_<attribute>]`; for a manipulation kind `manip_train`/`manip_test` (whole answer
  exact) and `manip_train_final`/`manip_test_final` (the final answer right, CoT or not).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lmphys.config import require, require_fields
from lmphys.errors import ConfigError, DataError
from lmphys.worlds.base import Batch, ModelFns, masked_lm_batch
from lmphys.worlds.bio import biod, manipulation, pack
from lmphys.worlds.bio.people import ATTRIBUTES, sample_people
from lmphys.worlds.bio.templates import TEMPLATE_SETS
from lmphys.worlds.bio.pieces import tokenizer
from lmphys.worlds.bio.text import Augment, biographies, qa_tokens

WORLDS = ("bios", "biod")
QA_KINDS = ("attributes",) + manipulation.KINDS
OBJECTIVES = ("lm", "mlm")
CELEBRITY_AUGMENT = Augment(multi=5, permute=True)
# The augmentations of Part 3.1's table, by name (fields of Augment).
AUGMENTATIONS = {
    "single": {},
    "fullname": {"fullname": True},
    "permute1": {"permute": True, "fresh_templates": False},
    "permute5": {"multi": 5, "permute": True, "fresh_templates": False},
    "multi2": {"multi": 2},
    "multi5": {"multi": 5},
    "multi5_permute": {"multi": 5, "permute": True},
    "multi5_fullname_permute": {"multi": 5, "permute": True, "fullname": True},
}
# Fields added after runs were saved: their defaults keep the earlier behaviour, so the config.json
# of an older run still loads (generate, probes, reports, init_from).
_ADDED_FIELDS = {"reverse": False}
_EVAL_CHUNK = 256  # prompts per generation call
_PACKING_BUDGET_TOKENS = 2**26  # per pool: several packings while they fit (~320 MB of rows)
_MOST_PACKINGS = 64


@dataclasses.dataclass(frozen=True)
class Answer:
    """A model's answer to one of a person's six questions, beside the truth."""

    person: int
    attribute: str
    question: str
    truth: str
    answer: str  # the greedy continuation up to its eos; "... (no eos)" if it never ended
    correct: bool


def attribute_accuracy(answers: list[Answer]) -> dict[str, float]:
    """The share of right answers per attribute (ATTRIBUTES order) and over all, "all"."""
    correct = np.array([answer.correct for answer in answers])
    attribute = np.array([answer.attribute for answer in answers])
    out = {name: float(correct[attribute == name].mean()) for name in ATTRIBUTES}
    out["all"] = float(correct.mean())
    return out


def default_config() -> ml_collections.ConfigDict:
    """Every field of a bio `config.task`, with the CPU-scale defaults."""
    task = ml_collections.ConfigDict()
    task.name = "bio"
    task.world = "bios"  # bios (Parts 3.1, 3.2) or biod (Part 3.3)
    task.objective = "lm"  # lm (GPT) or mlm (BERT-style encoder, biographies only)
    task.batch_size = 32
    task.seq_len = 128
    task.people = 1000
    task.world_seed = 0  # the people, their biographies and the split; fixed across model seeds
    task.augmentation = "single"  # one of AUGMENTATIONS (Part 3.1's table)
    task.templates = "capo"  # capo (the authors' released bioS templates) or lmphys (lmphys's own)
    task.renderings = 0  # > 0: this many fresh renderings per person instead of the augmentation's multi
    task.reverse = False  # bios: each biography also written in reverse (Part 3.2's remedy for inverse search)
    task.celebrity_fraction = 0.0
    task.train_fraction = 0.5  # people whose QA is in training; the rest are only tested
    task.qa_kind = "attributes"  # attributes, or a manipulation kind (Part 3.2)
    task.qa_cot = False
    task.qa_fraction = 0.0  # share of rows that are QA: 0 pretraining, 0.8 mixed, 1 QA fine-tuning
    task.junk_fraction = 0.0
    task.junk_people = 0
    task.domain_token = False
    task.exposures = 0  # > 0: train.steps is set so each person is seen this often (the config's is not used)
    task.biod = ml_collections.ConfigDict(
        {"attributes": 4, "chunks": 2, "diversity": 32, "chunk_len": 2, "value_vocab": 64}
    )
    task.eval_people = 256  # per half, for QA accuracy
    task.temperature = 0.0  # greedy answers
    task.mask_rate = 0.15
    return task


def validate(task: ml_collections.ConfigDict) -> None:
    """Raise ConfigError naming the first bad bio task field."""
    require_fields(task, [name for name in default_config().keys() if name not in _ADDED_FIELDS], "task",
                   "lmphys.worlds.bio.default_config")
    require(task.world in WORLDS, "task.world", f"it must be one of {', '.join(WORLDS)}", task.world)
    require(task.objective in OBJECTIVES, "task.objective", f"it must be one of {', '.join(OBJECTIVES)}", task.objective)
    require(task.qa_kind in QA_KINDS, "task.qa_kind", f"it must be one of {', '.join(QA_KINDS)}", task.qa_kind)
    for field in ("people", "batch_size", "eval_people"):
        require(isinstance(task[field], int) and task[field] > 0, f"task.{field}", "it must be a positive integer", task[field])
    require(task.seq_len >= 8, "task.seq_len", "it must be at least 8", task.seq_len)
    for field in ("celebrity_fraction", "qa_fraction", "junk_fraction", "mask_rate"):
        require(0 <= task[field] <= 1, f"task.{field}", "it must lie in [0, 1]", task[field])
    require(0 < task.train_fraction < 1, "task.train_fraction", "it must lie in (0, 1)", task.train_fraction)
    require(task.qa_fraction + task.junk_fraction <= 1, "task.junk_fraction",
           f"with task.qa_fraction = {task.qa_fraction} the shares must sum to at most 1", task.junk_fraction)
    require(task.qa_fraction + task.junk_fraction < 1 or task.qa_fraction == 1, "task.qa_fraction",
           "junk needs some biography rows to be useless next to", task.qa_fraction)
    require(task.junk_fraction == 0 or task.junk_people > 0, "task.junk_people", "junk rows need junk people", task.junk_people)
    require(task.exposures >= 0, "task.exposures", "it must be zero or positive", task.exposures)
    require(task.templates in TEMPLATE_SETS, "task.templates", f"it must be one of {', '.join(TEMPLATE_SETS)}",
            task.templates)
    require(isinstance(task.renderings, int) and task.renderings >= 0, "task.renderings",
            "it must be zero (the augmentation's count) or a positive integer", task.renderings)
    require(task.exposures == 0 or task.qa_fraction < 1, "task.exposures", "exposures count biography rows; QA-only runs have none",
           task.exposures)
    require(task.temperature >= 0, "task.temperature", "it must be zero (greedy) or positive", task.temperature)
    require(task.augmentation in AUGMENTATIONS, "task.augmentation", f"it must be one of {', '.join(AUGMENTATIONS)}",
           task.augmentation)
    if task.objective == "mlm":
        require(task.qa_fraction == 0 and task.world == "bios", "task.objective",
               "the encoder (mlm) trains on biographies only: qa_fraction 0, world bios", task.objective)
    if task.world == "biod":
        require(task.qa_fraction == 0, "task.qa_fraction", "bioD has no QA: it measures capacity", task.qa_fraction)
        reverse = task.get("reverse", _ADDED_FIELDS["reverse"])
        require(not reverse, "task.reverse", "bioD documents have no words to reverse; it is for world bios", reverse)
        for field, value in task.biod.items():
            require(isinstance(value, int) and value > 0, f"task.biod.{field}", "it must be a positive integer", value)


def validate_config(config: ml_collections.ConfigDict) -> None:
    """The task.* fields of a knowledge run (see `validate`)."""
    validate(config.task)


class BioTask:
    """Training rows (on device) and QA evaluation of one knowledge-world configuration."""

    def __init__(self, task: ml_collections.ConfigDict):
        validate(task)
        self.config = task
        self.batch_size, self.seq_len, self.objective = task.batch_size, task.seq_len, task.objective
        self._rows_per_pass: dict[int, int] = {}
        if task.world == "biod":
            self._build_biod(task)
        else:
            self._build_bios(task)
        self.data = pack.device_data(self.pools)

    # ---- construction -------------------------------------------------------------------------

    def _split(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        order = np.random.default_rng([self.config.world_seed, 1]).permutation(count)
        trained = max(1, min(count - 1, int(round(self.config.train_fraction * count))))
        return np.sort(order[:trained]), np.sort(order[trained:])

    def _pack(self, flat_tokens: np.ndarray, offsets: np.ndarray, seed_offset: int, **kwargs) -> pack.Rows:
        """As many packings of the documents as fit the budget (at least one); records how many rows
        one pass over them takes in `self._rows_per_pass[seed_offset]`."""
        rows, self._rows_per_pass[seed_offset] = pack.pack_several(
            flat_tokens, offsets, budget_tokens=_PACKING_BUDGET_TOKENS, most=_MOST_PACKINGS,
            seed=self.config.world_seed * 100 + seed_offset, seq_len=self.seq_len,
            bos_id=self.bos_id, eos_id=self.eos_id, pad_id=self.pad_id, **kwargs,
        )
        return rows

    def _augment(self) -> Augment:
        """The augmentation of the (non-celebrity) biographies, with `renderings` fresh ones if set."""
        augment = Augment(**AUGMENTATIONS[self.config.augmentation])
        if self.config.renderings:
            augment = dataclasses.replace(augment, multi=self.config.renderings, fresh_templates=True)
        return dataclasses.replace(augment, reverse=bool(self.config.get("reverse", _ADDED_FIELDS["reverse"])))

    def _check_pool_size(self, documents: int, tokens_per_document: float) -> None:
        if documents * tokens_per_document > _PACKING_BUDGET_TOKENS:
            raise ConfigError(
                f"task.renderings = {self.config.renderings} for {self.config.people} people makes about "
                f"{documents * tokens_per_document / 1e6:.0f}M tokens of biographies, more than the "
                f"{_PACKING_BUDGET_TOKENS / 1e6:.0f}M a packed pool holds: lower task.renderings or task.people")

    def _build_bios(self, task: ml_collections.ConfigDict) -> None:
        tok = tokenizer()
        self.tokenizer = tok
        self.vocab_size, self.bos_id, self.eos_id, self.pad_id, self.mask_id = (
            tok.vocab_size, tok.bos_id, tok.eos_id, tok.pad_id, tok.mask_id)
        self.people = sample_people(task.world_seed, task.people)
        augment = self._augment()
        if task.renderings:  # the pool's size from the first people's biographies
            sample = biographies(self.people, task.world_seed, persons=np.arange(min(64, task.people)),
                                 templates=task.templates)
            self._check_pool_size(task.people * augment.documents_per_person, len(sample.tokens) / len(sample))
        if task.celebrity_fraction > 0:
            celebrities = int(round(task.celebrity_fraction * task.people))
            order = np.random.default_rng([task.world_seed, 2]).permutation(task.people)
            self.qa_train, self.qa_test = np.sort(order[:celebrities]), np.sort(order[celebrities:])
            celebrity_augment = dataclasses.replace(CELEBRITY_AUGMENT, reverse=augment.reverse)
            groups = [(self.qa_train, celebrity_augment), (self.qa_test, augment)]
        else:
            self.qa_train, self.qa_test = self._split(task.people)
            groups = [(np.arange(task.people), augment)]
        # Reversed twins come on top: `exposures` counts a person's forward biographies.
        self.bio_multi = augment.multi
        prefix = (tok.id("<useful>"),) if task.domain_token else ()
        self.document_prefix = prefix
        parts = [biographies(self.people, task.world_seed, augment=group_augment, persons=persons,
                             templates=task.templates) for persons, group_augment in groups if len(persons)]
        flat = np.concatenate([part.tokens for part in parts])
        starts = np.cumsum([0] + [len(part.tokens) for part in parts])
        offsets = np.concatenate([[0]] + [part.offsets[1:] + start for part, start in zip(parts, starts)])
        bios = self._pack(flat, offsets, 0, prefix=prefix, what="biography")
        self.pools, self.shares = [], []
        if task.qa_fraction < 1:
            self.pools.append(bios)
            self.shares.append(1.0 - task.qa_fraction - task.junk_fraction)
        if task.qa_fraction > 0:
            flat, offsets, loss_from = pack.concat_documents(self._qa_documents(self.qa_train))
            self.pools.append(self._pack(flat, offsets, 7, loss_from=loss_from, what="question and answer"))
            self.shares.append(task.qa_fraction)
        if task.junk_fraction > 0:
            junk_people = sample_people(task.world_seed + 10_007, task.junk_people)
            junk = biographies(junk_people, task.world_seed + 10_007, templates=task.templates)
            self.pools.append(self._pack(junk.tokens, junk.offsets, 9, what="junk biography"))
            self.shares.append(task.junk_fraction)
        self.bio_rows = self._rows_per_pass[0]
        self._eval_sets = {
            "train": self._eval_persons(self.qa_train, 3),
            "test": self._eval_persons(self.qa_test, 4),
        }

    def _build_biod(self, task: ml_collections.ConfigDict) -> None:
        spec = biod.BioDSpec(
            num_people=task.people, num_attributes=task.biod.attributes, chunks=task.biod.chunks,
            diversity=task.biod.diversity, chunk_len=task.biod.chunk_len, value_vocab=task.biod.value_vocab,
        )
        self.world = biod.make_world(spec, task.world_seed)
        self.vocab_size, self.bos_id, self.eos_id, self.pad_id, self.mask_id = (
            self.world.vocab_size, self.world.bos_id, self.world.eos_id, self.world.pad_id, self.world.mask_id)
        augment = self._augment()
        self.bio_multi = augment.multi
        if task.renderings:
            self._check_pool_size(task.people * augment.multi, spec.document_len)
        documents = biod.documents(self.world, task.world_seed, copies=augment.multi, permute=augment.permute)
        prefix = (self.world.useful_id,) if task.domain_token else ()
        self.document_prefix = prefix
        self.pools = [self._pack(documents.tokens, documents.offsets, 0, prefix=prefix, what="bioD document")]
        self.shares = [1.0 - task.junk_fraction]
        if task.junk_fraction > 0:
            junk_world = biod.make_world(dataclasses.replace(spec, num_people=task.junk_people), task.world_seed + 10_007)
            junk = biod.documents(junk_world, task.world_seed + 10_007)
            self.pools.append(self._pack(junk.tokens, junk.offsets, 9, what="junk document"))
            self.shares.append(task.junk_fraction)
        self.bio_rows = self._rows_per_pass[0]
        self._eval_sets = {}

    def _qa_documents(self, persons: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """(question ids, answer ids) per QA pair of `persons` in the configured kind."""
        tok = self.tokenizer
        if self.config.qa_kind == "attributes":
            questions, answers, _ = qa_tokens(self.people, persons)
            return list(zip(questions, answers))
        pairs = manipulation.manipulation_pairs(self.people, self.config.qa_kind, persons, self.config.world_seed,
                                             self.config.qa_cot)
        return [(np.asarray(tok.encode(p.question), np.int32), np.asarray(tok.encode(p.answer), np.int32))
                for p in pairs]

    def _eval_persons(self, persons: np.ndarray, salt: int) -> np.ndarray:
        count = min(self.config.eval_people, len(persons))
        return np.sort(np.random.default_rng([self.config.world_seed, salt]).choice(persons, count, replace=False))

    # ---- training -----------------------------------------------------------------------------

    @property
    def steps_from(self) -> str:
        """What sets the run's length when `train_steps` replaces the config's train.steps."""
        return f"task.exposures = {self.config.exposures}"

    def train_steps(self, configured_steps: int) -> int:
        """Steps to run: `configured_steps`, or enough for `exposures` sightings of each person's
        biographies (see the module docstring for what counts with QA, junk and celebrities)."""
        if not self.config.exposures:
            return configured_steps
        biography_rows_per_step = self.batch_size * self.shares[0]
        return int(math.ceil(self.config.exposures * self.bio_rows / (biography_rows_per_step * self.bio_multi)))

    def batch(self, key: jax.Array, data: dict[str, jax.Array] | None = None) -> Batch:
        """A training batch drawn from the packed rows in `data` (this task's `data` by default)."""
        data = self.data if data is None else data
        draw_key, mask_key = jax.random.split(key)
        tokens, is_target = pack.draw_rows(draw_key, data, self.shares, self.batch_size)
        if self.objective == "mlm":
            rows = tokens[:, :-1]
            maskable = is_target[:, :-1] & (rows != self.eos_id)
            return masked_lm_batch(rows, mask_key, mask_id=self.mask_id, vocab_size=self.vocab_size,
                                   rate=self.config.mask_rate, maskable_BT=maskable)
        return pack.lm_batch(tokens, is_target)

    # ---- evaluation ---------------------------------------------------------------------------

    def evaluate(self, model: ModelFns, key: jax.Array) -> dict[str, float]:
        """Greedy exact-match QA accuracy on the trained half and the tested half."""
        if model.sample is None or not self._eval_sets:
            return {}
        metrics: dict[str, float] = {}
        for half, persons in self._eval_sets.items():
            if not len(persons):
                continue
            if self.config.qa_kind == "attributes":
                metrics.update(self._attribute_accuracy(model, key, persons, half))
            else:
                metrics.update(self._manipulation_accuracy(model, key, persons, half))
        return metrics

    def _answers(self, model: ModelFns, key: jax.Array, questions: list[np.ndarray], longest_answer: int) -> list[np.ndarray]:
        """The model's greedy continuation of [bos] + question, up to its eos (eos excluded)."""
        width = max(len(q) for q in questions) + 1 + longest_answer + 1
        outputs = []
        for start in range(0, len(questions), _EVAL_CHUNK):
            chunk = questions[start:start + _EVAL_CHUNK]
            prompts = np.full((_EVAL_CHUNK, width), self.pad_id, np.int32)
            lengths = np.ones(_EVAL_CHUNK, np.int32)
            for row, question in enumerate(chunk):
                prompts[row, 0] = self.bos_id
                prompts[row, 1:len(question) + 1] = question
                lengths[row] = len(question) + 1
            rows = np.asarray(model.sample(jnp.asarray(prompts), jnp.asarray(lengths), key))
            for row in range(len(chunk)):
                generated = rows[row, lengths[row]:]
                ends = np.flatnonzero(generated == self.eos_id)
                outputs.append(generated[:ends[0]] if len(ends) else np.append(generated, -1))  # -1: never ended
        return outputs

    @property
    def eval_persons(self) -> dict[str, np.ndarray]:
        """The people each evaluation asks: {"train": of the QA-trained half, "test": of the other}."""
        return dict(self._eval_sets)

    def qa_answers(self, model: ModelFns, persons: np.ndarray, key: jax.Array) -> list[Answer]:
        """The model's answers to the six questions about each of `persons` (bioS), in order."""
        if self.config.world != "bios":
            raise DataError("bioD worlds have no questions: they measure capacity")
        questions, answers, attribute = qa_tokens(self.people, persons)
        generated = self._answers(model, key, questions, max(len(a) for a in answers))
        decode = self.tokenizer.decode
        return [Answer(int(persons[i // len(ATTRIBUTES)]), ATTRIBUTES[int(a)], decode(q), decode(truth),
                       decode(g[g >= 0]) + ("" if len(g) == 0 or g[-1] >= 0 else " ... (no eos)"),
                       bool(np.array_equal(g, truth)))
                for i, (q, truth, g, a) in enumerate(zip(questions, answers, generated, attribute))]

    def _attribute_accuracy(self, model: ModelFns, key, persons: np.ndarray, half: str) -> dict[str, float]:
        return {f"qa_{half}_{name}" if name != "all" else f"qa_{half}": value
                for name, value in attribute_accuracy(self.qa_answers(model, persons, key)).items()}

    def manipulation_answers(self, model: ModelFns, persons: np.ndarray,
                             key: jax.Array) -> list[tuple[manipulation.ManipulationQA, str, bool]]:
        """The model's greedy answers to the run's manipulation questions (task.qa_kind) about
        `persons`: (question with its truth, generated text, whether it ended with eos). Another
        seed than training's: comparisons pair people afresh (the single-person questions do not
        depend on the seed)."""
        if self.config.qa_kind == "attributes":
            raise DataError("this run trained the six retrieval questions, not a manipulation kind")
        tok = self.tokenizer
        pairs = manipulation.manipulation_pairs(self.people, self.config.qa_kind, persons, self.config.world_seed + 1,
                                             self.config.qa_cot)
        questions = [np.asarray(tok.encode(p.question), np.int32) for p in pairs]
        longest = max(len(tok.encode(p.answer)) for p in pairs)
        generated = self._answers(model, key, questions, longest)
        return [(p, tok.decode(g[g >= 0]), len(g) == 0 or g[-1] >= 0) for p, g in zip(pairs, generated)]

    def _manipulation_accuracy(self, model: ModelFns, key, persons: np.ndarray, half: str) -> dict[str, float]:
        # An answer that never ended is longer than the truth, so it cannot match it whole.
        pairs, generated, _ = zip(*self.manipulation_answers(model, persons, key))
        scores = manipulation.accuracy(list(pairs), list(generated))
        return {f"manip_{half}": scores["answer_exact"], f"manip_{half}_final": scores["final_correct"]}

    def describe(self) -> str:
        if self.config.world == "biod":
            return f"bioD {self.config.people} people"
        return f"bioS {self.config.people} people"


@functools.lru_cache(maxsize=4)
def _cached_task(task_json: str) -> BioTask:
    return BioTask(ml_collections.ConfigDict(json.loads(task_json)))


def task_from_config(task_config: ml_collections.ConfigDict) -> BioTask:
    """BioTask for a `config.task`; stacked models of one job (same task) share one build."""
    return _cached_task(task_config.to_json(sort_keys=True))
