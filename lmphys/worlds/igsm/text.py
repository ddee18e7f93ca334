"""The words of iGSM (Part 2.1): the closed tokenizer, and a world's problem, question and solution
rendered straight to token ids in the released generator's wording (facebookresearch/iGSM,
`Problem.parse`, `Problem.to_sol`; written for lmphys).

Every item and category name is one token, so "Riverview High's Film Studio" is three tokens
(item, 's, item); numbers 0..22 and the 52 letters are tokens too.
  problem   "The number of each Sam's Club's Milk equals 5 more than the sum of each Albertsons's
             Coffee and each Medical District's Sam's Club." One sentence per stated parameter:
             "equals N", "equals each X's Y" (a copy), "N more than" / "N times as much as" over one
             reference or a combination, "the sum of" 2-4 references ("A, B and C"), "the
             difference of A and B". "each" comes before every reference, abstract ones too.
  question  "How many Milk does Sam's Club have?" (no "each")
  solution  one step per necessary parameter, one operation per equation, helper letters for the
             partial sums and products of a left fold: "Define Robotics Lab's Backpack as H; so H =
             Z + k = 14 + 14 = 5. Define School Daypack's Watercolor Paint as A; J = H - Z = 5 - 14 =
             14; so A = 18 * J = 18 * 14 = 22." then "<ans> 22" (the released answer after its own
             separator token; there is no "The answer is" sentence). The number of a modifier comes
             first; a single term has no numeric part ("so Z = k = 14", "so k = 14").
Letters are drawn without replacement from the 52 for the whole solution, helpers before their
step's own letter (post-order). Retry data (Part 2.2) puts "Define <wrong parameter> as [BACK]."
before a step (the released word BACK is the [BACK] token here).
"""
from __future__ import annotations

import functools
import random
import re
import string
from typing import Sequence

import numpy as np

from lmphys.errors import DataError
from lmphys.worlds.igsm.graph import ABSTRACT, INSTANCE, MOD, RNG, World, apply_operator, categories

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<mask>", "<sol>", "[BACK]", "<probe>", "<probe_sep>", "<probe_end>",
                  "<ans>")
LETTERS = tuple(string.ascii_lowercase + string.ascii_uppercase)
NUMBERS = tuple(str(n) for n in range(MOD))
PUNCTUATION = (".", ",", ";", "?", "'s", "=", "+", "-", "*")
_ATTACHED = {".", ",", ";", "?", "'s"}  # written without a space before them
WORDS = ("The", "number", "of", "each", "equals", "more", "than", "times", "as", "much", "the", "sum",
         "difference", "and", "How", "many", "does", "have", "Define", "so")
RETRY_KINDS = ("retry", "weak", "miss")


class Tokenizer:
    """Closed vocabulary: special tokens, numbers, letters, punctuation, template words, then every
    category and item name. `encode(decode(ids)) == ids` for every rendered problem."""

    pad_id, bos_id, eos_id, mask_id, sol_id, back_id, probe_id, probe_sep_id, probe_end_id, ans_id = range(10)

    def __init__(self):
        hierarchies, pools = categories()
        names = sorted({layer for layers in hierarchies for layer in layers}
                       | {item for groups in pools.values() for group in groups for item in group})
        vocab = list(SPECIAL_TOKENS) + list(NUMBERS) + list(LETTERS) + list(PUNCTUATION) + list(WORDS)
        vocab += [name for name in names if name not in set(vocab)]
        self.vocab = tuple(vocab)
        self.ids = {token: index for index, token in enumerate(self.vocab)}
        self._attached = np.array([token in _ATTACHED for token in self.vocab])
        # Longest first, so "Caudal Vertebrae 10" wins over "Caudal Vertebrae 1"; a token must end
        # where the text does, at a space, or before attached punctuation.
        alternatives = "|".join(re.escape(token) for token in sorted(self.vocab, key=len, reverse=True))
        self._token = re.compile(f"(?:{alternatives})(?=$|[ .,;?]|'s)")

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def decode(self, ids: Sequence[int]) -> str:
        """Tokens joined by spaces, except that . , ; ? 's attach to the token before them."""
        parts: list[str] = []
        for token_id in np.asarray(ids).tolist():
            token = self.vocab[token_id]
            if parts and self._attached[token_id]:
                parts[-1] += token
            else:
                parts.append(token)
        return " ".join(parts)

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        position, end = 0, len(text)
        while position < end:
            if text[position] == " ":
                position += 1
                continue
            match = self._token.match(text, position)
            if not match:
                raise DataError(f"cannot tokenize {text[position:position + 30]!r}: not an iGSM token")
            ids.append(self.ids[match.group()])
            position = match.end()
        return ids


@functools.lru_cache(maxsize=1)
def tokenizer() -> Tokenizer:
    return Tokenizer()


# A solution expression: a parameter reference ("param", p), a number ("num", n), or an operation
# (op, left, right) with op in + - * (sums of three or more terms are left folds).
Expression = tuple


def definition(world: World, param) -> Expression:
    """The expression a solution step writes for `param` (the released sketch after `simplify` and
    `binarify`): a modifier's number first, sums folded from the left."""
    kind, i, j, k = param
    if kind == INSTANCE:
        sentence = world.sentences[param]
        if sentence.combine == "constant":
            return ("num", sentence.number)
        refs = [("param", ref) for ref in sentence.refs]
        inner = _fold("-" if sentence.combine == "diff" else "+", refs)
        if not sentence.modifier:
            return inner
        return ("+" if sentence.modifier == "add" else "*", ("num", sentence.number), inner)
    kids = world.children.get((i, j), ())
    if k == i + 1:
        terms = [("param", (INSTANCE, i, j, x)) for x in kids]
    else:
        terms = [("*", ("param", (INSTANCE, i, j, x)), ("param", (ABSTRACT, i + 1, x, k))) for x in kids]
    return _fold("+", terms) if terms else ("num", 0)


def _fold(operator: str, terms: list) -> Expression:
    out = terms[0]
    for term in terms[1:]:
        out = (operator, out, term)
    return out


class Renderer:
    """Token ids of a world's sentences (one per tokenizer; the id lookups are cached)."""

    def __init__(self, tok: Tokenizer):
        self.tok = tok
        self.id = tok.ids
        self.s_id = tok.ids["'s"]
        self.each_id = tok.ids["each"]
        self.numbers = [tok.ids[n] for n in NUMBERS]
        self.letters = [tok.ids[letter] for letter in LETTERS]
        words = ("The number of", "more than", "times as much as", "the sum of", "the difference of",
                 "How many", "equals", "and", "does", "have", "Define", "as", "so")
        self.w = {phrase: [tok.ids[word] for word in phrase.split()] for phrase in words}
        self._opening = self.w["The number of"] + [self.each_id]  # of every problem sentence
        self._semicolon, self._stop, self._equals = tok.ids[";"], tok.ids["."], tok.ids["="]

    def name(self, world: World, param) -> list[int]:
        """"item 's other" (World.name written out: this runs for every name of every sentence)."""
        kind, i, j, k = param
        items, ids = world.items, self.id
        return [ids[items[i][j]], self.s_id, ids[items[i + 1][k] if kind == INSTANCE else world.layers[k]]]

    def problem_sentence(self, world: World, param) -> list[int]:
        sentence = world.sentences[param]
        w, name, each = self.w, self.name, self.each_id
        ids = self._opening + name(world, param) + w["equals"]
        if sentence.combine == "constant":
            ids += [self.numbers[sentence.number], self.id["."]]
            return ids
        if sentence.modifier:
            ids.append(self.numbers[sentence.number])
            ids += w["more than" if sentence.modifier == "add" else "times as much as"]
        refs = sentence.refs
        if sentence.combine == "single":
            ids.append(each)
            ids += name(world, refs[0])
        else:  # "A, B and C"
            ids += w["the difference of" if sentence.combine == "diff" else "the sum of"]
            last = len(refs) - 1
            for position, ref in enumerate(refs):
                if position == last:
                    ids += w["and"]
                ids.append(each)
                ids += name(world, ref)
                if position < last - 1:
                    ids.append(self.id[","])
        ids.append(self.id["."])
        return ids

    def question(self, world: World, param) -> list[int]:
        item, other = world.name(param)
        return self.w["How many"] + [self.id[other]] + self.w["does"] + [self.id[item]] + self.w["have"] + [self.id["?"]]

    def solution(self, world: World, steps: Sequence, rng: random.Random) -> tuple[list[int], list[int], dict]:
        """(token ids, the index of each step's closing ".", param -> letter id) of the solution
        `steps`, letters drawn from `rng` as the released `get_symbol` draws them."""
        pool = list(self.letters)
        letter: dict = {}
        ids: list[int] = []
        ends: list[int] = []
        step = self.step
        for param in steps:
            ids += step(world, param, letter, pool, rng)
            ends.append(len(ids) - 1)
        return ids, ends, letter

    def step(self, world: World, param, letter: dict, pool: list[int], rng: random.Random) -> list[int]:
        """"Define <name> as v; [h = ...;] so v = ... ." ; letters taken from `pool`."""
        helpers: list[list[int]] = []
        hint, cal, value = self._terms(definition(world, param), world, letter, pool, rng, helpers)
        own = pool.pop(rng.randrange(len(pool)))
        letter[param] = own
        w, semicolon = self.w, self._semicolon
        ids = w["Define"] + self.name(world, param)
        ids += w["as"]
        ids += (own, semicolon)
        for helper in helpers:
            ids += helper
            ids.append(semicolon)
        ids += w["so"]
        ids += self._equation(own, hint, cal, value)
        ids.append(self._stop)
        return ids

    def _terms(self, expression: Expression, world: World, letter: dict, pool: list[int], rng: random.Random,
               helpers: list[list[int]]) -> tuple[list[int], list[int] | None, int]:
        """(hint tokens, numeric tokens or None, value) of an expression; inner operations become
        helper equations (appended to `helpers` in post-order) and are referred to by letter."""
        tag = expression[0]
        if tag == "num":
            return [], None, expression[1]
        if tag == "param":
            value = world.values[expression[1]]
            return [letter[expression[1]]], None, value
        names, values = [], []
        for side in expression[1:]:
            token, value = self._operand(side, world, letter, pool, rng, helpers)
            names.append(token)
            values.append(value)
        operator = self.id[tag]
        return ([names[0], operator, names[1]], [self.numbers[values[0]], operator, self.numbers[values[1]]],
                apply_operator(tag, values[0], values[1]))

    def _operand(self, side: Expression, world, letter, pool, rng, helpers) -> tuple[int, int]:
        """The token naming one operand (a number, a parameter's letter, or a new helper letter)."""
        if side[0] == "num":
            return self.numbers[side[1]], side[1]
        if side[0] == "param":
            return letter[side[1]], world.values[side[1]]
        hint, cal, value = self._terms(side, world, letter, pool, rng, helpers)
        helper = pool.pop(rng.randrange(len(pool)))
        helpers.append(self._equation(helper, hint, cal, value))
        return helper, value

    def _equation(self, lhs: int, hint: list[int], cal: list[int] | None, value: int) -> list[int]:
        """lhs = hint [= cal] = value, with the hint and numeric parts left out where empty."""
        equals = self._equals
        ids = [lhs, equals]
        if hint:
            ids += hint
            ids.append(equals)
        if cal:
            ids += cal
            ids.append(equals)
        ids.append(self.numbers[value])
        return ids

    def answer(self, value: int) -> list[int]:
        return [self.tok.ans_id, self.numbers[value]]

    def retraction(self, world: World, param) -> list[int]:
        """A retry mistake taken back: "Define <name> as [BACK].". """
        return self.w["Define"] + self.name(world, param) + self.w["as"] + [self.tok.back_id, self.id["."]]


def retry_candidates(world: World, steps: Sequence, rank: int, kind: str) -> list:
    """Parameters a retry mistake before step `rank` may name (Part 2.2; the released
    id_retry_gen / id_retry_weak_gen): "retry", every parameter not computable from the steps
    so far and not yet computed (necessary or not); "weak", the solution's parameters from this
    step on (this one included, as released with self_contain=True); "miss" (not in the release),
    every parameter not yet computed."""
    done = set(steps[:rank])
    if kind == "weak":
        return list(steps[rank:])
    if kind == "miss":
        return [param for param in world.params if param not in done]
    ready = done | {RNG}
    return [param for param in world.params
            if param not in done and not all(dep in ready for dep in world.whole_preds(param))]


def insert_retries(renderer: Renderer, world: World, steps: Sequence, step_ids: list[int], ends: list[int],
                   rate: float, kind: str, rng: random.Random) -> tuple[list[int], list[bool], list[int]]:
    """(ids, mistake flags, index of each real step's ".") of a solution with retry mistakes: before
    each step, while `rng` says so with probability `rate`, a wrong parameter (retry_candidates, never
    the same twice at one step) is begun and taken back. The flags mark "Define <name> as", not the
    [BACK] and "." after it, so masking the mistakes still teaches the model to take them back."""
    ids: list[int] = []
    mistakes: list[bool] = []
    new_ends: list[int] = []
    start = 0
    for rank, end in enumerate(ends):
        candidates = retry_candidates(world, steps, rank, kind)
        while candidates and rng.random() < rate:
            wrong = candidates.pop(rng.randrange(len(candidates)))
            retraction = renderer.retraction(world, wrong)
            ids += retraction
            mistakes += [True] * (len(retraction) - 2) + [False, False]
        ids += step_ids[start:end + 1]
        mistakes += [False] * (end + 1 - start)
        new_ends.append(len(ids) - 1)
        start = end + 1
    return ids, mistakes, new_ends
