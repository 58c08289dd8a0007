"""The MediaWiki API client against a MediaWiki-shaped server on loopback: every link (no alphabetical cut),
redirects resolved, the hub pages included, exports, retries, the counts; and pages with a history of revisions:
a knowledge base as of an instant (knowledge_base.as_of) and re-fetched from pinned revision ids."""

import copy
import json
import shutil
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from loopback import Handler, serve
from wiki_fixtures import PROSE, export, page

from kinject.errors import KinjectError
from kinject.knowledge.clean import clean_dump
from kinject.knowledge.data import check_dump
from kinject.knowledge.mediawiki import fetch_mediawiki
from kinject.knowledge.wikidump import ENWIKI_NAMESPACES, DumpReader

ARTICLES = {
    "Hub": "'''Hub''' links to [[Alpha]] and [[Beta]] and [[Gamma]], three invented islands of the Orsan sea.",
    "Alpha": "'''Alpha''' is an invented island whose harbour opened in 1871 and whose lighthouse burns blue oil.",
    "Beta": "'''Beta''' is an invented island whose only town, Marrenport, was founded by Ida Marr in 1802.",
    "Gamma": "'''Gamma''' is an invented island with 4,300 inhabitants and a ferry to Alpha twice a day.",
    "August 2031": ("==[[August 3]], 2031 (Sunday)==\n*The [[Alpha (island)|Alpha]] harbour reopens in the "
                    "[[Orsan Republic]].\n*A storm hits [[Beta]] in [[Zarnia]].\n==[[September 2]], 2031==\n"
                    "*[[Gamma]] joins the [[Orsan Republic]].\n"),
    "Delta (disambiguation)": "'''Delta''' may refer to an island or a river.\n{{disambiguation}}",
    **{f"Islet {i:03d}": f"'''Islet {i:03d}''' is a rock. " + PROSE for i in range(700)},
}
REDIRECTS = {"Alpha (island)": "Alpha", "Isle of Beta": "Beta"}
LINKS = {  # in the API's (alphabetical) order, served 500 per response as prop=links does
    "Hub": ["Alpha (island)", "Delta (disambiguation)", "Gamma", "Isle of Beta", "Nowhere"],
    "Big hub": [f"Islet {i:03d}" for i in range(700)],
}
PAGE_SIZE = 500

# Pages with a history (prop=revisions): title -> (pageid, [(revid, timestamp, wikitext), ...] oldest first).
# As of 2023-12-01 the hub linked Alpha, Isle of Beta (then a redirect to Beta (island)), Delta (created in 2024)
# and Old Harbour (never written); in 2024 its links changed, Alpha was rewritten and Isle of Beta retargeted.
HISTORY = {
    "Archipelago": (11, [
        (1101, "2023-01-10T08:00:00Z", "'''Archipelago''' lists [[Alpha]], [[Isle of Beta]], [[Delta]] and "
                                       "[[Old Harbour]], islands of the Orsan sea.{{Navbox|[[Navbox island]]}}"),
        (1102, "2024-03-01T09:00:00Z", "'''Archipelago''' lists [[Alpha]], [[Gamma]] and [[Beta]].")]),
    "Alpha": (12, [
        (1201, "2023-02-01T00:00:00Z", "'''Alpha''' is an invented island whose harbour opened in 1871. " + PROSE),
        (1202, "2024-05-01T00:00:00Z", "'''Alpha''' is an invented island whose harbour was rebuilt after the "
                                       "storm of 2024. " + PROSE)]),
    "Isle of Beta": (13, [(1301, "2023-03-01T00:00:00Z", "#REDIRECT [[Beta (island)]]"),
                          (1302, "2024-07-01T00:00:00Z", "#REDIRECT [[Beta]]")]),
    "Beta (island)": (14, [(1401, "2023-03-01T00:00:00Z", "'''Beta''' is an invented island whose only town, "
                                                          "Marrenport, was founded by Ida Marr in 1802. " + PROSE)]),
    "Beta": (15, [(1501, "2024-07-01T00:00:00Z", "'''Beta''' is the island once called Beta (island). " + PROSE)]),
    "Delta": (16, [(1601, "2024-02-01T00:00:00Z", "'''Delta''' is an invented island raised in 2024. " + PROSE)]),
    "Gamma": (17, [(1701, "2022-05-05T00:00:00Z", "'''Gamma''' is an invented island with 4,300 inhabitants. "
                                                  + PROSE)]),
}
AS_OF = "2023-12-01T00:00:00Z"
REVISIONS_PER_ANSWER = 2  # a revids query answers this many revisions, then continues (rvcontinue)


def revisions_entry(title, pageid, revs):
    """A page of a prop=revisions answer; a revision whose text is None has it hidden (suppressed)."""
    slots = [{"main": {"texthidden": True} if text is None else
              {"contentmodel": "wikitext", "contentformat": "text/x-wiki", "content": text}} for _, _, text in revs]
    return {"pageid": pageid, "ns": 0, "title": title,
            **({"revisions": [{"revid": r, "parentid": 0, "timestamp": ts, "slots": slot}
                              for (r, ts, _), slot in zip(revs, slots)]} if revs else {})}


class FakeWiki(Handler):
    calls: list = []
    fail_first: list = []
    history: dict = {}
    moves: dict = {}

    def revisions(self, q):
        """prop=revisions as MediaWiki answers it (formatversion=2): by revids, or one title's revision at
        rvstart going older (several titles with rvstart are an API error)."""
        assert q["rvslots"] == "main" and set(q["rvprop"].split("|")) == {"ids", "timestamp", "content"}
        if "revids" in q:
            ids = q["revids"].split("|")
            assert len(ids) <= 50
            start = int(q.get("rvcontinue", 0))
            pages, bad = {}, {}
            for rid in map(int, ids[start: start + REVISIONS_PER_ANSWER]):
                hit = [(t, pid, rev) for t, (pid, revs) in self.history.items() for rev in revs if rev[0] == rid]
                if hit:
                    title, pid, rev = hit[0]
                    pages.setdefault(title, (pid, []))[1].append(rev)
                else:
                    bad[str(rid)] = {"revid": rid, "missing": True}
            data = {"query": {"pages": [revisions_entry(t, pid, revs) for t, (pid, revs) in pages.items()],
                              **({"badrevids": bad} if bad else {})}}
            if start + REVISIONS_PER_ANSWER < len(ids):
                data["continue"] = {"rvcontinue": str(start + REVISIONS_PER_ANSWER), "continue": "||"}
            return data
        titles = q["titles"].split("|")
        if len(titles) > 1:
            return {"error": {"code": "multpages", "info": "rvstart may only be used with a single page"}}
        assert q["rvdir"] == "older" and q["rvlimit"] == "1" and "redirects" not in q
        if titles[0] not in self.history:
            return {"query": {"pages": [{"ns": 0, "title": titles[0], "missing": True}]}}
        pid, revs = self.history[titles[0]]
        then = [r for r in revs if r[1] <= q["rvstart"]]
        return {"query": {"pages": [revisions_entry(titles[0], pid, then[-1:])]}}

    def do_GET(self):
        q = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
        type(self).calls.append(q)
        assert self.headers["User-Agent"].startswith("kinject-test")
        if self.fail_first:
            return self.respond(self.fail_first.pop(0), "")
        if q.get("meta") == "siteinfo":
            return self.respond(200, json.dumps({"query": {
                "general": {"sitename": "T", "wikiid": "t", "base": "https://t.invalid/wiki/Main",
                            "generator": "MediaWiki 1.41", "case": "first-letter"},
                "namespaces": {str(k): {"id": k, "name": name, "case": case}
                               for k, (name, case) in ENWIKI_NAMESPACES.items()}}}))
        if q.get("prop") == "revisions":
            return self.respond(200, json.dumps(self.revisions(q)))
        if q.get("list") == "logevents":  # the move log: title -> [(timestamp, moved to)], oldest first
            assert q["letype"] == "move" and q["ledir"] == "newer" and q["lelimit"] == "1"
            moves = [m for m in self.moves.get(q["letitle"], []) if m[0] >= q["lestart"]][:1]
            return self.respond(200, json.dumps({"query": {"logevents": [
                {"type": "move", "title": q["letitle"], "timestamp": ts, "params": {"target_ns": 0, "target_title": to}}
                for ts, to in moves]}}))
        titles = q.get("titles", "").split("|")
        if q.get("redirects"):
            titles = [REDIRECTS.get(t, t) for t in titles]
        if q.get("export"):
            body = export(*(page(i, t, ARTICLES[t]) for i, t in enumerate(titles, 1) if t in ARTICLES))
            self.respond(200, body, "text/xml")
        elif q.get("list") == "categorymembers":
            self.respond(200, json.dumps({"query": {"categorymembers": [{"ns": 0, "title": "Gamma"}]}}))
        elif q.get("prop") == "links":
            links = LINKS[titles[0]]
            start = int(q.get("plcontinue", 0))
            data = {"query": {"pages": [{"title": titles[0], "links": [{"ns": 0, "title": t}
                                                                       for t in links[start: start + PAGE_SIZE]]}]}}
            if start + PAGE_SIZE < len(links):
                data["continue"] = {"plcontinue": str(start + PAGE_SIZE), "continue": "||"}
            self.respond(200, json.dumps(data))
        else:  # a plain query: normalisation, redirects, missing pages
            asked = q["titles"].split("|")
            data = {"query": {"redirects": [{"from": t, "to": REDIRECTS[t]} for t in asked if t in REDIRECTS],
                              "pages": [{"title": t, **({} if t in ARTICLES else {"missing": True})} for t in titles]}}
            self.respond(200, json.dumps(data))


@pytest.fixture
def api():
    FakeWiki.calls, FakeWiki.fail_first, FakeWiki.history, FakeWiki.moves = [], [], copy.deepcopy(HISTORY), {}
    with serve(FakeWiki) as url:
        yield f"{url}/w/api.php"


def hub_file(tmp_path, *hubs):
    path = tmp_path / "hub_pages.yaml"
    path.write_text(yaml.safe_dump({"islands": list(hubs)}))
    return {"source": "mediawiki", "hub_pages_file": str(path)}


def fetch(api, tmp_path, kb, revisions=None, **kwargs):
    out, counts = tmp_path / "pages.xml", tmp_path / "counts.json"
    fetch_mediawiki("islands", out, counts, revisions, knowledge_base=kb, api=api, user_agent="kinject-test/0",
                    requests_per_second=1000, **kwargs)
    return [p.title for p in DumpReader(out)], json.loads(counts.read_text())


def test_fetch_resolves_redirects_includes_the_hub_and_counts(api, tmp_path):
    FakeWiki.fail_first = [429, 503]  # refused twice, then served
    titles, counts = fetch(api, tmp_path, hub_file(tmp_path, "Hub"))
    # both links through a redirect reach their article; the disambiguation page is fetched, then dropped
    assert titles == ["Hub", "Alpha", "Gamma", "Beta"]
    assert counts["redirects_followed"] == 2 and counts["missing_titles"] == ["Nowhere"]
    assert counts["pages_in"] == 5 and counts["pages_kept"] == 4
    assert counts["dropped"] == {"namespace": 0, "redirect": 0, "disambiguation": 1}
    assert counts["hubs"] == [{"hub": "Hub", "kind": "page", "links": 5, "sampled_out": 0}]
    assert [c.get("prop") for c in FakeWiki.calls[:3]] == ["links"] * 3  # 2 failures, then the links
    articles = tmp_path / "articles.jsonl"
    assert clean_dump(tmp_path / "pages.xml", articles, tmp_path / "clean.json") == 4
    assert "Marrenport" in articles.read_text()


def test_every_link_of_a_big_hub_no_alphabetical_cut(api, tmp_path):
    titles, counts = fetch(api, tmp_path, hub_file(tmp_path, "Big hub"))
    assert sorted(titles) == sorted(LINKS["Big hub"])  # 700 links over two result pages: all of them
    assert counts["hubs"][0]["links"] == 700 and counts["requested"] == 701  # the links and the hub


def test_a_cap_takes_a_seeded_sample_across_the_alphabet(api, tmp_path):
    kb = {**hub_file(tmp_path, "Big hub"), "max_links_per_hub": 100}
    first, counts = fetch(api, tmp_path, kb, seed=3)
    again, _ = fetch(api, tmp_path, kb, seed=3)
    other, _ = fetch(api, tmp_path, kb, seed=4)
    assert first == again != other and len(first) == 100
    assert max(first) > "Islet 600" and min(first) < "Islet 100"  # not the first 100 in the API's order
    assert counts["hubs"][0] == {"hub": "Big hub", "kind": "page", "links": 700, "sampled_out": 600}


def test_an_events_hub_keeps_its_selected_entries_and_their_links(api, tmp_path):
    kb = {**hub_file(tmp_path, "August 2031"),
          "events": {"start": "2031-08-01", "end": "2031-08-31", "scope": ["Orsan Republic"]}}
    titles, counts = fetch(api, tmp_path, kb)
    assert titles == ["August 2031", "Alpha"]  # Beta: out of scope; Gamma: out of the window
    assert counts["hubs"] == [{"hub": "August 2031", "kind": "events", "entries": 3, "undated": 0, "in_window": 2,
                               "selected": 1, "linked_articles": "all", "links": 2, "sampled_out": 0}]
    assert counts["missing_titles"] == ["Orsan Republic"] and counts["redirects_followed"] == 1
    hub = next(p for p in DumpReader(tmp_path / "pages.xml") if p.title == "August 2031")
    assert hub.text == "August 3, 2031: The [[Alpha (island)|Alpha]] harbour reopens in the [[Orsan Republic]].\n"


def test_fetch_gives_up_with_a_clear_error(api, tmp_path, monkeypatch):
    monkeypatch.setattr("kinject.knowledge.mediawiki_client.time.sleep", lambda s: None)
    FakeWiki.fail_first = [503] * 20
    with pytest.raises(KinjectError, match="MediaWiki API request failed: HTTP 503"):
        fetch(api, tmp_path, hub_file(tmp_path, "Hub"))
    assert not (tmp_path / "pages.xml").exists()


def test_a_category_hub_contributes_its_members(api, tmp_path):
    titles, _ = fetch(api, tmp_path, hub_file(tmp_path, "Category:Invented islands"))
    assert titles == ["Gamma"]
    assert FakeWiki.calls[0]["cmtitle"] == "Category:Invented islands"
    assert check_dump(tmp_path / "pages.xml") == 1


def test_a_titles_file_instead_of_hubs(api, tmp_path):
    path = tmp_path / "titles.txt"
    path.write_text("Isle of Beta\nGamma\n")
    titles, counts = fetch(api, tmp_path, {"source": "mediawiki", "titles": str(path)})
    assert titles == ["Beta", "Gamma"] and counts["redirects_followed"] == 1


def test_task_without_hub_pages(api, tmp_path):
    kb = hub_file(tmp_path, "Hub")
    with pytest.raises(KinjectError, match="no hub pages listed for task 'other'"):
        fetch_mediawiki("other", tmp_path / "pages.xml", tmp_path / "c.json", knowledge_base=kb, api=api,
                        user_agent="kinject-test/0")


# As of an instant; pinned revisions -------------------------------------------------------------------------

def read_pages(path):
    return {p.title: p for p in DumpReader(path)}


def as_of_fetch(api, tmp_path, kb_extra=None, name="asof", as_of=AS_OF):
    """An as_of fetch of the Archipelago hub into tmp_path/name: (titles, counts, revisions.json)."""
    out = tmp_path / name
    out.mkdir(exist_ok=True)
    kb = {**hub_file(tmp_path, "Archipelago"), "as_of": as_of, **(kb_extra or {})}
    titles, counts = fetch(api, out, kb, out / "revisions.json")
    return titles, counts, json.loads((out / "revisions.json").read_text())


def test_as_of_takes_each_page_as_it_was_then(api, tmp_path):
    titles, counts, revisions = as_of_fetch(api, tmp_path)
    # the hub's links of 2023 (not Gamma and Beta of 2024; not the navbox's), Isle of Beta as it redirected then
    assert titles == ["Archipelago", "Alpha", "Beta (island)"]
    pages = read_pages(tmp_path / "asof" / "pages.xml")
    assert "opened in 1871" in pages["Alpha"].text and "2024" not in pages["Alpha"].text
    assert pages["Alpha"].revid == "1201" and pages["Alpha"].timestamp == "2023-02-01T00:00:00Z"
    assert "Marrenport" in pages["Beta (island)"].text
    # Delta was created in 2024: missing then, not fetched at its current revision; Old Harbour never existed
    assert counts["missing_titles"] == ["Delta", "Old Harbour"] and counts["missing"] == 2
    assert counts["redirects_followed"] == 1 and counts["requested"] == 5 and counts["pages_kept"] == 3
    assert revisions == {"source": "mediawiki", "as_of": AS_OF, "missing": ["Delta", "Old Harbour"], "pages": [
        {"title": "Alpha", "pageid": 12, "revid": 1201, "timestamp": "2023-02-01T00:00:00Z"},
        {"title": "Archipelago", "pageid": 11, "revid": 1101, "timestamp": "2023-01-10T08:00:00Z"},
        {"title": "Beta (island)", "pageid": 14, "revid": 1401, "timestamp": "2023-03-01T00:00:00Z"},
        {"title": "Isle of Beta", "pageid": 13, "revid": 1301, "timestamp": "2023-03-01T00:00:00Z"}]}
    asked = [c for c in FakeWiki.calls if c.get("prop") == "revisions"]
    assert all(c["rvstart"] == AS_OF and "|" not in c["titles"] for c in asked)  # one title per request
    assert not [c for c in FakeWiki.calls if c.get("export") or c.get("prop") == "links"]


def test_a_later_instant_sees_the_later_links_and_revisions(api, tmp_path):
    titles, counts, revisions = as_of_fetch(api, tmp_path, as_of="2024-12-01T00:00:00Z")
    assert titles == ["Archipelago", "Alpha", "Gamma", "Beta"] and counts["missing"] == 0
    assert "rebuilt after the storm" in read_pages(tmp_path / "asof" / "pages.xml")["Alpha"].text
    assert [(p["title"], p["revid"]) for p in revisions["pages"]] == [
        ("Alpha", 1202), ("Archipelago", 1102), ("Beta", 1501), ("Gamma", 1701)]


def test_a_titles_file_as_of_an_instant(api, tmp_path):
    path = tmp_path / "titles.txt"
    path.write_text("Isle of Beta\nDelta\ngamma\n")
    kb = {"source": "mediawiki", "titles": str(path), "as_of": AS_OF}
    titles, counts = fetch(api, tmp_path, kb, tmp_path / "revisions.json")
    assert titles == ["Beta (island)", "Gamma"] and counts["missing_titles"] == ["Delta"]  # gamma: normalised


def test_a_category_hub_as_of_an_instant_is_one_clear_line(api, tmp_path):
    kb = {**hub_file(tmp_path, "Category:Invented islands"), "as_of": AS_OF}
    with pytest.raises(KinjectError, match="a category hub cannot be resolved as of 2023-12-01T00:00:00Z"):
        fetch(api, tmp_path, kb)
    assert not (tmp_path / "pages.xml").exists()


def test_a_hub_created_later_is_refused(api, tmp_path):
    kb = {**hub_file(tmp_path, "Delta"), "as_of": AS_OF}
    with pytest.raises(KinjectError, match="hub page 'Delta' did not exist at 2023-12-01T00:00:00Z"):
        fetch(api, tmp_path, kb)


def pinned_fetch(api, tmp_path, lock, name="pinned", **kb_extra):
    return as_of_fetch(api, tmp_path, {"revisions_file": str(lock), **kb_extra}, name=name)


def test_a_refetch_from_pinned_revisions_is_byte_identical(api, tmp_path):
    as_of_fetch(api, tmp_path)
    lock = tmp_path / "kb.lock.json"
    shutil.copy(tmp_path / "asof" / "revisions.json", lock)
    # the wiki moves on: new revisions of the hub and of Alpha, Old Harbour written at last
    FakeWiki.history["Archipelago"][1].append((1103, "2025-01-01T00:00:00Z", "'''Archipelago''' lists [[Gamma]]."))
    FakeWiki.history["Alpha"][1].append((1203, "2025-02-01T00:00:00Z", "'''Alpha''' sank. " + PROSE))
    FakeWiki.history["Old Harbour"] = (18, [(1801, "2025-03-01T00:00:00Z", "'''Old Harbour''' " + PROSE)])
    FakeWiki.calls.clear()
    _, counts, _ = pinned_fetch(api, tmp_path, lock)
    for name in ("pages.xml", "revisions.json"):
        assert (tmp_path / "pinned" / name).read_bytes() == (tmp_path / "asof" / name).read_bytes()
    asked = [c for c in FakeWiki.calls if c.get("prop") == "revisions"]
    assert all("rvstart" not in c for c in asked)  # by revision id only: 4 ids, 2 per answer, continued once
    assert [c["revids"] for c in asked] == ["1201|1101|1401|1301"] * 2 and asked[1]["rvcontinue"] == "2"
    assert counts["revisions"] == f"pinned ({lock})" and counts["missing_titles"] == ["Delta", "Old Harbour"]


def lock_of_a_first_fetch(api, tmp_path):
    as_of_fetch(api, tmp_path)
    return tmp_path / "asof" / "revisions.json"


def test_a_pinned_revision_no_longer_served_is_refused(api, tmp_path):
    lock = lock_of_a_first_fetch(api, tmp_path)
    pid, revs = FakeWiki.history["Alpha"]
    FakeWiki.history["Alpha"] = (pid, revs[1:])  # revision 1201 deleted
    with pytest.raises(KinjectError, match=r"page 'Alpha': pinned revision 1201 is no longer served by http"):
        pinned_fetch(api, tmp_path, lock)
    assert not (tmp_path / "pinned" / "pages.xml").exists()


def move(old, new, when):
    """Move a page of the fake wiki as MediaWiki does: its history goes to the new title, a redirect created at
    the move is left at the old one, the move log records it."""
    FakeWiki.history[new] = FakeWiki.history.pop(old)
    FakeWiki.history[old] = (90 + len(FakeWiki.history), [(9000 + len(FakeWiki.history), when,
                                                          f"#REDIRECT [[{new}]]")])
    FakeWiki.moves.setdefault(old, []).append((when, new))


def test_a_page_moved_since_is_found_and_keeps_its_title_of_then(api, tmp_path):
    as_of_fetch(api, tmp_path)
    move("Alpha", "Alpha (island)", "2024-06-01T00:00:00Z")
    move("Alpha (island)", "Alpha Island", "2025-01-01T00:00:00Z")  # and moved again
    move("Beta (island)", "Beta of Orsa", "2024-08-01T00:00:00Z")  # the target of a redirect of then
    _, counts, _ = as_of_fetch(api, tmp_path, name="moved")
    for name in ("pages.xml", "revisions.json"):
        assert (tmp_path / "moved" / name).read_bytes() == (tmp_path / "asof" / name).read_bytes()
    assert counts["moved_since_titles"] == {"Alpha": "Alpha Island", "Beta (island)": "Beta of Orsa"}
    # pinned: the same revisions, served under their new titles, keep their pinned ones
    pinned_fetch(api, tmp_path, tmp_path / "asof" / "revisions.json")
    assert (tmp_path / "pinned" / "pages.xml").read_bytes() == (tmp_path / "asof" / "pages.xml").read_bytes()


def test_a_pinned_revision_of_another_page_or_time_has_drifted(api, tmp_path):
    lock = lock_of_a_first_fetch(api, tmp_path)
    pinned = json.loads(lock.read_text())
    pinned["pages"][0]["timestamp"] = "2023-02-02T00:00:00Z"  # Alpha's pin edited
    lock.write_text(json.dumps(pinned))
    with pytest.raises(KinjectError, match=r"asof/revisions.json: page 'Alpha': pinned revision 1201 has drifted, "
                                           r"\S+ serves it with timestamp '2023-02-01T00:00:00Z' "
                                           r"\(pinned '2023-02-02T00:00:00Z'\)$"):
        pinned_fetch(api, tmp_path, lock)


def test_a_pinned_revision_whose_text_was_suppressed_is_refused(api, tmp_path):
    lock = lock_of_a_first_fetch(api, tmp_path)
    pid, revs = FakeWiki.history["Beta (island)"]
    FakeWiki.history["Beta (island)"] = (pid, [(1401, revs[0][1], None)])
    with pytest.raises(KinjectError, match="page 'Beta \\(island\\)': the text of revision 1401 is hidden"):
        pinned_fetch(api, tmp_path, lock)


def test_a_pin_of_another_instant_or_selection_is_refused(api, tmp_path):
    lock = lock_of_a_first_fetch(api, tmp_path)
    with pytest.raises(KinjectError, match="pins revisions as of 2023-12-01T00:00:00Z, but knowledge_base.as_of "
                                           "is 2024-01-01T00:00:00Z"):
        as_of_fetch(api, tmp_path, {"revisions_file": str(lock)}, name="other", as_of="2024-01-01T00:00:00Z")
    (tmp_path / "edited").mkdir()
    edited = hub_file(tmp_path / "edited", "Archipelago", "Gamma")["hub_pages_file"]  # a hub added
    with pytest.raises(KinjectError, match="page 'Gamma' is not pinned: the selection differs"):
        pinned_fetch(api, tmp_path, lock, hub_pages_file=edited)
    current = tmp_path / "current.json"
    fetch(api, tmp_path, hub_file(tmp_path, "Hub"), current)  # no as_of: current revisions, live links
    assert json.loads(current.read_text())["as_of"] is None
    with pytest.raises(KinjectError, match="pins a fetch made without as_of"):
        pinned_fetch(api, tmp_path, current)


def test_an_events_hub_as_of_an_instant_keeps_the_entries_written_by_then(api, tmp_path):
    first = "==[[August 3]], 2031 (Sunday)==\n*The [[Alpha]] harbour reopens in the [[Orsan Republic]].\n"
    FakeWiki.history["August 2031"] = (21, [
        (2101, "2031-08-20T00:00:00Z", first),
        (2102, "2031-09-10T00:00:00Z", first + "==[[August 25]], 2031==\n*[[Gamma]] joins the [[Orsan Republic]].\n")])
    events = {"start": "2031-08-01", "end": "2031-08-31", "scope": ["Orsan Republic"]}
    kb = {**hub_file(tmp_path, "August 2031"), "events": events}
    titles, counts = fetch(api, tmp_path, {**kb, "as_of": "2031-09-01T00:00:00Z"})
    assert titles == ["August 2031", "Alpha"] and counts["hubs"][0]["selected"] == 1
    hub = read_pages(tmp_path / "pages.xml")["August 2031"]
    assert hub.revid == "2101" and "Gamma" not in hub.text and counts["missing_titles"] == ["Orsan Republic"]
    titles, counts = fetch(api, tmp_path, {**kb, "as_of": "2031-09-30T00:00:00Z"})  # the entry of August 25 is in
    assert titles == ["August 2031", "Alpha", "Gamma"] and counts["hubs"][0]["selected"] == 2
