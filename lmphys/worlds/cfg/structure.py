"""Part 1 structure analysis: does a model trained on a CFG encode the derivation trees?

Physics of LMs Part 1 probes the frozen hidden states of a trained GPT with linear classifiers and
finds that (a) at the end of each level-l subtree (an "NT boundary") the level-l non-terminal is
linearly decodable, (b) whether a token ends a level-l subtree is decodable too, and (c) attention
goes from an NT boundary to the previous boundary of the same level, much like a dynamic-programming
parser. `analyze_structure` measures the three on fresh labelled strings from `cfg.sample_with_labels`;
`compare_with_random_init` does the same for a freshly initialised model of the same architecture,
the baseline that separates what training taught from what random features already expose.

The attention baseline (an earlier string token drawn uniformly) is loose: recency alone beats it, as
the fixed windows of the `uniform` scheme show; read the ratio next to the random-init model's.

Rows are BOS + string + EOS, 0-padded; string token t sits at row position t + 1, so every label is
shifted by one. The root level (l = 0) is skipped: its ancestor is constant and it ends only at the
last token.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lmphys.errors import DataError
from lmphys.models import transformer
from lmphys.probe import train_linear_probes
from lmphys.worlds.cfg.grammar import Grammar
from lmphys.worlds.cfg.sampler import sample_with_labels
from lmphys.worlds.cfg.task import CFGTask, document_rows


@dataclasses.dataclass(frozen=True)
class LabelledRows:
    """Model inputs with the derivation labels of every string token (see the module docstring)."""

    tokens_NT: np.ndarray  # BOS + string + EOS, 0-padded
    lengths_N: np.ndarray  # string lengths (without BOS and EOS)
    ancestors_NLT: np.ndarray  # [N, num_levels - 1, T]: each position's level-l ancestor, -1 off the string
    ends_NLT: np.ndarray  # [N, num_levels - 1, T]: the token ends its level-l subtree

    @property
    def string_mask_NT(self) -> np.ndarray:
        return self.ancestors_NLT[:, 0] >= 0


def labelled_rows(grammar: Grammar, key: jax.Array, num_strings: int, seq_len: int) -> LabelledRows:
    """num_strings fresh strings that fit a row of seq_len tokens with BOS and EOS (longer ones are
    skipped, never cut: a cut string would have subtrees without an end)."""
    room = seq_len - 2
    draws = num_strings if grammar.max_len <= room else 4 * num_strings
    tokens, lengths, ancestors, ends = (np.asarray(x) for x in sample_with_labels(grammar, key, draws))
    keep = np.flatnonzero(lengths <= room)[:num_strings]
    if len(keep) < num_strings:
        raise DataError(f"only {len(keep)} of {draws} {grammar.name} strings fit seq_len={seq_len} with BOS and "
                        f"EOS; ask for fewer strings or a longer seq_len (strings reach {grammar.max_len} tokens).")
    tokens, lengths, ancestors, ends = tokens[keep], lengths[keep], ancestors[keep], ends[keep]
    rows = document_rows(grammar, tokens, lengths, seq_len)
    width = min(grammar.max_len, room)
    row_ancestors = np.full((len(keep), ancestors.shape[1], seq_len), -1, np.int32)
    row_ancestors[:, :, 1:width + 1] = ancestors[:, :, :width]
    row_ends = np.zeros((len(keep), ends.shape[1], seq_len), bool)
    row_ends[:, :, 1:width + 1] = ends[:, :, :width]
    return LabelledRows(rows, lengths, row_ancestors, row_ends)


@functools.partial(jax.jit, static_argnames=("return_attention",))
def _forward(graphdef: nnx.GraphDef, params: Any, tokens_BT: jax.Array, return_attention: bool):
    return transformer.apply(graphdef, params, tokens_BT, return_hidden=True, return_attention=return_attention)[1:]


def _boundary_pairs(ends_NT: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, position i, previous boundary j) for every boundary that has an earlier one in its row."""
    rows, cols = np.nonzero(ends_NT)  # row-major, so positions ascend within a row
    same_row = rows[1:] == rows[:-1]
    return rows[1:][same_row], cols[1:][same_row], cols[:-1][same_row]


def _attention_masses(attention_LBHTT: np.ndarray, ends_BT: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Summed over boundary pairs (i, j): attention a_ij to the previous boundary [L, H], and the mean
    attention from i to its earlier string tokens 1..i-1 (BOS and i itself excluded) [L, H]."""
    rows, i, j = _boundary_pairs(ends_BT)
    to_previous = attention_LBHTT[:, rows, :, i, j]  # advanced indices first: [P, L, H]
    to_self, to_bos = attention_LBHTT[:, rows, :, i, i], attention_LBHTT[:, rows, :, i, 0]
    to_random = (1.0 - to_self - to_bos) / np.maximum(i - 1, 1)[:, None, None]
    return to_previous.sum(0), to_random.sum(0), len(rows)


def analyze_structure(
    graphdef: nnx.GraphDef,
    params: Any,
    grammar: Grammar,
    key: jax.Array,
    *,
    num_strings: int = 256,
    seq_len: int | None = None,
    batch_size: int = 128,
    probe_steps: int = 300,
) -> dict[str, Any]:
    """Probe a frozen model for the derivation trees of `grammar` (Part 1; see the module docstring).

    seq_len defaults to the longest string + BOS + EOS, capped at the model's max_len. Returns a dict:
      levels                        the probed non-terminal levels 1 .. num_levels - 2
      nt_ancestor_acc[l]            best-layer test accuracy of predicting the level-l ancestor at the
                                    positions that end a level-l subtree; *_per_layer[l] [L+1];
                                    nt_ancestor_majority[l] the commonest-symbol baseline
      nt_boundary_acc[l]            best-layer accuracy of "this token ends a level-l subtree" over all
                                    string positions; *_per_layer[l] [L+1]; nt_boundary_majority[l]
      attention_to_prev_boundary[l] GPT only, [L, H]: mean attention from each level-l boundary (with an
                                    earlier one) to the previous level-l boundary
      attention_to_random_earlier[l] [L, H]: the same boundaries' mean attention to an earlier string
                                    token drawn uniformly (BOS and the token itself excluded)
      attention_ratio_max[l]        max over layers and heads of the ratio of the two
      num_strings, seq_len          what was measured
    """
    model_cfg = nnx.merge(graphdef, params).cfg
    seq_len = seq_len or min(grammar.max_len + 2, model_cfg.max_len)
    data_key, probe_key = jax.random.split(key)
    rows = labelled_rows(grammar, data_key, num_strings, seq_len)
    causal = model_cfg.causal
    levels = list(range(1, grammar.num_levels - 1))

    hidden_chunks = []
    attention_chunks = {level: [] for level in levels}  # per chunk: summed masses and pair count
    for start in range(0, len(rows.tokens_NT), batch_size):
        chunk = slice(start, start + batch_size)
        hidden, *attention = _forward(graphdef, params, jnp.asarray(rows.tokens_NT[chunk]), causal)
        hidden_chunks.append(np.asarray(hidden))
        if causal:
            attention_LBHTT = np.asarray(attention[0])
            for level in levels:
                attention_chunks[level].append(_attention_masses(attention_LBHTT, rows.ends_NLT[chunk, level]))
    hidden_LNTD = np.concatenate(hidden_chunks, axis=1)

    result: dict[str, Any] = {"levels": levels, "num_strings": len(rows.tokens_NT), "seq_len": seq_len}
    for name in ("nt_ancestor", "nt_boundary"):
        for suffix in ("acc", "acc_per_layer", "majority"):
            result[f"{name}_{suffix}"] = {}
    for level in levels:
        ancestor_key, boundary_key = jax.random.split(jax.random.fold_in(probe_key, level))
        ends_NT = rows.ends_NLT[:, level]
        probes = {
            "nt_ancestor": train_linear_probes(
                hidden_LNTD, np.maximum(rows.ancestors_NLT[:, level], 0), ends_NT, grammar.sizes[level],
                ancestor_key, steps=probe_steps),
            "nt_boundary": train_linear_probes(
                hidden_LNTD, ends_NT.astype(np.int32), rows.string_mask_NT, 2, boundary_key, steps=probe_steps),
        }
        for name, probe in probes.items():
            result[f"{name}_acc"][level] = probe.best_accuracy
            result[f"{name}_acc_per_layer"][level] = probe.accuracy_per_layer
            result[f"{name}_majority"][level] = probe.majority_baseline
    if causal:
        result["attention_to_prev_boundary"], result["attention_to_random_earlier"] = {}, {}
        result["attention_ratio_max"] = {}
        for level in levels:
            previous, random, count = (sum(values) for values in zip(*attention_chunks[level]))
            if count == 0:
                continue
            previous, random = previous / count, random / count
            result["attention_to_prev_boundary"][level] = previous
            result["attention_to_random_earlier"][level] = random
            # a head that never looks back (uniform window 1) gives 0 / 0: count it as no preference
            ratio = np.divide(previous, random, out=np.where(previous > 0, np.inf, 0.0), where=random > 0)
            result["attention_ratio_max"][level] = float(ratio.max())
    return result


def compare_with_random_init(
    graphdef: nnx.GraphDef,
    params: Any,
    grammar: Grammar,
    key: jax.Array,
    *,
    init_key: jax.Array | None = None,
    **analysis_kwargs: Any,
) -> dict[str, dict[str, Any]]:
    """{"trained": analyze_structure(model), "random_init": the same for a fresh model of the same
    architecture (from init_key, default key(0))}, on the same strings and probe splits."""
    model_cfg = nnx.merge(graphdef, params).cfg
    random_graphdef, random_params = transformer.init_model(model_cfg, jax.random.key(0) if init_key is None else init_key)
    return {
        "trained": analyze_structure(graphdef, params, grammar, key, **analysis_kwargs),
        "random_init": analyze_structure(random_graphdef, random_params, grammar, key, **analysis_kwargs),
    }


def _jsonable(tree: Any) -> Any:
    """Arrays to lists and integer keys to strings, so results go into result.json as they are."""
    if isinstance(tree, dict):
        return {str(name): _jsonable(value) for name, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_jsonable(value) for value in tree]
    if isinstance(tree, (np.ndarray, jax.Array)):
        return np.asarray(tree).tolist()
    if isinstance(tree, np.generic):
        return tree.item()
    return tree


def summarize(comparison: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The report's scalars per level l: ancestor / boundary probe accuracy of the trained model and
    of random init, and (decoders) the strongest head's attention ratio to the previous boundary."""
    trained, baseline = comparison["trained"], comparison["random_init"]
    summary = {}
    for level in trained["levels"]:
        for name in ("nt_ancestor", "nt_boundary"):
            summary[f"{name}_L{level}"] = trained[f"{name}_acc"][level]
            summary[f"{name}_L{level}_random_init"] = baseline[f"{name}_acc"][level]
        if level in trained.get("attention_ratio_max", {}):
            summary[f"attention_ratio_L{level}"] = trained["attention_ratio_max"][level]
            summary[f"attention_ratio_L{level}_random_init"] = baseline["attention_ratio_max"][level]
    return summary


def analyze_run(task: CFGTask, graphdef: Any, params: Any, *, num_strings: int = 256, seed: int = 0) -> dict[str, Any]:
    """The structure analysis of a run's trained model (its task, graph and parameters) against its
    random-init twin, as a JSON-ready dict {"summary": scalars, "trained": ..., "random_init": ...}."""
    grammar = task.grammar
    comparison = compare_with_random_init(
        graphdef, params, grammar, jax.random.key(seed), num_strings=num_strings,
        seq_len=min(grammar.max_len + 2, task.seq_len),
    )
    return _jsonable({"summary": summarize(comparison), **comparison})
