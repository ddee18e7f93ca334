"""Part 3.2 knowledge manipulation data: answers agree with the people table, chain-of-thought answers
state the fact before the final answer, inverse search asks only answerable questions, comparisons
never tie, and every text round-trips through the bioS tokenizer."""
import dataclasses

import numpy as np
import pytest

from lmphys.errors import ConfigError, DataError
from lmphys.worlds import bio
from lmphys.worlds.bio.manipulation import KINDS, accuracy, final_answer, grade, manipulation_pairs


@pytest.fixture(scope="module")
def people():
    return bio.sample_people(seed=11, n=400)


PERSONS = np.arange(0, 400, 3)


def date_of(people, i):
    return int(people.birth_year[i]), int(people.birth_month[i]), int(people.birth_day[i])


@pytest.mark.parametrize("cot", [False, True])
def test_single_person_answers_match_the_table(people, cot):
    for kind in ("retrieval_year", "classify_month_2", "classify_month_6", "classify_month_12"):
        pairs = manipulation_pairs(people, kind, PERSONS, seed=0, cot=cot)
        assert [qa.persons for qa in pairs] == [(int(p),) for p in PERSONS]
        for qa in pairs:
            (i,) = qa.persons
            year, month, _ = date_of(people, i)
            expected = {
                "retrieval_year": str(year),
                "classify_month_2": "Yes" if month % 2 == 0 else "No",
                "classify_month_6": str(month % 6),
                "classify_month_12": str(month % 12),
            }[kind]
            assert qa.final == expected and qa.kind == kind
            assert people.full_name(i) in qa.question
            assert qa.answer.endswith(expected)
            assert (qa.answer == expected) != cot
    parity = [qa.final for qa in manipulation_pairs(people, "classify_month_2", PERSONS, seed=0, cot=False)]
    assert 0.3 < parity.count("Yes") / len(parity) < 0.7


def test_chain_of_thought_states_the_attribute_first(people):
    for qa in manipulation_pairs(people, "retrieval_year", PERSONS[:20], seed=0, cot=True):
        (i,) = qa.persons
        assert qa.answer.startswith(f"{people.full_name(i)} was born on {people.value(i, 'birth_date')}")
        assert final_answer(qa.kind, qa.answer) == qa.final
    for qa in manipulation_pairs(people, "classify_month_6", PERSONS[:20], seed=0, cot=True):
        month = bio.people.MONTHS[int(people.birth_month[qa.persons[0]]) - 1]
        assert qa.answer.index(month) < qa.answer.rindex(qa.final)
        assert final_answer(qa.kind, qa.answer + ".") == qa.final
    for qa in manipulation_pairs(people, "compare_birth", PERSONS, seed=0, cot=True, count=20):
        a, b = qa.persons
        stated = qa.answer[: -len(qa.final)]
        assert people.value(a, "birth_date") in stated and people.value(b, "birth_date") in stated
        assert qa.answer.endswith(qa.final)


def test_compare_answers_are_the_truth_and_never_tie(people):
    pairs = manipulation_pairs(people, "compare_birth", PERSONS, seed=5, cot=False, count=300)
    assert len(pairs) == 300
    for qa in pairs:
        a, b = qa.persons
        assert a in PERSONS and b in PERSONS
        assert date_of(people, a) != date_of(people, b)
        assert qa.final == ("Yes" if date_of(people, a) < date_of(people, b) else "No")
        assert qa.question == f"Was {people.full_name(a)} born earlier than {people.full_name(b)}?"
    assert len(manipulation_pairs(people, "compare_birth", PERSONS, seed=5, cot=False)) == len(PERSONS)
    twins = dataclasses.replace(people, birth_year=np.full(len(people), 1990), birth_month=np.ones(len(people), int),
                                birth_day=np.ones(len(people), int))
    with pytest.raises(DataError, match="distinct"):
        manipulation_pairs(twins, "compare_birth", PERSONS, seed=0, cot=False)


def test_inverse_search_asks_only_unique_date_and_city(people):
    # Give persons 0 and 3 (both in PERSONS) and person 1 (not in PERSONS) the same date and city.
    year, month, day = (people.birth_year.copy(), people.birth_month.copy(), people.birth_day.copy())
    city = people.birth_city.copy()
    for field in (year, month, day, city):
        field[[1, 3]] = field[0]
    clashing = dataclasses.replace(people, birth_year=year, birth_month=month, birth_day=day, birth_city=city)
    pairs = manipulation_pairs(clashing, "inverse_birth", PERSONS, seed=0, cot=False)
    asked = [qa.persons[0] for qa in pairs]
    assert 0 not in asked and 3 not in asked and len(asked) == len(PERSONS) - 2
    for qa in pairs:
        (i,) = qa.persons
        assert qa.final == qa.answer == clashing.full_name(i)
        assert qa.question == f"Who was born on {clashing.value(i, 'birth_date')} in {clashing.value(i, 'birth_city')}?"
    for qa in manipulation_pairs(clashing, "inverse_birth", PERSONS[:10], seed=0, cot=True):
        assert qa.answer.endswith(qa.final) and clashing.value(qa.persons[0], "birth_city") in qa.answer


def test_pairs_are_deterministic_and_count_caps(people):
    for kind in KINDS:
        first = manipulation_pairs(people, kind, PERSONS, seed=2, cot=True, count=25)
        assert first == manipulation_pairs(people, kind, PERSONS, seed=2, cot=True, count=25)
        assert len(first) == 25
    capped = manipulation_pairs(people, "retrieval_year", PERSONS, seed=2, cot=False, count=25)
    order = [np.flatnonzero(PERSONS == qa.persons[0])[0] for qa in capped]
    assert order == sorted(order), "a capped subset keeps the given order"
    compare = [qa.persons for qa in manipulation_pairs(people, "compare_birth", PERSONS, seed=2, cot=False)]
    assert compare != [qa.persons for qa in manipulation_pairs(people, "compare_birth", PERSONS, seed=3, cot=False)]
    with pytest.raises(ConfigError, match="kind"):
        manipulation_pairs(people, "retrieval_month", PERSONS, seed=0, cot=False)
    with pytest.raises(DataError):
        manipulation_pairs(people, "retrieval_year", np.array([len(people)]), seed=0, cot=False)


def test_every_text_round_trips_through_the_tokenizer(people):
    tok = bio.tokenizer()
    for kind in KINDS:
        for cot in (False, True):
            for qa in manipulation_pairs(people, kind, np.arange(len(people)), seed=0, cot=cot):
                for text in (qa.question, qa.answer, qa.final):
                    assert tok.decode(tok.encode(text)) == text


def test_accuracy_scores_whole_answer_and_final_answer_separately(people):
    pairs = manipulation_pairs(people, "retrieval_year", PERSONS[:4], seed=0, cot=True)
    wrong_reasoning = pairs[1].answer.replace(pairs[1].answer.split(" was born on ")[0], "Somebody Else")
    generated = [pairs[0].answer, wrong_reasoning, "1899", pairs[3].answer + "."]
    scores = accuracy(pairs, generated)
    assert scores == {"answer_exact": 0.25, "final_correct": 0.75}


def test_grade_tells_each_answer_right_final_right_or_wrong(people):
    pairs = manipulation_pairs(people, "retrieval_year", PERSONS[:3], seed=0, cot=True)
    wrong_reasoning = pairs[1].answer.replace(pairs[1].answer.split(" was born on ")[0], "Somebody Else")
    verdicts = [grade(qa, text).describe() for qa, text in
                zip(pairs, [" " + pairs[0].answer + "\n", wrong_reasoning, "1899"])]
    assert verdicts == ["right", "final answer right", "wrong"]
