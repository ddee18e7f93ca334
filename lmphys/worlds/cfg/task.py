"""Part 1's training task: CFG strings as training rows, and what the loop evaluates.

`CFGTask` packs sampled strings into LM rows (or one string per masked-LM row for encoders),
optionally perturbed (`corrupt_fraction`), and scores a model by generation and completion
accuracy under the exact parser, KL to the grammar's next-token law, diversity, and completion of
corrupted prefixes. `task_from_config` builds it from `config.task`; `validate_config` checks those
fields first; `apply_variant` sets Part 1's model variants by name.
"""
from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lmphys import config as config_lib
from lmphys.errors import ConfigError, DataError
from lmphys.models import transformer
from lmphys.worlds.base import Batch, ModelFns, causal_lm_batch, masked_lm_batch
from lmphys.worlds.cfg import measure, robust
from lmphys.worlds.cfg.grammar import Grammar, load_grammar
from lmphys.worlds.cfg.parse import accepts
from lmphys.worlds.cfg.sampler import sample

OBJECTIVES = ("lm", "mlm")
_EVAL_KEY_SEED = 2**31 - 1  # held-out completion prompts come from this fixed key, not the run's seed


def strings_until_eos(rows_BT: np.ndarray, start_B: np.ndarray, eos_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cuts each row at its first EOS at or after start-of-generation.

    Returns (strings [B, T] from position 1 up to the EOS, zero-padded; lengths [B]; has_eos [B]).
    Position 0 (BOS) is dropped; rows without EOS keep everything after BOS and has_eos is False.
    """
    rows_BT = np.asarray(rows_BT)
    batch, width = rows_BT.shape
    positions = np.arange(width)[None]
    is_eos = (rows_BT == eos_id) & (positions >= np.asarray(start_B)[:, None]) & (positions >= 1)
    has_eos = is_eos.any(axis=1)
    end = np.where(has_eos, is_eos.argmax(axis=1), width)
    lengths = end - 1
    strings = np.where(positions[:, :-1] < lengths[:, None], rows_BT[:, 1:], 0)
    return strings.astype(np.int32), lengths.astype(np.int32), has_eos


def document_rows(g: Grammar, strings: np.ndarray, lengths: np.ndarray, seq_len: int) -> np.ndarray:
    """Rows BOS + string + EOS, 0-padded to seq_len, from 0-padded strings that all fit
    (length <= seq_len - 2); string token t lands at row position t + 1."""
    width = min(strings.shape[1], seq_len - 2)
    rows = np.zeros((len(lengths), seq_len), np.int32)
    rows[:, 0] = g.bos_id
    rows[:, 1:width + 1] = strings[:, :width]
    rows[np.arange(len(lengths)), np.asarray(lengths) + 1] = g.eos_id
    return rows


class CFGTask:
    """A CFG world for the training loop (Task protocol of worlds/base.py).

    objective "lm": documents BOS + string + EOS packed back to back into one stream, cut into
    batch_size rows of seq_len + 1 tokens (documents cross row boundaries), next-token targets.
    objective "mlm": one document per row, 0-padded to seq_len. Only strings that fit
    (length <= seq_len - 2) are used: each batch draws `mlm_draws` strings and keeps the first
    batch_size that fit; in the (rare) case that fewer fit, fitting ones are reused, never truncated.
    The constructor raises ConfigError when under half of the strings fit.
    corrupt_fraction (Part 1 robustness): that share of each batch's training strings is perturbed,
    each token replaced with probability corrupt_rate by another terminal (robust.corrupt_some).
    `temperature` is the loop's sampling temperature (0: greedy); the entropy of the generations
    is measured under that same tempered distribution.
    """

    def __init__(
        self,
        grammar: Grammar,
        batch_size: int = 32,
        seq_len: int = 128,
        objective: str = "lm",
        eval_samples: int = 256,
        eval_prefix_len: int = 50,
        temperature: float = 1.0,
        mask_rate: float = 0.15,
        corrupt_fraction: float = 0.0,
        corrupt_rate: float = 0.1,
        eval_kl_strings: int = 64,
    ):
        if objective not in OBJECTIVES:
            raise ConfigError(f"task.objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}.")
        if batch_size < 1 or seq_len < 2 or eval_samples < 1 or eval_prefix_len < 0:
            raise ConfigError("task.batch_size, task.seq_len (>= 2) and task.eval_samples must be positive "
                              "and task.eval_prefix_len non-negative.")
        if seq_len - 2 < grammar.min_len:
            raise ConfigError(f"task.seq_len={seq_len} leaves no room for the shortest {grammar.name} string "
                              f"({grammar.min_len} tokens + BOS + EOS).")
        self.grammar = grammar
        self.batch_size, self.seq_len, self.objective = batch_size, seq_len, objective
        self.eval_samples, self.eval_prefix_len, self.temperature = eval_samples, eval_prefix_len, temperature
        self.mask_rate = mask_rate
        self.corrupt_fraction, self.corrupt_rate, self.eval_kl_strings = corrupt_fraction, corrupt_rate, eval_kl_strings
        self.vocab_size, self.bos_id, self.eos_id = grammar.vocab_size, grammar.bos_id, grammar.eos_id
        self.pad_id, self.mask_id = 0, grammar.mask_id
        stream = batch_size * (seq_len + 1)
        self.lm_draws = math.ceil(stream / (grammar.min_len + 2))  # enough even if every string is shortest
        self.mlm_draws = batch_size
        if objective == "mlm":
            _, lengths = sample(grammar, jax.random.key(0), 1024)
            fit = float(np.mean(np.asarray(lengths) <= seq_len - 2))
            if fit < 0.5:
                raise ConfigError(
                    f"task.seq_len={seq_len} is too short for mlm on {grammar.name}: only {fit:.0%} of strings fit "
                    f"in one row; use at least {int(np.quantile(np.asarray(lengths), 0.99)) + 2}.")
            self.mlm_draws = int(math.ceil(batch_size / fit * 2)) + 8
        self._held_out = None
        self._held_out_fit = float("nan")
        self._grammar_diversity = None

    def batch(self, key: jax.Array) -> Batch:
        """A training batch; pure and jittable (all shapes static)."""
        if self.objective == "lm":
            return causal_lm_batch(self._packed_stream(key).reshape(self.batch_size, self.seq_len + 1))
        sample_key, mask_key = jax.random.split(key)
        rows = self._document_rows(sample_key)
        return masked_lm_batch(rows, mask_key, mask_id=self.mask_id, vocab_size=self.vocab_size,
                               rate=self.mask_rate, maskable_BT=rows != self.pad_id)

    def _packed_stream(self, key: jax.Array) -> jax.Array:
        strings, lengths = sample(self.grammar, key, self.lm_draws)
        if self.corrupt_fraction > 0:  # its own key: clean runs see the same strings either way
            strings, _, _ = robust.corrupt_some(
                self.grammar, jax.random.fold_in(key, 1), strings, lengths, self.corrupt_fraction, self.corrupt_rate
            )
        doc_ends = jnp.cumsum(lengths + 2)
        position = jnp.arange(self.batch_size * (self.seq_len + 1))
        doc = jnp.searchsorted(doc_ends, position, side="right")
        offset = position - (doc_ends[doc] - lengths[doc] - 2)  # 0 is BOS, length+1 is EOS
        body = strings[doc, jnp.clip(offset - 1, 0, self.grammar.max_len - 1)]
        return jnp.where(offset == 0, self.bos_id, jnp.where(offset == lengths[doc] + 1, self.eos_id, body))

    def _document_rows(self, key: jax.Array) -> jax.Array:
        strings, lengths = sample(self.grammar, key, self.mlm_draws)
        fits = lengths <= self.seq_len - 2
        order = jnp.argsort(~fits, stable=True)  # fitting strings first, in draw order
        chosen = order[jnp.arange(self.batch_size) % jnp.maximum(fits.sum(), 1)]
        strings, lengths = strings[chosen], lengths[chosen]
        width = min(self.seq_len - 1, self.grammar.max_len)
        body = jnp.pad(strings[:, :width], ((0, 0), (1, self.seq_len - 1 - width)))
        position = jnp.arange(self.seq_len)[None]
        rows = jnp.where(position == 0, self.bos_id, jnp.where(position == lengths[:, None] + 1, self.eos_id, body))
        return rows.astype(jnp.int32)

    def held_out(self) -> tuple[np.ndarray, np.ndarray]:
        """Fixed completion strings (same every evaluation): those with prefix_len < length <= seq_len - 2."""
        if self._held_out is None:
            strings, lengths = (np.asarray(x) for x in sample(self.grammar, jax.random.key(_EVAL_KEY_SEED),
                                                              4 * self.eval_samples))
            fits = lengths <= self.seq_len - 2
            keep = np.flatnonzero(fits & (lengths > self.eval_prefix_len))[:self.eval_samples]
            self._held_out = (strings[keep], lengths[keep])
            self._held_out_fit = float(fits.mean())
        return self._held_out

    def evaluate(self, model: ModelFns, key: jax.Array) -> dict[str, float]:
        """Part 1's metrics of a decoder (objective "lm"); an encoder gets {} (it does not generate;
        its masked-token accuracy is the loop's eval metric).

        gen_accuracy: share of eval_samples generations from a bare BOS whose text up to the first
          EOS the parser accepts (no EOS: failure); gen_mean_len (a row without EOS counts
          seq_len - 1 tokens); gen_distinct_fraction and gen_entropy_bits (diversity of the
          generations that ended, entropy estimated from the log-probs of the distribution sampled:
          the model's at `temperature`) beside grammar_distinct_fraction and grammar_entropy_bits,
          the same for the grammar's samples.
          gen_fit_fraction: share of the generations that ended (EOS) within the context.
        cut_accuracy: completions of held-out strings given BOS + their first eval_prefix_len tokens,
          judged on the whole string; cut_samples: how many held-out strings fit (prefix_len <
          length <= seq_len - 2 among 4 * eval_samples draws); held_out_fit_fraction: the share of
          those draws whose document (BOS + string + EOS) fits seq_len, so a context too short for
          the grammar shows (the held-out strings are then the shorter ones).
        corrupted_cut_accuracy (corrupt_rate > 0): the same prefixes with each token replaced with
          probability corrupt_rate; a completion counts if it adds no error of its own: the whole
          string is exactly as far from the language as the corrupted prefix is from the language's
          prefixes (robust.corrupted_completion_ok). corrupted_changes and corrupted_prefix_distance
          are the mean number of changes injected and that mean distance (often smaller).
        kl: mean KL(grammar || model) of the next-token distribution over every position of
          eval_kl_strings held-out documents, in nats (measure.kl_to_grammar).
        """
        if self.objective != "lm":
            return {}
        gen_key, cut_key, corrupted_key = jax.random.split(key, 3)
        metrics = self._generation_metrics(model, gen_key)
        metrics.update(self.completion_metrics(model, cut_key, corrupted_key))
        held, held_lengths = self.held_out()
        if not len(held_lengths):
            return metrics
        strings, lengths = held[: self.eval_kl_strings], held_lengths[: self.eval_kl_strings]
        rows = document_rows(self.grammar, strings, lengths, self.seq_len)
        kl = measure.kl_to_grammar(self.grammar, rows, lengths, np.asarray(model.log_probs(jnp.asarray(rows))))
        metrics["kl"] = kl["kl"]
        return metrics

    def completion_metrics(self, model: ModelFns, cut_key: jax.Array, corrupted_key: jax.Array) -> dict[str, float]:
        """cut_samples, held_out_fit_fraction, cut_accuracy and (corrupt_rate > 0) corrupted_cut_accuracy,
        corrupted_changes and corrupted_prefix_distance of `evaluate`, sampled by `model` (so at the
        temperature its sampler was built with; the robustness analysis passes lower ones)."""
        held, held_lengths = self.held_out()
        metrics = {"cut_samples": float(len(held_lengths)), "held_out_fit_fraction": self._held_out_fit}
        if not len(held_lengths):
            return metrics
        prefix = self.eval_prefix_len
        prefix_lengths = np.full(len(held_lengths), prefix, np.int32)
        completed = self._complete(model, held[:, :prefix], cut_key)
        strings, lengths, has_eos = strings_until_eos(completed, prefix_lengths + 1, self.eos_id)
        metrics["cut_accuracy"] = float((np.asarray(accepts(self.grammar, strings, lengths)) & has_eos).mean())
        if self.corrupt_rate > 0:
            corrupted, changes = robust.corrupt(
                self.grammar, jax.random.key(_EVAL_KEY_SEED - 1), held[:, :prefix], prefix_lengths, self.corrupt_rate
            )
            corrupted = np.asarray(corrupted)
            completed = self._complete(model, corrupted, corrupted_key)
            ok, budgets = robust.corrupted_completion_ok(
                self.grammar, corrupted, prefix_lengths, completed[:, prefix + 1:])
            metrics["corrupted_cut_accuracy"] = float(ok.mean())
            metrics["corrupted_changes"] = float(np.mean(changes))
            metrics["corrupted_prefix_distance"] = float(budgets.mean())
        return metrics

    def _generation_metrics(self, model: ModelFns, key: jax.Array) -> dict[str, float]:
        generated = self._complete(model, np.zeros((self.eval_samples, 0), np.int32), key)  # bare BOS
        strings, lengths, has_eos = strings_until_eos(generated, np.ones(self.eval_samples, np.int32), self.eos_id)
        gen_ok = np.asarray(accepts(self.grammar, strings, lengths)) & has_eos
        metrics = {"gen_accuracy": float(gen_ok.mean()), "gen_mean_len": float(lengths.mean()),
                   "gen_fit_fraction": float(has_eos.mean())}
        if has_eos.any():
            log_probs = measure.tempered_log_probs(np.asarray(model.log_probs(jnp.asarray(generated)))[has_eos],
                                                   self.temperature)
            own = measure.document_log_probs(generated[has_eos], lengths[has_eos], log_probs)
            produced = measure.diversity(self.grammar, strings[has_eos], lengths[has_eos], own)
            metrics["gen_distinct_fraction"] = produced["distinct_fraction"]
            metrics["gen_entropy_bits"] = produced["entropy_bits"]
        if self._grammar_diversity is None:
            held, held_lengths = self.held_out()
            self._grammar_diversity = measure.diversity(self.grammar, held, held_lengths) if len(held) else {}
        for name in ("distinct_fraction", "entropy_bits"):
            if name in self._grammar_diversity:
                metrics[f"grammar_{name}"] = self._grammar_diversity[name]
        return metrics

    def _complete(self, model: ModelFns, prefixes: np.ndarray, key: jax.Array) -> np.ndarray:
        """The model's rows for prompts BOS + each prefix (all prefixes have the same length, maybe 0)."""
        count, prefix = prefixes.shape
        prompts = np.zeros((count, self.seq_len), np.int32)
        prompts[:, 0] = self.bos_id
        prompts[:, 1:prefix + 1] = prefixes
        starts = np.full(count, prefix + 1, np.int32)
        return np.asarray(model.sample(jnp.asarray(prompts), jnp.asarray(starts), key))

def task_from_config(task_config: Any) -> CFGTask:
    """CFGTask from a `config.task` ConfigDict (every field as in configs/default.py)."""
    try:
        grammar = load_grammar(task_config.grammar)
    except DataError as err:
        raise ConfigError(f"task.grammar: {err}") from None
    return CFGTask(
        grammar,
        batch_size=task_config.batch_size,
        seq_len=task_config.seq_len,
        objective=task_config.objective,
        eval_samples=task_config.eval_samples,
        eval_prefix_len=task_config.eval_prefix_len,
        temperature=task_config.temperature,
        corrupt_fraction=task_config.corrupt_fraction,
        corrupt_rate=task_config.corrupt_rate,
        eval_kl_strings=task_config.eval_kl_strings,
    )


def validate_config(config: ml_collections.ConfigDict) -> None:
    """The task.* fields of a CFG run: sizes, evaluation settings, and a grammar that loads."""
    for field in ("task.batch_size", "task.seq_len", "task.eval_samples"):
        config_lib.positive(config, field)
    config_lib.positive(config, "task.eval_prefix_len", allow_zero=True)
    # A cut string holds its prefix, at least one more token, BOS and EOS within task.seq_len.
    longest_prefix = config.task.seq_len - 3
    config_lib.require(config.task.eval_prefix_len <= longest_prefix, "task.eval_prefix_len",
                       f"it must be at most task.seq_len - 3 = {longest_prefix}, so that a held-out string "
                       "can continue after it", config.task.eval_prefix_len)
    config_lib.positive(config, "task.temperature", allow_zero=True)
    config_lib.positive(config, "task.eval_kl_strings")
    config_lib.fraction(config, "task.corrupt_fraction", low_open=False, high_open=False)
    config_lib.fraction(config, "task.corrupt_rate", low_open=False, high_open=False)
    try:
        load_grammar(config.task.grammar)
    except DataError as error:
        raise ConfigError(f"task.grammar = {config.task.grammar!r} is invalid: {error}") from None


ENCODER_VARIANT = "bert"


def apply_variant(config: ml_collections.ConfigDict, variant: str) -> ml_collections.ConfigDict:
    """Part 1's model variants by name: a decoder position scheme (rope, absolute, relative, pos,
    uniform, none) or "bert", the bidirectional encoder trained with masked LM (rotary positions)."""
    if variant == ENCODER_VARIANT:
        config.model.kind = "bert"
        config.task.objective = "mlm"
    elif variant in transformer.POSITION_SCHEMES:
        config.model.position = variant
    else:
        allowed = ", ".join(transformer.POSITION_SCHEMES + (ENCODER_VARIANT,))
        raise ConfigError(f"config variant {variant!r} is unknown: it must be one of {allowed}")
    return config
