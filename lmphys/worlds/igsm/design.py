"""Steps 5 and 6 of drawing an iGSM world (construct.py has steps 2-4, sizes.py step 1): the
released generator's `design` (the necessary parameters' dependencies and the op count they spend),
`fill_all` and `design_unused` (every edge not needed becomes a stated distractor), as functions
of a `construct.Draft` whose solution order is drawn. Names and draw order are the release's
(facebookresearch/iGSM, math_gen/); tests/test_golden.py and tests/test_igsm_stats.py hold them.

5. Dependencies and op (`op_budget`, `design`): n_op = n_op_min + min(max(n_op_min, s) - n_op_min,
   extra room); each necessary instance parameter draws 1-4 dependencies among RNG and the earlier
   parameters.
6. Distractors (`fill_all`, `design_unused`): every other edge becomes a stated parameter over RNG
   and either other distractors or anything computable so far; nothing necessary depends on them.
"""
from __future__ import annotations

from lmphys.worlds.igsm.construct import MAX_REFS, Draft, choice, sample, sample_from
from lmphys.worlds.igsm.graph import ABSTRACT, INSTANCE, RNG


def op_budget(draft: Draft, s: int) -> int:
    """The released design's op count: n_op_min raised towards s as far as the order allows."""
    room = [(0 if index < 2 else 1 if index == 2 else 2) if param[0] == INSTANCE else 0  # max(min(index + 1, 4) - 2, 0)
            for index, param in enumerate(draft.order)]
    draft.room = room
    return draft.n_op_min + min(max(draft.n_op_min, s) - draft.n_op_min, sum(room))


def design(draft: Draft, n_op: int) -> None:
    """Spread the extra operations, then give each necessary instance parameter its
    dependencies among RNG and the earlier parameters (the released `design`)."""
    rng = draft.rng
    extra = [0] * len(draft.order)
    addable = [index for index, room in enumerate(draft.room) if room > 0]
    for _ in range(n_op - draft.n_op_min):
        index = choice(rng, addable)
        extra[index] += 1
        if extra[index] == draft.room[index]:
            addable.remove(index)
    draft.add_node(RNG)
    used = draft.used_edges = set()
    order, preds, add_edge, random = draft.order, draft.preds, draft.add_edge, rng.random
    for index, param in enumerate(order):
        if param[0] != INSTANCE:
            continue
        used.add(param[1:])
        pool = [RNG] + order[:index]
        wanted = (1 if random() < 0.5 else 2) if extra[index] == 0 else extra[index] + 2
        wanted = min(wanted, index + 1, MAX_REFS)
        if wanted != len(pool):
            for source in preds[param]:
                pool.remove(source)
                wanted -= 1
            if random() < 0.5 and wanted > 0:
                wanted -= 1
                add_edge(RNG, param)
                pool.remove(RNG)
            pool = sample_from(rng, pool, wanted)  # (pool is this step's own list)
        for source in pool:
            add_edge(source, param)


def fill_all(draft: Draft) -> None:
    """The released `fill_all`: abstract parameters already computable join `chosen`."""
    inter, used, children = draft.inter, draft.used_edges, draft.children
    for upper in range(draft.d - 1):
        for j in range(draft.sizes[upper]):
            key = (upper, j, upper + 1)
            if key in inter and all([(upper, j, x) in used for x in children.get((upper, j), ())]):
                inter.remove(key)
                draft.chosen.append((ABSTRACT,) + key)
    for upper in range(draft.d - 1):
        _fill_upper(draft, upper, range(upper + 2, draft.d))


def design_unused(draft: Draft) -> None:
    """Every remaining edge becomes a stated distractor (the released `design_unused`)."""
    rng = draft.rng
    random, remain, chosen, add_edge = rng.random, draft.remain, draft.chosen, draft.add_edge
    stated = draft.stated = list(draft.order)
    # The abstract parameters in `stated` (_state_abstract's test, without scanning the list).
    draft.stated_abstract = {param for param in stated if param[0] == ABSTRACT}
    independent: list = []
    while remain:
        edge = remain[int(random() * len(remain))]  # choice
        param = (INSTANCE,) + edge
        draft.add_node(param)
        alone = random() < 0.5
        pool = independent if alone else chosen
        wanted, most = 1, min(len(pool) + 1, MAX_REFS)
        while wanted < most and random() > 0.5:
            wanted += 1
        if wanted == len(pool) + 1:
            add_edge(RNG, param)
            sources = list(pool)
        else:
            if random() < 0.5:
                add_edge(RNG, param)
                wanted -= 1
            sources = sample(rng, pool, wanted)
        for source in sources:
            add_edge(source, param)
            if source[0] == ABSTRACT:
                _state_abstract(draft, source)
        remain.remove(edge)
        chosen.append(param)
        _fill_chosen(draft, param)
        if alone:
            independent.append(param)
        stated.append(param)


def _state_abstract(draft: Draft, param) -> None:
    """The released `add_param`: an abstract dependency joins the template with its structure."""
    kind, i, j, k = param
    if kind != ABSTRACT or param in draft.stated_abstract:
        return
    for x in draft.children.get((i, j), ()):
        draft.add_edge((INSTANCE, i, j, x), param)
        if k != i + 1:
            draft.add_edge((ABSTRACT, i + 1, x, k), param)
            if (ABSTRACT, i + 1, x, k) not in draft.stated_abstract:
                _state_abstract(draft, (ABSTRACT, i + 1, x, k))
    draft.stated.append(param)
    draft.stated_abstract.add(param)


def _fill_chosen(draft: Draft, param) -> None:
    """The released `fill_chosen`: abstract parameters the new edge makes computable."""
    _, i, j, _ = param
    used = draft.used_edges
    used.add(param[1:])
    kids = draft.children.get((i, j), ())
    for x in kids:
        if (i, j, x) not in used:
            return
    _move_to_chosen(draft, (i, j, i + 1))
    inter = draft.inter
    for lower in range(i + 2, draft.d):
        if any((i + 1, x, lower) in inter for x in kids):
            break
        _move_to_chosen(draft, (i, j, lower))
    for upper in range(i - 1, -1, -1):
        _fill_upper(draft, upper, range(i + 1, draft.d))


def _fill_upper(draft: Draft, upper: int, lowers: range) -> None:
    """The scan fill_all and fill_chosen share: for each lower layer in turn, every item of
    `upper` whose own count is known moves its count of `lower` to `chosen`, until the first
    such item with a child whose count of `lower` is still unknown; that ends the scan of this
    upper layer (the released loops' `stuck` flag, which no later layer resets)."""
    inter, children, chosen = draft.inter, draft.children, draft.chosen
    items = range(draft.sizes[upper])
    for lower in lowers:
        for item in items:
            if (upper, item, upper + 1) in inter:
                continue
            for x in children.get((upper, item), ()):
                if (upper + 1, x, lower) in inter:
                    return
            key = (upper, item, lower)
            if key in inter:  # _move_to_chosen
                inter.remove(key)
                chosen.append((ABSTRACT, upper, item, lower))


def _move_to_chosen(draft: Draft, key) -> None:
    if key in draft.inter:
        draft.inter.remove(key)
        draft.chosen.append((ABSTRACT,) + key)
