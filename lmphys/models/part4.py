"""Part 4.1's model columns by name, as config.model settings: the paper's Llama-style block with
or without Canon layers and its position schemes (its Figures 7/14 compare these five).

    rope          Llama(RoPE): RMSNorm, SwiGLU (8D/3 hidden), no biases, untied embeddings, full RoPE
    rope+canon    the same with Canon-ABCD (residual, kernel 4)
    rope4+canon   RoPE on 1/4 of every head's dims, with Canon-ABCD (the paper's recommendation)
    nope          no position encoding at all
    nope+canon    NoPE with Canon-ABCD

A shape "<layers>L<width>D" (e.g. 8L512D, 12L768D) sets layers and width with 64-dim heads, as in the paper.
Part 4.1's world configs (configs/depo, brevo, mano) take these names in their argument, and share
its optimizer recipe (`apply_optimizer`).
"""
from __future__ import annotations

import re

import ml_collections

from lmphys.errors import ConfigError

ARCHITECTURES = ("rope", "rope+canon", "rope4+canon", "nope", "nope+canon")
SHAPE = re.compile(r"([1-9]\d*)L([1-9]\d*)D")


def apply_architecture(model: ml_collections.ConfigDict, name: str) -> None:
    """Set `model` (a config.model) to the named column; ConfigError for an unknown name."""
    if name not in ARCHITECTURES:
        raise ConfigError(f"architecture {name!r} is unknown: it must be one of {', '.join(ARCHITECTURES)}")
    model.norm, model.mlp, model.mlp_ratio, model.bias, model.tie_embeddings = "rmsnorm", "swiglu", 4, False, False
    position = name.split("+")[0]
    model.position = "none" if position == "nope" else "rope"
    model.rope_fraction = 0.25 if position == "rope4" else 1.0
    model.canon = "ABCD" if name.endswith("+canon") else ""


def apply_optimizer(optim: ml_collections.ConfigDict, learning_rate: float, weight_decay: float,
                    warmup_steps: int) -> None:
    """Part 4.1's synthetic-task recipe (App. A) on a config.optim: AdamW (0.9, 0.98), eps 1e-6,
    linear warmup, then cosine decay to 10% of the peak rate."""
    optim.learning_rate, optim.weight_decay, optim.warmup_steps = learning_rate, weight_decay, warmup_steps
    optim.b1, optim.b2, optim.eps = 0.9, 0.98, 1e-6
    optim.schedule, optim.final_lr_fraction = "cosine", 0.1


def apply_shape(model: ml_collections.ConfigDict, shape: str, head_dim: int = 64) -> None:
    """Set layers, width and heads from "<layers>L<width>D" (heads of `head_dim` dims)."""
    match = SHAPE.fullmatch(shape)
    if not match or int(match.group(2)) % head_dim:
        raise ConfigError(f"model shape {shape!r} is invalid: it must be <layers>L<width>D with D a multiple of {head_dim}, "
                          "e.g. 8L512D")
    model.num_layers, model.width = int(match.group(1)), int(match.group(2))
    model.num_heads = model.width // head_dim


def split_argument(arg: str, variants: tuple[str, ...], usage: str) -> tuple[str, int | None, str, str | None]:
    """(variant, size or None, architecture, shape or None) of a config argument
    "<variant>[,<size>][,<architecture>][,<layers>L<width>D]" (parts after the variant in any order)."""
    variant, *rest = arg.split(",")
    size, architecture, shape = None, "rope", None
    if variant not in variants:
        raise ConfigError(f"config argument {arg!r} is invalid: it must be {usage}")
    for part in rest:
        if part.isdigit():
            size = int(part)
        elif part in ARCHITECTURES:
            architecture = part
        elif SHAPE.fullmatch(part):
            shape = part
        else:
            raise ConfigError(f"config argument {arg!r} is invalid: {part!r} is no size, architecture "
                              f"({', '.join(ARCHITECTURES)}) or shape (e.g. 8L512D); it must be {usage}")
    return variant, size, architecture, shape
