"""What "shares wording" means for the demo's paraphrases and questions (tests/test_demo_world.py checks every
paraphrase template of a relation against every question template of it, and kinject.demo.facts keeps no
paraphrase whose wrapper shares wording with the relation's questions).

A template's **wording** is its content words: lower-cased runs of letters, the entity slots ({s}, {o}) and
digits removed, less the function words in :data:`STOPWORDS` (articles, prepositions, auxiliaries and modals,
question words, pronouns, conjunctions). Two words **share wording** when they have a stem in common, a word's
stems being its first five letters and, with an ending -ing, -ed, -es, -s or -d cut off (at least three letters
left), the first five letters of the rest: "islands" and "island", "ended" and "end", "charted" and "charts",
"founded" and "founder", "used" and "use" share one (so an inflection or a derived word is not a way round),
"architect" and "archival" too (a rare false alarm, which only makes the check stricter).
"""

from __future__ import annotations

import re

STOPWORDS = frozenset(
    "a an the of in on at to by for from with as into over per is are was were be been has have had does do did "
    "what which who whom whose when where how many much it its that this there their his her they he she and or "
    "each every can could may might will would shall should must".split())
STEM = 5


def content_words(template: str) -> set[str]:
    """A template's content words (its entity slots and digits removed)."""
    text = re.sub(r"\{[a-z]+\}", " ", template.lower())
    return {w for w in re.findall(r"[a-z]+", text) if w not in STOPWORDS}


ENDINGS = ("ing", "ed", "es", "s", "d")


def stems(word: str) -> set[str]:
    """A word's stems: its first :data:`STEM` letters, and those of the word without its ending (:data:`ENDINGS`)."""
    out = {word[:STEM]}
    for ending in ENDINGS:
        if word.endswith(ending) and len(word) - len(ending) >= 3:
            out.add(word[: -len(ending)][:STEM])
            break
    return out


def shared_wording(template: str, others) -> list[str]:
    """The content words of ``template`` that share a stem with a content word of one of ``others``."""
    theirs = {s for other in others for w in content_words(other) for s in stems(w)}
    return sorted(w for w in content_words(template) if stems(w) & theirs)
