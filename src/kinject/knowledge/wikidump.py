"""MediaWiki XML exports and dumps as streams: read page by page in bounded memory, written back the same way.

A dump may be plain XML or a bzip2 (multistream included) or gzip archive; the format is told by the file's
first bytes, and the archive is decompressed as it is read, never to disk or whole into memory. Pages come
out of ``xml.etree.ElementTree.iterparse`` one at a time and are cleared once read, so memory stays bounded
by the largest page, whatever the dump's size.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from wikiextractor.extract import dropNested, normalizeTitle

from kinject.errors import KinjectError

EXPORT_NS = "http://www.mediawiki.org/xml/export-"
ARCHIVES = {b"BZh": ("bzip2", bz2.open), b"\x1f\x8b": ("gzip", gzip.open)}


@dataclass
class SiteInfo:
    """The export's <siteinfo>: what the cleaner needs (base URL, namespaces) and what a writer copies."""

    xmlns: str
    sitename: str = ""
    dbname: str = ""
    base: str = ""
    generator: str = ""
    case: str = "first-letter"
    namespaces: dict[int, tuple[str, str]] = field(default_factory=dict)  # key -> (name, case)

    @property
    def namespace_names(self) -> set[str]:
        return {name for name, _ in self.namespaces.values()}

    def namespace_of(self, title: str) -> int:
        """The namespace a title's prefix names (0 when it names none)."""
        prefix, colon, _ = title.partition(":")
        if colon:
            for key, (name, _) in self.namespaces.items():
                if name and name.lower() == prefix.strip().lower():
                    return key
        return 0

    def normalize(self, title: str) -> str:
        """A title as MediaWiki stores it (wikiextractor's normalizeTitle: underscores, spaces, first letter)."""
        return normalizeTitle(title.split("#", 1)[0], self.namespace_names)


@dataclass
class Page:
    title: str
    ns: int
    id: str
    revid: str = ""
    timestamp: str = ""
    redirect: str | None = None  # the target title of a redirect page
    text: str = ""


class _Counting:
    """A read-only stream wrapper counting the (decompressed) bytes handed to the XML parser."""

    def __init__(self, raw):
        self.raw, self.bytes = raw, 0

    def read(self, n=-1):
        data = self.raw.read(n)
        self.bytes += len(data)
        return data


def open_dump(path):
    """The dump as a binary stream, decompressed on the fly when its first bytes say bzip2 or gzip."""
    if hasattr(path, "read"):  # an export already in memory (the MediaWiki API's)
        return contextlib.nullcontext(path)
    try:
        with open(path, "rb") as fh:
            magic = fh.read(3)
    except FileNotFoundError:
        raise KinjectError(path, "file not found") from None
    except IsADirectoryError:
        raise KinjectError(path, "is a directory, not a dump file") from None
    for prefix, (_, opener) in ARCHIVES.items():
        if magic.startswith(prefix):
            return opener(path, "rb")  # bz2.open reads every stream of a multistream file in turn
    return open(path, "rb")


def archive_kind(path) -> str:
    if hasattr(path, "read"):
        return "XML"
    with open(path, "rb") as fh:
        magic = fh.read(3)
    return next((kind for prefix, (kind, _) in ARCHIVES.items() if magic.startswith(prefix)), "XML")


class DumpReader:
    """Iterate the pages of a MediaWiki export (``for page in DumpReader(path)``), in one streaming pass.

    ``siteinfo`` is set once the <siteinfo> element has been read (before the first page); ``pages`` and
    ``bytes`` count what was read. A truncated or corrupt file is a one-line KinjectError naming it.
    """

    def __init__(self, path, name=None):
        self.source = path if hasattr(path, "read") else Path(path)
        self.path = name or self.source  # what errors name
        self.siteinfo: SiteInfo | None = None
        self.pages = 0
        self.bytes = 0

    def read_siteinfo(self) -> SiteInfo:
        """The <siteinfo> alone (read up to the first page)."""
        pages = iter(self)
        try:
            next(pages, None)
        finally:
            pages.close()
        return self.siteinfo

    def __iter__(self) -> Iterator[Page]:
        self.pages = 0
        if hasattr(self.source, "seek"):
            self.source.seek(0)
        with open_dump(self.source) as raw:
            source = _Counting(raw)
            try:
                yield from self._parse(source)
            except ET.ParseError as exc:
                raise KinjectError(self.path, f"malformed or truncated XML ({exc})") from None
            except EOFError as exc:
                raise KinjectError(self.path, f"truncated {archive_kind(self.source)} archive ({exc})") from None
            except OSError as exc:  # bz2 "Invalid data stream", gzip "CRC check failed", ...
                raise KinjectError(self.path, f"corrupt {archive_kind(self.source)} archive ({exc})") from None
            finally:
                self.bytes = source.bytes
        if self.pages == 0:
            raise KinjectError(self.path, "MediaWiki export holds no <page>")

    def _parse(self, source) -> Iterator[Page]:
        events = ET.iterparse(source, events=("start", "end"))
        _, root = next(events)
        if not (root.tag.startswith("{" + EXPORT_NS) and root.tag.endswith("}mediawiki")):
            raise KinjectError(self.path, f"not a MediaWiki XML export (root element is <{root.tag}>)")
        ns = root.tag[: -len("mediawiki")]
        page_tag, siteinfo_tag = ns + "page", ns + "siteinfo"
        for event, elem in events:
            if event != "end":
                continue
            if elem.tag == page_tag:
                if self.siteinfo is None:
                    self.siteinfo = SiteInfo(xmlns=ns[1:-1])
                page = self._page(elem, ns)
                root.clear()  # drop the page (and the empty shells of earlier ones) from the tree
                self.pages += 1
                yield page
            elif elem.tag == siteinfo_tag:
                self.siteinfo = self._siteinfo(elem, ns)
                root.clear()

    @staticmethod
    def _siteinfo(elem, ns) -> SiteInfo:
        info = SiteInfo(xmlns=ns[1:-1], **{key: elem.findtext(ns + key) or "" for key in
                                           ("sitename", "dbname", "base", "generator", "case")})
        for item in elem.iter(ns + "namespace"):
            info.namespaces[int(item.get("key"))] = (item.text or "", item.get("case", "first-letter"))
        return info

    def _page(self, elem, ns) -> Page:
        title = elem.findtext(ns + "title") or ""
        ns_text = elem.findtext(ns + "ns")
        revisions = elem.findall(ns + "revision")
        revision = revisions[-1] if revisions else None  # a history dump: the latest revision
        redirect = elem.find(ns + "redirect")
        return Page(
            title=title,
            ns=int(ns_text) if ns_text else self.siteinfo.namespace_of(title),
            id=elem.findtext(ns + "id") or "",
            revid=revision.findtext(ns + "id") or "" if revision is not None else "",
            timestamp=revision.findtext(ns + "timestamp") or "" if revision is not None else "",
            redirect=redirect.get("title") if redirect is not None else None,
            text=(revision.findtext(ns + "text") or "") if revision is not None else "",
        )


def export_header(s: SiteInfo) -> str:
    """The opening of a MediaWiki XML export: <mediawiki> and its <siteinfo>, one element per line."""
    version = s.xmlns.rsplit("-", 1)[-1].rstrip("/")
    namespaces = "".join(
        f'      <namespace key="{key}" case={quoteattr(case)}>{escape(name)}</namespace>\n' if name
        else f'      <namespace key="{key}" case={quoteattr(case)} />\n'
        for key, (name, case) in sorted(s.namespaces.items()))
    return (f'<mediawiki xmlns={quoteattr(s.xmlns)} version={quoteattr(version)} xml:lang="en">\n  <siteinfo>\n'
            + "".join(f"    <{key}>{escape(getattr(s, key))}</{key}>\n"
                      for key in ("sitename", "dbname", "base", "generator", "case"))
            + f"    <namespaces>\n{namespaces}    </namespaces>\n  </siteinfo>\n")


# the namespaces of an English Wikipedia export that the pipeline tells apart (fixtures and synthetic dumps)
ENWIKI_NAMESPACES = {0: ("", "first-letter"), 1: ("Talk", "first-letter"), 6: ("File", "first-letter"),
                     10: ("Template", "first-letter"), 14: ("Category", "first-letter")}
EXPORT_XMLNS = "http://www.mediawiki.org/xml/export-0.10/"


class PageWriter:
    """Write pages as a MediaWiki XML export, one element per line as MediaWiki writes them.

    The header (the <siteinfo> of the first page's source) is written with the first page; ``close``
    writes the closing tag.
    """

    def __init__(self, fh):
        self.fh, self.pages = fh, 0

    def _header(self, s: SiteInfo) -> None:
        self.fh.write(export_header(s))

    def write(self, page: Page, siteinfo: SiteInfo) -> None:
        if not self.pages:
            self._header(siteinfo)
        redirect = f"    <redirect title={quoteattr(page.redirect)} />\n" if page.redirect else ""
        self.fh.write(
            f"  <page>\n    <title>{escape(page.title)}</title>\n    <ns>{page.ns}</ns>\n    <id>{page.id}</id>\n"
            f"{redirect}    <revision>\n      <id>{page.revid}</id>\n"
            f"      <timestamp>{escape(page.timestamp)}</timestamp>\n"
            f'      <text xml:space="preserve">{escape(page.text)}</text>\n    </revision>\n  </page>\n')
        self.pages += 1

    def close(self) -> None:
        if self.pages:
            self.fh.write("</mediawiki>\n")


# Which pages are articles: the stated rule --------------------------------------------------------------

# Disambiguation pages carry one of these templates, or one whose name ends in "disambiguation" or "disambig"
# ({{Human name disambiguation}}, {{Place name disambiguation}}, {{Letter-NumberCombDisambig}}). Names that
# only contain the word are not: {{Disambiguation needed}} is an inline tag in ordinary articles.
DISAMBIGUATION_TEMPLATES = ("dab", "disamb", "disambiguation cleanup", "hndis", "geodis", "numberdis", "mathdab",
                            "roaddis")
_DISAMBIGUATION = re.compile(
    r"\{\{\s*(?:[^{}|]*?disambig(?:uation)?|" + "|".join(DISAMBIGUATION_TEMPLATES) + r")\s*(?:\||\}\})", re.I)
_REDIRECT_TEXT = re.compile(r"^\s*#REDIRECT\b", re.I)
DROP_REASONS = ("namespace", "redirect", "disambiguation")


def drop_reason(page: Page) -> str | None:
    """Why a page is not an article, or None when it is one:
    namespace: outside the article namespace (ns != 0: talk, category, template, file, ... pages);
    redirect: a redirect page (<redirect> element or #REDIRECT text);
    disambiguation: the title ends in "(disambiguation)" or the text uses a disambiguation template."""
    if page.ns != 0:
        return "namespace"
    if page.redirect is not None or _REDIRECT_TEXT.match(page.text):
        return "redirect"
    if page.title.endswith("(disambiguation)") or _DISAMBIGUATION.search(page.text):
        return "disambiguation"
    return None


def redirect_target(page: Page) -> str | None:
    if page.redirect is not None:
        return page.redirect
    m = re.match(r"^\s*#REDIRECT\s*:?\s*\[\[([^\]|#]+)", page.text, re.I)
    return m[1] if m else None


# Links in wikitext ---------------------------------------------------------------------------------------

_COMMENT = re.compile(r"<!--.*?-->", re.S)
_REF = re.compile(r"<ref\b[^>]*/>|<ref\b[^>]*>.*?</ref\s*>", re.S | re.I)
_LINK = re.compile(r"\[\[([^\[\]|]*)(?:\|[^\[\]]*)?\]\]")
_INTERWIKI = re.compile(r"^[a-z][a-z-]{0,11}$")  # fr:, de:, wikt:, simple:, zh-yue: ... (lower case)


def article_text(wikitext: str) -> str:
    """Wikitext without comments, references and templates: the prose whose links a page really makes."""
    return dropNested(_REF.sub("", _COMMENT.sub("", wikitext)), r"{{", r"}}")


def article_links(wikitext: str, siteinfo: SiteInfo) -> list[str]:
    """The article-namespace titles a wikitext links to, normalised, in order, without repeats.

    Links inside comments, references and templates are not the page's own (navigation boxes, citations);
    links into other namespaces (File:, Category:, ...) and interwiki links (fr:, wikt:) are not articles.
    """
    out = {}
    for m in _LINK.finditer(article_text(wikitext)):
        target = m[1].strip()
        if not target or target.startswith(":") and siteinfo.namespace_of(target[1:]) != 0:
            continue
        target = target.lstrip(":")
        prefix, colon, _ = target.partition(":")
        if colon and (siteinfo.namespace_of(target) != 0 or _INTERWIKI.match(prefix)):
            continue
        title = siteinfo.normalize(target)
        if title:
            out[title] = None
    return list(out)


def category_regex(categories: list[str], siteinfo: SiteInfo) -> re.Pattern | None:
    """Matches a [[Category:X]] (or [[Category:X|sort key]]) tag filing a page in one of the categories."""
    if not categories:
        return None
    prefixes = {name for key, (name, _) in siteinfo.namespaces.items() if key == 14} | {"Category"}
    names = [siteinfo.normalize(c).partition(":")[2] for c in categories]
    return re.compile(r"\[\[\s*(?:%s)\s*:\s*(%s)\s*(?:\|[^\]]*)?\]\]" % (
        "|".join(map(re.escape, sorted(prefixes))),
        "|".join(re.escape(n).replace(r"\ ", "[ _]+") for n in names)), re.I)
