"""The value cloze (encoders): each row masks exactly one attribute's value, the score counts a
value only when every masked token is right, and a decoder is refused."""
import jax
import numpy as np
import pytest

from lmphys.errors import ConfigError
from lmphys.models import transformer
from lmphys.worlds import bio
from lmphys.worlds.bio import cloze, pieces, text

TOKENIZER = pieces.tokenizer()


@pytest.fixture(scope="module")
def documents():
    people = bio.sample_people(5, 40)
    return text.biographies(people, 5)


def test_rows_mask_exactly_the_value_of_each_persons_first_biography(documents):
    first = np.unique(np.asarray(documents.person), return_index=True)[1]
    for a in range(len(bio.ATTRIBUTES)):
        rows, masked, original = cloze.cloze_rows(documents, a, bos_id=TOKENIZER.bos_id, pad_id=TOKENIZER.pad_id,
                                                  mask_id=TOKENIZER.mask_id)
        for n, d in enumerate(first):
            doc = np.asarray(documents.document(int(d)))
            start, end = np.asarray(documents.value_spans)[d, a]
            assert original[n, 0] == TOKENIZER.bos_id
            np.testing.assert_array_equal(original[n, 1:1 + len(doc)], doc)
            np.testing.assert_array_equal(np.flatnonzero(masked[n]), np.arange(start, end) + 1)
            assert np.all(rows[n, masked[n]] == TOKENIZER.mask_id)
            np.testing.assert_array_equal(rows[n, ~masked[n]], original[n, ~masked[n]])
            assert not np.any(doc == TOKENIZER.mask_id)


def test_a_value_counts_only_when_every_masked_token_is_right():
    original = np.array([[1, 5, 6, 7, 2], [1, 8, 9, 3, 2], [1, 4, 4, 4, 2]])
    masked = np.array([[0, 1, 1, 0, 0], [0, 0, 1, 1, 0], [0, 1, 0, 0, 0]], bool)
    assert cloze.recalled(original, original, masked) == (1.0, 1.0)
    wrong_second = original.copy()
    wrong_second[0, 2] = 0  # row 0: first masked token right, second wrong
    wrong_second[1, 0] = 0  # an unmasked token does not count
    assert cloze.recalled(wrong_second, original, masked) == pytest.approx((2 / 3, 1.0))
    wrong_first = original.copy()
    wrong_first[2, 1] = 0
    assert cloze.recalled(wrong_first, original, masked) == pytest.approx((2 / 3, 2 / 3))


def test_an_encoder_gets_every_attribute_and_a_decoder_is_refused(documents):
    def tiny(kind):
        cfg = transformer.ModelConfig(kind=kind, vocab_size=TOKENIZER.vocab_size, num_layers=1, num_heads=2,
                                      width=16, max_len=128)
        return transformer.init_model(cfg, jax.random.key(0))

    result = cloze.value_cloze(*tiny("bert"), documents)
    assert list(result) == [name for a in bio.ATTRIBUTES for name in (a, f"{a}.first_token")]
    assert all(0.0 <= value <= 1.0 for value in result.values())
    assert all(result[a] <= result[f"{a}.first_token"] for a in bio.ATTRIBUTES)
    assert 0.0 <= cloze.mean_whole_value(result) <= 1.0
    with pytest.raises(ConfigError, match="encoders"):
        cloze.value_cloze(*tiny("gpt"), documents)
