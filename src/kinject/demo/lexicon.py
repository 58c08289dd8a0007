"""The demo world's relation templates and word lists, read from the data file ``lexicon.yaml``.

A relation's clauses and questions are written out there, or name a shared ``form`` whose placeholders
({p}, {noun}, {verb}) the relation fills; what this module hands on is the expanded tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import yaml

DATA = "lexicon.yaml"


@dataclass(frozen=True)
class Relation:
    """How a fact of one relation is stated: clause templates ({s}, {o}; written lower-case where they
    begin with an ordinary word, the sentence start is capitalised later) and question templates."""

    domain: str
    clauses: tuple[str, ...]
    questions: tuple[str, ...]
    paraphrases: tuple[str, ...] = ()  # clauses for paraphrases only, sharing no wording with the questions


def _fill(template: str, params: dict[str, str]) -> str:
    for key, value in params.items():
        template = template.replace("{" + key + "}", value)
    return template


def relation(entry: dict, forms: dict[str, dict], paraphrases=()) -> Relation:
    """One relation of the data file: written out, or a form filled with the entry's other keys; with its
    paraphrase clauses (the data file's ``paraphrases``)."""
    if "form" not in entry:
        return Relation(entry["domain"], tuple(entry["clauses"]), tuple(entry["questions"]), tuple(paraphrases))
    params = {k: v for k, v in entry.items() if k not in ("form", "domain")}
    form = forms[entry["form"]]
    return Relation(entry.get("domain", form.get("domain")), tuple(_fill(c, params) for c in form["clauses"]),
                    tuple(_fill(q, params) for q in form["questions"]), tuple(paraphrases))


def load(text: str | None = None) -> dict:
    """The data file (or ``text`` in its format), relations expanded: {relations, wrappers, words}."""
    data = yaml.safe_load(text if text is not None else resources.files(__package__).joinpath(DATA).read_text("utf-8"))
    paraphrases = data.get("paraphrases", {})
    return {"relations": {name: relation(entry, data["forms"], paraphrases.get(name, ()))
                          for name, entry in data["relations"].items()},
            "wrappers": data["wrappers"], "words": data["words"]}


_LEXICON = load()
RELATIONS: dict[str, Relation] = _LEXICON["relations"]
WRAPPERS: dict[str, list[str]] = _LEXICON["wrappers"]
WORDS: dict[str, list[str]] = _LEXICON["words"]

MONTHS, ONSETS, INNER, VOWELS, CODAS = (WORDS[k] for k in ("months", "onsets", "inner", "vowels", "codas"))
COMMODITIES, INDUSTRIES, PARTY_WORDS = WORDS["commodities"], WORDS["industries"], WORDS["party_words"]
TITLE_ADJ, TITLE_NOUN, DESTINATIONS = WORDS["title_adj"], WORDS["title_noun"], WORDS["destinations"]
TOPICS, RESEARCH, MOTTOS, COLOURS = WORDS["topics"], WORDS["research"], WORDS["mottos"], WORDS["colours"]
PRODUCTS, SCORES = WORDS["products"], WORDS["scores"]
