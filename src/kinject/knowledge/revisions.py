"""The record of the revisions a knowledge base was fetched from, and the instant it was fetched as of.

revisions.json (results/{task}/raw/, written by rule fetch, whatever the source):

    {"source": "mediawiki" | "dump", "as_of": "2023-12-01T00:00:00Z" | null,
     "pages": [{"title": ..., "pageid": ..., "revid": ..., "timestamp": ...}, ...],   (sorted by title)
     "missing": [title, ...]}                                                        (sorted)

pages: every revision the fetch read and used (the articles, the hub pages whose links or entries it took, the
redirect pages it followed); missing: the titles asked for that named no page (then). A file of this shape given
as knowledge_base.revisions_file pins a later fetch to exactly those revisions.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from kinject.errors import KinjectError
from kinject.io import atomic_path
from kinject.knowledge.wikidump import Page

PAGE_KEYS = ("title", "pageid", "revid", "timestamp")


def instant(text: str, what) -> dt.datetime:
    """An ISO 8601 timestamp as an aware UTC datetime ('2023-12-01T00:00:00Z', as MediaWiki writes them)."""
    try:
        when = dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise KinjectError(what, f"{text!r} is not an ISO 8601 timestamp") from None
    if when.tzinfo is None:
        raise KinjectError(what, f"{text!r} names no time zone (UTC: end it with Z)")
    return when.astimezone(dt.timezone.utc)


def check_as_of(page: Page, as_of: str, source) -> None:
    """A page read from a dump must be a revision of as_of or earlier: one line naming it otherwise."""
    if not page.timestamp:
        raise KinjectError(source, f"page {page.title!r} has no revision timestamp: it cannot be checked "
                           f"against knowledge_base.as_of {as_of}")
    if instant(page.timestamp, source) > instant(as_of, "knowledge_base.as_of"):
        raise KinjectError(source, f"page {page.title!r} is revision {page.revid} of {page.timestamp}, newer than "
                           f"knowledge_base.as_of {as_of}: the dump is newer than the snapshot asked for (use a "
                           "dump of that date)")


def _int(value: str):
    return int(value) if str(value).isdigit() else None


class RevisionRecord:
    """The revisions a fetch read (add) and the titles that named no page (missing), written as revisions.json.
    A page is held as one tab-separated string (a dump's every article page: millions of them) until written."""

    def __init__(self):
        self.rows: list[str] = []
        self.missing: set[str] = set()

    def add(self, page: Page) -> None:
        self.rows.append("\t".join((page.title, page.id, page.revid, page.timestamp)))

    def pages(self):
        """The pages as dicts, sorted by title, each once ('\\t' sorts before any character of a title)."""
        self.rows.sort()
        previous = None
        for row in self.rows:
            if row != previous:
                title, pageid, revid, timestamp = row.split("\t")
                yield {"title": title, "pageid": _int(pageid), "revid": _int(revid), "timestamp": timestamp}
            previous = row

    def write(self, path, source: str, as_of: str | None) -> None:
        """revisions.json, one page per line, in the same bytes for the same revisions."""
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            fh.write(f'{{"source": {json.dumps(source)}, "as_of": {json.dumps(as_of)}, "pages": [')
            for i, page in enumerate(self.pages()):
                fh.write(("," if i else "") + "\n  " + json.dumps(page, ensure_ascii=False))
            fh.write(f'\n], "missing": {json.dumps(sorted(self.missing), ensure_ascii=False)}}}\n')


def read_revisions(path) -> dict:
    """A revisions file (revisions.json's shape), checked; one line naming it when it is not one. ``LOCK#task``
    names the pages a lock (``kinject lock``) pinned for one task, in the same shape."""
    file, _, task = str(path).partition("#")
    try:
        data = json.loads(Path(file).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KinjectError(path, "file not found") from None
    except json.JSONDecodeError as exc:
        raise KinjectError(path, f"not valid JSON ({exc})") from None
    if task:
        if not isinstance(data, dict) or not isinstance(data.get("pages", {}).get(task), dict):
            raise KinjectError(path, f"the lock has no pages for task {task}")
        data = data["pages"][task]
    if not isinstance(data, dict) or not {"source", "as_of", "pages", "missing"} <= set(data):
        raise KinjectError(path, "not a revisions file: expected an object with source, as_of, pages, missing")
    if not isinstance(data["pages"], list) or not isinstance(data["missing"], list):
        raise KinjectError(path, "not a revisions file: pages and missing must be lists")
    for n, page in enumerate(data["pages"]):
        if not isinstance(page, dict) or set(page) != set(PAGE_KEYS):
            raise KinjectError(path, f"pages[{n}] is not {{{', '.join(PAGE_KEYS)}}}")
    return data


def check_pinned(record: RevisionRecord, pinned: dict, pinned_path, source) -> None:
    """The revisions a dump gave are exactly those a revisions file pins: one line naming the first page that
    differs (changed, absent or not pinned)."""
    got = {page["title"]: page for page in record.pages()}
    want = {page["title"]: page for page in pinned["pages"]}
    for title in sorted(set(got) | set(want)):
        if got.get(title) != want.get(title):
            if title not in got:
                why = f"pinned revision {want[title]['revid']} is not in {source}"
            elif title not in want:
                why = f"revision {got[title]['revid']} read from {source} is not pinned"
            else:
                why = (f"pinned revision {want[title]['revid']} of {want[title]['timestamp']}, {source} holds "
                       f"revision {got[title]['revid']} of {got[title]['timestamp']}")
            raise KinjectError(pinned_path, f"page {title!r} drifted from the pinned revisions: {why}")
