"""Value cloze: has a masked-LM encoder memorised its biographies? (Part 3.1, the encoder comparison)

The paper's encoder finding is that knowledge stored by whole-word MLM is not *extractable*. To
read that off a probe, one must first know the encoder stored the knowledge at all. The cloze asks
the encoder's own MLM head: in each person's first biography every token of one attribute's value
is replaced by the mask, and the value counts as recalled when the argmax at every masked token is
the true token (the first token alone is reported too). Every person is a trained one: pretraining
has no held-out people, so this measures memorisation, not generalisation. One attribute is masked
at a time, the rest of the biography (name included) stays visible.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lmphys.errors import ConfigError, DataError
from lmphys.models import transformer
from lmphys.worlds.bio import pieces, text
from lmphys.worlds.bio.people import ATTRIBUTES

_CHUNK = 64  # rows per forward pass


def cloze_rows(documents: text.Documents, attribute: int, *, bos_id: int, pad_id: int,
               mask_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each person's first biography as BOS + document with `attribute`'s value masked: the rows
    [N, T], the masked columns [N, T] (bool) and the original rows [N, T]."""
    if len(documents) == 0:
        raise DataError("the cloze needs at least one biography")
    _, first = documents.first_of_each_person()
    spans_N2 = np.asarray(documents.value_spans)[first, attribute] + 1  # + 1 for the BOS
    original = text.bos_rows([np.asarray(documents.document(int(d))) for d in first], bos_id, pad_id)
    columns = np.arange(original.shape[1])[None]
    masked = (columns >= spans_N2[:, :1]) & (columns < spans_N2[:, 1:])
    return np.where(masked, mask_id, original).astype(np.int32), masked, original


def value_cloze(graphdef: nnx.GraphDef, params: Any, documents: text.Documents) -> dict[str, float]:
    """{"<attribute>": whole value recalled, "<attribute>.first_token": its first token} over the
    people of `documents` (module docstring). Encoders only: a decoder has no MLM head."""
    if nnx.merge(graphdef, params).cfg.causal:
        raise ConfigError("the value cloze is for masked-LM encoders; a decoder's logits predict the next token")
    tokenizer = pieces.tokenizer()
    forward = jax.jit(lambda tokens: transformer.apply(graphdef, params, tokens).argmax(-1))
    result: dict[str, float] = {}
    for a, attribute in enumerate(ATTRIBUTES):
        rows, masked, original = cloze_rows(documents, a, bos_id=tokenizer.bos_id, pad_id=tokenizer.pad_id,
                                            mask_id=tokenizer.mask_id)
        predicted = np.concatenate([np.asarray(forward(jnp.asarray(_padded_chunk(rows, start))))[:min(_CHUNK, len(rows) - start)]
                                    for start in range(0, len(rows), _CHUNK)])
        result[attribute], result[f"{attribute}.first_token"] = recalled(predicted, original, masked)
    return result


def recalled(predicted_NT: np.ndarray, original_NT: np.ndarray, masked_NT: np.ndarray) -> tuple[float, float]:
    """The share of rows whose every masked token is predicted right, and whose first masked one is."""
    right_NT = (predicted_NT == original_NT) | ~masked_NT
    first_column_N = masked_NT.argmax(axis=1)
    return float(np.mean(right_NT.all(axis=1))), float(np.mean(right_NT[np.arange(len(right_NT)), first_column_N]))


def _padded_chunk(rows: np.ndarray, start: int) -> np.ndarray:
    """Rows [start, start + _CHUNK), padded with copies of the last row to one fixed shape (one program)."""
    chunk = rows[start:start + _CHUNK]
    if len(chunk) < _CHUNK:
        chunk = np.concatenate([chunk, np.repeat(chunk[-1:], _CHUNK - len(chunk), axis=0)])
    return chunk


def mean_whole_value(cloze: dict[str, float]) -> float:
    """The headline: whole-value recall averaged over the six attributes."""
    return float(np.mean([cloze[attribute] for attribute in ATTRIBUTES]))
