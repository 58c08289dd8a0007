"""Stating facts: every sentence that states a fact (the relation's clauses, bare and wrapped), each
paragraph's chosen sentences, the Fact registry entries (paraphrases, questions) and the distractor pools.

A fact's paraphrases are made of its relation's paraphrase clauses (lexicon.yaml ``paraphrases``), never of the
clauses its articles are written in, bare or inside a wrapper, both sharing no wording with the relation's
questions (kinject.demo.wording): the paraphrase sets then add other wordings of a fact, not the questions' own."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from kinject.demo.author import Fact
from kinject.demo.lexicon import RELATIONS, WRAPPERS
from kinject.demo.model import KB, Article
from kinject.demo.wording import shared_wording

N_PARAPHRASES = 12
MAX_LENGTH = 2.2  # a paraphrase's length at most this many times its sentence's


def capfirst(text: str) -> str:
    return text[:1].upper() + text[1:]


def renderings(kb: str, subject: str, relation: str, obj: str) -> list[str]:
    """Every sentence stating the fact: each clause, bare then inside each wrapper. A rendering whose
    sentence-start capital would alter the object (e.g. 'the X Sea ...') is left out."""
    out = []
    for wrapper in WRAPPERS[kb]:
        for clause in RELATIONS[relation].clauses:
            text = capfirst(wrapper.format(c=clause.format(s=subject, o=obj)))
            if obj in text and text not in out:
                out.append(text)
    return out


def paraphrase_renderings(kb: str, subject: str, relation: str, obj: str) -> list[str]:
    """Every paraphrase of the fact: each paraphrase clause of its relation, bare then inside each wrapper of the
    kb that shares no wording with the relation's questions (the object kept verbatim, as :func:`renderings`)."""
    questions = RELATIONS[relation].questions
    out = []
    for wrapper in (w for w in WRAPPERS[kb] if not shared_wording(w, questions)):
        for clause in RELATIONS[relation].paraphrases:
            text = capfirst(wrapper.format(c=clause.format(s=subject, o=obj)))
            if obj in text and text not in out:
                out.append(text)
    return out


def _words(sentences) -> int:
    return sum(len(s.split()) for s in sentences)


def _paragraph_sentences(options: list[list[str]], rng: random.Random, kb: str, lead: str | None = None,
                         lo: int = 40, hi: int = 100) -> list[str]:
    """One bare rendering per fact (not opening with a number; an article's first sentence opens with
    its subject, ``lead``); a paragraph under lo words takes longer bare ones, then (one sentence at a
    time, each under a different wrapper) wrapped ones; over hi words, the shortest."""
    bare = [[r for r in opts if not is_wrapped(r)] for opts in options]
    bare = [[r for r in b if not r[0].isdigit()] or b for b in bare]
    if lead:
        bare[0] = [r for r in bare[0] if r.startswith(capfirst(lead))] or bare[0]
    chosen = [rng.choice(b) for b in bare]
    for i in sorted(range(len(bare)), key=lambda i: _words([chosen[i]]) - _words([max(bare[i], key=len)])):
        if _words(chosen) >= lo:
            break
        chosen[i] = max(bare[i], key=len)
    prefixes = [w.split("{")[0] for w in WRAPPERS[kb] if w != "{c}"]
    for k, i in enumerate(reversed(range(len(options)))):
        if _words(chosen) >= lo:
            break
        wrapped = [r for r in options[i] if r.lower().startswith(prefixes[k % len(prefixes)])]
        chosen[i] = max(wrapped or options[i], key=len)
    if _words(chosen) > hi:
        chosen = [min(b, key=len) for b in bare]
    if not lo <= _words(chosen) <= hi:
        raise ValueError(f"paragraph of {_words(chosen)} words: {chosen}")
    return chosen


PREFIXES = tuple(w.split("{")[0] for ws in WRAPPERS.values() for w in ws if w != "{c}")


def is_wrapped(rendering: str) -> bool:
    return rendering.lower().startswith(PREFIXES)


def make_fact(fid: str, kb: str, title: str, triple: tuple[str, str, str], sentence: str, options: list[str],
              rng: random.Random, paraphrase_clauses: bool = True) -> Fact:
    """A registry entry; its paraphrases from the relation's paraphrase clauses (``paraphrase_clauses``; else from
    the other article renderings, ``options``, as the pre-training worlds' facts keep theirs)."""
    subject, relation, obj = triple
    others = [r for r in options if r != sentence]
    rng.shuffle(others)  # the world's one stream of draws, as it always took them (the articles stay as they were)
    if paraphrase_clauses:  # at most MAX_LENGTH times the sentence's length (a short fact, a long wrapper)
        others = [r for r in paraphrase_renderings(kb, subject, relation, obj) if len(r) < MAX_LENGTH * len(sentence)]
        random.Random(fid).shuffle(others)
    closest = sorted(others, key=lambda r: abs(len(r) - len(sentence)))[:N_PARAPHRASES]
    bare = [r for r in closest if not is_wrapped(r)]
    wrapped = [r for r in closest if is_wrapped(r)]
    mixed = [r for pair in zip(bare, wrapped) for r in pair] + bare[len(wrapped):] + wrapped[len(bare):]
    questions = tuple(capfirst(q.format(s=subject)) for q in RELATIONS[relation].questions)
    return Fact(id=fid, kb=kb, title=title, subject=subject, relation=relation, object=obj,
                domain=RELATIONS[relation].domain, sentence=sentence, paraphrases=tuple(mixed[:N_PARAPHRASES]),
                question=questions[0], questions=questions)


@dataclass
class StatedArticle:
    article: Article
    paragraphs: list[tuple[str | None, list[Fact]]]  # (section heading, facts of one paragraph)


def state_kb(kb: KB, rng: random.Random, paraphrase_clauses: bool = True) -> list[StatedArticle]:
    """Choose every paragraph's sentences and register each one as a Fact (ids in article order); its paraphrases
    as :func:`make_fact` makes them (a pre-training world: ``paraphrase_clauses`` False, its corpus unchanged)."""
    out, n = [], 0
    for article in kb.articles:
        paragraphs = []
        for heading, paras in article.sections:
            for para in paras:
                options = [renderings(kb.name, *t) for t in para]
                sentences = _paragraph_sentences(options, rng, kb.name, None if paragraphs else article.subject)
                facts = []
                for triple, sentence, opts in zip(para, sentences, options):
                    n += 1
                    facts.append(make_fact(f"{kb.name}-{n:04d}", kb.name, article.title, triple, sentence, opts, rng,
                                           paraphrase_clauses))
                paragraphs.append((heading, facts))
        out.append(StatedArticle(article, paragraphs))
    return out


NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")


def _pad(values: list[str], rng: random.Random, want: int = 8) -> list[str]:
    """More values like the given numeric ones (same format and unit), so there are enough distractors."""
    values = list(values)
    for _ in range(200):
        if len(values) >= want:
            break
        sample = rng.choice(values)
        num = NUMBER.search(sample).group()
        decimals = len(num.split(".")[1]) if "." in num else 0
        x = max(1.0, float(num.replace(",", "")) * rng.uniform(0.5, 1.8))
        new = sample.replace(num, f"{x:,.{decimals}f}", 1)
        if new not in values:
            values.append(new)
    return values


def domain_pools(kb: KB, stated: list[StatedArticle], rng: random.Random) -> dict[str, list[str]]:
    """Per object domain of the kb: its entity pool (or the objects stated), padded; sorted."""
    by_domain: dict[str, list[str]] = {}
    for sa in stated:
        for _, facts in sa.paragraphs:
            for f in facts:
                by_domain.setdefault(f.domain, []).append(f.object)
    pools = {}
    for domain, objects in sorted(by_domain.items()):
        values = list(dict.fromkeys([*kb.pools.get(domain, []), *objects]))
        if len(values) < 8 and domain not in ("year", "date", "score") and NUMBER.search(values[0]):
            values = _pad(values, rng)
        if len(values) < 4:
            raise ValueError(f"{kb.name}: domain {domain} has only {len(values)} values")
        pools[domain] = sorted(values)
    return pools
