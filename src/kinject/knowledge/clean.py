"""Cleaning a knowledge base's pages: wikiextractor's Extractor in this process (a pool of processes for
many pages), HTML entities unescaped, empty brackets and runs of whitespace removed; one article per page with
text, and the counts of what was dropped (and why)."""

from __future__ import annotations

import html
import itertools
import json
import logging
import re
from collections import Counter, deque
from concurrent.futures import ProcessPoolExecutor

from wikiextractor.extract import _DEFAULT_IGNORED_TAG_PATTERNS, Extractor, ignoreTag

from kinject.errors import KinjectError
from kinject.io import atomic_path, write_json
from kinject.knowledge.wikidump import (
    DROP_REASONS,
    DumpReader,
    Page,
    SiteInfo,
    drop_reason,
)

log = logging.getLogger(__name__)


ENTITY = re.compile(r"&(?:#\d+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]{1,31});")
EMPTY_BRACKETS = re.compile(r"\([^\w()]*\)|\[[^\w\[\]]*\]")
_SPACED_EMPTY_BRACKETS = re.compile(r"\s*(?:%s)" % EMPTY_BRACKETS.pattern)
# what removed templates leave at a bracket's edges: "(; 14 March 1879 ...)", "(born 1950; )"
_BRACKET_EDGES = [(re.compile(r"\(\s*(?:[,;:]\s*)+"), "("), (re.compile(r"(?:\s*[,;:])+\s*\)"), ")")]


def tidy(text: str) -> str:
    """What wikiextractor leaves behind, removed: HTML entities (unescaped with Python's html), brackets with
    nothing but punctuation inside (the remains of pronunciation and language templates), separators at a
    bracket's edges, runs of whitespace (non-breaking spaces included), blank lines."""
    for _ in range(2):  # an entity escaped twice (&amp;amp;) is unescaped twice
        text = ENTITY.sub(lambda m: html.unescape(m[0]), text)
    lines = []
    for line in text.split("\n"):
        line = _SPACED_EMPTY_BRACKETS.sub("", line)
        for pattern, repl in _BRACKET_EDGES:
            line = pattern.sub(repl, line)
        line = " ".join(line.split())
        if line:
            lines.append(line)
    return "\n".join(lines)


def extractor_settings(siteinfo: SiteInfo) -> dict:
    """wikiextractor's Extractor settings as its command line sets them for `--json --no-templates` on this
    export: its namespaces, no links kept (<a> tags dropped), no HTML formatting."""
    template = next((name for key, (name, _) in siteinfo.namespaces.items() if key == 10), "Template")
    return {"templatePrefix": template + ":", "knownNamespaces": {"Template"} | siteinfo.namespace_names,
            "ignored_tag_patterns": list(_DEFAULT_IGNORED_TAG_PATTERNS) + [ignoreTag("a")],
            "keepLinks": False, "HtmlFormatting": False, "to_json": True}


def clean_page(page: Page, urlbase: str, settings: dict) -> str:
    """One page's clean text: wikiextractor's Extractor, called as its own extract() calls it (on the text
    as the XML export holds it, escaped, since Extractor unescapes it itself), but with html_safe=False:
    the command line's --html-safe cannot be switched off (any value given to it is a true string), and
    html_safe re-escapes &, < and > into the text (AT&amp;T)."""
    extractor = Extractor(page.id, page.revid, urlbase, page.title, [], **settings)
    return tidy("\n".join(extractor.clean_text(html.escape(page.text, quote=False), html_safe=False)))


def _clean_one(page: Page, urlbase: str, settings: dict) -> tuple[Page, str | None, str]:
    """(page, why it is dropped or None, its clean text)."""
    reason = drop_reason(page)
    return page, reason, "" if reason else clean_page(page, urlbase, settings)


def _clean_batch(pages: list[Page], urlbase: str, settings: dict) -> list[tuple[Page, str | None, str]]:
    return [_clean_one(page, urlbase, settings) for page in pages]


def _cleaned(pages, urlbase: str, settings: dict, processes: int, batch: int = 32):
    """The pages' clean texts in order; with processes > 1, batches cleaned by a pool of processes, at most
    two batches per process in flight (memory stays bounded whatever the number of pages)."""
    if processes <= 1:
        yield from (_clean_one(page, urlbase, settings) for page in pages)
        return
    with ProcessPoolExecutor(processes) as pool:
        window: deque = deque()
        pages = iter(pages)
        for group in iter(lambda: list(itertools.islice(pages, batch)), []):
            window.append(pool.submit(_clean_batch, group, urlbase, settings))
            if len(window) >= 2 * processes:
                yield from window.popleft().result()
        while window:
            yield from window.popleft().result()


def clean_dump(pages_xml, out, counts, processes: int = 1) -> int:
    """Clean every article page of an export with wikiextractor (in `processes` processes); write its
    non-empty articles as JSON lines, in the export's order."""
    reader = DumpReader(pages_xml)
    siteinfo = reader.read_siteinfo()
    settings, urlbase = extractor_settings(siteinfo), siteinfo.base[: siteinfo.base.rfind("/")]
    dropped, kept = Counter({reason: 0 for reason in (*DROP_REASONS, "empty")}), 0
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for page, reason, text in _cleaned(reader, urlbase, settings, processes):
            if reason or not text:
                dropped[reason or "empty"] += 1
                continue
            fh.write(json.dumps({"id": page.id, "title": page.title, "text": text}, ensure_ascii=False) + "\n")
            kept += 1
        if not kept:
            raise KinjectError(pages_xml, "no article text left after cleaning with wikiextractor")
    write_json(counts, {"pages_in": reader.pages, "pages_kept": kept, "dropped": dict(dropped)})
    log.info("%d of %d pages cleaned into articles with text (%d process(es)); dropped: %s", kept, reader.pages,
             processes, ", ".join(f"{k} {v}" for k, v in dropped.items()))
    return kept
