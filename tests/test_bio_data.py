"""bioS data (Part 3.1): people, biographies, QA and the word-level tokenizer."""
import collections
import dataclasses
import os

import numpy as np
import pytest

from lmphys.errors import ConfigError, DataError
from lmphys.worlds import bio
from lmphys.worlds.bio.people import ATTRIBUTES
from lmphys.worlds.bio.templates import TEMPLATE_SETS, biography_templates, vocabulary_words
from lmphys.worlds.bio.text import Augment

SENTENCES_PER_DOC = 6
TRICKY_CITY = "Washington D.C."  # ends with "." and so absorbs the sentence's period
TRICKY_EMPLOYERS = ("Caterpillar Inc.", "Ben & Jerry's", "Dunkin' Donuts", "eBay", "Yum! Brands", "AT&T")


@pytest.fixture(scope="module")
def people():
    return bio.sample_people(seed=3, n=600)


def tricky(people: bio.People) -> bio.People:
    """The same people with the values that stress the word rule and the period rule."""
    pools = bio.people.pools()
    n = len(people)
    employers = np.array([pools.employers.index(name) for name in TRICKY_EMPLOYERS])
    university = pools.universities.index("University of Puerto Rico at Mayagüez")
    return dataclasses.replace(
        people,
        birth_city=np.where(np.arange(n) % 2 == 0, pools.cities.index(TRICKY_CITY), people.birth_city),
        employer=employers[np.arange(n) % len(employers)],
        university=np.where(np.arange(n) % 3 == 0, university, people.university),
    )


def reference_text(people, person: int, templates, order, fullname: bool, template_set: str = "capo") -> str:
    """The biography rendered with str.format, independently of the token assembly."""
    sentences = []
    for position, attribute in enumerate(order):
        template = biography_templates(template_set)[attribute][templates[attribute]]
        if fullname or position == 0:
            subject = people.full_name(person)
        else:
            opens = template.startswith("{subject}")
            if "{subject}'s" in template:  # a possessive pronoun replaces the name's 's
                template = template.replace("{subject}'s", "{subject}")
                subject = (("His", "Her") if opens else ("his", "her"))[people.gender[person]]
            else:
                subject = (("He", "She") if opens else ("he", "she"))[people.gender[person]]
        sentence = template.format(subject=subject, value=people.value(person, ATTRIBUTES[attribute]))
        sentences.append(sentence.replace("..", "."))
    return " ".join(sentences)


def test_pools_ship_with_the_package():
    pools = bio.people.pools()
    sizes = [len(pools.first_names), len(pools.middle_names), len(pools.last_names), len(pools.cities),
             len(pools.universities), len(pools.majors), len(pools.employers), len(pools.employer_cities)]
    assert sizes == [400, 400, 1000, 200, 300, 100, 263, 263]
    assert os.path.commonpath([bio.people.DATA_DIR, os.path.dirname(bio.people.__file__)]) == os.path.dirname(bio.people.__file__)
    assert os.path.exists(os.path.join(bio.people.DATA_DIR, "README.md"))
    assert pools.employer_cities[pools.employers.index("Apple")] == "Cupertino, CA"
    assert all(len(set(values)) == len(values) for values in (pools.first_names, pools.last_names, pools.cities))


def test_sample_people_unique_deterministic_and_in_range(people):
    names = set(zip(people.first.tolist(), people.middle.tolist(), people.last.tolist()))
    assert len(names) == len(people) == 600
    assert len({people.full_name(i) for i in range(len(people))}) == 600
    again = bio.sample_people(seed=3, n=600)
    for field in dataclasses.fields(people):
        np.testing.assert_array_equal(getattr(people, field.name), getattr(again, field.name))
    other = bio.sample_people(seed=4, n=600)
    assert not np.array_equal(people.first, other.first)
    assert people.birth_year.min() >= 1900 and people.birth_year.max() <= 2099
    assert set(people.birth_month.tolist()) == set(range(1, 13))
    assert people.birth_day.min() == 1 and people.birth_day.max() == 28
    assert people.employer.max() < 263 and people.birth_city.max() < 200
    # Gender is drawn on its own: the same first name occurs with both pronouns.
    assert 0.4 < people.gender.mean() < 0.6
    first_name_genders = collections.defaultdict(set)
    for first, gender in zip(people.first.tolist(), people.gender.tolist()):
        first_name_genders[first].add(gender)
    assert any(len(genders) == 2 for genders in first_name_genders.values())


def test_names_stay_unique_up_to_every_combination(monkeypatch):
    """With pools of 2 x 2 x 3 names, 12 people use every full name exactly once; 13 is impossible."""
    full = bio.people.pools()
    small = dataclasses.replace(full, first_names=full.first_names[:2], middle_names=full.middle_names[:2],
                                last_names=full.last_names[:3])
    monkeypatch.setattr(bio.people, "pools", lambda: small)
    people = bio.sample_people(0, 12)
    assert len({people.full_name(i) for i in range(12)}) == 12
    with pytest.raises(DataError, match="12"):
        bio.sample_people(0, 13)


def test_impossible_people_count_is_a_data_error():
    with pytest.raises(DataError, match="160,000,000"):
        bio.sample_people(0, 400 * 400 * 1000 + 1)
    with pytest.raises(DataError):
        bio.sample_people(0, -1)
    assert len(bio.sample_people(0, 0)) == 0


def test_label_inverts_value(people):
    assert people.value(0, "birth_date") == (
        f"{bio.people.MONTHS[people.birth_month[0] - 1]} {people.birth_day[0]}, {people.birth_year[0]}")
    for attribute in ATTRIBUTES:
        labels = people.labels(attribute)
        value_of_label = {}
        for i in range(len(people)):
            value = people.value(i, attribute)
            assert people.label(i, attribute) == labels[i]
            assert value_of_label.setdefault(int(labels[i]), value) == value  # a label means one value
        assert len(set(value_of_label.values())) == len(value_of_label)  # and distinct values get distinct labels
        assert labels.min() >= 0 and labels.max() < bio.people.num_classes(attribute)
    i = 0
    expected = (people.birth_year[i] - 1900) * 336 + (people.birth_month[i] - 1) * 28 + people.birth_day[i] - 1
    assert people.label(i, "birth_date") == expected
    # Employers with the same headquarters share the employer_city class.
    pools = bio.people.pools()
    same_city = people.subset([0, 0])
    same_city = dataclasses.replace(same_city, employer=np.array([pools.employers.index("IBM"), pools.employers.index("Pfizer")]))
    assert same_city.value(0, "employer_city") == "Armonk, NY" and same_city.value(1, "employer_city") == "New York, NY"
    nyc = dataclasses.replace(same_city, employer=np.array([pools.employers.index("CBS"), pools.employers.index("Pfizer")]))
    assert nyc.label(0, "employer_city") == nyc.label(1, "employer_city")
    with pytest.raises(DataError, match="unknown attribute"):
        people.value(0, "height")


@pytest.mark.parametrize("augment", [Augment(), Augment(multi=3, permute=True), Augment(fullname=True),
                                     Augment(multi=2, permute=True, fresh_templates=False)])
def test_every_biography_states_all_six_values(people, augment):
    people = tricky(people)
    tok = bio.tokenizer()
    persons = np.arange(0, len(people), 7)
    docs = bio.biographies(people, seed=1, augment=augment, persons=persons)
    assert len(docs) == len(persons) * augment.multi
    assert docs.tokens.dtype == np.int32 and docs.offsets.dtype == np.int64 and docs.person.dtype == np.int32
    assert docs.value_spans.dtype == docs.name_spans.dtype == docs.pronoun_positions.dtype == np.int32
    assert docs.value_spans.shape == (len(docs), 6, 2) and docs.name_spans.shape == (len(docs), 2)
    np.testing.assert_array_equal(docs.person, np.repeat(persons, augment.multi))
    assert docs.offsets[0] == 0 and docs.offsets[-1] == len(docs.tokens)
    for d in range(len(docs)):
        person = int(docs.person[d])
        tokens = docs.document(d)
        text = docs.text(d)
        assert tok.encode(text) == tokens.tolist()  # the assembled tokens are the text's canonical tokens
        for a, attribute in enumerate(ATTRIBUTES):
            start, end = docs.value_spans[d, a]
            value = people.value(person, attribute)
            assert tokens[start:end].tolist() == tok.encode(value)
            assert value in text
        start, end = docs.name_spans[d]
        assert tok.decode(tokens[start:end]) == people.full_name(person)
        assert end <= docs.value_spans[d, :, 0].min()
        assert ".." not in text and "  " not in text and text.endswith(".")


@pytest.mark.parametrize("template_set", TEMPLATE_SETS)
def test_text_follows_the_rendering_plan(people, template_set):
    people = tricky(people)
    augment = Augment(multi=2, permute=True)
    persons = np.arange(0, len(people), 11)
    docs = bio.biographies(people, seed=5, augment=augment, persons=persons, templates=template_set)
    person, templates, order = bio.text.rendering_plan(5, persons, augment, template_set)
    np.testing.assert_array_equal(person, docs.person)
    for d in range(len(docs)):
        assert docs.text(d) == reference_text(people, int(person[d]), templates[d], order[d], False, template_set)
    fullname = bio.biographies(people, seed=5, augment=Augment(fullname=True), persons=persons[:5],
                               templates=template_set)
    _, templates, order = bio.text.rendering_plan(5, persons[:5], Augment(fullname=True), template_set)
    for d in range(5):
        assert fullname.text(d) == reference_text(people, int(persons[d]), templates[d], order[d], True, template_set)


def test_the_default_templates_are_the_released_ones_with_attribution():
    released = biography_templates("capo")
    assert [len(t) for t in released] == [46, 49, 49, 52, 48, 47]  # ATTRIBUTES order; Part 3.1 App. A.1
    assert released[0][1] == "{subject}'s birthday falls on {value}."
    assert released[5][0] == "{subject} worked in {value}."  # the release's {company1city}
    assert bio.default_config().templates == "capo"
    readme = open(os.path.join(bio.people.DATA_DIR, "README.md")).read()
    assert "capo_bios_templates.json" in readme and "Apache-2.0" in readme
    # A pronoun sentence of a "{name}'s" template reads His/Her (the permuted birth-date sentence).
    people = bio.sample_people(seed=1, n=400)
    docs = bio.biographies(people, seed=0, augment=Augment(multi=4, permute=True))
    texts = [docs.text(d) for d in range(len(docs))]
    assert any(". Her birthday falls on" in t or ". His birthday falls on" in t for t in texts)
    assert not any("He's" in t or "She's" in t for t in texts)


@pytest.mark.parametrize("template_set", TEMPLATE_SETS)
def test_every_template_is_used_and_grammatical(people, template_set):
    sets = biography_templates(template_set)
    assert all(len(templates) >= 40 for templates in sets)
    assert all(len(set(templates)) == len(templates) for templates in sets)
    # The name (or pronoun) always precedes the value, so no value is stated before its person.
    assert all(t.index("{subject}") < t.index("{value}") for ts in sets for t in ts)
    _, templates, _ = bio.text.rendering_plan(0, np.arange(3000), Augment(), template_set)
    for attribute, choices in enumerate(templates.T):
        assert set(choices.tolist()) == set(range(len(sets[attribute])))
    pools = bio.people.pools()
    values = {
        "birth_date": ["October 2, 1996"], "birth_city": [TRICKY_CITY, "Princeton, NJ"],
        "university": list(pools.universities[:3]), "major": ["Computer Science"],
        "employer": list(TRICKY_EMPLOYERS), "employer_city": ["Toronto, Canada", "Washington, DC"],
    }
    for attribute, templates_of_attribute in zip(ATTRIBUTES, sets):
        for template in templates_of_attribute:
            opens = template.startswith("{subject}")
            for subject in ("Anna Ivy Smith", "She" if opens else "she", "He" if opens else "he"):
                if subject != "Anna Ivy Smith" and "{subject}'s" in template:
                    continue  # rendered with His/Her (test_text_follows_the_rendering_plan)
                for value in values[attribute]:
                    sentence = template.format(subject=subject, value=value).replace("..", ".")
                    words = sentence.split(" ")
                    assert sentence[0].isupper() and sentence.endswith(".") and not sentence.endswith("..")
                    assert "  " not in sentence and " ," not in sentence and " ." not in sentence
                    assert sentence.count("?") == 0
                    # Pronouns are capitalized exactly when they open the sentence.
                    assert all(word not in ("He", "She") for word in words[1:])
                    assert words[0] not in ("he", "she")
                    assert bio.tokenizer().decode(bio.tokenizer().encode(sentence)) == sentence


def test_multi_renderings_draw_fresh_templates(people):
    persons = np.arange(200)
    single = bio.biographies(people, seed=2, persons=persons)
    multi = bio.biographies(people, seed=2, augment=Augment(multi=5), persons=persons)
    _, templates, order = bio.text.rendering_plan(2, persons, Augment(multi=5))
    templates = templates.reshape(200, 5, 6)
    assert (order == np.arange(6)).all()
    for j in range(200):
        assert len({tuple(row) for row in templates[j].tolist()}) == 5
        texts = [multi.text(5 * j + k) for k in range(5)]
        assert len(set(texts)) == 5
        assert texts[0] == single.text(j)  # rendering 0 is the fixed (bioS single) one
    # Every later rendering draws each attribute's template afresh: about 1/42 repeat the first one.
    repeats = (templates[:, 1:] == templates[:, :1]).mean()
    assert repeats < 0.1


def test_permute_shuffles_sentences_and_keeps_all_six(people):
    persons = np.arange(300)
    docs = bio.biographies(people, seed=4, augment=Augment(multi=2, permute=True), persons=persons)
    _, _, order = bio.text.rendering_plan(4, persons, Augment(multi=2, permute=True))
    assert (np.sort(order, axis=1) == np.arange(6)).all()
    assert (order != np.arange(6)).any(axis=1).mean() > 0.95
    assert len({tuple(row) for row in order[::2].tolist()}) > 150  # each person has own orders (720 possible)
    # The value spans appear in the document in the planned sentence order.
    np.testing.assert_array_equal(np.argsort(docs.value_spans[:, :, 0], axis=1), order)
    plain = bio.biographies(people, seed=4, persons=persons)
    assert (np.argsort(plain.value_spans[:, :, 0], axis=1) == np.arange(6)).all()


def count_name(tokens: np.ndarray, name: list[int]) -> int:
    windows = np.lib.stride_tricks.sliding_window_view(tokens, len(name))
    return int((windows == np.array(name)).all(axis=1).sum())


def test_fullname_names_the_person_in_every_sentence(people):
    tok = bio.tokenizer()
    persons = np.arange(50)
    pronouns = {tok.id(word): word for word in ("He", "She", "he", "she", "His", "Her", "his", "her")}
    for fullname, expected in ((True, 6), (False, 1)):
        docs = bio.biographies(people, seed=0, augment=Augment(multi=2, permute=True, fullname=fullname),
                                    persons=persons)
        for d in range(len(docs)):
            person = int(docs.person[d])
            tokens = docs.document(d)
            assert count_name(tokens, tok.encode(people.full_name(person))) == expected
            pronoun_tokens = [token for token in tokens.tolist() if token in pronouns]
            if fullname:
                assert docs.pronoun_positions[d] == -1 and not pronoun_tokens
            else:
                assert len(pronoun_tokens) == 5
                first = pronouns[int(tokens[docs.pronoun_positions[d]])]
                assert first.lower() in (("he", "his"), ("she", "her"))[people.gender[person]]
                assert tokens[:docs.pronoun_positions[d]].tolist().count(tok.id(first)) == 0
                assert docs.name_spans[d, 1] <= docs.pronoun_positions[d]


def reference_reversed_tokens(people, person: int, templates, order, fullname: bool) -> list[int]:
    """The reversed twin's tokens built from the template strings, independently of the piece
    assembly: sentences last to first, each one's template words last to first with its final "."
    last, the subject (name or pronoun) and the value as written."""
    tok = bio.tokenizer()
    tokens = []
    for position in reversed(range(len(order))):
        attribute = order[position]
        template = biography_templates("capo")[attribute][templates[attribute]]
        named = fullname or position == 0
        if named:
            subject = people.full_name(person)
        else:
            opens = template.startswith("{subject}")
            if "{subject}'s" in template:
                template = template.replace("{subject}'s", "{subject}")
                subject = (("His", "Her") if opens else ("his", "her"))[people.gender[person]]
            else:
                subject = (("He", "She") if opens else ("he", "she"))[people.gender[person]]
        pre, rest = template.split("{subject}")
        mid, post = rest.split("{value}")
        post_words = vocabulary_words(post)
        assert post_words[-1] == "."
        tokens += [tok.id(word) for word in post_words[:-1][::-1]]
        tokens += tok.encode(people.value(person, ATTRIBUTES[attribute]))
        tokens += [tok.id(word) for word in vocabulary_words(mid)[::-1]]
        tokens += tok.encode(subject)
        tokens += [tok.id(word) for word in vocabulary_words(pre)[::-1]] + [tok.id(".")]
    return tokens


@pytest.mark.parametrize("fullname", [False, True])
def test_reverse_follows_each_rendering_with_its_reversed_twin(people, fullname):
    people = tricky(people)
    tok = bio.tokenizer()
    persons = np.arange(0, len(people), 13)
    forward_augment = Augment(multi=2, permute=True, fullname=fullname)
    augment = dataclasses.replace(forward_augment, reverse=True)
    assert augment.documents_per_person == 4
    docs = bio.biographies(people, seed=4, augment=augment, persons=persons)
    forward = bio.biographies(people, seed=4, augment=forward_augment, persons=persons)
    _, templates, order = bio.text.rendering_plan(4, persons, forward_augment)
    np.testing.assert_array_equal(docs.person, np.repeat(persons, 4))
    assert docs.offsets[-1] == len(docs.tokens)
    for i, person in enumerate(persons.tolist()):
        for k in range(2):
            twin, original, plan = docs.document(4 * i + 2 + k), forward.document(2 * i + k), 2 * i + k
            # The forward renderings are those of the augmentation without reverse, spans included.
            np.testing.assert_array_equal(docs.document(4 * i + k), original)
            np.testing.assert_array_equal(docs.value_spans[4 * i + k], forward.value_spans[plan])
            assert twin.tolist() == reference_reversed_tokens(people, person, templates[plan], order[plan], fullname)
            # The same words reordered; a twin may add a "." where a value's own ("D.C.") ended the sentence.
            period = tok.id(".")
            assert np.array_equal(np.sort(twin[twin != period]), np.sort(original[original != period]))
            assert 0 <= len(twin) - len(original) <= SENTENCES_PER_DOC
            d = 4 * i + 2 + k
            for a, attribute in enumerate(ATTRIBUTES):
                start, end = docs.value_spans[d, a]
                assert twin[start:end].tolist() == tok.encode(people.value(person, attribute))
            start, end = docs.name_spans[d]
            assert tok.decode(twin[start:end]) == people.full_name(person)
            name_ids = tok.encode(people.full_name(person))
            first_name = next(j for j in range(len(twin)) if twin[j:j + 3].tolist() == name_ids)
            assert start == first_name
            if fullname:
                assert docs.pronoun_positions[d] == -1
            else:
                # The only naming sentence comes last, so every value is read before the name.
                assert docs.value_spans[d, :, 1].max() <= start
                pronouns = [tok.id(w) for w in ("He", "She", "he", "she", "His", "Her", "his", "her")]
                first_pronoun = next(j for j, token in enumerate(twin.tolist()) if token in pronouns)
                assert docs.pronoun_positions[d] == first_pronoun


def test_fixed_templates_are_reused_without_fresh_templates(people):
    persons = np.arange(100)
    augment = Augment(multi=5, permute=True, fresh_templates=False)
    _, templates, order = bio.text.rendering_plan(7, persons, augment)
    _, fixed, _ = bio.text.rendering_plan(7, persons, Augment())
    np.testing.assert_array_equal(templates, np.repeat(fixed, 5, axis=0))
    assert len({tuple(row) for row in order[:5].tolist()}) > 1
    # With full names a sentence reads the same wherever it stands, so every rendering is a
    # reordering of the fixed rendering's six sentences: the same tokens in another order.
    full = dataclasses.replace(augment, fullname=True)
    docs = bio.biographies(people, seed=7, augment=full, persons=persons)
    single = bio.biographies(people, seed=7, augment=Augment(fullname=True), persons=persons)
    fresh = bio.biographies(people, seed=7, augment=dataclasses.replace(full, fresh_templates=True), persons=persons)
    for j in range(100):
        expected = np.sort(single.document(j))
        for k in range(5):
            np.testing.assert_array_equal(np.sort(docs.document(5 * j + k)), expected)
        assert len({docs.text(5 * j + k) for k in range(5)}) > 1
        assert any(not np.array_equal(np.sort(fresh.document(5 * j + k)), expected) for k in range(1, 5))


def test_fixed_rendering_does_not_depend_on_persons(people):
    everyone = bio.biographies(people, seed=9)
    some = bio.biographies(people, seed=9, persons=np.array([17, 3, 250]))
    for d, person in enumerate([17, 3, 250]):
        np.testing.assert_array_equal(some.document(d), everyone.document(person))
        np.testing.assert_array_equal(some.value_spans[d], everyone.value_spans[person])
    multi = Augment(multi=3, permute=True)
    all_multi = bio.biographies(people, seed=9, augment=multi, persons=np.arange(20))
    one_multi = bio.biographies(people, seed=9, augment=multi, persons=np.array([13]))
    for k in range(3):
        np.testing.assert_array_equal(one_multi.document(k), all_multi.document(3 * 13 + k))
    other_seed = bio.biographies(people, seed=10, persons=np.arange(20))
    assert all(other_seed.text(j) != everyone.text(j) for j in range(20))  # the seed does matter
    with pytest.raises(DataError, match="persons"):
        bio.biographies(people, seed=9, persons=np.array([len(people)]))
    with pytest.raises(ConfigError):
        Augment(multi=0)


def test_qa_pairs_and_tokens_match_the_table(people):
    tok = bio.tokenizer()
    persons = np.array([5, 0, 42])
    pairs = bio.qa_pairs(people, persons)
    questions, answers, attribute = bio.qa_tokens(people, persons)
    assert len(pairs) == len(questions) == len(answers) == len(attribute) == 18
    for index, pair in enumerate(pairs):
        person, a = int(persons[index // 6]), index % 6
        assert (pair.person, pair.attribute) == (person, ATTRIBUTES[a]) and attribute[index] == a
        assert pair.answer == people.value(person, ATTRIBUTES[a])
        assert people.full_name(person) in pair.question and pair.question.endswith("?")
        assert tok.decode(questions[index]) == pair.question
        assert tok.decode(answers[index]) == pair.answer
        assert questions[index].tolist() == tok.encode(pair.question)
    assert pairs[2].question == f"Which university did {people.full_name(5)} study?"


def test_tokenizer_round_trips_and_rejects_unknown_words(people):
    tok = bio.tokenizer()
    assert tok.vocab[:4] == ("<pad>", "<bos>", "<eos>", "<mask>") and tok.id("<useful>") == 4
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.mask_id) == (0, 1, 2, 3) and tok.vocab_size == len(tok.vocab)
    assert list(tok.vocab[5:]) == sorted(tok.vocab[5:])
    assert all(str(number) in tok.vocab for number in (0, 28, 1900, 2099)) and "December" in tok.vocab
    pools = bio.people.pools()
    texts = [*pools.cities, *pools.universities, *pools.majors, *pools.employers, *pools.employer_cities,
             *(pair.question for pair in bio.qa_pairs(people, np.arange(50)))]
    docs = bio.biographies(tricky(people), seed=0, augment=Augment(multi=2, permute=True), persons=np.arange(40))
    texts += [docs.text(d) for d in range(len(docs))]
    for text, ids in zip(texts, tok.encode_many(texts)):
        assert ids.dtype == np.int32 and tok.decode(ids) == text
    assert tok.encode("Caterpillar Inc.,") == [tok.id("Caterpillar"), tok.id("Inc"), tok.id("."), tok.id(",")]
    assert tok.encode("Ben & Jerry's") == [tok.id("Ben"), tok.id("&"), tok.id("Jerry"), tok.id("'s")]
    with pytest.raises(DataError, match="'Zanzibar'"):
        tok.encode("He was born in Zanzibar.")
    with pytest.raises(DataError, match="space"):
        tok.encode("He  was born.")
    with pytest.raises(DataError):
        tok.encode("He was born .")
    with pytest.raises(DataError):
        tok.id("Zanzibar")


def test_manipulation_phrases_are_in_the_vocabulary():
    tok = bio.tokenizer()
    for phrase in bio.manipulation.PHRASES:
        assert all(word in tok.vocab for word in vocabulary_words(phrase))
