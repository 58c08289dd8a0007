"""Multistream bzip2 dumps: read only the streams a selection needs (with the index), decompress on every core.

Wikipedia's ``pages-articles-multistream.xml.bz2`` is a chain of independent bzip2 streams: the first holds
``<mediawiki>`` and its ``<siteinfo>``, each next one about 100 whole ``<page>`` elements, the last the closing
tag; ``...-multistream-index.txt.bz2`` has one line ``offset:page_id:title`` per page, the offset being the
byte where the page's stream starts. So a page is read by decompressing one stream, and the streams of a full
scan can be decompressed by a pool of threads (libbz2 releases the GIL; decompression is ~80 % of a pass) while
the reading thread parses them, their pages handed on in the dump's order with a fixed number of stream groups
in flight (memory stays bounded whatever the dump's size). Anything else (plain
XML, gzip, a single-stream bzip2, a multistream file whose streams do not hold whole pages) is read by
``DumpReader`` in one sequential pass, as the log says.

Parsing is done by ``DumpReader`` on each group of streams wrapped in the dump's own header, so a page comes out
exactly as a sequential pass gives it.
"""

from __future__ import annotations

import bz2
import io
import logging
import os
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from xml.sax.saxutils import unescape

from kinject.errors import KinjectError
from kinject.knowledge.wikidump import DumpReader, Page, archive_kind

log = logging.getLogger(__name__)

# a bzip2 stream starts byte-aligned with "BZh" + block size and the first block's magic (pi's digits, BCD)
STREAM_START = re.compile(rb"BZh[1-9]1AY&SY")
PROBE_BYTES = 1 << 20  # a multistream dump's first stream (its <siteinfo>) ends well within this
READ_BYTES = 16 << 20  # what the scan for stream starts reads at a time
GROUP_BYTES = 1 << 20  # compressed bytes of consecutive streams handed to one worker at a time
_PAGE_OPEN, _PAGE_CLOSE, _TAIL = b"<page>", b"</page>", b"</mediawiki>"


def index_path(dump, given=None) -> Path | None:
    """The multistream index of a dump: the one given, else the file next to it of the standard name
    (``X-multistream.xml.bz2`` -> ``X-multistream-index.txt.bz2``, or ``.txt``); None when there is none."""
    if given:
        if not Path(given).is_file():
            raise KinjectError(given, "multistream index not found (knowledge_base.index)")
        return Path(given)
    dump = Path(dump)
    if not dump.name.endswith(".xml.bz2"):
        return None
    stem = dump.name[: -len(".xml.bz2")]
    return next((p for p in (dump.with_name(stem + "-index.txt.bz2"), dump.with_name(stem + "-index.txt"))
                 if p.is_file()), None)


# Reading streams -------------------------------------------------------------------------------------------

def decompress_streams(data: bytes, where: Callable[[str], KinjectError]) -> bytes:
    """Every bzip2 stream of `data`, one after the other, decompressed; each must end within it."""
    out = []
    while data:
        if not STREAM_START.match(data):
            raise where("does not start a bzip2 stream")
        decompressor = bz2.BZ2Decompressor()
        try:
            out.append(decompressor.decompress(data))  # libbz2 releases the GIL: threads decompress in parallel
        except OSError as exc:
            raise where(f"is not a valid bzip2 stream ({exc})") from None
        if not decompressor.eof:
            raise where("holds a bzip2 stream that does not end where the next one starts (truncated?)")
        data = decompressor.unused_data
    return b"".join(out)


class Streams:
    """Groups of consecutive streams of a multistream dump: decompressed by ``xml`` (thread-safe: a worker
    thread's job), parsed by ``pages`` as a sequential pass parses them (the dump's header wrapped around)."""

    def __init__(self, path, header: bytes, index=None):
        self.path, self.header, self.index = str(path), header, index
        self.fd = os.open(path, os.O_RDONLY)

    def close(self) -> None:
        os.close(self.fd)

    def where(self, start: int) -> Callable[[str], KinjectError]:
        if self.index:
            return lambda problem: KinjectError(self.path, f"byte {start}, where the index {self.index} says a "
                                                f"stream starts, {problem}: the dump and its index disagree")
        return lambda problem: KinjectError(self.path, f"the bzip2 stream at byte {start} {problem}")

    def xml(self, start: int, end: int) -> bytes:
        """The streams in bytes [start, end) of the dump, decompressed."""
        return decompress_streams(os.pread(self.fd, end - start, start), self.where(start))

    def pages(self, start: int, xml: bytes, expect: dict[str, str] | None = None) -> tuple[list, int]:
        """The pages of a group's XML and their number. With `expect` (title -> page id, from the index): each
        must be there with that id, and only those pages come back, as (place in the group, page)."""
        body = xml.strip()
        if body.endswith(_TAIL):
            body = body[: -len(_TAIL)].rstrip()
        if not body:
            pages = []
        elif not (body.startswith(_PAGE_OPEN) and body.endswith(_PAGE_CLOSE)):
            raise self.where(start)("does not hold whole <page> elements (not a Wikipedia multistream dump)")
        else:
            pages = list(DumpReader(io.BytesIO(self.header + body + b"\n" + _TAIL + b"\n"), name=self.path))
        if expect is None:
            return pages, len(pages)
        for title, page_id in expect.items():
            found = next((p for p in pages if p.title == title), None)
            if found is None or found.id != page_id:
                held = f"holds it with id {found.id}" if found else "does not hold it"
                raise KinjectError(self.path, f"the index {self.index} puts page {page_id} {title!r} in the stream "
                                   f"at byte {start}, which {held}: the dump and its index disagree")
        return [(i, p) for i, p in enumerate(pages) if p.title in expect], len(pages)


# Finding the streams ---------------------------------------------------------------------------------------

def stream_starts(path) -> Iterator[int]:
    """The byte offsets where the file's bzip2 streams start, in order (read READ_BYTES at a time)."""
    keep = 9  # a start cut off by a chunk's end (10 bytes) is found with the next chunk
    with open(path, "rb") as fh:
        base, tail = 0, b""
        while chunk := fh.read(READ_BYTES):
            data = tail + chunk
            for m in STREAM_START.finditer(data):
                yield base + m.start()
            cut = max(len(data) - keep, 0)
            base, tail = base + cut, data[cut:]


def header_of(path) -> tuple[bytes, int] | None:
    """A Wikipedia multistream dump's first stream (the <mediawiki> opening and <siteinfo>), decompressed,
    and where the next stream starts; None when the file is not one (a single stream, or pages in the first)."""
    with open(path, "rb") as fh:
        head = fh.read(PROBE_BYTES)
    if not head.startswith(b"BZh"):
        return None
    decompressor = bz2.BZ2Decompressor()
    try:
        xml = decompressor.decompress(head)
    except OSError:
        return None  # a corrupt archive: the sequential reader says so
    if (not decompressor.eof or _PAGE_OPEN in xml or not xml.rstrip().endswith(b"</siteinfo>")
            or not STREAM_START.match(decompressor.unused_data)):
        return None
    return xml, len(head) - len(decompressor.unused_data)


# Readers ---------------------------------------------------------------------------------------------------

class ParallelReader:
    """Every page of a multistream dump, in the dump's order, its streams decompressed by `threads` threads
    (libbz2 releases the GIL) and parsed by this one, at most 2 x threads groups of ~GROUP_BYTES compressed
    bytes in flight. Same interface as DumpReader (iterate; ``pages`` and ``bytes`` count what was read)."""

    def __init__(self, path, header: tuple[bytes, int], threads: int):
        self.path, (self.header, self.first), self.threads = Path(path), header, threads
        self.pages = self.bytes = 0

    def groups(self) -> Iterator[tuple[int, int]]:
        size, start = self.path.stat().st_size, self.first
        for s in stream_starts(self.path):
            if s > start and s - start >= GROUP_BYTES:
                yield start, s
                start = s
        if start < size:
            yield start, size

    def __iter__(self) -> Iterator[Page]:
        self.pages, self.bytes = 0, len(self.header)
        streams = Streams(self.path, self.header)
        try:
            with ThreadPoolExecutor(self.threads) as pool:
                window: deque = deque()
                for start, end in self.groups():
                    window.append((start, pool.submit(streams.xml, start, end)))
                    if len(window) >= 2 * self.threads:
                        yield from self._take(streams, *window.popleft())
                while window:
                    yield from self._take(streams, *window.popleft())
        finally:
            streams.close()
        if self.pages == 0:
            raise KinjectError(self.path, "MediaWiki export holds no <page>")

    def _take(self, streams: Streams, start: int, future) -> list[Page]:
        xml = future.result()
        pages, n_pages = streams.pages(start, xml)
        self.pages += n_pages
        self.bytes += len(xml)
        return pages


class PageList:
    """Pages already read (an indexed selection's), iterable as often as wanted, with a reader's counts."""

    def __init__(self, pages: list[Page], read: int, size: int, streams: int):
        self.list, self.pages, self.bytes, self.streams = pages, read, size, streams

    def __iter__(self):
        return iter(self.list)


class Index:
    """A multistream index (``offset:page_id:title`` lines, bzip2 or plain): title lookups, each one pass over
    the index keeping only the titles asked for (memory: the selection, not the index)."""

    def __init__(self, path, dump):
        self.path, self.dump = Path(path), Path(dump)

    def _bad(self, n: int) -> KinjectError:
        return KinjectError(self.path, f"line {n} is not 'offset:page_id:title' (the multistream index of {self.dump})")

    def lookup(self, titles: set[str]) -> dict[int, tuple[int, dict[str, str]]]:
        """stream offset -> (the next stream's offset or the dump's end, {title: page id}) for the titles
        the index holds (the others are not in the dump). One pass over the index, a few operations a line
        (English Wikipedia's has ~23 million): an offset is checked when it changes, a page id when its title
        is asked for."""
        streams: dict[int, dict[str, str]] = {}
        ends, last, last_text, size = {}, -1, None, self.dump.stat().st_size
        opener = bz2.open if archive_kind(self.path) == "bzip2" else open
        try:
            with opener(self.path, "rt", encoding="utf-8") as fh:
                for n, line in enumerate(fh, 1):
                    try:
                        offset_text, page_id, title = line.split(":", 2)
                    except ValueError:
                        raise self._bad(n) from None
                    if offset_text != last_text:
                        if not offset_text.isdigit():
                            raise self._bad(n)
                        offset = int(offset_text)
                        if offset < last:
                            raise KinjectError(self.path, f"offsets go backwards ({last}, then {offset}, line {n}): "
                                               f"not the multistream index of {self.dump}")
                        if last in streams:
                            ends[last] = offset
                        last, last_text = offset, offset_text
                    if title.endswith("\n"):
                        title = title[:-1]
                    if "&" in title:
                        title = unescape(title, {"&quot;": '"', "&apos;": "'"})
                    if title in titles:
                        if not page_id.isdigit():
                            raise self._bad(n)
                        streams.setdefault(last, {})[title] = page_id
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise KinjectError(self.path, f"not a readable multistream index ({exc})") from None
        for offset in streams:
            if offset >= size:
                raise KinjectError(self.path, f"offset {offset} lies past the end of {self.dump} ({size} bytes): "
                                   "the dump and its index disagree")
        return {offset: (ends.get(offset, size), expect) for offset, expect in streams.items()}


class DumpSource:
    """A dump and how it can be read: ``scan()`` every page (in parallel when it is a Wikipedia multistream
    dump and threads > 1); ``select(titles, follow)`` the pages of the titles and of the titles `follow` names
    (redirect targets), through the index, reading only their streams (None without an index)."""

    def __init__(self, dump, index=None, threads: int = 1):
        self.dump, self.threads = Path(dump) if not hasattr(dump, "read") else dump, max(1, threads)
        self.index = index_path(dump, index) if not hasattr(dump, "read") else None
        self.kind = archive_kind(dump)
        self.header = header_of(dump) if self.kind == "bzip2" else None
        if self.index is not None and self.header is None:
            raise KinjectError(self.index, f"a multistream index, but {dump} is not a multistream bzip2 dump "
                               "(its first stream holds more than the <siteinfo>, or it is one stream)")

    def scan(self):
        if self.header is not None and self.threads > 1:
            log.info("%s: multistream bzip2, streams decompressed by %d threads", self.dump, self.threads)
            return ParallelReader(self.dump, self.header, self.threads)
        if self.header is not None:
            why = "multistream bzip2 on 1 thread: resources.fetch.cpus_per_task is 1"
        elif self.kind == "XML":
            why = "plain XML, parsed in order by one thread"
        else:
            kind = "not a Wikipedia multistream dump (pages-articles-multistream)" if self.kind == "bzip2" else "gzip"
            why = f"{kind}: one stream, decompressed and parsed in order by one thread"
        log.info("%s: read sequentially (%s)", self.dump, why)
        return DumpReader(self.dump)

    def select(self, titles: Iterable[str], follow: Callable[[Page], str | None] | None = None) -> PageList | None:
        if self.index is None:
            return None
        index, wanted, looked_up = Index(self.index, self.dump), set(titles), set()
        found: dict[str, tuple[int, int, Page]] = {}
        counts = {"pages": 0, "bytes": 0, "streams": 0}

        def take(offset, future, expect, asked):
            xml = future.result()
            pages, n_pages = streams.pages(offset, xml, expect)
            counts["pages"] += n_pages
            counts["bytes"] += len(xml)
            counts["streams"] += 1
            for i, page in pages:
                if page.title in asked and page.title not in found:
                    found[page.title] = (offset, i, page)
                    if follow and (target := follow(page)):
                        wanted.add(target)

        streams = Streams(self.dump, self.header[0], self.index)
        try:
            with ThreadPoolExecutor(self.threads) as pool:
                while new := wanted - looked_up:  # a round per step of redirects followed
                    looked_up |= new
                    window: deque = deque()
                    for offset, (end, expect) in sorted(index.lookup(new).items()):
                        window.append((offset, pool.submit(streams.xml, offset, end), expect))
                        if len(window) >= 2 * self.threads:
                            take(*window.popleft(), new)
                    while window:
                        take(*window.popleft(), new)
        finally:
            streams.close()
        log.info("%s: %d of %d titles found through the index %s, in %d stream reads (%d pages, %.1f MB of XML)",
                 self.dump, len(found), len(wanted), self.index, counts["streams"], counts["pages"],
                 counts["bytes"] / 1e6)
        return PageList([page for _, _, page in sorted(found.values(), key=lambda f: f[:2])], counts["pages"],
                        counts["bytes"], counts["streams"])


# Writing ---------------------------------------------------------------------------------------------------

class MultistreamWriter:
    """Write an export as Wikipedia writes its multistream dumps: the header (``<mediawiki>`` and its
    ``<siteinfo>``) one bzip2 stream, then a stream per `pages_per_stream` pages, the closing tag the last;
    and its index, one ``offset:page_id:title`` line per page (bzip2 when its name ends in .bz2)."""

    def __init__(self, dump, index, header: str, pages_per_stream: int = 100):
        self.out, self.per_stream = open(dump, "wb"), pages_per_stream
        self.index = bz2.open(index, "wt", encoding="utf-8") if str(index).endswith(".bz2") else open(
            index, "w", encoding="utf-8")
        self.offset, self.batch, self.entries = 0, [], []
        self._stream(header)

    def _stream(self, text: str) -> None:
        self.offset += self.out.write(bz2.compress(text.encode("utf-8")))

    def add(self, page_xml: str, page_id, title: str) -> None:
        """One <page> element as text (written as it is) with its id and title (unescaped)."""
        self.batch.append(page_xml)
        self.entries.append(f"{self.offset}:{page_id}:{title}\n")
        if len(self.batch) == self.per_stream:
            self._flush()

    def _flush(self) -> None:
        if self.batch:
            self.index.write("".join(self.entries))
            self._stream("".join(self.batch))
            self.batch, self.entries = [], []

    def close(self, tail: str = "</mediawiki>\n") -> None:
        self._flush()
        self._stream(tail)
        self.out.close()
        self.index.close()


_PAGE_XML = re.compile(r"  <page>\n.*?\n  </page>\n", re.S)
_TITLE_ID = re.compile(r"<title>(.*?)</title>.*?<id>(\d+)</id>", re.S)


def repack(export, dump, index, pages_per_stream: int = 100) -> int:
    """A MediaWiki XML export (one element per line, as MediaWiki writes it) re-packed byte for byte as a
    multistream bzip2 dump and its index; returns the number of pages."""
    text = Path(export).read_text(encoding="utf-8")
    pages = list(_PAGE_XML.finditer(text))
    if not pages:
        raise KinjectError(export, "holds no '  <page>' element on lines of its own: cannot re-pack it")
    writer = MultistreamWriter(dump, index, text[: pages[0].start()], pages_per_stream)
    for previous, m in zip([pages[0], *pages], pages):
        if m is not pages[0] and m.start() != previous.end():
            raise KinjectError(export, f"holds text between two pages (at character {previous.end()}): cannot "
                               "re-pack it byte for byte")
        title, page_id = _TITLE_ID.search(m[0]).groups()
        writer.add(m[0], page_id, unescape(title, {"&quot;": '"', "&apos;": "'"}))
    writer.close(text[pages[-1].end():])
    return len(pages)
