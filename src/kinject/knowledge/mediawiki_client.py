"""The MediaWiki API client a knowledge base of source mediawiki is fetched through (kinject.knowledge.mediawiki):
polite requests (a user agent, a rate limit, retries on 429 and 5xx, backing off), and the queries the
fetch needs (an export of current revisions, a page's revision as of an instant, the move log, pinned
revision ids), each answer read into kinject.knowledge.wikidump pages."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from kinject.errors import KinjectError
from kinject.knowledge.wikidump import EXPORT_XMLNS, Page, SiteInfo

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

GENERATOR = "kinject (MediaWiki API, prop=revisions)"


class MediaWikiClient:
    """A polite MediaWiki API client: a user agent, a rate limit and retries with backoff."""

    BATCH = 50  # titles per query or export (the API's limit for ordinary users)

    def __init__(self, api: str, user_agent: str, requests_per_second: float = 1.0, retries: int = 5):
        import requests

        self.api = api
        self.session = requests.Session()
        self.session.headers["User-Agent"] = user_agent
        self.interval = 1.0 / requests_per_second
        self.retries = retries
        self._last = 0.0

    def get(self, **params) -> requests.Response:
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

    def query(self, **params) -> dict:
        """The JSON answer of an action=query request; an API error (HTTP 200 with an "error") is one line."""
        data = self.get(action="query", **params).json()
        if "error" in data:
            error = data["error"]
            raise KinjectError(self.api, f"MediaWiki API error {error.get('code')}: {error.get('info')}")
        return data

    def _continued(self, key: str, **params) -> list[dict]:
        """Every result of a list or prop query, following the API's continuation to the end."""
        results, cont = [], {}
        while True:
            data = self.get(action="query", **params, **cont).json()
            query = data.get("query", {})
            if key == "links":
                for page in query.get("pages", []):
                    if page.get("missing") or page.get("invalid"):
                        hub = page.get("title", params.get("titles"))
                        raise KinjectError(self.api, f"hub page {hub!r} does not exist")
                    results += page.get("links", [])
            else:
                results += query.get(key, [])
            cont = data.get("continue", {})
            if not cont:
                return results

    def linked_titles(self, hub: str) -> list[str]:
        """Every article-namespace page a hub page links to (the paper's 'related articles'), in the API's
        order; the hub's own redirect is followed."""
        return [link["title"] for link in self._continued("links", prop="links", titles=hub, plnamespace=0,
                                                           pllimit="max", redirects=1)]

    def category_members(self, category: str) -> list[str]:
        """Every article filed in a category page (hub pages may be categories, e.g. 'Category:Anatomy')."""
        return [m["title"] for m in self._continued("categorymembers", list="categorymembers", cmtitle=category,
                                                    cmnamespace=0, cmlimit="max")]

    def resolve(self, titles: list[str]) -> tuple[list[str], int, list[str]]:
        """The pages the titles name, redirects followed: (titles in order without repeats, redirects
        followed, titles that name no page)."""
        resolved, redirects, missing = {}, 0, []
        for i in range(0, len(titles), self.BATCH):
            batch = titles[i: i + self.BATCH]
            query = self.get(action="query", titles="|".join(batch), redirects=1).json().get("query", {})
            normalized = {n["from"]: n["to"] for n in query.get("normalized", [])}
            redirected = {r["from"]: r["to"] for r in query.get("redirects", [])}
            absent = {p["title"] for p in query.get("pages", []) if p.get("missing") or p.get("invalid")}
            for title in batch:
                name = normalized.get(title, title)
                target = redirected.get(name, name)
                redirects += target != name
                if target in absent:
                    missing.append(title)
                else:
                    resolved[target] = None
        return list(resolved), redirects, missing

    def export(self, titles: list[str]) -> bytes:
        """MediaWiki XML export of up to 50 pages (the same format as a dump)."""
        return self.get(action="query", titles="|".join(titles), redirects=1, export=1, exportnowrap=1,
                        format="xml").content


    # Revisions (knowledge_base.as_of and revisions_file) ---------------------------------------------------

    def siteinfo(self) -> SiteInfo:
        """The wiki's <siteinfo> as an export writes it (namespaces, base, case), from meta=siteinfo. The
        generator is ours, not the wiki's software version (which changes weekly): a re-fetch of the same
        revisions writes the same bytes."""
        query = self.query(meta="siteinfo", siprop="general|namespaces").get("query", {})
        general, namespaces = query.get("general"), query.get("namespaces")
        if not general or not namespaces:
            raise KinjectError(self.api, "meta=siteinfo answered without general or namespaces")
        return SiteInfo(EXPORT_XMLNS, general.get("sitename", ""), general.get("wikiid", ""), general.get("base", ""),
                        GENERATOR, general.get("case", "first-letter"),
                        {int(key): (ns.get("name", ""), ns.get("case", "first-letter"))
                         for key, ns in namespaces.items()})

    def _page(self, page: dict, rev: dict) -> Page:
        main = rev.get("slots", {}).get("main", {})
        if main.get("texthidden") or "content" not in main:
            raise KinjectError(self.api, f"page {page.get('title')!r}: the text of revision {rev.get('revid')} is "
                               "hidden (deleted or suppressed)")
        return Page(page["title"], page.get("ns", 0), str(page["pageid"]), str(rev["revid"]), rev["timestamp"],
                    None, main["content"])

    def revision_as_of(self, title: str, as_of: str) -> Page | None:
        """The page's revision at an instant (its latest not after it); None when the title named no page then
        (none now, or one created later). One title per request: the API takes rvstart for a single page."""
        query = self.query(prop="revisions", titles=title, rvstart=as_of, rvdir="older", rvlimit=1,
                           rvprop="ids|timestamp|content", rvslots="main").get("query", {})
        pages = query.get("pages") or []
        if not pages and (query.get("interwiki") or query.get("badtitles")):
            return None  # a title on another wiki, or no valid title: no page of this wiki
        if len(pages) != 1:
            raise KinjectError(self.api, f"prop=revisions for {title!r} answered {len(pages)} pages, not one")
        page = pages[0]
        if page.get("missing") or page.get("invalid") or page.get("special") or not page.get("revisions"):
            return None
        return self._page(page, page["revisions"][0])

    def moved_after(self, title: str, as_of: str) -> str | None:
        """The title a page of this title was first moved to after an instant (the move log), or None."""
        events = self.query(list="logevents", letype="move", letitle=title, lestart=as_of, ledir="newer", lelimit=1,
                            leprop="title|details|timestamp").get("query", {}).get("logevents", [])
        return events[0].get("params", {}).get("target_title") if events else None

    def revisions(self, revids: list[str]) -> dict[str, Page]:
        """The revisions with these ids, BATCH per request, the API's continuation followed: {revid: page}.
        An id the wiki no longer serves (deleted, suppressed: the API's badrevids) is absent."""
        served = {}
        for i in range(0, len(revids), self.BATCH):
            cont = {}
            while True:
                data = self.query(prop="revisions", revids="|".join(revids[i: i + self.BATCH]),
                                  rvprop="ids|timestamp|content", rvslots="main", **cont)
                for page in data.get("query", {}).get("pages", []):
                    for rev in page.get("revisions", []):
                        served[str(rev["revid"])] = self._page(page, rev)
                cont = data.get("continue", {})
                if not cont:
                    break
        return served
