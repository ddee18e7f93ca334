"""Multi-head attention under every position scheme compared in Part 1 (GPT, GPT_rel, GPT_rot,
GPT_pos, GPT_uni) and the partial rotary embedding of Part 3.1.

Notation: x is the residual stream [B, T, D], H heads of size Dh = D / H, queries/keys/values
q_i, k_j, v_j in R^Dh per head, s = 1 / sqrt(Dh). "Allowed" pairs are j <= i in a causal (GPT)
model and all pairs in a bidirectional (BERT) model. Schemes:

- absolute  a_ij = softmax_j(s q_i.k_j); learned position vectors p_t are added to the token
            embeddings by the model (`PositionEmbedding`), so attention itself is position-blind.
- rope      as absolute but q and k are rotated by their position: the first R = 2*floor(f*Dh/2)
            dims (f = rope_fraction) form R/2 pairs (x_c, x_{c+R/2}) rotated by the angle
            t * base^(-2c/R), c = 0..R/2-1 (the "half split" layout); dims R..Dh-1 are unrotated,
            so a_ij depends on i - j only through the rotated share.
- relative  a_ij = softmax_j(s (q_i.k_j + q_i.r^h_{c(i-j)})), c(d) = clip(d, -K, K), K =
            relative_max_distance; r^h_d in R^Dh is a learned vector per head and clipped
            distance (2K+1 per head; a causal model only uses d = 0..K). Values carry no
            distance term.
- pos       no queries or keys: a_ij = softmax_j(P[h, i, j]) over allowed j, with P a learned
            [H, max_len, max_len] table, so attention depends only on positions.
- uniform   no queries, keys or attention parameters: head h (0-based) averages the values of
            the last W_h = 2^(h+1) - 1 tokens, a_ij = 1 / min(W_h, i + 1) for i - W_h < j <= i
            (windows 1, 3, 7, 15, ..., clipped at the sequence start). Bidirectionally the window
            is centred, |i - j| < 2^h, which again spans 2^(h+1) - 1 tokens.
- none      as absolute without any position signal (only the causal mask breaks symmetry).

The output is out_i = W_o concat_h(sum_j a_ij v_j). Part 4.1's options: `qk_norm` puts an RMSNorm over
the whole query and the whole key vector (all heads together, as the released Llama code does)
before RoPE; `canon` runs a Canon-B layer (canon.py) over the concatenated q|k|v channels after the
QK-norm and before RoPE (over v alone for pos/uniform, which have no q or k); `bias=False` drops the
projections' biases. absolute/rope/none go through
`jax.nn.dot_product_attention` (its `implementation` is chosen by `attention_impl`); relative,
pos and uniform use plain XLA einsums with scores and softmax in float32. Asked for the weights
a_ij (probing, Part 1), every scheme takes the plain XLA path and returns them as well.

Every scheme also has a one-token `decode` that reads and writes a key/value cache (and Canon-B's
input history), so the same parameters serve training (full sequences) and incremental generation.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lmphys.models.canon import Canon

POSITION_SCHEMES = ("absolute", "rope", "relative", "pos", "uniform", "none")
# Schemes with learned queries and keys; the other two mix values by position only.
QUERY_KEY_SCHEMES = ("absolute", "rope", "relative", "none")
# Schemes with a learned table indexed by absolute position, so sequences must fit max_len.
POSITION_TABLE_SCHEMES = ("absolute", "pos")
# 'auto' passes implementation=None and lets jax choose; 'cudnn' asks for the fused flash kernel
# (GPU, bfloat16/float16, head dim a multiple of 8 up to 128); 'xla' forces the reference path.
ATTENTION_IMPLS = ("auto", "xla", "cudnn")

INIT_STDDEV = 0.02


def residual_init(num_layers: int) -> nnx.Initializer:
    """GPT-2 init for projections that write into the residual stream: std 0.02 / sqrt(2L)."""
    return nnx.initializers.normal(INIT_STDDEV / math.sqrt(2 * num_layers))


def rotary_dims(head_dim: int, rope_fraction: float) -> int:
    """How many of a head's dims rotate: the largest even number <= rope_fraction * head_dim."""
    return 2 * int(rope_fraction * head_dim // 2)


def apply_rope(x_BTHK: jax.Array, positions_T: jax.Array, rot_dims: int, base: float) -> jax.Array:
    """Rotate the first `rot_dims` dims of each head by position (half-split pairs); rest kept."""
    if rot_dims == 0:
        return x_BTHK
    half = rot_dims // 2
    inv_freq = base ** (-jnp.arange(half, dtype=jnp.float32) * 2.0 / rot_dims)
    angles_TC = positions_T.astype(jnp.float32)[:, None] * inv_freq[None, :]
    cos = jnp.cos(angles_TC)[None, :, None, :]
    sin = jnp.sin(angles_TC)[None, :, None, :]
    rotated = x_BTHK[..., :rot_dims].astype(jnp.float32)
    first, second = rotated[..., :half], rotated[..., half:]
    rotated = jnp.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)
    return jnp.concatenate([rotated.astype(x_BTHK.dtype), x_BTHK[..., rot_dims:]], axis=-1)


def allowed_pairs(q_pos_Q: jax.Array, k_pos_K: jax.Array, causal: bool) -> jax.Array:
    """[Q, K] bool: which key positions each query may attend to."""
    if causal:
        return k_pos_K[None, :] <= q_pos_Q[:, None]
    return jnp.ones((q_pos_Q.shape[0], k_pos_K.shape[0]), bool)


def uniform_weights(q_pos_Q: jax.Array, k_pos_K: jax.Array, num_heads: int, causal: bool) -> jax.Array:
    """[H, Q, K] float32 averaging weights of the `uniform` scheme (see the module docstring)."""
    distance_QK = q_pos_Q[:, None] - k_pos_K[None, :]
    # Windows beyond any possible distance behave the same; capping avoids int32 overflow.
    cap = 2**30
    if causal:
        windows_H = np.array([min(2 ** (h + 1) - 1, cap) for h in range(num_heads)], np.int32)
        inside_HQK = (distance_QK[None] >= 0) & (distance_QK[None] < windows_H[:, None, None])
    else:
        radii_H = np.array([min(2**h, cap) for h in range(num_heads)], np.int32)
        inside_HQK = jnp.abs(distance_QK)[None] < radii_H[:, None, None]
    weights = inside_HQK.astype(jnp.float32)
    return weights / weights.sum(axis=-1, keepdims=True)


class PositionEmbedding(nnx.Module):
    """Learned absolute position vectors p_t (the `absolute` scheme), added to token embeddings."""

    def __init__(self, max_len: int, width: int, *, dtype: jnp.dtype, rngs: nnx.Rngs):
        self.embedding = nnx.Param(nnx.initializers.normal(INIT_STDDEV)(rngs.params(), (max_len, width)))
        self.dtype = dtype

    def __call__(self, positions_T: jax.Array) -> jax.Array:
        return jnp.take(self.embedding[...], positions_T, axis=0).astype(self.dtype)


class Attention(nnx.Module):
    """Multi-head attention with one of `POSITION_SCHEMES` (formulas in the module docstring).

    `__call__` attends over a full sequence and also returns the keys/values it computed (the
    prefill of a KV cache); `decode` handles one new token at a given position against a cache.
    """

    def __init__(
        self,
        width: int,
        num_heads: int,
        *,
        position: str,
        causal: bool,
        max_len: int,
        rope_fraction: float,
        rope_base: float,
        relative_max_distance: int,
        num_layers: int,
        dtype: jnp.dtype,
        attention_impl: str = "auto",
        qk_norm: bool = False,
        canon: bool = False,
        bias: bool = True,
        rngs: nnx.Rngs,
    ):
        if position not in POSITION_SCHEMES:
            raise ValueError(f"position scheme {position!r} is not one of {POSITION_SCHEMES}")
        self.width = width
        self.num_heads = num_heads
        self.head_dim = width // num_heads
        self.position = position
        self.causal = causal
        self.max_len = max_len
        self.rope_base = rope_base
        self.rot_dims = rotary_dims(self.head_dim, rope_fraction) if position == "rope" else 0
        self.relative_max_distance = relative_max_distance
        self.dtype = dtype
        self.implementation = None if attention_impl == "auto" else attention_impl
        dense = dict(dtype=dtype, param_dtype=jnp.float32, use_bias=bias, rngs=rngs)
        kernel_init = nnx.initializers.normal(INIT_STDDEV)
        if position in QUERY_KEY_SCHEMES:
            self.qkv = nnx.Linear(width, 3 * width, kernel_init=kernel_init, **dense)
        else:
            self.value = nnx.Linear(width, width, kernel_init=kernel_init, **dense)
        self.out = nnx.Linear(width, width, kernel_init=residual_init(num_layers), **dense)
        self.qk_norm = qk_norm and position in QUERY_KEY_SCHEMES
        if self.qk_norm:
            norm = dict(dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
            self.query_norm, self.key_norm = nnx.RMSNorm(width, **norm), nnx.RMSNorm(width, **norm)
        # Created last so that a model without it draws the same initial parameters as before.
        self.canon_b = Canon(3 * width if position in QUERY_KEY_SCHEMES else width, rngs=rngs) if canon else None
        if position == "relative":
            shape = (num_heads, 2 * relative_max_distance + 1, self.head_dim)
            self.relative_embedding = nnx.Param(kernel_init(rngs.params(), shape))
        if position == "pos":
            self.position_logits = nnx.Param(kernel_init(rngs.params(), (num_heads, max_len, max_len)))

    @property
    def has_keys(self) -> bool:
        return self.position in QUERY_KEY_SCHEMES

    def _channels(self, x_BTD: jax.Array) -> jax.Array:
        """The projections before heads and positions: q|k|v [B, T, 3D] (QK-normed if asked), or
        v [B, T, D] for pos/uniform; Canon-B's input."""
        if not self.has_keys:
            return self.value(x_BTD)
        qkv_BTC = self.qkv(x_BTD)
        if self.qk_norm:
            q, k, v = jnp.split(qkv_BTC, 3, axis=-1)
            qkv_BTC = jnp.concatenate([self.query_norm(q), self.key_norm(k), v], axis=-1)
        return qkv_BTC

    def _heads(self, channels_BTC: jax.Array, positions_T: jax.Array):
        """Queries, keys (None for pos/uniform) and values [B, T, H, Dh] at the given positions."""
        B, T, _ = channels_BTC.shape
        if not self.has_keys:
            return None, None, channels_BTC.reshape(B, T, self.num_heads, self.head_dim)
        qkv = channels_BTC.reshape(B, T, 3, self.num_heads, self.head_dim)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        if self.position == "rope":
            q = apply_rope(q, positions_T, self.rot_dims, self.rope_base)
            k = apply_rope(k, positions_T, self.rot_dims, self.rope_base)
        return q, k, v

    def _relative_scores(self, q_BQHK: jax.Array, q_pos_Q: jax.Array, k_pos_K: jax.Array) -> jax.Array:
        """[B, H, Q, K] float32 terms q_i . r_{clip(i-j)}."""
        K = self.relative_max_distance
        table = self.relative_embedding[...].astype(self.dtype)
        per_distance = jnp.einsum("bqhd,hrd->bhqr", q_BQHK, table, preferred_element_type=jnp.float32)
        index_QK = jnp.clip(q_pos_Q[:, None] - k_pos_K[None, :], -K, K) + K
        index = jnp.broadcast_to(index_QK, per_distance.shape[:2] + index_QK.shape)
        return jnp.take_along_axis(per_distance, index, axis=-1)

    def _weights(self, q, k, q_pos_Q: jax.Array, k_pos_K: jax.Array) -> jax.Array:
        """Attention probabilities, float32, by plain XLA ops: [H, Q, K] for pos and uniform (the
        same for every row), [B, H, Q, K] for the query/key schemes."""
        allowed_QK = allowed_pairs(q_pos_Q, k_pos_K, self.causal)
        if self.position == "uniform":
            return uniform_weights(q_pos_Q, k_pos_K, self.num_heads, self.causal)
        if self.position == "pos":
            logits = jnp.take(jnp.take(self.position_logits[...], q_pos_Q, axis=1), k_pos_K, axis=2)
            return jax.nn.softmax(jnp.where(allowed_QK[None], logits, -jnp.inf), axis=-1)
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
        if self.position == "relative":
            scores = scores + self._relative_scores(q, q_pos_Q, k_pos_K)
        scores = jnp.where(allowed_QK[None, None], scores / math.sqrt(self.head_dim), -jnp.inf)
        return jax.nn.softmax(scores, axis=-1)

    def _mix(self, q, k, v, q_pos_Q: jax.Array, k_pos_K: jax.Array, full_sequence: bool,
             return_weights: bool = False) -> tuple[jax.Array, jax.Array | None]:
        """(attention output [B, Q, H, Dh] of queries at q_pos over keys/values at k_pos, and the
        probabilities [B, H, Q, K] float32 if return_weights else None). Returning weights takes the
        plain XLA path for every scheme, so they are the ones the output was mixed with."""
        if self.has_keys and self.position != "relative" and full_sequence and not return_weights:
            mixed = jax.nn.dot_product_attention(q, k, v, is_causal=self.causal, implementation=self.implementation)
            return mixed, None
        weights = self._weights(q, k, q_pos_Q, k_pos_K)
        batch_axis = "b" if weights.ndim == 4 else ""
        mixed = jnp.einsum(f"{batch_axis}hqk,bkhd->bqhd", weights.astype(self.dtype), v)
        if not return_weights:
            return mixed, None
        return mixed, jnp.broadcast_to(weights, (v.shape[0],) + weights.shape[-3:])

    def _output(self, mixed_BTHK: jax.Array) -> jax.Array:
        B, T = mixed_BTHK.shape[:2]
        return self.out(mixed_BTHK.reshape(B, T, self.width))

    def __call__(self, x_BTD: jax.Array, *, return_weights: bool = False):
        """Attend over the whole sequence; returns (output [B,T,D], {'k','v'} [B,T,H,Dh]), and with
        return_weights also the attention probabilities [B,H,T,T] float32 (plain XLA path)."""
        positions_T = jnp.arange(x_BTD.shape[1])
        channels_BTC = self._channels(x_BTD)
        canon_input = channels_BTC
        if self.canon_b is not None:
            channels_BTC = self.canon_b(channels_BTC)
        q, k, v = self._heads(channels_BTC, positions_T)
        mixed, weights = self._mix(q, k, v, positions_T, positions_T, full_sequence=True, return_weights=return_weights)
        out = self._output(mixed)
        cache = self._cache_entries(k, v)
        if self.canon_b is not None:
            cache["canon_B"] = canon_input
        return (out, cache, weights) if return_weights else (out, cache)

    def _cache_entries(self, k, v) -> dict[str, jax.Array]:
        return {"k": k, "v": v} if self.has_keys else {"v": v}

    def decode(
        self, x_B1D: jax.Array, position: jax.Array, cache: dict[str, jax.Array]
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """One token at `position` (scalar): write its k/v (and Canon-B input) into the cache
        [B,S,...], attend to it; cache entries this layer does not own pass through unchanged.

        Cache entries after `position` may hold anything: the causal mask never reads them.
        """
        position_1 = jnp.reshape(position, (1,)).astype(jnp.int32)
        channels_B1C = self._channels(x_B1D)
        new_cache = dict(cache)
        if self.canon_b is not None:
            channels_B1C, new_cache["canon_B"] = self.canon_b.decode(channels_B1C, position, cache["canon_B"])
        q, k, v = self._heads(channels_B1C, position_1)
        for name, new in self._cache_entries(k, v).items():
            new_cache[name] = jax.lax.dynamic_update_slice_in_dim(
                cache[name], new.astype(cache[name].dtype), position, axis=1
            )
        key_positions = jnp.arange(new_cache["v"].shape[1])
        mixed, _ = self._mix(q, new_cache.get("k"), new_cache["v"], position_1, key_positions, full_sequence=False)
        return self._output(mixed), new_cache
