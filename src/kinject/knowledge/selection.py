"""What a knowledge base names and keeps, whichever source reads it (a dump: kinject.knowledge.data; the
MediaWiki API: kinject.knowledge.mediawiki): the titles or hub pages it lists, the links taken from each hub,
the current-events scope, redirects followed, and the sink the kept pages go to."""

from __future__ import annotations

import logging
import random
from collections import Counter
from pathlib import Path

import yaml

from kinject.errors import KinjectError
from kinject.knowledge.events import parse_day, scope_regex, select_events
from kinject.knowledge.revisions import RevisionRecord, check_as_of
from kinject.knowledge.wikidump import (
    DROP_REASONS,
    Page,
    PageWriter,
    SiteInfo,
    drop_reason,
    redirect_target,
)

log = logging.getLogger(__name__)


def read_hubs(path, task: str) -> list[str]:
    try:
        hubs = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise KinjectError(path, "file not found") from None
    except yaml.YAMLError as exc:
        raise KinjectError(path, f"not valid YAML ({exc})") from None
    if not isinstance(hubs, dict) or not hubs.get(task):
        raise KinjectError(path, f"no hub pages listed for task {task!r}")
    return [str(h) for h in hubs[task]]


def read_titles(path) -> list[str]:
    """A titles file: one page title per line; blank lines and lines starting with # are skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise KinjectError(path, "file not found") from None
    titles = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not titles:
        raise KinjectError(path, "lists no page title")
    return titles


def events_settings(kb: dict) -> dict | None:
    """The current-events window and scope of a knowledge base (None: its hubs are ordinary pages)."""
    events = kb.get("events")
    if not events:
        return None
    return {"start": parse_day(events["start"], "events.start"), "end": parse_day(events["end"], "events.end"),
            "scope": scope_regex(events.get("scope", [])), "linked_articles": events.get("linked_articles", "all")}


def selection_label(events: dict | None) -> str:
    return "hub pages: selected event entries and their links" if events else "hub pages and their links"


def sample_links(links: list[str], cap: int | None, seed: int | None, hub: str) -> tuple[list[str], int]:
    """Every link, or a seeded random sample of `cap` of them (kept in page order) when there are more."""
    if cap is None or len(links) <= cap:
        return links, 0
    picked = set(random.Random(f"{seed}:{hub}").sample(range(len(links)), cap))
    log.info("%s: %d links, a seeded random sample of %d kept (max_links_per_hub)", hub, len(links), cap)
    return [t for i, t in enumerate(links) if i in picked], len(links) - cap


def hub_contribution(hub: str, kind: str, page: Page | None, links: list[str], *, events: dict | None,
                     siteinfo: SiteInfo | None, hub_titles: set[str], cap: int | None, seed: int | None):
    """What one hub adds to a knowledge base: (its own page or None, the titles it selects, its counts).

    kind page: the hub page itself and every page it links to; category: the category's articles;
    events: a page of the hub's selected event entries (same title) and the articles those entries link to
    (all, dated or none of them: events.linked_articles).
    """
    stats, own = {"hub": hub, "kind": kind}, None
    if kind == "events":
        window = {key: events[key] for key in ("start", "end", "scope")}
        selection = select_events(page.title, page.text, **window)
        stats.update(selection.counts)
        linked = events["linked_articles"]
        years = range(window["start"].year, window["end"].year + 1) if linked == "dated" else None
        links = selection.links(siteinfo, hub_titles, years) if linked != "none" else []
        stats["linked_articles"] = linked
        if selection.entries:
            own = Page(page.title, 0, page.id, page.revid, page.timestamp, None, selection.page_text())
        log.info("%s: %d entries, %d dated, %d in the window, %d selected (in scope), linking to %d articles "
                 "(linked_articles: %s)", hub, stats["entries"], stats["entries"] - stats["undated"],
                 stats["in_window"], stats["selected"], len(links), linked)
    stats["links"] = len(links)
    links, stats["sampled_out"] = sample_links(links, cap, seed, hub)
    if kind == "page":
        links = [page.title if page is not None else hub] + links
    return own, links, stats


def take_hub(hub: str, kind: str, page: Page | None, links: list[str], *, events: dict | None,
             siteinfo: SiteInfo | None, hub_titles: set[str], kb: dict, seed: int | None, sink: "PageSink",
             stats: dict) -> list[str]:
    """One hub's contribution taken (hub_contribution): its own page (an events hub's) to the sink, its counts
    to stats["hubs"]; returns the titles it selects."""
    own, selected, hub_stats = hub_contribution(hub, kind, page, links, events=events, siteinfo=siteinfo,
                                                hub_titles=hub_titles, cap=kb.get("max_links_per_hub"), seed=seed)
    if own is not None:
        sink.offer(own, siteinfo)
    stats["hubs"].append(hub_stats)
    return selected


class PageSink:
    """The selected article pages, written as they come; what is dropped is counted by reason. The titles
    written are remembered (a selection's, to skip repeats) unless track is False (every page of a dump,
    whose titles are unique: memory must not grow with the dump)."""

    def __init__(self, fh, stats: dict, track: bool = True, *, record: RevisionRecord | None = None,
                 as_of: str | None = None, source=None):
        self.writer, self.stats, self.found, self.track = PageWriter(fh), stats, set(), track
        self.record, self.as_of, self.source = record, as_of, source  # a dump's: what it kept, checked against as_of
        stats.setdefault("dropped", Counter())

    def offer(self, page: Page, siteinfo: SiteInfo) -> None:
        if page.title in self.found:
            return
        reason = drop_reason(page)
        if reason:
            self.drop(reason)
            return
        if self.as_of:
            check_as_of(page, self.as_of, self.source)
        if self.record is not None:
            self.record.add(page)
        self.writer.write(page, siteinfo)
        if self.track:
            self.found.add(page.title)

    def drop(self, reason: str) -> None:
        self.stats["dropped"][reason] += 1

    def close(self, source) -> None:
        stats = self.stats
        stats["pages_kept"] = self.writer.pages
        dropped = stats["dropped"]
        reasons = (*DROP_REASONS, *sorted(set(dropped) - set(DROP_REASONS)))
        stats["dropped"] = {reason: dropped.get(reason, 0) for reason in reasons}
        if not self.writer.pages:
            why = ", ".join(f"{k} {v}" for k, v in stats["dropped"].items() if v) or "none"
            raise KinjectError(source, f"no article page selected for the knowledge base (dropped: {why})")
        self.writer.close()



def redirect_of(page: Page, siteinfo: SiteInfo) -> str | None:
    """The normalised target of a redirect page ('' when it names none), None for other pages."""
    if drop_reason(page) != "redirect":
        return None
    return siteinfo.normalize(redirect_target(page) or "")


def note_missing(stats: dict, titles: set[str], where: str) -> None:
    """Record in ``stats`` the selected titles not found ``where`` (count and the first 20), with a warning."""
    stats["missing"], stats["missing_titles"] = len(titles), sorted(titles)[:20]
    if titles:
        log.warning("%d selected titles are not %s, e.g. %s", len(titles), where, ", ".join(sorted(titles)[:5]))
