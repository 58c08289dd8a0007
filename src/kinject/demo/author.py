"""The offline "author" that writes the demo's recorded LLM replies (resources/demo/llm_cache).

No LLM is involved: it plays the part GPT-4 plays in the paper, and is what answers when the demo's response
cache is built (``python -m kinject.demo.build_cache``).

It reads the fictional world's fact registry (``world.json``, written by ``kinject.demo.world``) and
answers the pipeline's LLM requests from it: multiple-choice questions about a chunk, the choice
of the most specific questions, and paraphrases of a chunk. Everything is a pure function of its
arguments (seeds included), so the cache it writes is reproducible.
"""

from __future__ import annotations

import json
import random
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from kinject.errors import KinjectError


@dataclass(frozen=True)
class Fact:
    """One (subject, relation, object) fact and every way the world states or asks it."""

    id: str
    kb: str
    title: str
    subject: str
    relation: str
    object: str
    domain: str
    sentence: str  # as it appears in the wikiextractor-cleaned article
    paraphrases: tuple[str, ...]  # other renderings of the same fact, object kept verbatim
    question: str  # the canonical question; questions[0]
    questions: tuple[str, ...]  # every question phrasing

    @property
    def renderings(self) -> tuple[str, ...]:
        return (self.sentence, *self.paraphrases)

    def to_json(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


@dataclass
class World:
    """The registry: facts in article order, and per kb the value pool of every object domain."""

    facts: tuple[Fact, ...]
    domains: dict[str, dict[str, list[str]]]
    by_question: dict[str, Fact] = field(init=False, repr=False)
    object_counts: Counter = field(init=False, repr=False)

    def __post_init__(self):
        self.by_question = {q: f for f in self.facts for q in f.questions}
        self.object_counts = Counter(f.object for f in self.facts)

    def pool(self, fact: Fact) -> list[str]:
        return self.domains[fact.kb][fact.domain]


def load_world(path) -> World:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        facts = tuple(Fact(**{k: tuple(v) if isinstance(v, list) else v for k, v in f.items()})
                      for f in data["facts"])
        return World(facts, data["domains"])
    except FileNotFoundError:
        raise KinjectError(path, "file not found") from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise KinjectError(path, f"not a demo world registry ({type(exc).__name__}: {exc})") from None


def core_name(name: str) -> str:
    """The name without a leading 'the' (which a sentence may capitalise)."""
    return name[4:] if name.startswith("the ") else name


def fact_spans(world: World, text: str) -> list[tuple[int, int, Fact]]:
    """(start, end, fact) of every known rendering found in ``text``, non-overlapping, in text order."""
    found = []
    for fact in world.facts:
        if core_name(fact.subject) not in text or fact.object not in text:
            continue
        hits = [(text.find(r), -len(r)) for r in fact.renderings if r in text]
        if hits:
            start, neg = min(hits)
            found.append((start, start - neg, fact))
    spans, end = [], -1
    for start, stop, fact in sorted(found, key=lambda s: (s[0], -s[1])):
        if start >= end:
            spans.append((start, stop, fact))
            end = stop
    return spans


def facts_in(world: World, chunk_text: str) -> list[Fact]:
    return [fact for _, _, fact in fact_spans(world, chunk_text)]


def _multiple_choice(world: World, fact: Fact, question: str, rng: random.Random) -> dict:
    distractors = rng.sample([v for v in world.pool(fact) if v != fact.object], 3)
    answer = rng.randrange(4)
    return {"question": question, "choices": distractors[:answer] + [fact.object] + distractors[answer:],
            "answer": answer}


def author_questions(world: World, chunk_text: str, n: int = 4, seed: int = 0) -> list[dict]:
    """n questions about the chunk's facts (the seed picks the first fact); when the chunk has fewer
    than n facts, the next round asks the same facts with their next question phrasing."""
    facts = facts_in(world, chunk_text)
    if not facts:
        return []
    start = random.Random(f"start|{seed}").randrange(len(facts))
    out = []
    for i in range(n):
        fact = facts[(start + i) % len(facts)]
        phrasing = fact.questions[(i // len(facts)) % len(fact.questions)]
        out.append(_multiple_choice(world, fact, phrasing, random.Random(f"{seed}|{fact.id}|{i}")))
    return out


def specificity(world: World, question: dict, index: int) -> tuple:
    """Sort key, most specific first: an answer shared by fewer facts of the world (a rarer object),
    then a longer subject name, then a longer question, then the earlier one. Unknown questions sort last."""
    fact = world.by_question.get(question["question"])
    if fact is None:
        return (float("inf"), 0, 0, index)
    return (world.object_counts[fact.object], -len(fact.subject), -len(question["question"]), index)


def author_selection(world: World, questions: list[dict], keep: int = 2) -> list[int]:
    """Indices (ascending) of the ``keep`` most specific questions (see ``specificity``): first one
    question per known fact, then the next best of the rest."""
    ranked = sorted(range(len(questions)), key=lambda i: specificity(world, questions[i], i))
    picked, seen = [], set()
    for i in ranked:
        fact = world.by_question.get(questions[i]["question"])
        if fact is not None and fact.id not in seen and len(picked) < keep:
            picked.append(i)
            seen.add(fact.id)
    picked += [i for i in ranked if i not in picked][: keep - len(picked)]
    return sorted(picked)


def author_paraphrases(world: World, chunk_text: str, n: int, seed: int) -> list[str]:
    """n paraphrases: each known fact sentence is swapped for another rendering of its fact. Paraphrase
    i of a call with seed s uses rendering number (offset(fact) + s*n + i), so the paraphrases of one
    call (and of consecutive seeds) differ; text that states no known fact is kept as it is."""
    spans = fact_spans(world, chunk_text)
    out = []
    for i in range(n):
        text = chunk_text
        for start, stop, fact in reversed(spans):
            others = [r for r in fact.renderings if r != chunk_text[start:stop]]
            pick = others[(zlib.crc32(fact.id.encode()) + seed * n + i) % len(others)]
            text = text[:start] + pick + text[stop:]
        out.append(text)
    return out


def author_entities(world: World, chunk_text: str) -> dict:
    """Synthetic CPT's entity call (kinject.qa.entigraph): the subjects and objects of the chunk's facts, in text order,
    each once, and a one-sentence summary naming the articles."""
    facts = facts_in(world, chunk_text)
    names = list(dict.fromkeys(name for f in facts for name in (f.subject, f.object)))
    titles = list(dict.fromkeys(f.title for f in facts))
    summary = f"An account of {', '.join(titles)}." if titles else "An account with no known facts."
    return {"summary": summary, "entities": names}


def author_relation(world: World, chunk_text: str, entities: list[str], seed: int) -> str:
    """Synthetic CPT's relation call: a passage stating every fact of the chunk that involves one of ``entities``
    (those involving two or more first), each in one of its paraphrase renderings (never a question's wording: see
    kinject.demo.wording), picked by the entities and the seed; joined as one passage."""
    wanted = set(entities)
    involved = [f for f in facts_in(world, chunk_text) if {f.subject, f.object} & wanted]
    involved.sort(key=lambda f: -len({f.subject, f.object} & wanted))
    key = "|".join(entities)
    sentences = []
    for fact in involved:
        pool = fact.paraphrases or (fact.sentence,)
        pick = pool[(zlib.crc32(f"{fact.id}|{key}".encode()) + seed) % len(pool)]
        sentences.append(pick[0].upper() + pick[1:])
    return " ".join(sentences)
