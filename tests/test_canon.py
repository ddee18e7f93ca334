"""Canon layers and Part 4.1's block options (lmphys/models/canon.py, transformer.py, attention.py):
the layer is causal and is the per-position sum it claims, each placement letter acts where it
should and is residual, KV-cache decoding carries the convolution state, the options validate, and
the default block is today's block unchanged."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lmphys.config import load_config_file
from lmphys.errors import ConfigError
from lmphys.models.canon import KERNEL_SIZE, Canon
from lmphys.models.sizes import num_params
from lmphys.models.transformer import ModelConfig, apply, build_model
from lmphys.train.run_config import validate

VOCAB, SEQ = 13, 10
forward = jax.jit(apply)


def tiny(**overrides) -> ModelConfig:
    fields = dict(kind="gpt", vocab_size=VOCAB, num_layers=2, num_heads=4, width=32, max_len=SEQ, dtype="float32")
    fields.update(overrides)
    return ModelConfig(**fields)


def tokens(batch=2, seed=1):
    return jax.random.randint(jax.random.key(seed), (batch, SEQ), 0, VOCAB)


def test_canon_equals_the_naive_per_position_sum_and_its_init():
    channels = 6
    layer = Canon(channels, rngs=nnx.Rngs(0))
    kernel = np.asarray(layer.kernel[...])
    assert kernel.shape == (KERNEL_SIZE, channels)
    assert np.abs(kernel).max() <= 0.5 and kernel.std() > 0.15  # U(-0.5, 0.5), not a 0.02 init
    x = np.asarray(jax.random.normal(jax.random.key(1), (2, 9, channels)))
    expected = np.zeros_like(x)
    for t in range(x.shape[1]):
        expected[:, t] = x[:, t]  # the residual
        for lag in range(KERNEL_SIZE):
            if t - lag >= 0:
                expected[:, t] += kernel[lag] * x[:, t - lag]
    np.testing.assert_allclose(layer(jnp.asarray(x)), expected, rtol=1e-5, atol=1e-6)


def test_canon_is_causal_and_reaches_back_three_positions():
    layer = Canon(5, rngs=nnx.Rngs(2))
    x = jax.random.normal(jax.random.key(3), (1, 12, 5))
    changed_at = 6
    moved = jnp.abs(layer(x.at[:, changed_at].add(1.0)) - layer(x)).max(axis=-1)[0]
    assert (moved[:changed_at] == 0).all()
    assert (moved[changed_at:changed_at + KERNEL_SIZE] > 0).all()
    assert (moved[changed_at + KERNEL_SIZE:] == 0).all()


def test_canon_decode_steps_equal_the_full_sequence():
    layer = Canon(5, rngs=nnx.Rngs(4))
    x = jax.random.normal(jax.random.key(5), (2, 7, 5))
    history = jnp.full((2, 7, 5), 99.0)  # entries at and after the position may hold anything
    for position in range(7):
        out, history = layer.decode(x[:, position:position + 1], jnp.int32(position), history)
        np.testing.assert_allclose(out[:, 0], layer(x)[:, position], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(history, x)


def _zero_canon(params):
    """The same parameters with every Canon kernel set to zero."""
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: jnp.zeros_like(leaf) if "canon" in jax.tree_util.keystr(path) else leaf, params
    )


def _without_canon(pure_params):
    """A pure parameter dict with the Canon entries removed (a Canon-free model's tree)."""
    if not isinstance(pure_params, dict):
        return pure_params
    return {name: _without_canon(value) for name, value in pure_params.items() if not str(name).startswith("canon")}


@pytest.mark.parametrize("placement", ["A", "B", "C", "D"])
def test_each_placement_is_residual_and_changes_the_output(placement):
    cfg = tiny(canon=placement, position="none")
    model = build_model(cfg, jax.random.key(0))
    graphdef, params = nnx.split(model)
    plain_graphdef, plain_params = nnx.split(build_model(tiny(position="none"), jax.random.key(0)))
    # Zeroed Canon weights leave only the residual: exactly the Canon-free model on the same weights.
    nnx.replace_by_pure_dict(plain_params, _without_canon(nnx.to_pure_dict(params)))
    zeroed = forward(graphdef, _zero_canon(params), tokens())
    np.testing.assert_allclose(zeroed, forward(plain_graphdef, plain_params, tokens()), rtol=1e-6, atol=1e-6)
    assert jnp.abs(forward(graphdef, params, tokens()) - zeroed).max() > 1e-3


def test_placements_sit_where_the_letters_say():
    # A and C take the width, B the q|k|v channels (v alone without keys), D the MLP input outputs.
    cfg = tiny(canon="ABCD", mlp="swiglu")
    blocks = nnx.to_pure_dict(nnx.split(build_model(cfg, jax.random.key(0)))[1])["stack"]["blocks"]
    assert blocks["canon_a"]["kernel"].shape == (2, KERNEL_SIZE, 32)
    assert blocks["attention"]["canon_b"]["kernel"].shape == (2, KERNEL_SIZE, 96)
    assert blocks["canon_c"]["kernel"].shape == (2, KERNEL_SIZE, 32)
    assert blocks["canon_d"]["kernel"].shape == (2, KERNEL_SIZE, 2 * cfg.mlp_width)
    uniform = nnx.to_pure_dict(nnx.split(build_model(tiny(canon="B", position="uniform"), 0))[1])
    assert uniform["stack"]["blocks"]["attention"]["canon_b"]["kernel"].shape == (2, KERNEL_SIZE, 32)
    # Canon-A feeds only attention and Canon-C only the MLP: a one-layer model whose attention
    # output is zeroed no longer depends on Canon-A's weights, but still on Canon-C's.
    one = tiny(num_layers=1, canon="AC", position="none")
    graphdef, params = nnx.split(build_model(one, jax.random.key(1)))
    pure = nnx.to_pure_dict(params)
    attention = pure["stack"]["blocks"]["attention"]
    attention["out"] = jax.tree.map(jnp.zeros_like, attention["out"])
    base = forward(graphdef, pure, tokens())
    for point, moves in (("canon_a", False), ("canon_c", True)):
        changed = jax.tree.map(lambda leaf: leaf, pure)
        changed["stack"]["blocks"][point]["kernel"] = pure["stack"]["blocks"][point]["kernel"] + 0.3
        assert (jnp.abs(forward(graphdef, changed, tokens()) - base).max() > 1e-4) == moves, point


def test_canon_b_takes_the_qk_normed_projections_before_rope():
    # The input Canon-B records for decoding is what it convolves: in the first layer that is the
    # q|k|v projection of the normed embeddings with QK-norm applied and no rotation yet.
    model = build_model(tiny(canon="B", qk_norm=True, position="rope"), jax.random.key(2))
    recorded = model.prefill(tokens())["canon_B"][0]
    graphdef, params = nnx.split(model.stack.blocks)
    block = nnx.merge(graphdef, jax.tree.map(lambda leaf: leaf[0], params))
    q, k, v = jnp.split(block.attention.qkv(block.attention_norm(model.token_embed(tokens()))), 3, axis=-1)
    expected = jnp.concatenate([block.attention.query_norm(q), block.attention.key_norm(k), v], axis=-1)
    np.testing.assert_allclose(recorded, expected, rtol=1e-5, atol=1e-6)
    assert jnp.abs(recorded[..., :32] - q).max() > 1e-2  # the QK-norm did act


@pytest.mark.parametrize("options", [
    dict(),
    dict(norm="rmsnorm", mlp="swiglu", qk_norm=True, bias=False),  # the Llama-style block of Part 4.1
    dict(position="none", mlp="swiglu"),
    dict(position="uniform", num_heads=2),
])
def test_canon_model_is_causal_and_decodes_like_the_full_forward(options):
    cfg = tiny(canon="ABCD", **options)
    model = build_model(cfg, jax.random.key(0))
    graphdef, params = nnx.split(model)
    before = tokens(batch=3, seed=2)
    changed_at = 5
    after = before.at[:, changed_at].set((before[:, changed_at] + 1) % VOCAB)
    full = forward(graphdef, params, before)
    np.testing.assert_array_equal(full[:, :changed_at], forward(graphdef, params, after)[:, :changed_at])
    prefill = jax.jit(lambda p, t: nnx.merge(graphdef, p).prefill(t))
    decode_step = jax.jit(lambda p, t, i, c: nnx.merge(graphdef, p).decode_step(t, i, c))
    # Start from a prefill of other tokens: the step must overwrite what it reads.
    cache = prefill(params, after)
    for position in range(SEQ):
        step_logits, cache = decode_step(params, before[:, position], jnp.int32(position), cache)
        np.testing.assert_allclose(step_logits, full[:, position], rtol=1e-4, atol=1e-5)


def test_greedy_generation_with_canon_matches_rerunning_the_forward():
    from lmphys.models.decode import generate

    cfg = tiny(canon="ABCD", norm="rmsnorm", mlp="swiglu", scan_layers=False)
    graphdef, params = nnx.split(build_model(cfg, jax.random.key(3)))
    prompts, lengths = tokens(batch=3, seed=4), jnp.array([2, 6, 4])
    generated = np.asarray(jax.jit(generate, static_argnames="greedy")(
        graphdef, params, prompts, lengths, jax.random.key(0), greedy=True))
    expected = np.array(prompts)
    expected[np.arange(SEQ)[None, :] >= np.asarray(lengths)[:, None]] = 0
    for position in range(1, SEQ - 1):
        predicted = np.asarray(jnp.argmax(forward(graphdef, params, jnp.asarray(expected))[:, position], axis=-1))
        free = position + 1 >= np.asarray(lengths)
        expected[free, position + 1] = predicted[free]
    np.testing.assert_array_equal(generated, expected)


def test_scan_unrolled_and_stacked_models_agree_with_canon():
    scanned = tiny(canon="ABCD", mlp="swiglu", qk_norm=True)
    graphdef, params = nnx.split(build_model(scanned, jax.random.key(0)))
    loop_graphdef, loop_params = nnx.split(build_model(tiny(canon="ABCD", mlp="swiglu", qk_norm=True,
                                                            scan_layers=False), jax.random.key(0)))
    jax.tree.map(np.testing.assert_array_equal, params, loop_params)
    single = forward(graphdef, params, tokens())
    np.testing.assert_allclose(forward(loop_graphdef, params, tokens()), single, rtol=1e-5, atol=1e-6)
    other = nnx.split(build_model(scanned, jax.random.key(1)))[1]
    stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), params, other)
    both = jax.vmap(lambda p: apply(graphdef, p, tokens()))(stacked)
    np.testing.assert_allclose(both[0], single, rtol=1e-5, atol=1e-6)
    assert jnp.abs(both[1] - single).max() > 1e-3


def test_block_options_change_the_parameters_as_documented():
    D, L = 32, 2
    default = num_params(nnx.split(build_model(tiny(), 0))[1])
    no_bias = num_params(nnx.split(build_model(tiny(bias=False), 0))[1])
    # biases: qkv 3D, out D, mlp_in 4D, mlp_out D, two LayerNorm offsets per block, the final one
    assert default - no_bias == L * (3 * D + D + 4 * D + D + 2 * D) + D
    rms = num_params(nnx.split(build_model(tiny(norm="rmsnorm"), 0))[1])
    assert default - rms == L * 2 * D + D  # RMSNorm has a scale and no offset
    swiglu_cfg = tiny(mlp="swiglu", bias=False)
    assert swiglu_cfg.mlp_width == 85  # int(2 * 4 * 32) // 3, the released code's 8D/3
    swiglu = num_params(nnx.split(build_model(swiglu_cfg, 0))[1])
    assert swiglu - no_bias == L * (3 * D * 85 - 2 * D * 4 * D)  # within 0.4% of the GELU MLP
    qk = num_params(nnx.split(build_model(tiny(qk_norm=True), 0))[1])
    assert qk - default == L * 2 * D
    canon = num_params(nnx.split(build_model(tiny(canon="ABCD"), 0))[1])
    assert canon - default == L * KERNEL_SIZE * (D + 3 * D + D + 4 * D)


def test_the_default_block_is_unchanged():
    # Pinned from the model before the Part 4.1 options existed (commit 0c34f89): same tree, same
    # initial parameters, same logits.
    model = build_model(tiny(), jax.random.key(0))
    params = nnx.split(model)[1]
    paths = {"/".join(map(str, path)) for path, _ in nnx.to_flat_state(params)}
    assert paths == {
        "final_norm/bias", "final_norm/scale", "token_embed/embedding",
        *(f"stack/blocks/{name}" for name in (
            "attention/out/bias", "attention/out/kernel", "attention/qkv/bias", "attention/qkv/kernel",
            "attention_norm/bias", "attention_norm/scale", "mlp_in/bias", "mlp_in/kernel",
            "mlp_norm/bias", "mlp_norm/scale", "mlp_out/bias", "mlp_out/kernel")),
    }
    assert num_params(params) == 25888
    logits = model(tokens())
    np.testing.assert_allclose(float(jnp.abs(logits).sum()), 34.06521224975586, rtol=1e-5)
    np.testing.assert_allclose([float(logits[0, -1, 0]), float(logits[1, 3, 5])],
                               [-0.03937651589512825, -0.15288689732551575], rtol=1e-4)


@pytest.mark.parametrize("field,value", [
    ("canon", "ABCD"), ("canon", "CA"), ("canon", ""), ("norm", "rmsnorm"), ("mlp", "swiglu"),
    ("qk_norm", True), ("bias", False),
])
def test_every_block_option_validates(field, value):
    config = load_config_file("configs/default.py")
    config.model[field] = value
    validate(config)
    assert getattr(ModelConfig.from_config(config.model, vocab_size=7), field) == value


@pytest.mark.parametrize("changes,words", [
    ({"canon": "ABE"}, ["model.canon", "A, B, C, D"]),
    ({"canon": "AA"}, ["model.canon", "at most once"]),
    ({"canon": "A", "kind": "bert"}, ["model.canon", "'gpt'"]),
    ({"norm": "batchnorm"}, ["model.norm", "layernorm, rmsnorm"]),
    ({"mlp": "relu"}, ["model.mlp", "gelu, swiglu"]),
    ({"qk_norm": True, "position": "uniform"}, ["model.qk_norm", "no queries or keys"]),
])
def test_a_bad_block_option_is_one_sentence(changes, words):
    config = load_config_file("configs/default.py")
    if changes.get("kind") == "bert":
        config.task.objective = "mlm"
    for field, value in changes.items():
        config.model[field] = value
    with pytest.raises(ConfigError) as error:
        validate(config)
    message = str(error.value)
    assert "\n" not in message and message.count(". ") == 0
    for word in words:
        assert word in message
