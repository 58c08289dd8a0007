"""Knowledge base: raw MediaWiki pages (a dump or the API) -> wikiextractor clean text -> chunks, and a report.

fetch: the pages a knowledge base names (every article page of a dump; a titles file; or hub pages and the
articles they link to), streamed from a dump of any size or fetched through the MediaWiki API, written as
one MediaWiki export with the counts of what was read, kept and dropped (and why), and the record of the revisions
read (revisions.json; the MediaWiki API's part lives in kinject.knowledge.mediawiki).
clean: wikiextractor's Extractor in this process, entities unescaped, empty brackets and runs of whitespace
removed; chunks: paragraphs packed into chunks; report: one per task, from the counts and the chunks.
"""

from __future__ import annotations

import html
import itertools
import json
import logging
import re
from collections import Counter, deque
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
from wikiextractor.extract import _DEFAULT_IGNORED_TAG_PATTERNS, Extractor, ignoreTag

from kinject.errors import KinjectError
from kinject.io import atomic_path, read_parquet, write_json, write_parquet
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
    DROP_REASONS,
    DumpReader,
    Page,
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


# Cleaning ------------------------------------------------------------------------------------------------

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
