"""Low-rank adaptation (LoRA) of a pretrained model's parameters, for Part 3.1's QA fine-tuning.

The paper fine-tunes a pretrained model on QA either fully or with LoRA: a rank-r update of the
token embeddings and rank-r updates of the query and value projections of every layer. Here the
update is a pytree of factors `{"embedding": (A [V, r], B [r, D]), "query"/"value": (A [L, D, r],
B [L, r, D])}`; `merge` adds the products to a copy of the frozen parameters inside the jitted
step, so the model code never knows about LoRA. B starts at zero: step 0 runs the pretrained model.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

TARGETS = ("embedding", "query", "value")
_INIT_STDDEV = 0.02


def init(base: dict, key: jax.Array, *, embedding_rank: int, attention_rank: int) -> dict:
    """Fresh factors for `base` (a model's pure-dict parameters); a rank of 0 leaves that target out."""
    embedding_VD = base["token_embed"]["embedding"]
    qkv_LDE = base["stack"]["blocks"]["attention"]["qkv"]["kernel"]
    num_layers, width = qkv_LDE.shape[0], qkv_LDE.shape[1]
    keys = dict(zip(TARGETS, jax.random.split(key, len(TARGETS))))
    factors = {}
    if embedding_rank:
        factors["embedding"] = (
            _INIT_STDDEV * jax.random.normal(keys["embedding"], (embedding_VD.shape[0], embedding_rank)),
            jnp.zeros((embedding_rank, width)),
        )
    if attention_rank:
        for target in ("query", "value"):
            factors[target] = (
                _INIT_STDDEV * jax.random.normal(keys[target], (num_layers, width, attention_rank)),
                jnp.zeros((num_layers, attention_rank, width)),
            )
    if not factors:
        raise ValueError("a LoRA update needs a positive embedding or attention rank")
    return factors


def merge(base: dict, factors: dict) -> dict:
    """base + A @ B for every factored target (a new pytree; `base` is not modified)."""
    merged = jax.tree.map(lambda leaf: leaf, base)  # a fresh nesting of dicts over the same arrays
    if "embedding" in factors:
        a, b = factors["embedding"]
        merged["token_embed"]["embedding"] = jnp.asarray(base["token_embed"]["embedding"]) + a @ b
    attention = merged["stack"]["blocks"]["attention"]
    for column, target in ((0, "query"), (2, "value")):
        if target in factors:
            a, b = factors[target]
            kernel_LDE = jnp.asarray(attention["qkv"]["kernel"])
            width = a.shape[1]
            delta_LDD = jnp.einsum("ldr,lre->lde", a, b)
            attention["qkv"]["kernel"] = kernel_LDE.at[:, :, column * width:(column + 1) * width].add(delta_LDD)
    return merged
