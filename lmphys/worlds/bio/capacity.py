"""Part 3.3 of Physics of Language Models ("Knowledge Capacity Scaling Laws"): how many bits of knowledge
a trained model provably stores, computed from its losses, and that count per parameter.

The argument (ours, following the paper's bit-complexity lower bound). The data are drawn uniformly at
random, so they carry a known number of bits; a model is a function of the data, and a model whose
cross-entropy on some random part is p nats predicts that part as well as a code of p nats would. What
it predicts better than chance it must have stored: for a part with M equally likely outcomes, it holds
at least log2(M / e^p) = log2 M - p / ln 2 bits. Summed over the parts of bioD(N, K, C, D, L, T):

    bits >= N   * log2((N0 - N) / e^{p1})     names: N distinct names out of N0 possible
          + N*K * log2(D^C / e^{p2})          values: C chunks out of D, per person and attribute
          + K*D * log2(T^L / e^{p3})          chunk tables: each of the K*D chunks is L tokens out of T

    p1 = the loss summed over a name's tokens, averaged over people (N0 - N, not N0: names are
         distinct, so even the last one drawn still had at least N0 - N choices);
    p2 = the loss summed over one value's C*L tokens, averaged over people and attributes;
    p3 = ln T + the loss summed over a chunk's tokens *after its first*, averaged over the chunks in the
         documents. Why: once a chunk has started, a model that learned the attribute's D chunks knows
         the rest, so the continuation loss measures what it knows of the chunk table; the first token's
         loss is confounded with choosing which chunk, which the value term already credits, so it is
         counted at chance (ln T). At zero continuation loss the term is K*D*(L-1)*log2 T: we give up the
         first token's bits rather than count a bit twice. With chunk_loss None the term is left out.

Each term is clipped at 0: a model worse than chance on a part stores nothing about it (the bound is
only a bound). For bioS (the Part 3.1 world), names are given, and each person's independent attributes
are uniform over their pools: bits per person = sum over attributes of max(0, log2 |pool| - loss/ln 2),
with |birth_date| = 200 * 12 * 28, birth_city 200, university 300, major 100, employer 263 (the
employer's city follows from the employer: 0 bits, excluded), plus the gender bit, read off the first
pronoun's loss. At zero loss that is ~47.6 bits per person.

Capacity after quantization: `quantize` rounds every weight matrix to int8/int4 levels and back, then the
same losses are measured on the rounded model.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lmphys.errors import ConfigError, DataError
from lmphys.models import transformer
from lmphys.worlds.bio import biod
from lmphys.worlds.bio.people import ATTRIBUTES
from lmphys.worlds.bio.text import biographies

__all__ = [
    "BIOS_CHOICES", "span_losses", "biod_bits", "bios_bits", "measure_biod_bits", "measure_bios_bits",
    "quantize", "bits_per_parameter", "QUANTIZATIONS", "analyze_run",
]

# How many equally likely values each independent bioS attribute has (FACTS.md, Part 3.1).
BIOS_CHOICES = {"birth_date": 200 * 12 * 28, "birth_city": 200, "university": 300, "major": 100, "employer": 263}
# Determined by another attribute, so it carries no bits of its own.
_BIOS_DEPENDENT = ("employer_city",)

LogProbsFn = Callable[[jax.Array], jax.Array]


def _clipped_bits(choices_log2: float, loss_nats: float) -> float:
    """Bits a model stores about one uniform choice among 2^choices_log2, given its loss in nats."""
    return max(0.0, choices_log2 - loss_nats / math.log(2))


def span_losses(
    log_probs_fn: LogProbsFn,
    documents,
    spans: np.ndarray,
    *,
    bos_id: int,
    pad_id: int,
    seq_len: int,
    batch_size: int = 64,
) -> np.ndarray:
    """The model's loss (nats), summed over each document's tokens in each span.

    `documents` has `tokens` and `offsets` (text.Documents, biod.BioDDocuments); `spans` is
    [num_docs, 2] or [num_docs, S, 2] of (start, end) token offsets inside each document. Each document
    is fed as [bos] + document, padded (or cut) to seq_len; log_probs_fn(tokens_BT) -> [B, T, V] is the
    log-softmax of a causal LM, so document token j (input position j + 1) is predicted at position j.
    Returns float64 [num_docs] or [num_docs, S].
    """
    spans = np.asarray(spans)
    single = spans.ndim == 2
    spans = spans[:, None] if single else spans
    num_docs = len(documents.offsets) - 1
    if spans.ndim != 3 or spans.shape[0] != num_docs or spans.shape[2] != 2:
        raise DataError(f"spans must be [{num_docs}, 2] or [{num_docs}, S, 2], got {spans.shape}")
    if spans.size and ((spans[..., 0] < 0).any() or (spans[..., 1] < spans[..., 0]).any()):
        raise DataError("every span must satisfy 0 <= start <= end")
    lengths = np.diff(documents.offsets)
    if spans.size and (spans[..., 1] > lengths[:, None]).any():
        raise DataError("a span ends past the end of its document")
    if spans.size and spans[..., 1].max() > seq_len - 1:
        raise DataError(f"a span ends at token {spans[..., 1].max()}, past what seq_len={seq_len} holds after bos")

    losses = np.zeros(spans.shape[:2])
    for batch_start in range(0, num_docs, batch_size):
        rows = np.full((batch_size, seq_len), pad_id, np.int32)  # a fixed shape, so a jitted fn compiles once
        doc_ids = np.arange(batch_start, min(batch_start + batch_size, num_docs))
        rows[:, 0] = bos_id
        for row, doc in enumerate(doc_ids):
            tokens = documents.tokens[documents.offsets[doc]:documents.offsets[doc + 1]][: seq_len - 1]
            rows[row, 1:1 + len(tokens)] = tokens
        # Gather the target's log-prob on the device so only [B, T] floats come back, not [B, T, V].
        next_tokens = jnp.asarray(np.concatenate([rows[:, 1:], rows[:, -1:]], axis=1))
        log_probs = jnp.take_along_axis(jnp.asarray(log_probs_fn(jnp.asarray(rows))), next_tokens[..., None], axis=-1)
        token_loss = -np.asarray(log_probs[..., 0], np.float64)[: len(doc_ids)]  # [b, T]: loss of doc token j at j
        cumulative = np.concatenate([np.zeros((len(doc_ids), 1)), np.cumsum(token_loss, axis=1)], axis=1)
        batch_spans = spans[doc_ids]
        rows_index = np.arange(len(doc_ids))[:, None]
        losses[doc_ids] = cumulative[rows_index, batch_spans[..., 1]] - cumulative[rows_index, batch_spans[..., 0]]
    return losses[:, 0] if single else losses


def biod_bits(
    spec: biod.BioDSpec,
    name_loss: float,
    value_loss: float,
    chunk_loss: float | None = None,
    *,
    name_space: int | None = None,
) -> dict[str, float]:
    """The bit lower bound of the module docstring for bioD(spec): {"name", "value", "chunk", "total"}.

    name_loss = p1, value_loss = p2 (nats, as defined above); chunk_loss = the mean summed loss over a
    chunk's continuation tokens (p3 - ln T), or None to leave the chunk term out. name_space is N0,
    by default the size of the shipped name pools.
    """
    n0 = biod.name_space() if name_space is None else name_space
    n, k = spec.num_people, spec.num_attributes
    if n >= n0:
        raise ConfigError(f"name_space ({n0}) must exceed num_people ({n})")
    name = n * _clipped_bits(math.log2(n0 - n), name_loss)
    value = n * k * _clipped_bits(spec.chunks * math.log2(spec.diversity), value_loss)
    chunk = 0.0
    if chunk_loss is not None:
        p3 = math.log(spec.value_vocab) + chunk_loss
        chunk = k * spec.diversity * _clipped_bits(spec.chunk_len * math.log2(spec.value_vocab), p3)
    return {"name": name, "value": value, "chunk": chunk, "total": name + value + chunk}


def bios_bits(num_people: int, attribute_losses: dict[str, float], gender_loss: float | None) -> dict[str, float]:
    """Bits a model stores about bioS people, from its mean summed loss (nats) on each attribute's value
    tokens and on the first pronoun (the gender bit; None leaves it out).

    Returns the total bits of each attribute over all people, "gender", "total" and "per_person".
    employer_city may be passed and is ignored (it follows from the employer).
    """
    unknown = set(attribute_losses) - set(BIOS_CHOICES) - set(_BIOS_DEPENDENT)
    missing = set(BIOS_CHOICES) - set(attribute_losses)
    if unknown or missing:
        raise DataError(f"attribute_losses needs exactly {sorted(BIOS_CHOICES)}; unknown {sorted(unknown)}, missing {sorted(missing)}")
    result = {
        attribute: num_people * _clipped_bits(math.log2(choices), attribute_losses[attribute])
        for attribute, choices in BIOS_CHOICES.items()
    }
    result["gender"] = 0.0 if gender_loss is None else num_people * _clipped_bits(1.0, gender_loss)
    result["total"] = sum(result.values())
    result["per_person"] = result["total"] / num_people if num_people else 0.0
    return result


def measure_biod_bits(
    log_probs_fn: LogProbsFn, docs: biod.BioDDocuments, *, seq_len: int, batch_size: int = 64
) -> dict[str, float]:
    """biod_bits from a causal LM's losses on bioD documents (one forward pass over them); also
    returns the three losses it measured ("name_loss", "value_loss", "chunk_loss")."""
    world = docs.world
    spec = world.spec
    spans = np.concatenate(
        [docs.name_spans[:, None], docs.value_spans, biod.chunk_continuation_spans(docs)], axis=1
    )
    losses = span_losses(log_probs_fn, docs, spans, bos_id=world.bos_id, pad_id=world.pad_id, seq_len=seq_len, batch_size=batch_size)
    name_loss = float(losses[:, 0].mean())
    value_loss = float(losses[:, 1:1 + spec.num_attributes].mean())
    chunk_loss = float(losses[:, 1 + spec.num_attributes:].mean()) if spec.chunk_len > 1 else None
    bits = biod_bits(spec, name_loss, value_loss, chunk_loss)
    return {**bits, "name_loss": name_loss, "value_loss": value_loss, "chunk_loss": chunk_loss if chunk_loss is not None else 0.0}


def measure_bios_bits(
    log_probs_fn: LogProbsFn, documents, *, bos_id: int, pad_id: int, seq_len: int, batch_size: int = 64
) -> dict[str, float]:
    """bios_bits from a causal LM's losses on bioS biographies (text.Documents): each attribute's
    value tokens, and the first pronoun of the documents that have one."""
    num_docs = len(documents.offsets) - 1
    pronoun = np.asarray(documents.pronoun_positions)
    has_pronoun = pronoun >= 0
    pronoun_span = np.stack([np.maximum(pronoun, 0), np.maximum(pronoun, 0) + has_pronoun], axis=1)
    spans = np.concatenate([documents.value_spans, pronoun_span[:, None]], axis=1)
    losses = span_losses(log_probs_fn, documents, spans, bos_id=bos_id, pad_id=pad_id, seq_len=seq_len, batch_size=batch_size)
    attribute_losses = {name: float(losses[:, j].mean()) for j, name in enumerate(ATTRIBUTES)}
    gender_loss = float(losses[has_pronoun, -1].mean()) if has_pronoun.any() else None
    num_people = len(np.unique(documents.person)) if num_docs else 0
    return bios_bits(num_people, attribute_losses, gender_loss)


def quantize(params, bits: int):
    """Round-to-nearest symmetric integer quantization of every weight with >= 2 dims, dequantized back
    to float32: one scale per output column (the last axis), computed over the input axis (-2)
    separately for every leading index, so stacked [layers, in, out] kernels get one scale per layer and
    column. Levels are scale * {-q, ..., q} with q = 2^(bits-1) - 1 (127 for int8, 7 for int4).
    1-D parameters (biases, norm scales) and non-float leaves are returned unchanged."""
    if not isinstance(bits, int) or not 2 <= bits <= 16:
        raise ConfigError(f"quantization bits must be an integer in [2, 16], got {bits!r}")
    max_level = 2 ** (bits - 1) - 1

    def quantize_leaf(leaf):
        array = jnp.asarray(leaf)
        if array.ndim < 2 or not jnp.issubdtype(array.dtype, jnp.floating):
            return leaf
        array = array.astype(jnp.float32)
        largest = jnp.max(jnp.abs(array), axis=-2, keepdims=True)
        scale = jnp.where(largest > 0, largest / max_level, 1.0)  # an all-zero column stays zero
        return jnp.clip(jnp.round(array / scale), -max_level, max_level) * scale

    return jax.tree.map(quantize_leaf, params)


def bits_per_parameter(bits: float, params) -> float:
    """Stored bits divided by the number of parameters (every array entry of the pytree, embeddings
    included)."""
    count = sum(int(np.size(leaf)) for leaf in jax.tree.leaves(params))
    if count == 0:
        raise DataError("params has no parameters")
    return bits / count


QUANTIZATIONS = (8, 4)  # the integer widths analyze_run also measures


def _bits_measure(task: Any, graphdef: Any) -> Callable[[Any], dict[str, float]]:
    """params -> bits of knowledge the model holds about the task's people (whole world, training
    data); the documents and the compiled forward pass are made once for every weight variant."""
    apply = jax.jit(lambda params, tokens: jax.nn.log_softmax(transformer.apply(graphdef, params, tokens)))
    if task.config.world == "biod":
        documents = biod.documents(task.world, task.config.world_seed, copies=1)
        return lambda params: measure_biod_bits(
            lambda tokens: apply(params, jnp.asarray(tokens)), documents, seq_len=task.seq_len)
    documents = biographies(task.people, task.config.world_seed)  # each person's fixed rendering
    return lambda params: measure_bios_bits(
        lambda tokens: apply(params, jnp.asarray(tokens)), documents, bos_id=task.bos_id, pad_id=task.pad_id,
        seq_len=task.seq_len)


def analyze_run(task: Any, graphdef: Any, params: Any) -> dict[str, Any]:
    """Part 3.3's capacity of a knowledge run's model (its BioTask, graph and parameters):
    {"params", "fp32": bits, "bits_per_param_fp32", and the same after int8 / int4 quantization}
    (JSON-ready; empty for encoders, which do not predict the next token)."""
    if not nnx.merge(graphdef, params).cfg.causal:
        return {}
    measure = _bits_measure(task, graphdef)
    num_params = transformer.num_params(params)
    out: dict[str, Any] = {"params": num_params}
    for label, weights in [("fp32", params)] + [(f"int{bits}", quantize(params, bits)) for bits in QUANTIZATIONS]:
        bits = measure(weights)
        out[label] = {name: float(value) for name, value in bits.items()}
        out[f"bits_per_param_{label}"] = float(bits["total"]) / num_params
    return out
