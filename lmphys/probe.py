"""Linear probes on frozen hidden states (Part 1 NT ancestors and boundaries; later Parts 2 and 3).

A probe asks whether a property of a token is *linearly* readable from a layer's residual stream:
one softmax classifier per layer, trained on frozen hidden states [L+1, N, T, D] at the positions a
mask selects, scored on held-out strings. All L+1 probes train together: their parameters are
stacked on a layer axis, the loss is vmapped over it, and one jitted pure AdamW step over
(params, opt_state) runs under `jax.lax.scan`. Features are standardised per layer with the
training positions' statistics, an affine map that leaves the set of linear probes unchanged but
lets one learning rate suit every layer.

Probes that train a low-rank update of the input embeddings along with their heads (P/Q-probing of
Part 3.1 in worlds/bio/probes.py, V-probing of Part 2.1 in worlds/igsm/vprobe.py) share the pieces at the end: the update
E' = E + A @ B, its zero-start initialisation, the forward pass through the updated model, and the
floored standardisation of the frozen model's features.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from lmphys.errors import ConfigError, DataError
from lmphys.models import transformer

ProbeParams = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    """Test accuracy of each layer's probe and what always guessing the commonest label scores."""

    accuracy_per_layer: np.ndarray  # [L+1]: embedding output, then each block's output
    majority_baseline: float  # accuracy on the test positions of the commonest training label
    num_train: int  # training positions
    num_test: int  # test positions

    @property
    def best_layer(self) -> int:
        return int(np.argmax(self.accuracy_per_layer))

    @property
    def best_accuracy(self) -> float:
        return float(np.max(self.accuracy_per_layer))


def _layer_loss(params: ProbeParams, features_BD: jax.Array, labels_B: jax.Array) -> jax.Array:
    logits_BC = features_BD @ params["w"] + params["b"]
    return optax.softmax_cross_entropy_with_integer_labels(logits_BC, labels_B).mean()


def probe_train_step(
    params: ProbeParams,
    opt_state: optax.OptState,
    features_LMD: jax.Array,
    labels_M: jax.Array,
    key: jax.Array,
    *,
    optimizer: optax.GradientTransformation,
    batch: int,
) -> tuple[ProbeParams, optax.OptState, jax.Array]:
    """One AdamW step of every layer's probe on one minibatch of training positions (drawn with
    replacement, the same positions for every layer); returns the mean loss over layers too."""
    index_B = jax.random.randint(key, (batch,), 0, labels_M.shape[0])
    features_LBD, labels_B = features_LMD[:, index_B], labels_M[index_B]

    def total_loss(p):  # layers are independent, so the gradient of the sum is each layer's own
        return jax.vmap(_layer_loss, in_axes=(0, 0, None))(p, features_LBD, labels_B).sum()

    loss, grads = jax.value_and_grad(total_loss)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss / features_LMD.shape[0]


@functools.partial(jax.jit, static_argnames=("num_classes", "steps", "batch", "learning_rate", "weight_decay"))
def _fit_and_score(
    train_LMD: jax.Array,
    train_labels_M: jax.Array,
    test_LKD: jax.Array,
    test_labels_K: jax.Array,
    key: jax.Array,
    *,
    num_classes: int,
    steps: int,
    batch: int,
    learning_rate: float,
    weight_decay: float,
) -> jax.Array:
    """Standardise, train the stacked probes for `steps` steps, return test accuracy per layer [L+1]."""
    mean_L1D = train_LMD.mean(axis=1, keepdims=True)
    scale_L1D = 1.0 / (train_LMD.std(axis=1, keepdims=True) + 1e-6)
    train_LMD, test_LKD = (train_LMD - mean_L1D) * scale_L1D, (test_LKD - mean_L1D) * scale_L1D
    num_layers, _, width = train_LMD.shape
    params = {"w": jnp.zeros((num_layers, width, num_classes)), "b": jnp.zeros((num_layers, num_classes))}
    optimizer = optax.adamw(learning_rate, weight_decay=weight_decay)
    step = functools.partial(probe_train_step, optimizer=optimizer, batch=batch)

    def scan_body(carry, step_key):
        params, opt_state, loss = step(*carry, train_LMD, train_labels_M, step_key)
        return (params, opt_state), loss

    (params, _), _ = jax.lax.scan(scan_body, (params, optimizer.init(params)), jax.random.split(key, steps))
    logits_LKC = jnp.einsum("lkd,ldc->lkc", test_LKD, params["w"]) + params["b"][:, None]
    return (logits_LKC.argmax(-1) == test_labels_K[None]).mean(axis=1)


def train_linear_probes(
    hidden_LNTD: jax.Array | np.ndarray,
    labels_NT: jax.Array | np.ndarray,
    mask_NT: jax.Array | np.ndarray,
    num_classes: int,
    key: jax.Array,
    *,
    steps: int = 300,
    batch: int = 1024,
    learning_rate: float = 1e-2,
    weight_decay: float = 1e-4,
    test_fraction: float = 0.25,
) -> ProbeResult:
    """Train one linear softmax probe per layer on frozen hidden states; score held-out strings.

    hidden_LNTD: [L+1, N, T, D] hidden states of N rows; labels_NT: int labels in [0, num_classes)
    where mask_NT is True (ignored elsewhere). Rows (not positions) are split into train and test,
    so a test string is never partly seen. Returns test accuracy per layer and the majority baseline.
    """
    labels_NT, mask_NT = np.asarray(labels_NT), np.asarray(mask_NT, bool)
    num_rows = labels_NT.shape[0]
    if hidden_LNTD.ndim != 4 or hidden_LNTD.shape[1:3] != labels_NT.shape or mask_NT.shape != labels_NT.shape:
        raise ValueError(f"hidden states {hidden_LNTD.shape} must be [L+1, N, T, D] over labels/mask [N, T] "
                         f"{labels_NT.shape} / {mask_NT.shape}.")
    selected = labels_NT[mask_NT]
    if selected.size and (selected.min() < 0 or selected.max() >= num_classes):
        raise ValueError(f"masked labels must lie in [0, {num_classes}), got {selected.min()}..{selected.max()}.")
    split_key, train_key = jax.random.split(key)
    num_test_rows = min(max(1, round(test_fraction * num_rows)), num_rows - 1)
    is_test_row = np.zeros(num_rows, bool)
    is_test_row[np.asarray(jax.random.permutation(split_key, num_rows))[:num_test_rows]] = True
    train_rows, train_cols = np.nonzero(mask_NT & ~is_test_row[:, None])
    test_rows, test_cols = np.nonzero(mask_NT & is_test_row[:, None])
    if len(train_rows) == 0 or len(test_rows) == 0:
        raise ValueError(f"probe needs masked positions in both splits; got {len(train_rows)} train and "
                         f"{len(test_rows)} test positions from {num_rows} rows.")
    hidden_LNTD = jnp.asarray(hidden_LNTD, jnp.float32)
    train_labels, test_labels = labels_NT[train_rows, train_cols], labels_NT[test_rows, test_cols]
    accuracy = _fit_and_score(
        hidden_LNTD[:, train_rows, train_cols],
        jnp.asarray(train_labels, jnp.int32),
        hidden_LNTD[:, test_rows, test_cols],
        jnp.asarray(test_labels, jnp.int32),
        train_key,
        num_classes=num_classes,
        steps=steps,
        batch=batch,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
    )
    majority = np.bincount(train_labels, minlength=num_classes).argmax()
    return ProbeResult(
        accuracy_per_layer=np.asarray(accuracy),
        majority_baseline=float(np.mean(test_labels == majority)),
        num_train=len(train_labels),
        num_test=len(test_labels),
    )


def split_rows(num_rows: int, train_fraction: float, key: jax.Array) -> tuple[np.ndarray, np.ndarray]:
    """A random split of rows (people, problems) into probe-training and held-out rows, both non-empty."""
    if not 0.0 < train_fraction < 1.0:
        raise ConfigError(f"train_fraction must lie strictly between 0 and 1, got {train_fraction}")
    if num_rows < 2:
        raise DataError(f"probing needs at least 2 rows to split, got {num_rows}")
    order = np.asarray(jax.random.permutation(key, num_rows))
    num_train = min(max(1, round(train_fraction * num_rows)), num_rows - 1)
    return np.sort(order[:num_train]), np.sort(order[num_train:])


def embedding_update(update: dict[str, jax.Array]) -> jax.Array:
    """The rank-r change A @ B [V, D] that an embedding probe adds to the token embeddings."""
    return update["a"] @ update["b"]


def init_embedding_update(key: jax.Array, embedding_VD: jax.Array, rank: int,
                          leading_shape: tuple[int, ...] = ()) -> dict[str, jax.Array]:
    """{"a": zeros [*leading, V, r], "b": random [*leading, r, D] on the embeddings' scale}, so the
    probe starts from the frozen model. A (not B) starts at zero because A has a row per token: a
    token that no training input contains keeps a zero update, instead of a random row times the
    trained B, so held-out inputs with unseen tokens are read through the frozen model there."""
    vocab_size, width = embedding_VD.shape
    return {
        "a": jnp.zeros(leading_shape + (vocab_size, rank)),
        "b": jnp.std(embedding_VD) * jax.random.normal(key, leading_shape + (rank, width)),
    }


def hidden_with_update(graphdef: nnx.GraphDef, params: dict, update: dict[str, jax.Array],
                       tokens_BT: jax.Array) -> jax.Array:
    """Hidden states [L+1, B, T, D] of the model whose token embeddings are moved by `update`."""
    embed = params["token_embed"]
    updated = {**params, "token_embed": {**embed, "embedding": embed["embedding"] + embedding_update(update)}}
    # the logits are unused, so XLA drops the LM head
    _, hidden_LBTD = transformer.apply(graphdef, updated, tokens_BT, return_hidden=True)
    return hidden_LBTD


def standardizer(frozen_ND: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) over the rows axis (-2) of frozen-model features [..., N, D], so that
    (features - mean) * scale has unit variance per dimension. The scale is floored by a tenth of
    the mean standard deviation, so that a dimension the frozen model never varies cannot blow up
    once the embedding update moves it."""
    std_D = frozen_ND.std(axis=-2)
    return frozen_ND.mean(axis=-2), 1.0 / (std_D + 0.1 * std_D.mean(axis=-1, keepdims=True) + 1e-6)
