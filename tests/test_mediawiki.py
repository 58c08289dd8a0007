"""The MediaWiki API client against a MediaWiki-shaped server on loopback: every link (no alphabetical cut),
redirects resolved, the hub pages included, exports, retries, the counts."""

import json
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from loopback import Handler, serve
from wiki_fixtures import PROSE, export, page

from kinject.data import check_dump, clean_dump, fetch_mediawiki
from kinject.errors import KinjectError
from kinject.wikidump import DumpReader

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


class FakeWiki(Handler):
    calls: list = []
    fail_first: list = []

    def do_GET(self):
        q = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
        type(self).calls.append(q)
        assert self.headers["User-Agent"].startswith("kinject-test")
        if self.fail_first:
            return self.respond(self.fail_first.pop(0), "")
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
    FakeWiki.calls, FakeWiki.fail_first = [], []
    with serve(FakeWiki) as url:
        yield f"{url}/w/api.php"


def hub_file(tmp_path, *hubs):
    path = tmp_path / "hub_pages.yaml"
    path.write_text(yaml.safe_dump({"islands": list(hubs)}))
    return {"source": "mediawiki", "hub_pages_file": str(path)}


def fetch(api, tmp_path, kb, **kwargs):
    out, counts = tmp_path / "pages.xml", tmp_path / "counts.json"
    fetch_mediawiki("islands", out, counts, knowledge_base=kb, api=api, user_agent="kinject-test/0",
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
    monkeypatch.setattr("kinject.data.time.sleep", lambda s: None)
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
