"""The demo world's model: made-up names, value formats, and articles of (subject, relation, object) facts
grouped into knowledge bases (the builders, kinject.demo.atlas and kinject.demo.current_events, fill them)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from kinject.demo.lexicon import CODAS, INNER, MONTHS, ONSETS, VOWELS


class Names:
    """Unique made-up names (shared by both KBs and the pre-training worlds, so no name repeats)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.taken: set[str] = set()

    def word(self, syllables: int | None = None) -> str:
        while True:
            n = syllables or self.rng.choice([2, 2, 2, 3])
            inner = "".join(self.rng.choice(INNER) + self.rng.choice(VOWELS) for _ in range(n - 1))
            w = (self.rng.choice(ONSETS) + self.rng.choice(VOWELS) + inner + self.rng.choice(CODAS)).capitalize()
            if 4 <= len(w) <= 10 and w.lower() not in self.taken:
                self.taken.add(w.lower())
                return w

    def person(self) -> str:
        return f"{self.word(2)} {self.word()}"


def thousands(n: int) -> str:
    return f"{n:,}"


def random_date(rng: random.Random, months=range(12), year: int = 2031) -> str:
    return f"{rng.randint(1, 28)} {MONTHS[rng.choice(list(months))]} {year}"


def date_after(date: str, rng: random.Random, min_days: int, max_days: int) -> str:
    d, m, y = date.split()
    total = min(12 * 28 - 1, MONTHS.index(m) * 28 + int(d) - 1 + rng.randint(min_days, max_days))
    return f"{total % 28 + 1} {MONTHS[total // 28]} {y}"


@dataclass
class Article:
    """One encyclopedia page: its sections of fact paragraphs (each fact a (subject, relation, object))."""

    title: str
    subject: str
    infobox: str
    fields: list[tuple[str, str]]
    category: str
    sections: list[tuple[str | None, list[list[tuple[str, str, str]]]]]
    table: list[list[str]] | None = None
    see_also: list[str] = field(default_factory=list)


def about(subject: str, *facts) -> list[tuple[str, str, str]]:
    return [(subject, rel, obj) for rel, obj in facts]


@dataclass
class KB:
    name: str
    articles: list[Article]
    pools: dict[str, list[str]]
