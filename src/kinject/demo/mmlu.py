"""The atlas subject as MMLU's CSV files: dev and test questions about distinct facts, with distractors
from the fact's domain pool and balanced answer letters."""

from __future__ import annotations

import csv
import io
import random

from kinject.demo.author import Fact


def mmlu_rows(facts: list[Fact], pools: dict[str, list[str]], rng: random.Random,
              letters: list[str]) -> list[list[str]]:
    rows = []
    for fact, letter in zip(facts, letters):
        distractors = rng.sample([v for v in pools[fact.domain] if v != fact.object], 3)
        k = "ABCD".index(letter)
        rows.append([fact.question, *distractors[:k], fact.object, *distractors[k:], letter])
    return rows


def csv_text(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def mmlu_files(atlas_facts: list[Fact], pools: dict[str, list[str]], rng: random.Random) -> dict[str, str]:
    """5 dev and 40 test questions about distinct atlas facts, answer letters balanced."""
    picked = rng.sample(atlas_facts, 45)
    dev_letters, test_letters = list("ABCDA"), list("ABCD" * 10)
    rng.shuffle(dev_letters)
    rng.shuffle(test_letters)
    return {"mmlu/data/dev/atlas_dev.csv": csv_text(mmlu_rows(picked[:5], pools, rng, dev_letters)),
            "mmlu/data/test/atlas_test.csv": csv_text(mmlu_rows(picked[5:], pools, rng, test_letters))}
