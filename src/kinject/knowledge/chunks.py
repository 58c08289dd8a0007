"""Chunks and the knowledge-base report: each article's paragraphs (then sentences) packed into chunks of
chunking.min_words..max_words; one report per task from the fetch and clean counts and the chunks (with the
wiki-markup residue left in them)."""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from pathlib import Path

import pandas as pd

from kinject.errors import KinjectError
from kinject.io import read_parquet, write_json, write_parquet
from kinject.knowledge.clean import EMPTY_BRACKETS, ENTITY

log = logging.getLogger(__name__)


def split_sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def chunk_article(text: str, min_words: int, max_words: int) -> list[str]:
    """Greedily pack an article's paragraphs (then sentences, when a paragraph is too long) into chunks
    of at most max_words; section-title lines are dropped; chunks under min_words are dropped."""
    units = []
    for para in text.split("\n"):
        words = para.split()
        if len(words) < 4:  # wikiextractor turns "== History ==" into a one-word line "History."
            continue
        units += [para] if len(words) <= max_words else split_sentences(para)
    chunks, current = [], []
    for unit in units:
        if current and len(" ".join(current + [unit]).split()) > max_words:
            chunks.append(" ".join(current))
            current = []
        current.append(unit)
    if current:
        chunks.append(" ".join(current))
    return [c for c in chunks if len(c.split()) >= min_words]


def make_chunks(articles_jsonl, out, *, min_words: int, max_words: int) -> int:
    rows = []
    with open(articles_jsonl, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            try:
                doc = json.loads(line)
                text, title, page_id = doc["text"], doc["title"], doc["id"]
            except (json.JSONDecodeError, KeyError) as exc:
                raise KinjectError(articles_jsonl, f"line {n} is not an article record ({exc})") from None
            for i, chunk in enumerate(chunk_article(text, min_words, max_words)):
                rows.append({"chunk_id": f"{page_id}-{i}", "title": title, "text": chunk,
                             "n_words": len(chunk.split())})
    if not rows:
        raise KinjectError(articles_jsonl, f"no chunk of at least {min_words} words (chunking.min_words)")
    write_parquet(out, pd.DataFrame(rows))
    log.info("%d chunks", len(rows))
    return len(rows)


# The report ----------------------------------------------------------------------------------------------

RESIDUE = {
    "wiki_markup": re.compile(r"\[\[|\]\]|\{\{|\}\}|\{\||\|\}|'''|</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>"
                              r"|__[A-Z]+__|^=+[^=\n]+=+\s*$", re.M),
    "html_entities": ENTITY,
    "empty_brackets": EMPTY_BRACKETS,
}


def residue_counts(texts) -> dict[str, int]:
    """Occurrences of what cleaning should have removed: wiki markup, HTML entities, empty brackets."""
    return {kind: sum(len(pattern.findall(t)) for t in texts) for kind, pattern in RESIDUE.items()}


def knowledge_base_report(fetch_counts, clean_counts, chunks, out, *, task: str) -> dict:
    """One report per task, whatever the source: pages in, kept, dropped by reason (fetch and cleaning),
    chunks made and residue per 1,000 chunks, with the fetch and cleaning counts in full."""
    stages = {}
    for name, path in (("fetch", fetch_counts), ("clean", clean_counts)):
        try:
            stages[name] = json.loads(Path(path).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError) as exc:
            raise KinjectError(path, f"not a readable count file ({exc})") from None
    texts = read_parquet(chunks, columns=["title", "text"])
    residue = residue_counts(texts["text"])
    dropped = Counter()
    for stage in stages.values():
        dropped.update(stage["dropped"])
    report = {
        "task": task,
        "source": stages["fetch"]["source"],
        "pages_in": stages["fetch"]["pages_in"],
        "pages_kept": stages["clean"]["pages_kept"],
        "dropped": dict(dropped),
        "chunks": len(texts),
        "articles_with_chunks": int(texts["title"].nunique()),
        "residue": residue,
        "residue_per_1000_chunks": {k: round(1000 * v / len(texts), 2) for k, v in residue.items()},
        **stages,
    }
    write_json(out, report)
    log.info("%s: %d pages in, %d articles kept, %d chunks; residue per 1,000 chunks: %s", task,
             report["pages_in"], report["pages_kept"], len(texts),
             ", ".join(f"{k} {v}" for k, v in report["residue_per_1000_chunks"].items()))
    if any(residue.values()):
        log.warning("%s: residue left in the chunks: %s", task, residue)
    return report
