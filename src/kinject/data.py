"""Knowledge base: raw MediaWiki pages (API or dump) -> wikiextractor clean text -> chunks."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import yaml

from kinject.errors import KinjectError
from kinject.io import atomic_path, write_parquet, write_text

log = logging.getLogger(__name__)

EXPORT_NS = "{http://www.mediawiki.org/xml/export-"


def check_dump(path) -> int:
    """Parse a MediaWiki XML export end to end; return its page count. Truncated or foreign XML fails."""
    pages = 0
    root_tag = None
    try:
        for event, elem in ET.iterparse(path, events=("start", "end")):
            if root_tag is None:
                root_tag = elem.tag
                if not (root_tag.startswith(EXPORT_NS) and root_tag.endswith("}mediawiki")):
                    raise KinjectError(path, f"not a MediaWiki XML export (root element is <{root_tag}>)")
            if event == "end" and elem.tag.endswith("}page"):
                pages += 1
                elem.clear()
    except ET.ParseError as exc:
        raise KinjectError(path, f"malformed or truncated XML ({exc})") from None
    except FileNotFoundError:
        raise KinjectError(path, "file not found") from None
    if pages == 0:
        raise KinjectError(path, "MediaWiki export holds no <page>")
    return pages


def copy_dump(src, out) -> None:
    """The offline source: a MediaWiki XML export named in the config, checked then copied."""
    n = check_dump(src)
    with atomic_path(out) as tmp:
        shutil.copyfile(src, tmp)
    log.info("copied %s (%d pages) to %s", src, n, out)


class MediaWikiClient:
    """A polite MediaWiki API client: a user agent, a rate limit and retries with backoff."""

    def __init__(self, api: str, user_agent: str, requests_per_second: float = 1.0, retries: int = 5):
        import requests

        self.api = api
        self.session = requests.Session()
        self.session.headers["User-Agent"] = user_agent
        self.interval = 1.0 / requests_per_second
        self.retries = retries
        self._last = 0.0

    def get(self, **params) -> "requests.Response":
        import requests

        params = {"format": "json", "formatversion": "2", **params}
        for attempt in range(self.retries + 1):
            wait = self._last + self.interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._last = time.monotonic()
            try:
                resp = self.session.get(self.api, params=params, timeout=60)
            except requests.RequestException as exc:
                err = str(exc)
            else:
                if resp.status_code == 200:
                    return resp
                err = f"HTTP {resp.status_code}"
                if resp.status_code not in (429, 500, 502, 503, 504):
                    break
            log.warning("MediaWiki API %s (attempt %d): %s", self.api, attempt + 1, err)
            time.sleep(min(60.0, 2.0**attempt))
        raise KinjectError(self.api, f"MediaWiki API request failed: {err}")

    def linked_titles(self, hub: str, limit: int) -> list[str]:
        """The article-namespace pages a hub page links to (the paper's 'related articles')."""
        titles, cont = [], {}
        while len(titles) < limit:
            data = self.get(action="query", prop="links", titles=hub, plnamespace=0, pllimit="max", **cont).json()
            for page in data.get("query", {}).get("pages", []):
                titles += [link["title"] for link in page.get("links", [])]
            cont = data.get("continue", {})
            if not cont:
                break
        return titles[:limit]

    def category_members(self, category: str, limit: int) -> list[str]:
        """The articles filed in a category page (hub pages may be categories, e.g. 'Category:Anatomy')."""
        titles, cont = [], {}
        while len(titles) < limit:
            data = self.get(action="query", list="categorymembers", cmtitle=category, cmnamespace=0,
                            cmlimit="max", **cont).json()
            titles += [m["title"] for m in data.get("query", {}).get("categorymembers", [])]
            cont = data.get("continue", {})
            if not cont:
                break
        return titles[:limit]

    def export(self, titles: list[str]) -> str:
        """MediaWiki XML export of up to 50 pages (the same format as a dump)."""
        return self.get(action="query", titles="|".join(titles), export=1, exportnowrap=1, format="xml").text


def fetch_mediawiki(hub_pages_file, task: str, out, *, api: str, user_agent: str,
                    requests_per_second: float = 1.0, max_pages_per_hub: int = 500) -> None:
    """Walk each hub page's links (or a hub category's members) through the API; save one MediaWiki export."""
    hubs = yaml.safe_load(Path(hub_pages_file).read_text()) or {}
    if task not in hubs or not hubs[task]:
        raise KinjectError(hub_pages_file, f"no hub pages listed for task {task!r}")
    client = MediaWikiClient(api, user_agent, requests_per_second)
    titles = []
    for hub in hubs[task]:
        if hub.startswith("Category:"):
            titles += client.category_members(hub, max_pages_per_hub)
        else:
            titles += [hub] + client.linked_titles(hub, max_pages_per_hub)
    titles = list(dict.fromkeys(titles))
    log.info("%s: %d pages from %d hub pages", task, len(titles), len(hubs[task]))
    exports = [client.export(titles[i : i + 50]) for i in range(0, len(titles), 50)]
    with atomic_path(out) as tmp:
        tmp.write_text(merge_exports(exports), encoding="utf-8")
        try:
            check_dump(tmp)
        except KinjectError as err:
            raise KinjectError(api, f"the export for {out} is unusable: {err.problem}") from None


def merge_exports(exports: list[str]) -> str:
    """Join several MediaWiki exports into one: the first's header and siteinfo, every export's pages."""
    head, _, _ = exports[0].partition("<page>")
    head = head.rsplit("</mediawiki>", 1)[0]
    pages = []
    for xml in exports:
        pages += re.findall(r"<page>.*?</page>", xml, flags=re.S)
    return head + "".join(f"<page>{p[6:-7]}</page>\n" for p in pages) + "</mediawiki>\n"


def fetch_knowledge_base(kb: dict, task: str, src, out, mediawiki: dict) -> None:
    if kb["source"] == "dump":
        copy_dump(src, out)
    else:
        fetch_mediawiki(src, task, out, **{k: v for k, v in mediawiki.items() if k != "api"},
                        api=mediawiki.get("api", "https://en.wikipedia.org/w/api.php"))


def clean_dump(dump, out) -> int:
    """Run wikiextractor (--json, no templates) over a dump; gather its non-empty articles as JSON lines."""
    check_dump(dump)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "wikiextractor.WikiExtractor", "--json", "--no-templates",
               "--processes", "1", "-b", "100M", "-o", tmp, str(dump)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        log.info("%s\n%s", " ".join(cmd), proc.stderr)
        if proc.returncode:
            raise KinjectError(dump, f"wikiextractor failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")
        articles = []
        for part in sorted(Path(tmp).rglob("wiki_*")):
            for line in part.read_text(encoding="utf-8").splitlines():
                doc = json.loads(line)
                if doc["text"].strip():
                    articles.append({"id": doc["id"], "title": doc["title"], "text": doc["text"]})
    if not articles:
        raise KinjectError(dump, "no article text left after cleaning with wikiextractor")
    write_text(out, "".join(json.dumps(a, ensure_ascii=False) + "\n" for a in articles))
    log.info("%d articles with text", len(articles))
    return len(articles)


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
