"""Mano instances (Part 4.1, "knowledge manipulation"): mod-23 arithmetic in prefix notation,
answered without intermediate steps, drawn as the authors' released generator draws them.

Released definition (facebookresearch/PhysicsLM4, data-synthetic-pretrain/Mano/mano.py,
`encode_pure_arithmetic` and its module settings; facts and numbers only, the code is lmphys's own):
- the length l (the number of operators) is uniform over the given lengths: 1..L for training
  (L = 10, 13 or 16 in the paper), exactly L for testing;
- an expression with l operators: a leaf (l = 0) is a value uniform in 0..22; otherwise an operator
  uniform over `ops` (released: + - *; "/" is the modular inverse, an option), a left size l1
  uniform in 0..l-1, the left and right subexpressions (l1 and l-1-l1 operators), and then which
  of the operator's two ids it is written with (without knowledge augmentation the release still
  draws, from a one-element list, which moves the generator state: kept);
- before each expression l+1 values are drawn and never used (kept: they move the generator state);
  an expression whose value is undefined (a division by 0) is drawn again;
- the text: <bos> <len_l> expression <ans_l> value, 2l + 5 tokens; with knowledge augmentation
  (released default True) <bos>, <len_l>, <ans_l> and each operator have two interchangeable ids,
  each picked with probability 1/2. The loss counts every token.
"""
from __future__ import annotations

import dataclasses
import random

MODULUS = 23
OPERATORS = "+-*/"
_OPS_OF = {"a": "+", "s": "-", "m": "*", "d": "/"}  # the release's `ttype` letters


def ops_from_letters(letters: str) -> tuple[str, ...]:
    """The release's `ttype` ("asm": + - *, add "d" for /) as operators, in its order."""
    return tuple(_OPS_OF[letter] for letter in "asmd" if letter in letters)


@dataclasses.dataclass(frozen=True)
class Spec:
    max_ops: int  # L
    ops: tuple[str, ...] = ("+", "-", "*")
    knowledge_augment: bool = True


@dataclasses.dataclass(frozen=True)
class Instance:
    """One expression: `items` in prefix order, each ("op", symbol, alternate id?) or ("value", v)."""

    length: int  # l, the number of operators (and the <len_l> / <ans_l> it is written with)
    items: tuple[tuple, ...]
    value: int
    bos_alt: bool
    len_alt: bool
    ans_alt: bool


def apply(op: str, left: int | None, right: int | None) -> int | None:
    """op(left, right) mod 23; None if undefined (a part undefined, or division by 0)."""
    if left is None or right is None:
        return None
    if op == "+":
        return (left + right) % MODULUS
    if op == "-":
        return (left - right) % MODULUS
    if op == "*":
        return (left * right) % MODULUS
    return None if right == 0 else (left * pow(right, -1, MODULUS)) % MODULUS


def _expression(rng: random.Random, ops: tuple[str, ...], size: int, augment: bool) -> tuple[list[tuple], int | None]:
    if size == 0:
        value = rng.randint(0, MODULUS - 1)
        return [("value", value)], value
    op = rng.choice(ops)
    left_size = rng.randint(0, size - 1)
    left, left_value = _expression(rng, ops, left_size, augment)
    right, right_value = _expression(rng, ops, size - 1 - left_size, augment)
    # The release lists the alternate id first, and without augmentation still picks from a
    # one-element list: random.choice then consumes random bits all the same.
    alternate = rng.choice((True, False) if augment else (False,))
    return [("op", op, alternate)] + left + right, apply(op, left_value, right_value)


def draw(rng: random.Random, spec: Spec, lengths: tuple[int, ...] | None = None) -> Instance:
    """One instance with l uniform over `lengths` (default 1..L), the release's draws in its order."""
    lengths = lengths or tuple(range(1, spec.max_ops + 1))
    length = lengths[rng.randint(0, len(lengths) - 1)]
    while True:
        for _ in range(length + 1):
            rng.randint(0, MODULUS - 1)  # drawn and unused in the release
        items, value = _expression(rng, spec.ops, length, spec.knowledge_augment)
        if value is not None:
            break
    augment = spec.knowledge_augment
    bos_alt = augment and rng.randint(0, 1) == 1
    len_alt = augment and rng.randint(0, 1) == 1
    ans_alt = augment and rng.randint(0, 1) == 1
    return Instance(length, tuple(items), value, bos_alt, len_alt, ans_alt)


def evaluate_prefix(items: tuple[tuple, ...] | list[tuple]) -> int | None:
    """The value of a prefix expression, computed again from its items (a check of `draw`)."""
    stack: list[int | None] = []
    for item in reversed(items):
        if item[0] == "value":
            stack.append(item[1])
        else:
            left, right = stack.pop(), stack.pop()
            stack.append(apply(item[1], left, right))
    if len(stack) != 1:
        raise ValueError("not one whole prefix expression")
    return stack[0]
