"""Fetching a knowledge base's pages: the pages it names (every article page of a dump; a titles file; or hub
pages and the articles they link to), streamed from a dump of any size or fetched through the MediaWiki API
(kinject.knowledge.mediawiki), written as one MediaWiki export with the counts of what was read, kept and
dropped (and why), and the record of the revisions read (revisions.json). Cleaning is kinject.knowledge.clean;
chunks and the report, kinject.knowledge.chunks.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

from kinject.errors import KinjectError
from kinject.io import atomic_path, write_json

# scripts/clean_dump.py, make_chunks.py and knowledge_base_report.py import these from kinject.data (this
# module's old name, kinject.MOVED): editing a script would re-run its finished jobs
from kinject.knowledge.chunks import knowledge_base_report, make_chunks  # noqa: F401
from kinject.knowledge.clean import clean_dump  # noqa: F401
from kinject.knowledge.multistream import DumpSource
from kinject.knowledge.revisions import RevisionRecord, check_as_of, check_pinned, read_revisions
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
from kinject.knowledge.wikidump import (
    DumpReader,
    SiteInfo,
    article_links,
    category_regex,
    drop_reason,
)

log = logging.getLogger(__name__)


def check_dump(path) -> int:
    """Read a MediaWiki export (or dump, compressed or not) end to end; return its page count."""
    reader = DumpReader(path)
    for _ in reader:
        pass
    return reader.pages


# From a dump ----------------------------------------------------------------------------------------------

def select_from_dump(source: DumpSource, wanted: list[str], siteinfo: SiteInfo, sink: PageSink, stats: dict) -> None:
    """Keep the wanted pages of a dump in one streaming pass. A wanted redirect leads to its target: picked
    up in the same pass when it comes later in the dump, else in a second pass over the dump (only then).
    With a multistream index, the passes run over the pages of the wanted titles and of the redirects'
    targets alone, read from their streams and in the dump's order: the same pages kept, in the same order."""
    pending = set(wanted) - sink.found
    stats["requested"] = len(set(wanted))
    redirects: dict[str, str] = {}
    indexed = source.select(pending, follow=lambda page: redirect_of(page, siteinfo))
    reader = indexed if indexed is not None else source.scan()
    for page in reader:
        if page.title not in pending:
            continue
        pending.discard(page.title)
        target = redirect_of(page, siteinfo)
        if target is None:
            sink.offer(page, siteinfo)
            continue
        sink.drop("redirect")
        if sink.record is not None:
            sink.record.add(page)
        redirects[page.title] = target
        if target and target not in sink.found:
            pending.add(target)
    stats["pages_in"], stats["xml_bytes"] = reader.pages, reader.bytes
    if indexed is not None:
        stats["index"] = str(source.index)
        stats["streams_read"] = stats.get("streams_read", 0) + indexed.streams
    else:
        stats["passes"] += 1
    earlier = pending & set(redirects.values())
    if earlier:
        log.info("%d redirect targets come before their redirect in the dump: a second pass%s", len(earlier),
                 " (over the pages read through the index)" if indexed is not None else "")
        for page in indexed if indexed is not None else source.scan():
            if page.title in earlier:
                earlier.discard(page.title)
                pending.discard(page.title)
                if redirect_of(page, siteinfo) is None:
                    sink.offer(page, siteinfo)
                else:  # a double redirect is not followed (MediaWiki does not follow one either)
                    sink.drop("redirect")
        stats["passes"] += indexed is None
    stats["redirects_followed"] = len(redirects)
    note_missing(stats, pending, "article pages of the dump")
    if sink.record is not None:
        sink.record.missing |= pending


def dump_hubs(source: DumpSource, hubs: list[str], siteinfo: SiteInfo, stats: dict,
              sink: PageSink | None = None) -> tuple[dict, dict[str, list[str]]]:
    """One streaming pass for the hub pages' texts and the articles filed in the hub categories (found by their
    [[Category:...]] tags); memory holds only those. Without category hubs, a multistream index reads the hub
    pages' streams alone. The hub pages read are recorded in the sink's record and checked against its as_of."""
    dump = source.dump
    categories = {siteinfo.normalize(h): h for h in hubs if siteinfo.namespace_of(h) == 14}
    pages = {siteinfo.normalize(h): None for h in hubs if siteinfo.namespace_of(h) != 14}
    members: dict[str, list[str]] = {c: [] for c in categories}
    category_ns = siteinfo.namespaces.get(14, ("Category", ""))[0] or "Category"
    tags = category_regex(list(categories), siteinfo)
    indexed = None if categories else source.select(pages)
    for page in indexed if indexed is not None else source.scan():
        if page.title in pages:
            target = redirect_of(page, siteinfo)
            if target is not None:
                raise KinjectError(dump, f"hub page {page.title!r} is a redirect to {target!r}: name that page "
                                   "instead")
            if sink is not None and sink.as_of:
                check_as_of(page, sink.as_of, dump)
            if sink is not None and sink.record is not None:
                sink.record.add(page)
            pages[page.title] = page
        if tags is not None and drop_reason(page) is None:
            for m in tags.finditer(page.text):
                members[siteinfo.normalize(f"{category_ns}:{m[1]}")].append(page.title)
    if indexed is not None:
        stats["streams_read"] = stats.get("streams_read", 0) + indexed.streams
    stats["passes"] += indexed is None
    missing = [title for title, page in pages.items() if page is None]
    if missing:
        raise KinjectError(dump, f"hub page(s) not in the dump: {', '.join(missing)}")
    return pages, {c: list(dict.fromkeys(m)) for c, m in members.items()}


def hub_selection_from_dump(source: DumpSource, hubs: list[str], kb: dict, siteinfo: SiteInfo, sink: PageSink,
                            stats: dict, seed: int | None) -> list[str]:
    """The titles the hub pages of a dump select; an events hub's page of selected entries goes to the sink."""
    events = events_settings(kb)
    stats["selection"] = selection_label(events)
    hub_pages, members = dump_hubs(source, hubs, siteinfo, stats, sink)
    wanted, stats["hubs"] = [], []
    for hub in hubs:
        title = siteinfo.normalize(hub)
        page = hub_pages.get(title)
        if title in members:
            kind, links = "category", members[title]
        else:
            kind, links = ("events", []) if events else ("page", article_links(page.text, siteinfo))
        wanted += take_hub(hub, kind, page, links, events=events, siteinfo=siteinfo, hub_titles=set(hub_pages),
                           kb=kb, seed=seed, sink=sink, stats=stats)
    return list(dict.fromkeys(wanted))


def fetch_dump(dump, task: str, out, counts, revisions=None, *, knowledge_base: dict,
               seed: int | None = None, threads: int = 1) -> None:
    """The offline source: stream a MediaWiki dump (.xml, .xml.bz2, .xml.gz) and keep the pages the knowledge
    base names: every article page, a titles file's pages, or hub pages and what they link to. A multistream
    dump is decompressed on `threads` threads, and read through its index (knowledge_base.index) for a
    selection.

    The revisions read (kept pages, hub pages, redirects followed) are written to `revisions` (revisions.json).
    knowledge_base.as_of is a check here: a kept or hub revision newer than it (the dump is newer than the
    snapshot asked for) stops the fetch with one line naming the page and its timestamp. A revisions_file
    given for a dump is checked too: the dump must hold exactly the revisions it pins."""
    kb = knowledge_base
    pinned = read_revisions(kb["revisions_file"]) if kb.get("revisions_file") else None
    siteinfo = DumpReader(dump).read_siteinfo()
    source = DumpSource(dump, kb.get("index"), threads)
    stats = {"source": "dump", "path": str(dump), "passes": 0, "dropped": Counter(), "as_of": kb.get("as_of")}
    selection = bool(kb.get("titles") or kb.get("hub_pages_file"))
    record = RevisionRecord()
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        sink = PageSink(fh, stats, track=selection, record=record, as_of=kb.get("as_of"), source=dump)
        if selection:
            if kb.get("titles"):
                stats["selection"] = f"titles ({kb['titles']})"
                wanted = [siteinfo.normalize(t) for t in read_titles(kb["titles"])]
            else:
                wanted = hub_selection_from_dump(source, read_hubs(kb["hub_pages_file"], task), kb, siteinfo, sink,
                                                 stats, seed)
            select_from_dump(source, wanted, siteinfo, sink, stats)
            # every page read and neither kept nor dropped for a reason of its own
            stats["dropped"]["not_selected"] = stats["pages_in"] - sink.writer.pages - sum(stats["dropped"].values())
        else:
            stats["selection"] = "every article page"
            reader = source.scan()
            for page in reader:
                sink.offer(page, siteinfo)
            stats["passes"], stats["pages_in"], stats["xml_bytes"] = 1, reader.pages, reader.bytes
        sink.close(dump)
        if pinned is not None:
            check_pinned(record, pinned, kb["revisions_file"], dump)
    if revisions is not None:
        record.write(revisions, "dump", kb.get("as_of"))
    write_json(counts, stats)
    log.info("%s: %d of %d pages kept in %d pass(es) over %s%s; dropped: %s", task, stats["pages_kept"],
             stats["pages_in"], stats["passes"], dump,
             f" and {stats['streams_read']} stream(s) read through its index" if "streams_read" in stats else "",
             ", ".join(f"{k} {v}" for k, v in stats["dropped"].items()))


def fetch_knowledge_base(knowledge_base: dict, task: str, out, counts, revisions, mediawiki: dict,
                         seed: int | None, threads: int = 1) -> str:
    """Rule fetch: a dump's selected pages or the API's, and the revisions read; returns one line for the
    console."""
    if knowledge_base["source"] == "dump":
        fetch_dump(knowledge_base["path"], task, out, counts, revisions, knowledge_base=knowledge_base, seed=seed,
                   threads=threads)
    else:
        from kinject.knowledge.mediawiki import (
            fetch_mediawiki,  # kinject.knowledge.mediawiki builds on this module's selection
        )

        fetch_mediawiki(task, out, counts, revisions, knowledge_base=knowledge_base, seed=seed, **mediawiki)
    fetched = json.loads(Path(counts).read_text())
    return f"{fetched['pages_kept']} of {fetched['pages_in']} pages kept ({fetched['selection']}), dropped {fetched['dropped']}"

