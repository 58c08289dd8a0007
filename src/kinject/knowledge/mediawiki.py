"""The MediaWiki API source of a knowledge base (knowledge_base.source: mediawiki).

Without knowledge_base.as_of: each page's current revision (an export), each hub's current links (prop=links).
With as_of (ISO 8601, UTC): each page's revision at that instant (prop=revisions, rvstart=as_of, rvdir=older,
rvlimit=1; one title per request, as the API requires for rvstart); a hub's links read from its revision's
wikitext (as for a dump: kinject.knowledge.wikidump.article_links); a redirect followed as it was then (the redirect
page's revision at as_of names the target, whose revision at as_of is taken; a double redirect is not followed);
a title that named no page then is counted and listed as missing, never fetched at a later revision.
A category hub cannot be resolved as of an instant (MediaWiki keeps no history of category membership): one
line says so. With knowledge_base.revisions_file (a revisions.json of an earlier fetch, or a lock of that
shape): exactly the revisions it pins (prop=revisions&revids=, 50 per request), the selection made again from
them; a pinned revision the wiki no longer serves as pinned (deleted, suppressed, of another page or time) is
one line naming the page. A page moved since the instant is found through the move log and keeps the title it
had then (as_of and pinned alike).
"""

from __future__ import annotations

import dataclasses
import io
import logging
from collections import Counter

from kinject.errors import KinjectError
from kinject.io import atomic_path, write_json
from kinject.knowledge.mediawiki_client import MediaWikiClient
from kinject.knowledge.revisions import RevisionRecord, read_revisions
from kinject.knowledge.selection import (
    PageSink,
    events_settings,
    note_missing,
    read_hubs,
    read_titles,
    redirect_of,
    selection_label,
    take_hub,
)
from kinject.knowledge.wikidump import DumpReader, Page, SiteInfo, article_links, drop_reason

log = logging.getLogger(__name__)


def hub_selection_from_api(client: MediaWikiClient, hubs: list[str], kb: dict, sink: PageSink, stats: dict,
                           seed: int | None) -> list[str]:
    """The titles the hub pages select through the API; an events hub's page of selected entries goes to the
    sink (its wikitext comes from an export of the hub, its redirect followed)."""
    events = events_settings(kb)
    stats["selection"] = selection_label(events)
    wanted, stats["hubs"], hub_titles = [], [], set(hubs)
    for hub in hubs:
        page, siteinfo = None, None
        if hub.startswith("Category:"):
            kind, links = "category", client.category_members(hub)
        elif events:
            kind, links = "events", []
            reader = DumpReader(io.BytesIO(client.export([hub])), name=client.api)
            page = next((p for p in reader if p.ns == 0), None)
            stats["pages_in"] += reader.pages
            if page is None:
                raise KinjectError(client.api, f"hub page {hub!r} does not exist")
            sink.record.add(page)
            siteinfo = reader.siteinfo
            hub_titles.add(page.title)
        else:
            kind, links = "page", client.linked_titles(hub)
        wanted += take_hub(hub, kind, page, links, events=events, siteinfo=siteinfo, hub_titles=hub_titles, kb=kb,
                           seed=seed, sink=sink, stats=stats)
    return wanted


def fetch_current(client: MediaWikiClient, task: str, out, kb: dict, stats: dict, record: RevisionRecord,
                  seed: int | None) -> None:
    """Walk each hub page's current links (a hub category's members; an events hub's selected entries' links)
    through the API, every one of them (or a seeded sample of max_links_per_hub), redirects resolved, the hub
    pages included; or take a titles file's pages. Save one MediaWiki export of their current revisions."""
    api = client.api
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        sink = PageSink(fh, stats, record=record)
        if kb.get("titles"):
            stats["selection"] = f"titles ({kb['titles']})"
            wanted = read_titles(kb["titles"])
        else:
            wanted = hub_selection_from_api(client, read_hubs(kb["hub_pages_file"], task), kb, sink, stats, seed)
        wanted = list(dict.fromkeys(wanted))
        stats["requested"] = len(wanted)
        titles, stats["redirects_followed"], missing = client.resolve(wanted)
        titles = [t for t in titles if t not in sink.found]
        log.info("%s: %d titles requested, %d redirects followed, %d missing: exporting %d pages", task,
                 len(wanted), stats["redirects_followed"], len(missing), len(titles))
        exported = set()
        for i in range(0, len(titles), client.BATCH):
            reader = DumpReader(io.BytesIO(client.export(titles[i: i + client.BATCH])), name=api)
            for page in reader:
                exported.add(page.title)
                record.add(page)
                sink.offer(page, reader.siteinfo)
            stats["pages_in"] += reader.pages
        record.missing = set(missing) | (set(titles) - exported)
        note_missing(stats, record.missing, "pages of the wiki")
        sink.close(api)



# As of an instant, or pinned to revision ids -------------------------------------------------------------

class AsOf:
    """Each title's revision at an instant, asked of the API one title at a time. A page moved since keeps its
    history under its new title and leaves at the old one a page (a redirect) with no revision then: when a
    title has no revision then, the move log says where its page went (moves followed up to MAX_MOVES times),
    and that page's revision then is taken, under the title it had then."""

    MAX_MOVES = 5

    def __init__(self, client: MediaWikiClient, as_of: str):
        self.client, self.as_of = client, as_of
        self.moved: dict[str, str] = {}  # title then -> title now

    def page(self, title: str) -> Page | None:
        page, now = self.client.revision_as_of(title, self.as_of), title
        for _ in range(self.MAX_MOVES):
            if page is not None:
                break
            now = self.client.moved_after(now, self.as_of)
            if now is None:
                return None
            page = self.client.revision_as_of(now, self.as_of)
        if page is None:
            return None
        if page.title != title:
            self.moved[title] = page.title
            log.info("%r was moved to %r after %s: its revision then is taken, titled as it was then", title,
                     page.title, self.as_of)
            page = dataclasses.replace(page, title=title)
        return page


class Pinned:
    """Exactly the revisions a revisions file pins, fetched by id up front; a title it lists as missing is
    missing again, one it does not name at all is an error (the selection is no longer the pinned one)."""

    def __init__(self, client: MediaWikiClient, path, as_of: str | None):
        pinned = read_revisions(path)
        self.path = path
        if pinned["source"] != "mediawiki":
            raise KinjectError(path, f"pins the revisions of a {pinned['source']!r} source, not of the MediaWiki API")
        if pinned["as_of"] is None:
            raise KinjectError(path, "pins a fetch made without as_of: the hub links of one came from the wiki's "
                               "live link table, which no revision holds; fetch with knowledge_base.as_of set first")
        if pinned["as_of"] != as_of:
            raise KinjectError(path, f"pins revisions as of {pinned['as_of']}, but knowledge_base.as_of is {as_of}: "
                               "set as_of back, or fetch again without the revisions file")
        served = client.revisions([str(p["revid"]) for p in pinned["pages"]])
        self.pages = {}
        for want in pinned["pages"]:
            got = served.get(str(want["revid"]))
            if got is None:
                raise KinjectError(path, f"page {want['title']!r}: pinned revision {want['revid']} is no longer "
                                   f"served by {client.api} (deleted or suppressed)")
            found = {"pageid": int(got.id), "revid": int(got.revid), "timestamp": got.timestamp}
            drift = [f"{key} {found[key]!r} (pinned {want[key]!r})" for key in found if found[key] != want[key]]
            if drift:
                raise KinjectError(path, f"page {want['title']!r}: pinned revision {want['revid']} has drifted, "
                                   f"{client.api} serves it with {', '.join(drift)}")
            if got.title != want["title"]:  # a revision's text never changes: moved since, it is the same page
                log.info("%r is titled %r now (moved): its pinned revision keeps the pinned title", want["title"],
                         got.title)
            self.pages[want["title"]] = dataclasses.replace(got, title=want["title"])
        self.missing = set(pinned["missing"])

    def page(self, title: str) -> Page | None:
        if title in self.pages:
            return self.pages[title]
        if title in self.missing:
            return None
        raise KinjectError(self.path, f"page {title!r} is not pinned: the selection differs from the pinned fetch's "
                           "(hub pages, titles, events or max_links_per_hub edited?)")


class RevisionFetch:
    """Pages by title through a revision source (AsOf or Pinned), redirects followed as they were then, every
    revision read recorded."""

    def __init__(self, source, siteinfo: SiteInfo, record: RevisionRecord, stats: dict):
        self.source, self.siteinfo, self.record, self.stats = source, siteinfo, record, stats
        self.hubs: dict[str, Page] = {}  # hub pages, read first and linked again

    def _read(self, title: str) -> Page | None:
        page = self.source.page(title)
        if page is not None:
            self.record.add(page)
        return page

    def page(self, title: str, known: set[str] = frozenset()) -> Page | None:
        """The article a title named then: its page, or a redirect page's target (the redirect page itself when
        it names no target or leads to another redirect, for the sink to drop as one); None when the title
        named no page then. A redirect to a title in `known` (pages already kept) is not fetched again: an
        empty page of that title stands for it."""
        title = self.siteinfo.normalize(title)
        if title in self.hubs:
            return self.hubs[title]
        page = self._read(title)
        target = None if page is None else redirect_of(page, self.siteinfo)
        if not target:
            if page is not None:
                self.stats["pages_in"] += 1
            return page
        self.stats["redirects_followed"] += 1
        if target in known or target in self.hubs:
            return self.hubs.get(target) or Page(target, 0, "", "", "", None, "")
        followed = self._read(target)
        if followed is None:
            return None
        self.stats["pages_in"] += 1
        return followed if redirect_of(followed, self.siteinfo) is None else page  # a double redirect: dropped


def hub_selection_at(fetch: RevisionFetch, hub_file, hubs: list[str], kb: dict, sink: PageSink, stats: dict,
                     as_of: str, seed: int | None) -> list[str]:
    """The titles the hub pages' revisions select (links read from the revision's wikitext); an events hub's
    page of selected entries goes to the sink."""
    siteinfo, events = fetch.siteinfo, events_settings(kb)
    stats["selection"] = selection_label(events)
    wanted, stats["hubs"], hub_titles = [], [], {siteinfo.normalize(h) for h in hubs}
    for hub in hubs:
        if siteinfo.namespace_of(hub) == 14:
            raise KinjectError(hub_file, f"hub {hub!r}: a category hub cannot be resolved as of {as_of}: MediaWiki "
                               "keeps no history of category membership; list its articles in a titles file "
                               "(knowledge_base.titles) or read a dump of that date (source: dump)")
        page = fetch.page(hub)
        if page is None:
            raise KinjectError(hub_file, f"hub page {hub!r} did not exist at {as_of}")
        if drop_reason(page) == "redirect":
            raise KinjectError(hub_file, f"hub page {hub!r} was a redirect at {as_of} that leads to no article "
                               "(to nothing, or to another redirect)")
        fetch.hubs[siteinfo.normalize(hub)] = fetch.hubs[page.title] = page
        hub_titles.add(page.title)
        kind, links = ("events", []) if events else ("page", article_links(page.text, siteinfo))
        wanted += take_hub(hub, kind, page, links, events=events, siteinfo=siteinfo, hub_titles=hub_titles, kb=kb,
                           seed=seed, sink=sink, stats=stats)
    return wanted


def fetch_at(client: MediaWikiClient, task: str, out, kb: dict, stats: dict, record: RevisionRecord,
             seed: int | None) -> None:
    """The knowledge base from each page's revision as of knowledge_base.as_of, or from the revisions
    knowledge_base.revisions_file pins; one MediaWiki export of them."""
    as_of = kb.get("as_of")
    source = Pinned(client, kb["revisions_file"], as_of) if kb.get("revisions_file") else AsOf(client, as_of)
    stats["revisions"] = f"pinned ({kb['revisions_file']})" if kb.get("revisions_file") else f"as of {as_of}"
    stats["redirects_followed"] = 0
    siteinfo = client.siteinfo()
    fetch = RevisionFetch(source, siteinfo, record, stats)
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        sink = PageSink(fh, stats)
        if kb.get("titles"):
            stats["selection"] = f"titles ({kb['titles']})"
            wanted = read_titles(kb["titles"])
        else:
            hub_file = kb["hub_pages_file"]
            wanted = hub_selection_at(fetch, hub_file, read_hubs(hub_file, task), kb, sink, stats, as_of, seed)
        wanted = list(dict.fromkeys(siteinfo.normalize(t) for t in wanted))
        stats["requested"] = len(wanted)
        log.info("%s: %d titles requested, revisions %s", task, len(wanted), stats["revisions"])
        for title in wanted:
            if title in sink.found:
                continue
            page = fetch.page(title, sink.found)
            if page is None:
                record.missing.add(title)
            elif page.title not in sink.found:
                sink.offer(page, siteinfo)
        note_missing(stats, record.missing, f"pages of the wiki at {as_of}")
        if isinstance(source, AsOf):
            stats["moved_since"] = len(source.moved)
            stats["moved_since_titles"] = dict(sorted(source.moved.items())[:20])
        sink.close(client.api)


def fetch_mediawiki(task: str, out, counts, revisions=None, *, knowledge_base: dict, api: str, user_agent: str,
                    requests_per_second: float = 1.0, seed: int | None = None) -> None:
    """The knowledge base through the MediaWiki API: the pages' revisions as of knowledge_base.as_of (or those
    knowledge_base.revisions_file pins), else their current revisions. Save one MediaWiki export, the counts
    and the revisions read (`revisions`: revisions.json)."""
    kb = knowledge_base
    client = MediaWikiClient(api, user_agent, requests_per_second)
    stats = {"source": "mediawiki", "api": api, "as_of": kb.get("as_of"), "pages_in": 0, "dropped": Counter()}
    record = RevisionRecord()
    if kb.get("as_of") or kb.get("revisions_file"):
        fetch_at(client, task, out, kb, stats, record, seed)
    else:
        fetch_current(client, task, out, kb, stats, record, seed)
    if revisions is not None:
        record.write(revisions, "mediawiki", kb.get("as_of"))
    write_json(counts, stats)
    log.info("%s: %d of %d fetched pages kept; dropped: %s", task, stats["pages_kept"], stats["pages_in"],
             ", ".join(f"{k} {v}" for k, v in stats["dropped"].items()))
