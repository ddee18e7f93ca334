"""Canon layers (Physics of Language Models Part 4.1, arXiv 2512.17351, Section 3; released as
`ShortConvolution` + `apply_canon` in facebookresearch/PhysicsLM4, huggingface/canon_helper.py).

A Canon layer mixes each position with the three before it, channel by channel:

    h'_t = h_t + sum_{s=0}^{K-1} w_s * h_{t-s},   h_{t-s} = 0 for t - s < 0,   K = 4,

a causal depthwise 1-D convolution over the sequence (one length-K filter per channel, no bias, no
activation) plus the identity residual the paper finds essential. The weights start U(-0.5, 0.5),
PyTorch's default Conv1d init that the released code keeps on purpose (an O(1) init, not 0.02).

Placement letters (config.model.canon): A after the attention norm, B on the concatenated q|k|v
inside attention (after QK-norm, before RoPE), C after the MLP norm, D on the MLP's input
projection before its activation (gate|up for SwiGLU).

Decoding keeps each layer's inputs by position next to the KV cache ([B, S, C], like the keys),
so the step at position t reads inputs t-3..t: rows of different prompt lengths restart from the
shortest prompt (decode.py) and a position-indexed history, unlike a rolling window, stays valid.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

CANON_POINTS = "ABCD"
KERNEL_SIZE = 4
INIT_RANGE = 0.5  # U(-0.5, 0.5): kaiming_uniform(a=sqrt(5)) on a depthwise filter of fan-in 4


def valid_canon(spec: object) -> bool:
    """Whether `spec` is a placement string: letters from ABCD, each at most once ("" for none)."""
    return isinstance(spec, str) and set(spec) <= set(CANON_POINTS) and len(set(spec)) == len(spec)


def _uniform_init(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    return jax.random.uniform(key, shape, jnp.float32, minval=-INIT_RANGE, maxval=INIT_RANGE)


class Canon(nnx.Module):
    """h'_t = h_t + sum_s w_s * h_{t-s} over `channels` channels; `kernel[s]` weighs lag s."""

    def __init__(self, channels: int, *, rngs: nnx.Rngs):
        self.kernel = nnx.Param(_uniform_init(rngs.params(), (KERNEL_SIZE, channels)))

    def _mix(self, current: jax.Array, lagged: list[jax.Array]) -> jax.Array:
        """current + sum_s kernel[s] * lagged[s], summed in one fixed order so that the full and the
        one-step paths round alike."""
        kernel_KC = self.kernel[...].astype(current.dtype)
        out = current
        for lag, inputs in enumerate(lagged):
            out = out + kernel_KC[lag] * inputs
        return out

    def __call__(self, x_BTC: jax.Array) -> jax.Array:
        """The whole sequence at once: position t sees inputs t-3..t (zeros before the start)."""
        seq_len = x_BTC.shape[1]
        padded = jnp.pad(x_BTC, ((0, 0), (KERNEL_SIZE - 1, 0), (0, 0)))
        start = KERNEL_SIZE - 1
        return self._mix(x_BTC, [padded[:, start - lag:start - lag + seq_len] for lag in range(KERNEL_SIZE)])

    def decode(
        self, x_B1C: jax.Array, position: jax.Array, history_BSC: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """One input at `position` (scalar): store it in the history [B, S, C] (every earlier
        position already holds its input) and return (output [B, 1, C], updated history)."""
        history_BSC = jax.lax.dynamic_update_slice_in_dim(
            history_BSC, x_B1C.astype(history_BSC.dtype), position, axis=1
        )
        lag_positions = position - jnp.arange(KERNEL_SIZE)
        window_BKC = jnp.take(history_BSC, jnp.maximum(lag_positions, 0), axis=1).astype(x_B1C.dtype)
        window_BKC = jnp.where((lag_positions >= 0)[None, :, None], window_BKC, 0)
        return self._mix(x_B1C, [window_BKC[:, lag:lag + 1] for lag in range(KERNEL_SIZE)]), history_BSC
