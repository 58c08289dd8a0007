"""The pre-training corpus for the demo's tiny base model, from other (disjoint) fictional worlds."""

from __future__ import annotations

import random

from kinject.demo.author import Fact
from kinject.demo.facts import StatedArticle, is_wrapped


def _pretrain_rendering(fact: Fact, rng: random.Random) -> str:
    """Mostly the bare renderings (as in the articles), sometimes a wrapped one (as in paraphrases)."""
    bare = [r for r in fact.renderings if not is_wrapped(r)]
    return rng.choice(bare if bare and rng.random() < 0.75 else fact.renderings)


def pretrain_docs(stated: list[StatedArticle], rng: random.Random) -> list[str]:
    """From one pre-training world: every paragraph as plain text (its facts in random renderings),
    reading-comprehension docs shaped like the RAG evaluation prompt (the answer is copied from one of
    1-3 context paragraphs), and a few closed-book question/answer docs."""
    paragraphs = []
    for sa in stated:
        for _, facts in sa.paragraphs:
            paragraphs.append(([_pretrain_rendering(f, rng) for f in facts], facts))
    texts = [" ".join(s) for s, _ in paragraphs]
    docs = list(texts)
    for i, (_, facts) in enumerate(paragraphs):
        for fact in rng.sample(facts, min(2, len(facts))):
            context = [texts[i]] + [texts[j] for j in rng.sample(range(len(texts)), rng.randint(0, 2)) if j != i]
            rng.shuffle(context)
            docs.append("\n\n".join(context) + f"\n\nQuestion: {rng.choice(fact.questions)}\nAnswer: {fact.object}")
        if rng.random() < 0.35:
            fact = rng.choice(facts)
            docs.append(f"Question: {rng.choice(fact.questions)}\nAnswer: {fact.object}")
    return docs
