"""Batched sampling from a GPT with a KV cache, for every position scheme (Part 1 generation
accuracy, Part 2 solutions, Part 3 QA answers).

Rows may have different prompt lengths. One prefill pass fills the cache for all T positions
(entry t only depends on tokens <= t, so entries inside every row's prompt are final); then the
rows advance together one position per step from the shortest prompt on: the token at position t
goes through `GPT.decode_step`, which rewrites cache entry t and predicts position t + 1, where a
row still inside its prompt keeps its prompt token and the others take the sample.

    sample = jax.jit(generate, static_argnames=("greedy", "eos_id"))
    tokens_BT = sample(graphdef, params, prompts_BT, prompt_lengths_B, key)
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lmphys.errors import ConfigError, DataError
from lmphys.models.transformer import GPT


def generate(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    prompts_BT: jax.Array,
    prompt_lengths_B: jax.Array,
    key: jax.Array,
    *,
    temperature: float | jax.Array = 1.0,
    greedy: bool = False,
    eos_id: int | None = None,
) -> jax.Array:
    """Continue each prompt in place: returns int32 [B, T] with row b's first prompt_lengths[b]
    tokens kept and the rest sampled (argmax when greedy, else softmax(logits / temperature);
    the key for position t + 1 is fold_in(key, t), so a fixed key gives fixed samples).

    Prompt lengths must be >= 1. With eos_id, a row is finished once it emits eos after its
    prompt; later positions are 0, and the loop stops when every row is finished.
    """
    model = nnx.merge(graphdef, params)
    if not isinstance(model, GPT):
        raise ConfigError(
            f"model.kind={model.cfg.kind!r} cannot generate: only a causal 'gpt' model samples text"
        )
    if prompts_BT.ndim != 2 or prompt_lengths_B.shape != prompts_BT.shape[:1]:
        raise DataError(
            f"prompts must be [B, T] with prompt_lengths [B]; got {prompts_BT.shape} and {prompt_lengths_B.shape}"
        )
    _, seq_len = prompts_BT.shape
    prompt_lengths_B = prompt_lengths_B.astype(jnp.int32)
    positions_T = jnp.arange(seq_len)
    in_prompt_BT = positions_T[None, :] < prompt_lengths_B[:, None]
    tokens_BT = jnp.where(in_prompt_BT, prompts_BT, 0).astype(jnp.int32)
    cache = model.prefill(tokens_BT)
    start = jnp.clip(jnp.min(prompt_lengths_B) - 1, 0, seq_len - 1)
    finished_B = prompt_lengths_B >= seq_len

    def keep_going(state) -> jax.Array:
        position, _, _, finished = state
        more = position < seq_len - 1
        return more if eos_id is None else more & ~jnp.all(finished)

    def step(state):
        position, tokens, cache, finished = state
        logits_BV, cache = model.decode_step(tokens[:, position], position, cache)
        if greedy:
            sampled_B = jnp.argmax(logits_BV, axis=-1)
        else:
            sampled_B = jax.random.categorical(jax.random.fold_in(key, position), logits_BV / temperature)
        target = position + 1
        forced_B = target < prompt_lengths_B
        prompt_token_B = jax.lax.dynamic_index_in_dim(prompts_BT, target, axis=1, keepdims=False)
        next_B = jnp.where(forced_B, prompt_token_B, jnp.where(finished, 0, sampled_B)).astype(jnp.int32)
        if eos_id is not None:
            finished = finished | (~forced_B & (next_B == eos_id))
        tokens = jax.lax.dynamic_update_index_in_dim(tokens, next_B, target, axis=1)
        return position + 1, tokens, cache, finished

    _, tokens_BT, _, _ = jax.lax.while_loop(keep_going, step, (start, tokens_BT, cache, finished_B))
    return tokens_BT
