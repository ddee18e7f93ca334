"""The words of iGSM (Part 2.1, written for lmphys): the closed tokenizer, and the problem, question
and solution sentences of a world, rendered straight to token ids (text is decoded from them).

Every item and category name is one token, so "Riverview High's Film Studio" is three tokens
(item, 's, item) whatever the name's spelling; numbers 0..22 and the 52 letter names are tokens
too. Sentences:
  problem   "The number of each Riverview High's Film Studio equals 5 times as much as the sum of
             each Film Studio's Backpack and Central High's Classroom."   (an abstract parameter
             is referred to without "each")
  question  "How many Backpack does Central High have?"  /  "How many Film Studio does each
             Riverview High have?"
  solution  "Define Central High's Classroom as p; so p = q + r = 3 + 4 = 7." one step per
             necessary parameter; a combination with a modifier goes through a helper letter:
             "Define ... as W; R = p + q = 3 + 4 = 7; so W = 5 * R = 5 * 7 = 12."  An abstract
             parameter: "so h = p * q + r * s = 1 * 2 + 3 * 4 = 14."  Then "The answer is 14."
Retry data (Part 2.2) puts "Define <wrong parameter> as [BACK]" before a step.
"""
from __future__ import annotations

import functools
import random
import re
import string
from typing import Sequence

import numpy as np

from lmphys.errors import DataError
from lmphys.worlds.igsm import graph
from lmphys.worlds.igsm.graph import COMBINE_OPERATORS, MOD, Param, World, combine

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<mask>", "<sol>", "[BACK]", "<probe>", "<probe_sep>", "<probe_end>")
LETTERS = tuple(string.ascii_lowercase + string.ascii_uppercase)
NUMBERS = tuple(str(n) for n in range(MOD))
PUNCTUATION = (".", ",", ";", "?", "'s", "=", "+", "-", "*")
_ATTACHED = {".", ",", ";", "?", "'s"}  # written without a space before them
WORDS = ("The", "number", "of", "each", "equals", "more", "less", "than", "times", "as", "much", "the", "sum",
         "difference", "product", "and", "How", "many", "does", "have", "Define", "so", "answer", "is")
MODIFIER_WORDS = {"+": ("more", "than"), "-": ("less", "than"), "*": ("times", "as", "much", "as")}
COMBINE_WORDS = {"sum": ("the", "sum", "of"), "diff": ("the", "difference", "of"), "prod": ("the", "product", "of")}


class Tokenizer:
    """Closed vocabulary: special tokens, numbers, letters, punctuation, template words, then every
    category and item name. `encode(decode(ids)) == ids` for every rendered problem."""

    pad_id, bos_id, eos_id, mask_id, sol_id, back_id, probe_id, probe_sep_id, probe_end_id = range(9)

    def __init__(self):
        hierarchies, pools = graph.categories()
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


class Renderer:
    """Token ids of a world's sentences (one per tokenizer; the id lookups are cached)."""

    def __init__(self, tok: Tokenizer):
        self.tok = tok
        self.id = tok.ids
        self._words = {key: [tok.ids[w] for w in words] for key, words in {**MODIFIER_WORDS, **COMBINE_WORDS}.items()}
        self.s_id = tok.ids["'s"]
        self.numbers = [tok.ids[n] for n in NUMBERS]
        self.letters = [tok.ids[letter] for letter in LETTERS]

    def name(self, param: Param) -> list[int]:
        return [self.id[param.item], self.s_id, self.id[param.other]]

    def reference(self, param: Param) -> list[int]:
        """How the problem text refers to a parameter: "each a's b" or (abstract) "a's C"."""
        return ([self.id["each"]] if param.kind == "instance" else []) + self.name(param)

    def problem_sentence(self, world: World, index: int) -> list[int]:
        param = world.params[index]
        ids = [self.id["The"], self.id["number"], self.id["of"]] + self.reference(param) + [self.id["equals"]]
        if not param.deps:
            return ids + [self.numbers[param.constant], self.id["."]]
        if param.modifier:
            ids += [self.numbers[param.constant]] + self._words[param.modifier]
        refs = [self.reference(world.params[dep]) for dep in param.deps]
        if param.combine == "one":
            ids += refs[0]
        else:
            ids += self._words[param.combine]
            for position, ref in enumerate(refs):
                if position:
                    ids.append(self.id["and"] if position == len(refs) - 1 else self.id[","])
                ids += ref
        return ids + [self.id["."]]

    def question(self, param: Param) -> list[int]:
        ids = [self.id["How"], self.id["many"], self.id[param.other], self.id["does"]]
        if param.kind == "instance":
            ids.append(self.id["each"])
        return ids + [self.id[param.item], self.id["have"], self.id["?"]]

    def step(self, world: World, index: int, letter: dict[int, int], helper: int | None) -> list[int]:
        """"Define <name> as X; [R = ...;] so X = ... ." (`letter` and `helper` are token ids)."""
        param = world.params[index]
        value = world.values[index]
        ids = [self.id["Define"]] + self.name(param) + [self.id["as"], letter[index], self.id[";"], self.id["so"]]
        if not param.deps:
            return ids + [letter[index], self.id["="], self.numbers[param.constant], self.id["."]]
        terms = [(letter[dep], world.values[dep]) for dep in param.deps]
        if param.kind == "abstract":
            operators = ["+"] * (len(terms) - 1) if param.combine == "sum" else \
                ["*" if position % 2 == 0 else "+" for position in range(len(terms) - 1)]
            return ids + self._equation(letter[index], terms, operators, value) + [self.id["."]]
        if param.combine != "one":
            operators = [COMBINE_OPERATORS[param.combine]] * (len(terms) - 1)
            if not param.modifier:
                return ids + self._equation(letter[index], terms, operators, value) + [self.id["."]]
            inner_value = combine(param.combine, [term_value for _, term_value in terms])
            # The helper equation goes before "so": "R = p + q = 3 + 4 = 7; so W = 5 * R = ...".
            ids[-1:] = self._equation(helper, terms, operators, inner_value) + [self.id[";"], self.id["so"]]
            terms = [(helper, inner_value)]
        constant = (self.numbers[param.constant], param.constant)
        if param.modifier == "*":
            pair, operator = [constant, terms[0]], "*"
        else:
            pair, operator = [terms[0], constant], param.modifier
        return ids + self._equation(letter[index], pair, [operator], value) + [self.id["."]]

    def _equation(self, lhs: int, terms, operators: list[str], value: int) -> list[int]:
        """lhs = t1 op t2 ... = v1 op v2 ... = value (a single term: lhs = t = value)."""
        ids = [lhs, self.id["="]]
        for position, (term, _) in enumerate(terms):
            if position:
                ids.append(self.id[operators[position - 1]])
            ids.append(term)
        if len(terms) > 1:
            ids.append(self.id["="])
            for position, (_, term_value) in enumerate(terms):
                if position:
                    ids.append(self.id[operators[position - 1]])
                ids.append(self.numbers[term_value])
        return ids + [self.id["="], self.numbers[value]]

    def answer(self, value: int) -> list[int]:
        return [self.id["The"], self.id["answer"], self.id["is"], self.numbers[value], self.id["."]]


def needs_helper(param: Param) -> bool:
    """Whether the step goes through a helper letter: a combination followed by a modifier."""
    return param.kind == "instance" and bool(param.modifier) and param.combine not in ("", "one")


def assign_letters(world: World, steps: Sequence[int], rng: random.Random) -> tuple[dict[int, int], dict[int, int]] | None:
    """Random distinct letters (as positions in LETTERS) for each step's parameter and helper;
    None if the solution needs more than 52."""
    helpers = [index for index in steps if needs_helper(world.params[index])]
    if len(steps) + len(helpers) > len(LETTERS):
        return None
    chosen = rng.sample(range(len(LETTERS)), len(steps) + len(helpers))
    return dict(zip(steps, chosen)), dict(zip(helpers, chosen[len(steps):]))


RETRY_KINDS = ("retry", "weak", "miss")


def render_solution(
    renderer: Renderer,
    world: World,
    steps: Sequence[int],
    letters: dict[int, int],
    helpers: dict[int, int],
    retry_rate: float = 0.0,
    retry_kind: str = "retry",
    rng: random.Random | None = None,
) -> tuple[list[int], list[bool], list[int]]:
    """(token ids, which tokens are inserted mistakes, the index of each step's closing ".") of the
    solution `steps` followed by the answer sentence.

    Retry data (Part 2.2): before each step, with probability `retry_rate` (repeatedly), a wrong
    step is begun and taken back: "Define <name> as [BACK]". The wrong parameter is, for
    "retry", a necessary one that cannot be computed yet; "weak", any later step of the solution;
    "miss", any parameter not yet defined. The [BACK] token itself is not marked as a mistake, so
    masking the mistakes still teaches the model to take a wrong step back.
    """
    letter_ids = {index: renderer.letters[position] for index, position in letters.items()}
    helper_ids = {index: renderer.letters[position] for index, position in helpers.items()}
    ids: list[int] = []
    mistakes: list[bool] = []
    ends: list[int] = []
    done: set[int] = set()
    for rank, index in enumerate(steps):
        while retry_rate > 0 and rng.random() < retry_rate:
            wrong = _wrong_step(world, steps, rank, done, retry_kind, rng)
            if wrong is None:
                break
            begun = [renderer.id["Define"]] + renderer.name(world.params[wrong]) + [renderer.id["as"]]
            ids += begun + [renderer.tok.back_id]
            mistakes += [True] * len(begun) + [False]
        step_ids = renderer.step(world, index, letter_ids, helper_ids.get(index))
        ids += step_ids
        mistakes += [False] * len(step_ids)
        ends.append(len(ids) - 1)
        done.add(index)
    answer = renderer.answer(world.values[steps[-1]])
    ids += answer
    mistakes += [False] * len(answer)
    return ids, mistakes, ends


def _wrong_step(world: World, steps: Sequence[int], rank: int, done: set[int], kind: str, rng: random.Random) -> int | None:
    if kind == "retry":
        options = [i for i in steps[rank + 1:] if not all(dep in done for dep in world.params[i].deps)]
    elif kind == "weak":
        options = list(steps[rank + 1:])
    else:
        options = [i for i in range(len(world.params)) if i not in done and i != steps[rank]]
    return rng.choice(options) if options else None
