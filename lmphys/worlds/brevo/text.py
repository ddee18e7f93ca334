"""Brevo's tokenizer and the token rows of an instance.

Ids: 0 <pad>, 1 <bos>, 2 <query>, 3 <ans>, 4 <eos>, then name token t (release numbering: a
vertex id 1..N in Brevo1, a word token 1..2V in Brevo2) at 4 + t. The paper's format has four
distinct special tokens; the release gives <ans> and <eos> the same id (9998 = bos - 1, with
<query> 9997 and <bos> 9999). lmphys keeps them apart (a deliberate difference: a model's
<eos> then never reads as a second <ans>); `released_id` maps ours to the release's.
"""
from __future__ import annotations

import dataclasses

from lmphys.errors import DataError
from lmphys.worlds.brevo.data import Instance, Spec

PAD, BOS, QUERY, ANS, EOS = 0, 1, 2, 3, 4
_NAME0 = 4  # name token t -> _NAME0 + t


@dataclasses.dataclass(frozen=True)
class Encoded:
    """Token ids and loss labels of one instance; `prompt_len` tokens run up to and including <ans>."""

    tokens: list[int]
    labels: list[int]
    prompt_len: int


class Tokenizer:
    def __init__(self, spec: Spec):
        self.multi, self.vocab = spec.multi, spec.vocab
        self.vocab_size = _NAME0 + spec.name_tokens + 1
        self.pad_id, self.bos_id, self.query_id, self.ans_id, self.eos_id = PAD, BOS, QUERY, ANS, EOS

    def name_ids(self, name: tuple[int, ...]) -> list[int]:
        return [_NAME0 + token for token in name]

    def encode(self, instance: Instance) -> Encoded:
        tokens = [BOS]
        for parent, child in instance.edges:
            tokens += self.name_ids(instance.names[parent]) + self.name_ids(instance.names[child])
        tokens += [QUERY] + self.name_ids(instance.names[instance.query]) + [ANS]
        prompt_len = len(tokens)
        for node in instance.answer:
            tokens += self.name_ids(instance.names[node])
        tokens.append(EOS)
        labels = [0] * (prompt_len - 1) + [1] * (len(tokens) - prompt_len + 1)  # <ans>, the answer, <eos>
        return Encoded(tokens, labels, prompt_len)

    def is_name(self, token: int) -> bool:
        return _NAME0 < token < self.vocab_size

    def names_in(self, tokens: list[int]) -> tuple[list[tuple[int, ...]], bool]:
        """(names, whole): the names the tokens spell (release numbering). Brevo1: one token per
        name; Brevo2: a word ends at its end-of-word token (> V). A token that is no name token
        stays in as -id, so the name it is part of names no vertex (as in the release's parser);
        `whole` is False when tokens are left after the last finished word (the release drops them)."""
        names, word = [], []
        for token in tokens:
            value = token - _NAME0 if self.is_name(token) else -token
            if not self.multi:
                names.append((value,))
                continue
            word.append(value)
            if value > self.vocab:
                names.append(tuple(word))
                word = []
        return names, not word

    def released_id(self, token: int) -> int:
        if token in (ANS, EOS):
            return 9998
        if token == BOS:
            return 9999
        if token == QUERY:
            return 9997
        if self.is_name(token):
            return token - _NAME0
        raise DataError(f"token id {token} is not in the Brevo vocabulary (size {self.vocab_size})")

    def decode(self, tokens: list[int]) -> str:
        names = {PAD: "<pad>", BOS: "<bos>", QUERY: "<query>", ANS: "<ans>", EOS: "<eos>"}
        out, word = [], []
        for token in tokens:
            if self.is_name(token):
                value = token - _NAME0
                if not self.multi:
                    out.append(str(value))
                else:
                    word.append(str(value))
                    if value > self.vocab:
                        out.append(".".join(word))
                        word = []
                continue
            if word:
                out.append(".".join(word) + "~")
                word = []
            out.append(names.get(token, f"<?{token}>"))
        if word:
            out.append(".".join(word) + "~")
        return " ".join(out)
