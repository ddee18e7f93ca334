"""GPT and BERT (Flax NNX) built from one pre-norm transformer block (Parts 1, 2, 3 and 4.1).

block(x) = x + drop(Attn(N(x)));  x + drop(MLP(N(x))). By default N = LayerNorm and
MLP(u) = W2 gelu(W1 u), W1: D -> mlp_ratio*D, with biases: today's (GPT-2 style) block.
GPT  = token (+ absolute position) embedding -> causal blocks -> N -> LM head (tied optional).
BERT = the same blocks, bidirectional -> N -> MLM head (dense, gelu, LN, decoder; tied optional).

Part 4.1's block options (config.model; docs/part4-architecture.md): `norm` = rmsnorm for the block
and final norms; `mlp` = swiglu for MLP(u) = W2 (silu(G u) * (U u)) with hidden width
H = int(2 * mlp_ratio * D) // 3 (8D/3 at ratio 4, the released code's choice: 3*D*H ~ the GELU
MLP's 2*D*4D weights); `qk_norm` and `bias` (attention.py; bias also drops the LayerNorm offsets);
`canon`, the Canon layers of canon.py at A (after the attention norm), B (q|k|v, in attention),
C (after the MLP norm) and D (W1's output, before the activation).

The L blocks are one module whose parameters carry a leading layer axis (made with nnx.vmap) and
run under jax.lax.scan (split once, each layer's slice merged back into a Block), so compile time
does not grow with depth; `scan_layers=False` runs the same stacked parameters in a Python loop
(identical maths and checkpoints, more room for XLA fusion).
Compute happens in the config dtype, parameters are float32, logits float32. Models hold nnx.Param
state only: `graphdef, params = nnx.split(model)` and `apply(graphdef, params, tokens)` is the
pure function the training loop jits, vmaps and shards. Dropout is driven by an explicit key.
`return_hidden` / `return_attention` also return every layer's residual stream and attention
probabilities, collected by the same scan (for probes); when not asked for, nothing extra is computed.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from lmphys.errors import DataError
from lmphys.models.attention import (
    ATTENTION_IMPLS,
    INIT_STDDEV,
    POSITION_SCHEMES,
    POSITION_TABLE_SCHEMES,
    Attention,
    PositionEmbedding,
    residual_init,
)
from lmphys.models.canon import Canon

MODEL_KINDS = ("gpt", "bert")
DTYPES = ("auto", "float32", "bfloat16")
NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu", "swiglu")

__all__ = [
    "ATTENTION_IMPLS", "BERT", "DTYPES", "GPT", "MLPS", "MODEL_KINDS", "NORMS", "POSITION_SCHEMES", "Block",
    "BlockStack", "ModelConfig", "apply", "build_model",
]


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Everything that fixes a model's architecture (config.model plus the task's vocabulary)."""

    kind: str
    vocab_size: int
    num_layers: int
    num_heads: int
    width: int
    mlp_ratio: float = 4
    max_len: int = 512
    dropout: float = 0.0
    tie_embeddings: bool = True
    dtype: str = "auto"
    position: str = "rope"
    rope_fraction: float = 1.0
    rope_base: float = 10000.0
    relative_max_distance: int = 32
    scan_layers: bool = True
    attention_impl: str = "auto"  # see attention.ATTENTION_IMPLS; optional in config.model
    remat: bool = False  # recompute each block in the backward pass (memory for time); optional
    # Part 4.1's block options, each optional in config.model with today's block as the default.
    canon: str = ""  # Canon layer points, letters from "ABCD" (canon.py)
    norm: str = "layernorm"  # or "rmsnorm"
    mlp: str = "gelu"  # or "swiglu"
    qk_norm: bool = False
    bias: bool = True  # biases in the linear layers and LayerNorms

    @classmethod
    def from_config(cls, model_cfg: Any, vocab_size: int) -> "ModelConfig":
        """From `config.model` (a ConfigDict or anything with those attributes)."""
        names = [f.name for f in dataclasses.fields(cls) if f.name != "vocab_size"]
        values = {}
        for name in names:
            if name in ("kind", "num_layers", "num_heads", "width") or hasattr(model_cfg, name):
                values[name] = getattr(model_cfg, name)
        return cls(vocab_size=int(vocab_size), **values)

    @property
    def head_dim(self) -> int:
        return self.width // self.num_heads

    @property
    def mlp_width(self) -> int:
        """The MLP's hidden width: mlp_ratio*D for GELU, two thirds of it for SwiGLU (which has
        three D x H matrices instead of two, so the MLP keeps about the same parameter count)."""
        if self.mlp == "swiglu":
            return int(2 * self.width * self.mlp_ratio) // 3
        return int(self.width * self.mlp_ratio)

    @property
    def mlp_in_width(self) -> int:
        """Outputs of the MLP's input projection (and Canon-D's channels): gate|up for SwiGLU."""
        return 2 * self.mlp_width if self.mlp == "swiglu" else self.mlp_width

    @property
    def causal(self) -> bool:
        return self.kind == "gpt"

    @property
    def compute_dtype(self) -> jnp.dtype:
        """bfloat16 on GPU/TPU and float32 on CPU for 'auto'; otherwise the named dtype."""
        if self.dtype == "auto":
            return jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16
        return jnp.dtype(self.dtype)


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Inverted dropout; the identity when key is None (deterministic) or rate is 0."""
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0).astype(x.dtype)


def _split_or_none(key: jax.Array | None, num: int):
    return (None,) * num if key is None else tuple(jax.random.split(key, num))


def make_norm(cfg: ModelConfig, *, dtype: jnp.dtype, rngs: nnx.Rngs) -> nnx.Module:
    """The block and final norm of `cfg.norm`: LayerNorm (with an offset unless bias=False) or RMSNorm."""
    if cfg.norm == "rmsnorm":
        return nnx.RMSNorm(cfg.width, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
    return nnx.LayerNorm(cfg.width, use_bias=cfg.bias, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)


class Block(nnx.Module):
    """One pre-norm transformer block: attention and an MLP, each with residual dropout, and the
    Canon layers A, C, D its config asks for (B lives in attention)."""

    def __init__(self, cfg: ModelConfig, *, dtype: jnp.dtype, rngs: nnx.Rngs):
        dense = dict(dtype=dtype, param_dtype=jnp.float32, use_bias=cfg.bias, rngs=rngs)
        self.attention_norm = make_norm(cfg, dtype=dtype, rngs=rngs)
        self.attention = Attention(
            cfg.width,
            cfg.num_heads,
            position=cfg.position,
            causal=cfg.causal,
            max_len=cfg.max_len,
            rope_fraction=cfg.rope_fraction,
            rope_base=cfg.rope_base,
            relative_max_distance=cfg.relative_max_distance,
            num_layers=cfg.num_layers,
            dtype=dtype,
            attention_impl=cfg.attention_impl,
            qk_norm=cfg.qk_norm,
            canon="B" in cfg.canon,
            bias=cfg.bias,
            rngs=rngs,
        )
        self.mlp_norm = make_norm(cfg, dtype=dtype, rngs=rngs)
        self.mlp_in = nnx.Linear(cfg.width, cfg.mlp_in_width, kernel_init=nnx.initializers.normal(INIT_STDDEV), **dense)
        self.mlp_out = nnx.Linear(cfg.mlp_width, cfg.width, kernel_init=residual_init(cfg.num_layers), **dense)
        self.gated = cfg.mlp == "swiglu"
        self.dropout_rate = cfg.dropout
        # Canon layers come last so that a model without them draws the same parameters as before.
        self.canon_a = Canon(cfg.width, rngs=rngs) if "A" in cfg.canon else None
        self.canon_c = Canon(cfg.width, rngs=rngs) if "C" in cfg.canon else None
        self.canon_d = Canon(cfg.mlp_in_width, rngs=rngs) if "D" in cfg.canon else None

    def _canon(self, point: str, x: jax.Array, position: jax.Array | None, cache: dict) -> jax.Array:
        """Canon layer `point` on x if the block has one (identity otherwise). Without a position
        the whole sequence goes through and its input is recorded in `cache` (the prefill); with
        one, x is the token at that position and the history in `cache` is read and updated."""
        canon = getattr(self, f"canon_{point.lower()}")
        if canon is None:
            return x
        name = f"canon_{point}"
        if position is None:
            cache[name] = x
            return canon(x)
        out, cache[name] = canon.decode(x, position, cache[name])
        return out

    def _mlp(self, x: jax.Array, position: jax.Array | None, cache: dict) -> jax.Array:
        hidden = self._canon("D", self.mlp_in(self._canon("C", self.mlp_norm(x), position, cache)), position, cache)
        if self.gated:
            gate, up = jnp.split(hidden, 2, axis=-1)
            return self.mlp_out(jax.nn.silu(gate) * up)
        return self.mlp_out(jax.nn.gelu(hidden))

    def __call__(self, x_BTD: jax.Array, dropout_key: jax.Array | None = None, *, return_attention: bool = False):
        """Returns (new residual stream, this layer's cache entries for decoding: keys/values and
        each Canon layer's inputs, attention probabilities [B,H,T,T] if return_attention else None)."""
        attention_key, mlp_key = _split_or_none(dropout_key, 2)
        block_cache: dict[str, jax.Array] = {}
        normed_BTD = self._canon("A", self.attention_norm(x_BTD), None, block_cache)
        if return_attention:
            attended, kv, weights = self.attention(normed_BTD, return_weights=True)
        else:
            (attended, kv), weights = self.attention(normed_BTD), None
        x_BTD = x_BTD + dropout(attended, self.dropout_rate, attention_key)
        x_BTD = x_BTD + dropout(self._mlp(x_BTD, None, block_cache), self.dropout_rate, mlp_key)
        return x_BTD, {**kv, **block_cache}, weights

    def decode(self, x_B1D: jax.Array, position: jax.Array, cache: dict[str, jax.Array]):
        cache = dict(cache)
        normed_B1D = self._canon("A", self.attention_norm(x_B1D), position, cache)
        attended, cache = self.attention.decode(normed_B1D, position, cache)
        x_B1D = x_B1D + attended
        cache = dict(cache)
        return x_B1D + self._mlp(x_B1D, position, cache), cache


class BlockStack(nnx.Module):
    """L blocks with parameters stacked on a leading layer axis; scanned or unrolled."""

    def __init__(self, cfg: ModelConfig, *, dtype: jnp.dtype, rngs: nnx.Rngs):
        @nnx.split_rngs(splits=cfg.num_layers)
        @nnx.vmap(in_axes=0, out_axes=0)
        def make_blocks(rngs: nnx.Rngs) -> Block:
            return Block(cfg, dtype=dtype, rngs=rngs)

        self.blocks = make_blocks(rngs)
        self.num_layers = cfg.num_layers
        self.scan_layers = cfg.scan_layers
        self.remat = cfg.remat

    def _over_layers(self, body, x, per_layer_inputs):
        """Fold body(block, x, inputs_l) -> (x, outputs_l) over the layers; outputs stacked [L, ...].

        The stacked state is split once and each layer's slice merged back into a Block, inside
        jax.lax.scan (one compiled body for any depth) or a Python loop (scan_layers=False). With
        `remat` only each block's input is kept for the backward pass, which recomputes the rest:
        activation memory of one block instead of L (paper-scale iGSM rows need it on one GPU).
        """
        graphdef, state = nnx.split(self.blocks)

        def layer_fn(layer_state, carry, layer_inputs):
            return body(nnx.merge(graphdef, layer_state), carry, layer_inputs)

        if self.remat:
            layer_fn = jax.checkpoint(layer_fn)
        if self.scan_layers:
            return jax.lax.scan(lambda carry, layer: layer_fn(layer[0], carry, layer[1]), x, (state, per_layer_inputs))
        outputs = []
        for index in range(self.num_layers):
            layer_state, layer_inputs = jax.tree.map(lambda leaf: leaf[index], (state, per_layer_inputs))
            x, output = layer_fn(layer_state, x, layer_inputs)
            outputs.append(output)
        return x, jax.tree.map(lambda *leaves: jnp.stack(leaves), *outputs)

    def __call__(
        self,
        x_BTD: jax.Array,
        dropout_key: jax.Array | None,
        *,
        collect_hidden: bool,
        collect_kv: bool,
        collect_attention: bool = False,
    ):
        """Returns (output, per-layer outputs [L,B,T,D] or None, per-layer caches [L,...] or None,
        per-layer attention probabilities [L,B,H,T,T] or None)."""
        layer_keys = None if dropout_key is None else jax.random.split(dropout_key, self.num_layers)

        def run_block(block: Block, x, key):
            x, kv, weights = block(x, key, return_attention=collect_attention)
            return x, (x if collect_hidden else None, kv if collect_kv else None, weights)

        x_BTD, (hidden, kv, attention) = self._over_layers(run_block, x_BTD, layer_keys)
        return x_BTD, hidden, kv, attention

    def decode(self, x_B1D: jax.Array, position: jax.Array, cache: dict[str, jax.Array]):
        """One token through every layer; cache leaves are [L, B, S, H, Dh]."""
        return self._over_layers(lambda block, x, layer_cache: block.decode(x, position, layer_cache), x_B1D, cache)


class _Transformer(nnx.Module):
    """Embeddings, the block stack and the final norm, shared by GPT and BERT."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        self.dtype = cfg.compute_dtype
        self.token_embed = nnx.Embed(
            cfg.vocab_size,
            cfg.width,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            embedding_init=nnx.initializers.normal(INIT_STDDEV),
            rngs=rngs,
        )
        if cfg.position == "absolute":
            self.position_embed = PositionEmbedding(cfg.max_len, cfg.width, dtype=self.dtype, rngs=rngs)
        self.stack = BlockStack(cfg, dtype=self.dtype, rngs=rngs)
        self.final_norm = make_norm(cfg, dtype=self.dtype, rngs=rngs)

    def _embed(self, tokens_BT: jax.Array, positions_T: jax.Array) -> jax.Array:
        x_BTD = self.token_embed(tokens_BT)
        if self.cfg.position == "absolute":
            x_BTD = x_BTD + self.position_embed(positions_T)[None]
        return x_BTD

    def _check_length(self, seq_len: int) -> None:
        if self.cfg.position in POSITION_TABLE_SCHEMES and seq_len > self.cfg.max_len:
            raise DataError(
                f"sequence length {seq_len} exceeds model.max_len={self.cfg.max_len}, the size of the "
                f"'{self.cfg.position}' position table; raise model.max_len or shorten task.seq_len"
            )

    def head(self, x_BTD: jax.Array) -> jax.Array:
        """Final norm output -> float32 logits [B, T, V]."""
        raise NotImplementedError

    def _tied_logits(self, x_BTD: jax.Array) -> jax.Array:
        embedding_VD = self.token_embed.embedding[...].astype(self.dtype)
        return jnp.einsum("btd,vd->btv", x_BTD, embedding_VD, preferred_element_type=jnp.float32)

    def _run(
        self,
        tokens_BT: jax.Array,
        dropout_key: jax.Array | None,
        *,
        collect_hidden: bool,
        collect_kv: bool,
        collect_attention: bool = False,
    ):
        self._check_length(tokens_BT.shape[1])
        embed_key, stack_key = _split_or_none(dropout_key, 2)
        x_BTD = dropout(self._embed(tokens_BT, jnp.arange(tokens_BT.shape[1])), self.cfg.dropout, embed_key)
        out_BTD, hidden_LBTD, kv, attention_LBHTT = self.stack(
            x_BTD, stack_key, collect_hidden=collect_hidden, collect_kv=collect_kv, collect_attention=collect_attention
        )
        if collect_hidden:
            hidden_LBTD = jnp.concatenate([x_BTD[None], hidden_LBTD], axis=0)
        return out_BTD, hidden_LBTD, kv, attention_LBHTT

    def __call__(
        self,
        tokens_BT: jax.Array,
        *,
        dropout_key: jax.Array | None = None,
        return_hidden: bool = False,
        return_attention: bool = False,
    ):
        """Logits [B, T, V] float32; with return_hidden also hidden states [L+1, B, T, D] (the
        embedding output, then the output of each block, before the final norm); with
        return_attention also each layer's attention probabilities [L, B, H, T, T] float32 (query
        axis before key axis, computed by plain XLA ops). Extras follow the logits in that order."""
        out_BTD, hidden_LBTD, _, attention_LBHTT = self._run(
            tokens_BT, dropout_key, collect_hidden=return_hidden, collect_kv=False, collect_attention=return_attention
        )
        logits_BTV = self.head(self.final_norm(out_BTD))
        extras = (hidden_LBTD,) * return_hidden + (attention_LBHTT,) * return_attention
        return (logits_BTV,) + extras if extras else logits_BTV


class GPT(_Transformer):
    """Causal decoder with an LM head; logits[:, t] predict token t + 1."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        super().__init__(cfg, rngs)
        if not cfg.tie_embeddings:
            self.lm_head = nnx.Linear(
                cfg.width, cfg.vocab_size, use_bias=False, dtype=self.dtype, param_dtype=jnp.float32,
                kernel_init=nnx.initializers.normal(INIT_STDDEV), rngs=rngs,
            )

    def head(self, x_BTD: jax.Array) -> jax.Array:
        if self.cfg.tie_embeddings:
            return self._tied_logits(x_BTD)
        kernel_DV = self.lm_head.kernel[...].astype(self.dtype)
        return jnp.einsum("btd,dv->btv", x_BTD, kernel_DV, preferred_element_type=jnp.float32)

    def prefill(self, tokens_BT: jax.Array) -> dict[str, jax.Array]:
        """The KV cache of a full pass over tokens: {'k','v'} [L, B, T, H, Dh] ('v' only for
        pos/uniform) and each Canon layer's inputs {'canon_A', ...} [L, B, T, C]. Entry t depends
        on tokens <= t only."""
        _, _, cache, _ = self._run(tokens_BT, None, collect_hidden=False, collect_kv=True)
        return cache

    def decode_step(self, tokens_B: jax.Array, position: jax.Array, cache: dict[str, jax.Array]):
        """Feed the token at `position` (scalar, shared by the batch) given a cache holding every
        earlier position; returns (float32 logits [B, V] for position + 1, updated cache)."""
        self._check_length(cache["v"].shape[2])
        x_B1D = self._embed(tokens_B[:, None], jnp.reshape(position, (1,)))
        x_B1D, cache = self.stack.decode(x_B1D, position, cache)
        return self.head(self.final_norm(x_B1D))[:, 0], cache


class BERT(_Transformer):
    """Bidirectional encoder with an MLM head (dense, GELU, LayerNorm, decoder + bias)."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        super().__init__(cfg, rngs)
        dense = dict(dtype=self.dtype, param_dtype=jnp.float32, rngs=rngs)
        self.mlm_dense = nnx.Linear(cfg.width, cfg.width, kernel_init=nnx.initializers.normal(INIT_STDDEV), **dense)
        self.mlm_norm = nnx.LayerNorm(cfg.width, **dense)
        if cfg.tie_embeddings:
            self.mlm_bias = nnx.Param(jnp.zeros((cfg.vocab_size,), jnp.float32))
        else:
            self.mlm_decoder = nnx.Linear(
                cfg.width, cfg.vocab_size, kernel_init=nnx.initializers.normal(INIT_STDDEV), **dense
            )

    def head(self, x_BTD: jax.Array) -> jax.Array:
        x_BTD = self.mlm_norm(jax.nn.gelu(self.mlm_dense(x_BTD)))
        if self.cfg.tie_embeddings:
            return self._tied_logits(x_BTD) + self.mlm_bias[...]
        kernel_DV = self.mlm_decoder.kernel[...].astype(self.dtype)
        logits = jnp.einsum("btd,dv->btv", x_BTD, kernel_DV, preferred_element_type=jnp.float32)
        return logits + self.mlm_decoder.bias[...]


def build_model(cfg: ModelConfig, key_or_rngs: jax.Array | int | nnx.Rngs) -> GPT | BERT:
    """A freshly initialised GPT or BERT; float32 parameters whatever the compute dtype."""
    rngs = key_or_rngs if isinstance(key_or_rngs, nnx.Rngs) else nnx.Rngs(key_or_rngs)
    if cfg.kind == "gpt":
        return GPT(cfg, rngs)
    if cfg.kind == "bert":
        return BERT(cfg, rngs)
    raise ValueError(f"model kind {cfg.kind!r} is not one of {MODEL_KINDS}")


def init_model(cfg: ModelConfig, key: jax.Array) -> tuple[nnx.GraphDef, dict]:
    """Build the model and return its graph definition and its parameters as a pure dict."""
    graphdef, state = nnx.split(build_model(cfg, key))
    return graphdef, nnx.to_pure_dict(state)


def model_graph(cfg: ModelConfig) -> nnx.GraphDef:
    """The model's graph definition, made abstractly: nothing is initialised (an eager init of the
    parameters costs a second or more of op-by-op compiling on CPU)."""
    return nnx.split(nnx.eval_shape(lambda: build_model(cfg, 0)))[0]


def unrolled_graph(graphdef: nnx.GraphDef, params: Any) -> nnx.GraphDef:
    """The graph of the same model with its layers run in a Python loop (scan_layers=False): the
    same parameters and outputs; it compiles to a larger program that runs faster on CPU (15% for
    the 2-layer model of a knowledge run's probes). Made abstractly: nothing is initialised."""
    cfg = nnx.merge(graphdef, params).cfg
    if not cfg.scan_layers:
        return graphdef
    return model_graph(dataclasses.replace(cfg, scan_layers=False))


def apply(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    tokens_BT: jax.Array,
    *,
    dropout_key: jax.Array | None = None,
    return_hidden: bool = False,
    return_attention: bool = False,
):
    """Pure forward pass of a split model: logits [B,T,V] (then hidden [L+1,B,T,D] if return_hidden,
    then attention probabilities [L,B,H,T,T] if return_attention)."""
    model = nnx.merge(graphdef, params)
    return model(tokens_BT, dropout_key=dropout_key, return_hidden=return_hidden, return_attention=return_attention)
