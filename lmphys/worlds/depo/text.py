"""Depo's tokenizer: a closed vocabulary of a few special tokens, one <query_k> per k and the 2V
word tokens, and the token rows of an instance.

Ids: 0 <pad>, 1 <bos>, 2 <ans>, 3 <sep> (the optional edge separator), 4 .. 3+K <query_1> ..
<query_K>, then word token t (1..2V in the release's numbering) at 3 + K + t. The release uses
fixed ids (<bos> 9999, <query_k> 9000+k, <ans> 9500, separator 9700, word tokens 1..2V) in a
10000-entry vocabulary; `released_id` maps ours to those, which the tests use to compare with the
release's printed samples. Depo has no end-of-text token: an instance ends where the next <bos> is.
"""
from __future__ import annotations

import dataclasses

from lmphys.errors import DataError
from lmphys.worlds.depo.data import Instance

PAD, BOS, ANS, SEP = 0, 1, 2, 3
_QUERY0 = 4


@dataclasses.dataclass(frozen=True)
class Encoded:
    """Token ids and loss labels of one instance, and each query's answer as (k, first answer
    position, answer length), positions counted from the instance's <bos>."""

    tokens: list[int]
    labels: list[int]
    answers: list[tuple[int, int, int]]


class Tokenizer:
    def __init__(self, max_hops: int, vocab: int):
        self.max_hops, self.vocab = max_hops, vocab
        self.word_offset = _QUERY0 + max_hops - 1  # word token t -> word_offset + t
        self.vocab_size = self.word_offset + 2 * vocab + 1
        self.pad_id, self.bos_id, self.ans_id, self.sep_id = PAD, BOS, ANS, SEP
        self.eos_id = BOS  # no end token: the next instance's <bos> ends one

    def query_id(self, hops: int) -> int:
        return _QUERY0 + hops - 1

    def word_ids(self, word: tuple[int, ...]) -> list[int]:
        return [self.word_offset + token for token in word]

    def encode(self, instance: Instance, separator: bool = False) -> Encoded:
        tokens = [BOS]
        for index in instance.edge_order:
            if separator:
                tokens.append(SEP)
            tokens += self.word_ids(instance.cycle[index]) + self.word_ids(instance.cycle[(index + 1) % instance.size])
        labels = [0] * len(tokens)
        answers = []
        for query in instance.queries:
            answer = self.word_ids(instance.cycle[query.answer(instance.size)])
            tokens += [self.query_id(query.hops)] + self.word_ids(instance.cycle[query.start]) + [ANS]
            labels += [0] * (len(tokens) - len(labels) - 1) + [1]  # <ans> itself is a target
            answers.append((query.hops, len(tokens), len(answer)))
            tokens += answer
            labels += [1] * len(answer)
        return Encoded(tokens, labels, answers)

    def released_id(self, token: int) -> int:
        """The id the release gives the same token."""
        if token == BOS:
            return 9999
        if token == ANS:
            return 9500
        if token == SEP:
            return 9700
        if _QUERY0 <= token <= self.word_offset:
            return 9000 + token - _QUERY0 + 1
        if self.word_offset < token < self.vocab_size:
            return token - self.word_offset
        raise DataError(f"token id {token} is not in the Depo vocabulary (size {self.vocab_size})")

    def decode(self, tokens: list[int]) -> str:
        """Readable text: word tokens as numbers joined by '.', a word ending at its end-of-word
        token; specials as <bos>, <ans>, <sep>, <query_k>, <pad>."""
        out, word = [], []
        for token in tokens:
            if self.word_offset < token < self.vocab_size:
                word.append(str(token - self.word_offset))
                if token - self.word_offset > self.vocab:
                    out.append(".".join(word))
                    word = []
                continue
            if word:
                out.append(".".join(word) + "~")  # an unfinished word
                word = []
            names = {PAD: "<pad>", BOS: "<bos>", ANS: "<ans>", SEP: "<sep>"}
            out.append(names.get(token) or (f"<query_{token - _QUERY0 + 1}>" if _QUERY0 <= token <= self.word_offset
                                            else f"<?{token}>"))
        if word:
            out.append(".".join(word) + "~")
        return " ".join(out)
