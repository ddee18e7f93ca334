"""Mano's tokenizer: <bos>, the operators, the 23 values and a <len_l> and <ans_l> per length, each
special and operator token with a second, interchangeable id for knowledge augmentation.

Ids: 0 <pad>, 1 <bos>, 2 <bos'>, then + + ' - -' * *' / /' at 3..10, values 0..22 at 11..33, and
for each l = 1..L: <len_l> <len_l'> <ans_l> <ans_l'> at 34 + 4(l-1) ... The release's ids:
<bos> 9999 / 9998, operators 1..4 / 5..8, value v 5000 + v, <len_l> 10l / 10l + 1, <ans_l>
10l + 4 / 10l + 5 (`released_id`). Mano has no end token: the next <bos> ends an instance.
"""
from __future__ import annotations

import dataclasses

from lmphys.errors import DataError
from lmphys.worlds.mano.data import MODULUS, OPERATORS, Instance

PAD, BOS, BOS_ALT = 0, 1, 2
_OP0 = 3
_VALUE0 = _OP0 + 2 * len(OPERATORS)  # 11
_LENGTH0 = _VALUE0 + MODULUS  # 34


@dataclasses.dataclass(frozen=True)
class Encoded:
    tokens: list[int]
    labels: list[int]  # all 1: Mano trains on every token

    @property
    def answer_position(self) -> int:
        return len(self.tokens) - 1


class Tokenizer:
    def __init__(self, max_ops: int):
        self.max_ops = max_ops
        self.vocab_size = _LENGTH0 + 4 * max_ops
        self.pad_id, self.bos_id = PAD, BOS
        self.eos_id = BOS  # no end token

    def op_id(self, op: str, alternate: bool) -> int:
        return _OP0 + 2 * OPERATORS.index(op) + int(alternate)

    def value_id(self, value: int) -> int:
        return _VALUE0 + value

    def length_id(self, length: int, alternate: bool) -> int:
        return _LENGTH0 + 4 * (length - 1) + int(alternate)

    def answer_id(self, length: int, alternate: bool) -> int:
        return _LENGTH0 + 4 * (length - 1) + 2 + int(alternate)

    def encode(self, instance: Instance) -> Encoded:
        if instance.length > self.max_ops:
            raise DataError(f"an expression with {instance.length} operators needs max_ops >= {instance.length}")
        tokens = [BOS_ALT if instance.bos_alt else BOS, self.length_id(instance.length, instance.len_alt)]
        for item in instance.items:
            tokens.append(self.op_id(item[1], item[2]) if item[0] == "op" else self.value_id(item[1]))
        tokens += [self.answer_id(instance.length, instance.ans_alt), self.value_id(instance.value)]
        return Encoded(tokens, [1] * len(tokens))

    def released_id(self, token: int) -> int:
        if token in (BOS, BOS_ALT):
            return 9999 - (token == BOS_ALT)
        if _OP0 <= token < _VALUE0:
            index, alternate = divmod(token - _OP0, 2)
            return index + 1 + 4 * alternate
        if _VALUE0 <= token < _LENGTH0:
            return 5000 + token - _VALUE0
        if _LENGTH0 <= token < self.vocab_size:
            index, kind = divmod(token - _LENGTH0, 4)
            return 10 * (index + 1) + (4 if kind >= 2 else 0) + kind % 2
        raise DataError(f"token id {token} is not in the Mano vocabulary (size {self.vocab_size})")

    def value_of(self, token: int) -> int | None:
        """The value a token writes, or None for a non-value token."""
        return token - _VALUE0 if _VALUE0 <= token < _LENGTH0 else None

    def decode(self, tokens: list[int]) -> str:
        out = []
        for token in tokens:
            if token in (BOS, BOS_ALT):
                out.append("<bos>" if token == BOS else "<bos'>")
            elif _OP0 <= token < _VALUE0:
                index, alternate = divmod(token - _OP0, 2)
                out.append(OPERATORS[index] + "'" * alternate)
            elif _VALUE0 <= token < _LENGTH0:
                out.append(str(token - _VALUE0))
            elif _LENGTH0 <= token < self.vocab_size:
                index, kind = divmod(token - _LENGTH0, 4)
                out.append(f"<{'ans' if kind >= 2 else 'len'}_{index + 1}{chr(39) * (kind % 2)}>")
            else:
                out.append("<pad>" if token == PAD else f"<?{token}>")
        return " ".join(out)
