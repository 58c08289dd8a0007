"""Current events as the paper built them: the dated event entries of Wikipedia's month pages, in a window and
a scope (the paper: US events of August-November 2023), and articles those entries link to.

A month page ("August 2023") lists events as bullet entries under day headings ("== August 1, 2023
(Tuesday) =="); a year-in-a-country page ("2023 in the United States") lists them under month headings
("=== August ===") with the day at the head of each entry ("* August 8 – ..."). An entry is a top-level
bullet with its sub-bullets; its date comes from its own head, else from the heading above it. An entry is
selected when its date lies in the window and it, or the page's title, names one of the scope's terms.
Which articles the entries link to join them is ``linked_articles``: all, dated (a year of the window in the
title: Wikipedia's titles for event articles, "2023 Hawaii wildfires"), or none.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from kinject.knowledge.wikidump import SiteInfo, article_links, article_text

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
_MONTH = "|".join(MONTHS)
_HEADING = re.compile(r"^(=+)\s*(.*?)\s*\1\s*$")
_UNLINK = re.compile(r"\[\[(?:[^\[\]|]*\|)?([^\[\]|]*)\]\]")
_MONTH_DAY = re.compile(rf"\b(?:({_MONTH})\s+(\d{{1,2}})|(\d{{1,2}})\s+({_MONTH}))\b(?:,?\s+(\d{{4}}))?")
_MONTH_ONLY = re.compile(rf"^({_MONTH})(?:\s+(\d{{4}}))?$")
_YEAR = re.compile(r"\b(\d{4})\b")
# the date at the head of an entry's wikitext ("[[August 8]] – ", "August 8, 2023: "), said again by page_text
_HEAD = re.compile(rf"^[\W_]*(?:(?:{_MONTH})\s+\d{{1,2}}|\d{{1,2}}\s+(?:{_MONTH}))(?:\]\])?"
                   rf"(?:,?\s*(?:\[\[)?\d{{4}}(?:\]\])?)?\s*(?:[–—:-]+\s*|$)")
# links to a bare date or year ("August 8", "8 August", "2023") are calendar pages, not the event
_CALENDAR_TITLE = re.compile(
    rf"^(?:(?:{_MONTH})(?:\s+\d{{1,2}})?|\d{{1,2}}\s+(?:{_MONTH})|\d{{1,4}}(?:\s+(?:BC|AD|BCE|CE))?)$")


@dataclass
class Entry:
    date: dt.date | None
    lines: list[str] = field(default_factory=list)  # wikitext of the bullet and its sub-bullets

    @property
    def wikitext(self) -> str:
        return "\n".join(self.lines)


def _plain(wikitext: str) -> str:
    return _UNLINK.sub(r"\1", wikitext).replace("'''", "").replace("''", "")


def _date(year, month_name, day) -> dt.date | None:
    try:
        return dt.date(int(year), MONTHS.index(month_name) + 1, int(day))
    except (TypeError, ValueError):
        return None


def event_entries(title: str, wikitext: str) -> list[Entry]:
    """The bullet entries of a month or year page, each with its date (None when none can be told)."""
    page_year = (_YEAR.search(title) or [None, None])[1]
    heading_date, month_ctx, ctx_level = None, None, 0
    entries: list[Entry] = []
    current: Entry | None = None
    for line in article_text(wikitext).splitlines():
        heading = _HEADING.match(line)
        if heading:
            current = None
            level, text = len(heading[1]), _plain(heading[2]).strip()
            full = _MONTH_DAY.search(text)
            month_only = _MONTH_ONLY.match(text)
            if full and (full[5] or page_year):
                heading_date = _date(full[5] or page_year, full[1] or full[4], full[2] or full[3])
                month_ctx, ctx_level = (full[5] or page_year, full[1] or full[4]), level
            elif month_only and (month_only[2] or page_year):
                heading_date, month_ctx, ctx_level = None, (month_only[2] or page_year, month_only[1]), level
            elif level <= ctx_level:  # a section of another kind ("== References ==") ends the dated part
                heading_date, month_ctx, ctx_level = None, None, 0
            continue
        if not line.startswith("*"):
            if line.strip():
                current = None
            continue
        body = line.lstrip("*").strip()
        if line.startswith("**") and current is not None:
            current.lines.append(body)
            continue
        head = _MONTH_DAY.match(_plain(body).lstrip(" '\"("))
        date = heading_date
        if head and month_ctx:
            date = _date(head[5] or month_ctx[0], head[1] or head[4], head[2] or head[3])
        elif head and (head[5] or page_year):
            date = _date(head[5] or page_year, head[1] or head[4], head[2] or head[3])
        current = Entry(date, [_HEAD.sub("", body) if head else body])
        entries.append(current)
    return entries


def scope_regex(terms: list[str]) -> re.Pattern | None:
    """Whole-word, case-sensitive match of any scope term (None: no scope, every entry is in scope)."""
    if not terms:
        return None
    return re.compile(r"(?<!\w)(?:%s)(?!\w)" % "|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True)))


@dataclass
class EventSelection:
    entries: list[Entry]
    counts: dict[str, int]

    def page_text(self) -> str:
        """The selected entries as paragraphs ("August 8, 2023: ..."), the hub's page in the knowledge base
        (bullets would be dropped by wikiextractor; the date keeps each fact anchored in time)."""
        paragraphs = []
        for entry in self.entries:
            lines = [line for line in entry.lines if line]
            parts = [line if re.search(r"[.!?:;]\W*$", _plain(line)) else line + ":" for line in lines[:-1]]
            paragraphs.append(f"{MONTHS[entry.date.month - 1]} {entry.date.day}, {entry.date.year}: "
                              + " ".join(parts + lines[-1:]))
        return "\n\n".join(paragraphs) + "\n"

    def links(self, siteinfo: SiteInfo, exclude: set[str], years: range | None = None) -> list[str]:
        """Articles the selected entries link to (calendar pages and the hubs themselves left out); with
        ``years``, only those whose title names one of them ("2023 Hawaii wildfires", not "Maui")."""
        out = {}
        for entry in self.entries:
            for title in article_links(entry.wikitext, siteinfo):
                if title in exclude or _CALENDAR_TITLE.match(title):
                    continue
                if years is None or any(int(year) in years for year in _YEAR.findall(title)):
                    out[title] = None
        return list(out)


def select_events(title: str, wikitext: str, *, start: dt.date, end: dt.date,
                  scope: re.Pattern | None) -> EventSelection:
    entries = event_entries(title, wikitext)
    dated = [e for e in entries if e.date is not None]
    in_window = [e for e in dated if start <= e.date <= end]
    title_in_scope = scope is None or bool(scope.search(title))
    selected = [e for e in in_window if title_in_scope or scope.search(e.wikitext)]
    return EventSelection(selected, {"entries": len(entries), "undated": len(entries) - len(dated),
                                     "in_window": len(in_window), "selected": len(selected)})


def parse_day(value, key: str) -> dt.date:
    """A window bound from the config: 'YYYY-MM-DD' (or a date YAML already parsed)."""
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"{key} {value!r} is not a date YYYY-MM-DD") from None
