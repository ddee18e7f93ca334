"""Part 3.1 of Physics of Language Models: the made-up people of bioS, as a table of indices.

    people = sample_people(seed, n)     unique full names, uniformly drawn attributes
    people.value(i, "birth_date")       "October 2, 1996": the text biographies and answers use
    people.labels("employer_city")      one class per person, for probes and accuracy by attribute
    pools()                             the attribute value lists shipped in data/bio

Everything about a person that does not depend on how it is written lives here; text.py renders
people into biographies and questions.
"""
from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np

from lmphys.errors import DataError

ATTRIBUTES = ("birth_date", "birth_city", "university", "major", "employer", "employer_city")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")
FIRST_YEAR, NUM_YEARS, DAYS_PER_MONTH = 1900, 200, 28  # the paper's calendar: 1900-2099, days 1-28
DAYS_PER_YEAR = 12 * DAYS_PER_MONTH
NUM_DATES = NUM_YEARS * DAYS_PER_YEAR
DATA_DIR = os.path.join(os.path.dirname(__file__), "data")


# ---------------------------------------------------------------------------------------------
# Attribute pools


@dataclasses.dataclass(frozen=True)
class Pools:
    """The attribute value lists (data/bio, PhysicsLM4's bioS fields)."""

    first_names: tuple[str, ...]
    middle_names: tuple[str, ...]
    last_names: tuple[str, ...]
    cities: tuple[str, ...]
    universities: tuple[str, ...]
    majors: tuple[str, ...]
    employers: tuple[str, ...]
    employer_cities: tuple[str, ...]  # headquarters city of employers[i]


def _read_lines(filename: str) -> tuple[str, ...]:
    path = os.path.join(DATA_DIR, filename)
    try:
        with open(path, encoding="utf-8") as handle:
            lines = tuple(line.strip() for line in handle.read().splitlines())
    except OSError as error:
        raise DataError(f"bioS pool file {path} is missing ({error}); reinstall lmphys") from error
    return tuple(line for line in lines if line)


@functools.cache
def pools() -> Pools:
    employers, employer_cities = [], []
    for line in _read_lines("company.txt"):
        name, separator, city = line.partition("; ")
        if not separator or not name or not city:
            raise DataError(f"company.txt line {line!r} is not 'Name; HQ City, ST'")
        employers.append(name)
        employer_cities.append(city)
    return Pools(
        first_names=_read_lines("first_name.txt"),
        middle_names=_read_lines("middle_name.txt"),
        last_names=_read_lines("last_name.txt"),
        cities=_read_lines("city.txt"),
        universities=_read_lines("university.txt"),
        majors=_read_lines("field.txt"),
        employers=tuple(employers),
        employer_cities=tuple(employer_cities),
    )


@functools.cache
def _employer_city_classes() -> tuple[tuple[str, ...], np.ndarray]:
    """(distinct HQ cities sorted, class of each employer's HQ city): employers share cities."""
    cities = pools().employer_cities
    classes = tuple(sorted(set(cities)))
    position = {city: index for index, city in enumerate(classes)}
    return classes, np.array([position[city] for city in cities], np.int64)


def max_people() -> int:
    """How many distinct full names the pools allow (400 x 400 x 1000)."""
    p = pools()
    return len(p.first_names) * len(p.middle_names) * len(p.last_names)


def _check_attribute(attribute: str) -> int:
    if attribute not in ATTRIBUTES:
        raise DataError(f"unknown attribute {attribute!r}; expected one of {', '.join(ATTRIBUTES)}")
    return ATTRIBUTES.index(attribute)


def date_text(year: int, month: int, day: int) -> str:
    return f"{MONTHS[month - 1]} {day}, {year}"


# ---------------------------------------------------------------------------------------------
# People


@dataclasses.dataclass(frozen=True)
class People:
    """A table of n people: one int array of length n per field."""

    first: np.ndarray  # indices into pools().first_names
    middle: np.ndarray  # indices into pools().middle_names
    last: np.ndarray  # indices into pools().last_names
    birth_year: np.ndarray  # 1900..2099
    birth_month: np.ndarray  # 1..12
    birth_day: np.ndarray  # 1..28
    birth_city: np.ndarray  # indices into pools().cities
    university: np.ndarray  # indices into pools().universities
    major: np.ndarray  # indices into pools().majors
    employer: np.ndarray  # indices into pools().employers (and employer_cities)
    gender: np.ndarray  # 0: he, 1: she; independent of the name

    def __len__(self) -> int:
        return int(self.first.shape[0])

    def full_name(self, i: int) -> str:
        p = pools()
        return f"{p.first_names[self.first[i]]} {p.middle_names[self.middle[i]]} {p.last_names[self.last[i]]}"

    def value(self, i: int, attribute: str) -> str:
        """The attribute's text as biographies and answers write it, e.g. "October 2, 1996"."""
        index = _check_attribute(attribute)
        p = pools()
        if index == 0:
            return date_text(int(self.birth_year[i]), int(self.birth_month[i]), int(self.birth_day[i]))
        table = (None, p.cities, p.universities, p.majors, p.employers, p.employer_cities)[index]
        column = (None, self.birth_city, self.university, self.major, self.employer, self.employer)[index]
        return table[column[i]]

    def labels(self, attribute: str) -> np.ndarray:
        """int64 [n] class of every person's value: a pool index; birth_date is
        (year-1900)*336 + (month-1)*28 + (day-1); employer_city indexes sorted(set(employer_cities))."""
        index = _check_attribute(attribute)
        if index == 0:
            return ((self.birth_year.astype(np.int64) - FIRST_YEAR) * DAYS_PER_YEAR
                    + (self.birth_month.astype(np.int64) - 1) * DAYS_PER_MONTH + self.birth_day - 1)
        if index == 5:
            return _employer_city_classes()[1][self.employer]
        return (None, self.birth_city, self.university, self.major, self.employer)[index].astype(np.int64)

    def label(self, i: int, attribute: str) -> int:
        return int(self.subset([i]).labels(attribute)[0])

    def subset(self, indices) -> People:
        indices = np.asarray(indices, np.int64)
        return People(**{field.name: getattr(self, field.name)[indices] for field in dataclasses.fields(self)})


def num_classes(attribute: str) -> int:
    """How many values `People.label(_, attribute)` ranges over."""
    index = _check_attribute(attribute)
    p = pools()
    sizes = (NUM_DATES, len(p.cities), len(p.universities), len(p.majors), len(p.employers),
             len(_employer_city_classes()[0]))
    return sizes[index]


def sample_people(seed: int, n: int) -> People:
    """n people with distinct full names and uniformly drawn attributes; a function of (seed, n)."""
    limit = max_people()
    if not 0 <= n <= limit:
        raise DataError(f"cannot sample {n} people: there are {limit:,} distinct full names "
                        f"(first x middle x last pools), so n must be in 0..{limit:,}")
    p = pools()
    rng = np.random.default_rng([int(seed) % 2**64, n])
    names = rng.choice(limit, size=n, replace=False)  # distinct name triples, in random order
    middle_last = len(p.middle_names) * len(p.last_names)
    return People(
        first=names // middle_last,
        middle=names % middle_last // len(p.last_names),
        last=names % len(p.last_names),
        birth_year=rng.integers(FIRST_YEAR, FIRST_YEAR + NUM_YEARS, n),
        birth_month=rng.integers(1, 13, n),
        birth_day=rng.integers(1, DAYS_PER_MONTH + 1, n),
        birth_city=rng.integers(0, len(p.cities), n),
        university=rng.integers(0, len(p.universities), n),
        major=rng.integers(0, len(p.majors), n),
        employer=rng.integers(0, len(p.employers), n),
        gender=rng.integers(0, 2, n),
    )


def check_persons(people: People, persons=None) -> np.ndarray:
    """`persons` as int64 indices into `people` (None: everyone), or a DataError naming what is wrong."""
    if persons is None:
        return np.arange(len(people), dtype=np.int64)
    persons = np.asarray(persons)
    if persons.ndim != 1 or (persons.size and not np.issubdtype(persons.dtype, np.integer)):
        raise DataError(f"persons must be a 1-D array of person indices, got shape {persons.shape} {persons.dtype}")
    persons = persons.astype(np.int64)
    if persons.size and (persons.min() < 0 or persons.max() >= len(people)):
        raise DataError(f"persons must index the {len(people)} people, got values in "
                        f"{persons.min()}..{persons.max()}")
    return persons
