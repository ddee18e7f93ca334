"""Properties of the model zoo: causality, bidirectionality, position schemes, KV-cache decoding,
scan vs unrolled layers, mixed precision and the pure split/merge apply the training loop uses."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lmphys.errors import ConfigError, DataError
from lmphys.models.attention import POSITION_SCHEMES, Attention, apply_rope, rotary_dims
from lmphys.models.decode import generate
from lmphys.models.transformer import (
    BERT,
    GPT,
    ModelConfig,
    apply,
    build_model,
    unrolled_graph,
)
from lmphys.models.sizes import flops_per_token, num_params

VOCAB = 13
SEQ = 10


def tiny(kind="gpt", position="rope", **overrides) -> ModelConfig:
    fields = dict(
        kind=kind, vocab_size=VOCAB, num_layers=2, num_heads=4, width=32, max_len=SEQ,
        position=position, dtype="float32",
    )
    fields.update(overrides)
    return ModelConfig(**fields)


def split(cfg: ModelConfig, seed: int = 0):
    return nnx.split(build_model(cfg, jax.random.key(seed)))


def tokens(batch=2, seq=SEQ, seed=1):
    return jax.random.randint(jax.random.key(seed), (batch, seq), 0, VOCAB)


forward = jax.jit(apply, static_argnames="return_hidden")
sample = jax.jit(generate, static_argnames=("greedy", "eos_id"))


@pytest.mark.parametrize("position", POSITION_SCHEMES)
def test_gpt_is_causal(position):
    graphdef, params = split(tiny(position=position))
    changed_at = 4
    before = tokens()
    after = before.at[:, changed_at].set((before[:, changed_at] + 1) % VOCAB)
    logits_before, logits_after = forward(graphdef, params, before), forward(graphdef, params, after)
    np.testing.assert_array_equal(logits_before[:, :changed_at], logits_after[:, :changed_at])
    later_change = jnp.abs(logits_before[:, changed_at:] - logits_after[:, changed_at:]).max(axis=-1)
    assert (later_change[:, 0] > 1e-6).all(), "the changed position's own output must move"
    assert (later_change > 1e-7).all(), "every later position sees the changed token"


@pytest.mark.parametrize("position", POSITION_SCHEMES)
def test_bert_sees_both_directions(position):
    graphdef, params = split(tiny(kind="bert", position=position))
    before = tokens()
    after = before.at[:, -1].set((before[:, -1] + 1) % VOCAB)
    first_change = jnp.abs(forward(graphdef, params, before)[:, 0] - forward(graphdef, params, after)[:, 0])
    assert (first_change.max(axis=-1) > 1e-6).all()


@pytest.mark.parametrize("kind", ["gpt", "bert"])
def test_hidden_states_shape_and_reproduce_logits(kind):
    cfg = tiny(kind=kind, num_layers=3)
    model = build_model(cfg, jax.random.key(0))
    logits, hidden = model(tokens(), return_hidden=True)
    assert logits.dtype == jnp.float32 and logits.shape == (2, SEQ, VOCAB)
    assert hidden.shape == (cfg.num_layers + 1, 2, SEQ, cfg.width)
    np.testing.assert_allclose(model.head(model.final_norm(hidden[-1])), logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(hidden[0], model.token_embed(tokens()), rtol=1e-6)


@pytest.mark.parametrize("position", ["relative", "uniform"])
def test_scan_and_unrolled_layers_agree(position):
    scanned, unrolled = tiny(position=position, dropout=0.2), tiny(position=position, dropout=0.2, scan_layers=False)
    graphdef_scan, params = split(scanned)
    graphdef_loop, params_loop = split(unrolled)
    jax.tree.map(np.testing.assert_array_equal, params, params_loop)
    for key in (None, jax.random.key(5)):
        out_scan = forward(graphdef_scan, params, tokens(), dropout_key=key, return_hidden=True)
        out_loop = forward(graphdef_loop, params, tokens(), dropout_key=key, return_hidden=True)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), out_scan, out_loop)
    # the unrolled graph of a scanned model, made without initialising anything, is the unrolled model's
    made = unrolled_graph(graphdef_scan, params)
    assert made == graphdef_loop and unrolled_graph(graphdef_loop, params) is graphdef_loop


def test_remat_gives_the_same_loss_and_gradients():
    plain, remat = tiny(dropout=0.2), tiny(dropout=0.2, remat=True)
    graphdef_plain, params = split(plain)
    graphdef_remat, _ = split(remat)

    def loss(graphdef, p):
        return forward(graphdef, p, tokens(), dropout_key=jax.random.key(3)).astype(jnp.float32).std()

    value_plain, grads_plain = jax.value_and_grad(lambda p: loss(graphdef_plain, p))(params)
    value_remat, grads_remat = jax.value_and_grad(lambda p: loss(graphdef_remat, p))(params)
    np.testing.assert_allclose(value_plain, value_remat, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7), grads_plain, grads_remat)


def test_partial_rope_rotates_only_its_share():
    head_dim, fraction = 16, 0.25
    rot = rotary_dims(head_dim, fraction)
    assert rot == 4
    q = jax.random.normal(jax.random.key(0), (1, 1, 2, head_dim))
    k = jax.random.normal(jax.random.key(1), (1, 1, 2, head_dim))

    def at(x, position):
        return apply_rope(x, jnp.array([position]), rot, 10000.0)

    # Dims past the rotary share are untouched at every position; the rotary share keeps its norm
    # but moves, and its q.k depends on the positions only through their difference.
    for position in (0, 3, 17):
        np.testing.assert_array_equal(at(q, position)[..., rot:], q[..., rot:])
        np.testing.assert_allclose(jnp.linalg.norm(at(q, position)[..., :rot]), jnp.linalg.norm(q[..., :rot]), rtol=1e-5)
    assert jnp.abs(at(q, 3)[..., :rot] - q[..., :rot]).max() > 1e-2
    dot = lambda a, b: (a[..., :rot] * b[..., :rot]).sum(-1)
    np.testing.assert_allclose(dot(at(q, 7), at(k, 2)), dot(at(q, 12), at(k, 7)), rtol=1e-4, atol=1e-5)
    assert jnp.abs(dot(at(q, 7), at(k, 2)) - dot(at(q, 7), at(k, 6))).max() > 1e-3

    attention = Attention(
        64, 4, position="rope", causal=True, max_len=8, rope_fraction=fraction, rope_base=10000.0,
        relative_max_distance=4, num_layers=1, dtype=jnp.float32, rngs=nnx.Rngs(0),
    )
    assert attention.rot_dims == rot


@pytest.mark.parametrize("causal", [True, False])
def test_uniform_attention_averages_the_stated_windows(causal):
    num_heads, head_dim, seq = 4, 2, 12
    width = num_heads * head_dim
    attention = Attention(
        width, num_heads, position="uniform", causal=causal, max_len=seq, rope_fraction=1.0, rope_base=1e4,
        relative_max_distance=4, num_layers=1, dtype=jnp.float32, rngs=nnx.Rngs(0),
    )
    # Identity value/output maps make the output the per-head average of the inputs themselves.
    for dense in (attention.value, attention.out):
        dense.kernel[...] = jnp.eye(width)
        dense.bias[...] = jnp.zeros(width)
    assert {path for path, _ in nnx.to_flat_state(nnx.state(attention, nnx.Param))} == {
        ("value", "kernel"), ("value", "bias"), ("out", "kernel"), ("out", "bias")
    }
    x = jax.random.normal(jax.random.key(0), (1, seq, width))
    out, _ = attention(x)
    x_heads = np.asarray(x).reshape(seq, num_heads, head_dim)
    for h in range(num_heads):
        for i in range(seq):
            if causal:
                window = range(max(0, i - (2 ** (h + 1) - 1) + 1), i + 1)
            else:
                window = range(max(0, i - 2**h + 1), min(seq, i + 2**h))
            expected = x_heads[list(window), h].mean(axis=0)
            np.testing.assert_allclose(out[0, i, h * head_dim:(h + 1) * head_dim], expected, rtol=1e-5, atol=1e-6)


def naive_greedy(graphdef, params, prompts, prompt_lengths):
    """Re-run the full forward pass for every new token and take the argmax."""
    out = np.array(prompts)
    out[np.arange(out.shape[1])[None, :] >= np.asarray(prompt_lengths)[:, None]] = 0
    for position in range(int(min(prompt_lengths)) - 1, out.shape[1] - 1):
        predicted = np.asarray(jnp.argmax(forward(graphdef, params, jnp.asarray(out))[:, position], axis=-1))
        generating = position + 1 >= np.asarray(prompt_lengths)
        out[generating, position + 1] = predicted[generating]
    return out


@pytest.mark.parametrize("position", POSITION_SCHEMES)
def test_kv_cache_greedy_equals_naive_decoding(position):
    cfg = tiny(position=position, num_heads=2, relative_max_distance=3)
    model = build_model(cfg, jax.random.key(0))
    graphdef, params = nnx.split(model)
    prompts, prompt_lengths = tokens(batch=3, seed=2), jnp.array([2, 5, 3])
    np.testing.assert_array_equal(
        sample(graphdef, params, prompts, prompt_lengths, jax.random.key(0), greedy=True),
        naive_greedy(graphdef, params, prompts, prompt_lengths),
    )
    # Stronger than matching argmaxes: every decode step reproduces the full forward logits.
    full_logits = model(prompts)
    prefill = jax.jit(lambda p, t: nnx.merge(graphdef, p).prefill(t))
    decode_step = jax.jit(lambda p, t, i, c: nnx.merge(graphdef, p).decode_step(t, i, c))
    cache = prefill(params, jnp.zeros_like(prompts))
    for position_t in range(SEQ):
        step_logits, cache = decode_step(params, prompts[:, position_t], jnp.int32(position_t), cache)
        np.testing.assert_allclose(step_logits, full_logits[:, position_t], rtol=1e-4, atol=1e-5)


def test_unrolled_layers_decode_like_naive():
    graphdef, params = split(tiny(position="absolute", scan_layers=False))
    prompts, prompt_lengths = tokens(batch=2, seed=3), jnp.array([1, 4])
    np.testing.assert_array_equal(
        sample(graphdef, params, prompts, prompt_lengths, jax.random.key(0), greedy=True),
        naive_greedy(graphdef, params, prompts, prompt_lengths),
    )


def test_sampling_keeps_prompts_and_is_deterministic_per_key():
    graphdef, params = split(tiny(), seed=4)
    prompts, prompt_lengths = tokens(batch=4, seed=5), jnp.array([1, 3, 6, SEQ])
    first = sample(graphdef, params, prompts, prompt_lengths, jax.random.key(7), temperature=3.0)
    again = sample(graphdef, params, prompts, prompt_lengths, jax.random.key(7), temperature=3.0)
    other = sample(graphdef, params, prompts, prompt_lengths, jax.random.key(8), temperature=3.0)
    np.testing.assert_array_equal(first, again)
    assert (first != other).any()
    for row, length in enumerate(np.asarray(prompt_lengths)):
        np.testing.assert_array_equal(first[row, :length], prompts[row, :length])


def test_eos_stops_rows_and_zero_fills():
    graphdef, params = split(tiny(position="none"), seed=6)
    prompts, prompt_lengths = tokens(batch=3, seed=7), jnp.array([2, 3, 2])
    free = np.asarray(sample(graphdef, params, prompts, prompt_lengths, jax.random.key(0), greedy=True))
    eos_id = int(free[0, 2])  # row 0 emits it right after its prompt
    stopped = np.asarray(sample(graphdef, params, prompts, prompt_lengths, jax.random.key(0), greedy=True, eos_id=eos_id))
    for row, length in enumerate(np.asarray(prompt_lengths)):
        hits = np.nonzero(free[row, length:] == eos_id)[0]
        end = length + hits[0] + 1 if len(hits) else SEQ
        np.testing.assert_array_equal(stopped[row, :end], free[row, :end])
        assert (stopped[row, end:] == 0).all()


def test_bert_cannot_generate():
    graphdef, params = split(tiny(kind="bert"))
    with pytest.raises(ConfigError, match="gpt"):
        generate(graphdef, params, tokens(), jnp.array([2, 2]), jax.random.key(0))


def test_position_tables_reject_long_sequences():
    graphdef, params = split(tiny(position="absolute"))
    with pytest.raises(DataError, match="max_len"):
        apply(graphdef, params, tokens(seq=SEQ + 1))


def test_bfloat16_compute_with_float32_params():
    cfg = tiny(num_layers=2, dtype="bfloat16")
    graphdef, params = split(cfg)
    assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
    logits = forward(graphdef, params, tokens())
    reference = forward(*split(dataclasses.replace(cfg, dtype="float32")), tokens())
    assert logits.dtype == jnp.float32
    scale = float(jnp.abs(reference).max())
    assert float(jnp.abs(logits - reference).max()) < 0.03 * scale


def test_pure_apply_dropout_and_param_only_state():
    cfg = tiny(dropout=0.3)
    model = build_model(cfg, jax.random.key(0))
    assert not jax.tree.leaves(nnx.state(model, nnx.Not(nnx.Param)))
    graphdef, params = nnx.split(model)
    clean = forward(graphdef, params, tokens())
    np.testing.assert_array_equal(clean, forward(graphdef, params, tokens()))
    noisy = forward(graphdef, params, tokens(), dropout_key=jax.random.key(1))
    np.testing.assert_array_equal(noisy, forward(graphdef, params, tokens(), dropout_key=jax.random.key(1)))
    assert jnp.abs(noisy - clean).max() > 1e-4
    # K models at once: vmap the pure apply over stacked parameters.
    stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), params, split(cfg, seed=1)[1])
    both = jax.vmap(lambda p: apply(graphdef, p, tokens()))(stacked)
    np.testing.assert_allclose(both[0], clean, rtol=1e-5, atol=1e-6)


def test_param_count_and_flops():
    cfg = tiny(num_layers=2, width=32, mlp_ratio=4)
    D, L, V = 32, 2, VOCAB
    per_layer = 2 * D + (3 * D * D + 3 * D) + (D * D + D) + 2 * D + (4 * D * D + 4 * D) + (4 * D * D + D)
    assert num_params(split(cfg)[1]) == V * D + L * per_layer + 2 * D
    matmuls = L * 12 * D * D + D * V
    assert flops_per_token(cfg, 0) == 6 * matmuls
    assert flops_per_token(cfg, 64) - flops_per_token(cfg, 0) == 6 * L * 64 * D  # causal: halved
    assert isinstance(build_model(cfg, 0), GPT) and isinstance(build_model(tiny(kind="bert"), 0), BERT)
    # SwiGLU: three D x H matrices (H = 85 here); Canon-ABCD: 2 x 4 FLOPs per channel and token
    # over D + 3D + D + 2H channels, x3 for training.
    gated = tiny(num_layers=2, width=32, mlp="swiglu", canon="ABCD")
    assert flops_per_token(gated, 0) == 6 * (L * (4 * D * D + 3 * D * 85) + D * V) + 3 * L * 8 * (5 * D + 2 * 85)


def test_from_config_reads_the_default_model_section():
    from configs.default import get_config

    model_cfg = get_config().model
    cfg = ModelConfig.from_config(model_cfg, vocab_size=7)
    assert cfg.vocab_size == 7 and cfg.position == model_cfg.position and cfg.num_layers == model_cfg.num_layers
    assert cfg.attention_impl == "auto"


@pytest.mark.parametrize(
    "kind,position", [("gpt", scheme) for scheme in POSITION_SCHEMES] + [("bert", "rope"), ("bert", "uniform")]
)
def test_attention_weights_are_distributions_and_causal(kind, position):
    cfg = tiny(kind=kind, position=position)
    graphdef, params = split(cfg)
    inputs = tokens()
    forward_with_attention = jax.jit(apply, static_argnames="return_attention")
    logits, attention = forward_with_attention(graphdef, params, inputs, return_attention=True)
    assert attention.shape == (cfg.num_layers, 2, cfg.num_heads, SEQ, SEQ) and attention.dtype == jnp.float32
    np.testing.assert_allclose(attention.sum(-1), 1.0, rtol=1e-5)
    future = np.triu(np.ones((SEQ, SEQ), bool), k=1)
    if kind == "gpt":
        assert np.all(np.asarray(attention)[..., future] == 0)
    else:
        assert np.any(np.asarray(attention)[..., future] > 0)
    # the weights come from the forward pass itself, which still gives the same logits
    np.testing.assert_allclose(logits, forward(graphdef, params, inputs), rtol=1e-5, atol=1e-5)
    if position == "uniform":
        from lmphys.models.attention import uniform_weights

        positions = jnp.arange(SEQ)
        expected = uniform_weights(positions, positions, cfg.num_heads, cfg.causal)
        np.testing.assert_array_equal(attention[1, 0], expected)
