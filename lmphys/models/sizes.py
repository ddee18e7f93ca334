"""How big a model is: parameter counts, Canon channels and analytic training FLOPs per token.

Used to report a run's size (the training loop's first lines, bio capacity's bits per parameter),
MFU (perf, bench.py) and a sweep's GPU cost (cost.py). Kept apart from transformer.py, which builds
and runs the model: these read a ModelConfig or a parameter pytree and build nothing.
"""
from __future__ import annotations

from typing import Any

import jax

from lmphys.models.attention import QUERY_KEY_SCHEMES
from lmphys.models.canon import KERNEL_SIZE
from lmphys.models.transformer import ModelConfig


def num_params(params: Any) -> int:
    """Number of scalars in a parameter pytree (an nnx.State or nested dict)."""
    return int(sum(leaf.size for leaf in jax.tree.leaves(params)))


def canon_channels(cfg: ModelConfig) -> int:
    """Channels one block's Canon layers convolve: A and C the width, B q|k|v (v alone for
    pos/uniform), D the MLP's input projection outputs."""
    attention_channels = 3 * cfg.width if cfg.position in QUERY_KEY_SCHEMES else cfg.width
    sizes = {"A": cfg.width, "B": attention_channels, "C": cfg.width, "D": cfg.mlp_in_width}
    return sum(sizes[point] for point in cfg.canon)


def flops_per_token(cfg: ModelConfig, seq_len: int, halve_causal: bool = True) -> float:
    """Analytic training FLOPs per token (forward + backward = 3x forward), for MFU.

    6 x (matmul parameters: attention projections, MLP (two D x mlp_width matrices for GELU,
    three for SwiGLU), head; embedding lookups excluded)
    + attention: per layer the score matmul q.k (2*T*D forward) and the value mix (2*T*D),
    x3 for training, halved for causal models; pos/uniform have no q.k, relative adds q.r
    (2*(2K+1)*D)
    + Canon layers: a multiply and an add per channel and tap (2*4 per channel forward, the
    residual add included), x3 for training. Other elementwise work (norms, activations) is not counted.
    """
    D, L, T = cfg.width, cfg.num_layers, seq_len
    projections = 4 * D * D if cfg.position in QUERY_KEY_SCHEMES else 2 * D * D
    per_layer = projections + D * cfg.mlp_in_width + cfg.mlp_width * D
    head = D * cfg.vocab_size + (D * D if cfg.kind == "bert" else 0)
    attention_forward = (4 if cfg.position in QUERY_KEY_SCHEMES else 2) * T * D
    if cfg.causal and halve_causal:  # False: what a kernel computing the masked half does
        attention_forward /= 2
    if cfg.position == "relative":
        attention_forward += 2 * (2 * cfg.relative_max_distance + 1) * D
    canon_forward = 2 * KERNEL_SIZE * canon_channels(cfg)
    return 6.0 * (L * per_layer + head) + 3.0 * L * (attention_forward + canon_forward)
