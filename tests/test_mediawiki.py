"""The MediaWiki API client against a MediaWiki-shaped server on loopback: links, export, retries."""

import json
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from loopback import Handler, serve
from test_data import HEAD, page

from kinject.data import check_dump, clean_dump, fetch_mediawiki
from kinject.errors import KinjectError

ARTICLES = {
    "Hub": "'''Hub''' links to [[Alpha]] and [[Beta]] and [[Gamma]], three invented islands of the Orsan sea.",
    "Alpha": "'''Alpha''' is an invented island whose harbour opened in 1871 and whose lighthouse burns blue oil.",
    "Beta": "'''Beta''' is an invented island whose only town, Marrenport, was founded by Ida Marr in 1802.",
    "Gamma": "'''Gamma''' is an invented island with 4,300 inhabitants and a ferry to Alpha twice a day.",
}


class FakeWiki(Handler):
    calls: list = []
    fail_first: list = []

    def do_GET(self):
        q = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
        type(self).calls.append(q)
        assert self.headers["User-Agent"].startswith("kinject-test")
        if self.fail_first:
            return self.respond(self.fail_first.pop(0), "")
        if q.get("export"):
            body = HEAD + "".join(page(i, t, ARTICLES[t]) for i, t in enumerate(q["titles"].split("|"), 1)) + "</mediawiki>\n"
            self.respond(200, body, "text/xml")
        elif q.get("list") == "categorymembers":
            self.respond(200, json.dumps({"query": {"categorymembers": [{"ns": 0, "title": "Gamma"}]}}))
        elif q.get("prop") == "links":  # two result pages, as the API continues long link lists
            links = ["Alpha", "Beta"] if "plcontinue" not in q else ["Gamma"]
            data = {"query": {"pages": [{"title": q["titles"], "links": [{"ns": 0, "title": t} for t in links]}]}}
            if "plcontinue" not in q:
                data["continue"] = {"plcontinue": "1|0|Gamma", "continue": "||"}
            self.respond(200, json.dumps(data))


@pytest.fixture
def api():
    FakeWiki.calls, FakeWiki.fail_first = [], []
    with serve(FakeWiki) as url:
        yield f"{url}/w/api.php"


@pytest.fixture
def hubs(tmp_path):
    path = tmp_path / "hub_pages.yaml"
    path.write_text(yaml.safe_dump({"islands": ["Hub"]}))
    return path


def test_fetch_walks_hub_links_and_saves_one_export(api, hubs, tmp_path):
    out = tmp_path / "pages.xml"
    FakeWiki.fail_first = [429, 503]  # refused twice, then served
    fetch_mediawiki(hubs, "islands", out, api=api, user_agent="kinject-test/0", requests_per_second=50)
    assert check_dump(out) == 4
    assert [c.get("prop") for c in FakeWiki.calls[:4]] == ["links"] * 4  # 2 failures, then 2 pages of links
    articles = tmp_path / "articles.jsonl"
    assert clean_dump(out, articles) == 4
    assert "Marrenport" in articles.read_text()


def test_fetch_gives_up_with_a_clear_error(api, hubs, tmp_path, monkeypatch):
    monkeypatch.setattr("kinject.data.time.sleep", lambda s: None)
    FakeWiki.fail_first = [503] * 20
    with pytest.raises(KinjectError, match="MediaWiki API request failed: HTTP 503"):
        fetch_mediawiki(hubs, "islands", tmp_path / "pages.xml", api=api, user_agent="kinject-test/0")
    assert not (tmp_path / "pages.xml").exists()


def test_a_category_hub_contributes_its_members(api, tmp_path):
    hubs = tmp_path / "hub_pages.yaml"
    hubs.write_text(yaml.safe_dump({"islands": ["Category:Invented islands"]}))
    fetch_mediawiki(hubs, "islands", tmp_path / "pages.xml", api=api, user_agent="kinject-test/0")
    assert check_dump(tmp_path / "pages.xml") == 1
    assert FakeWiki.calls[0]["cmtitle"] == "Category:Invented islands"


def test_task_without_hub_pages(api, hubs, tmp_path):
    with pytest.raises(KinjectError, match="no hub pages listed for task 'other'"):
        fetch_mediawiki(hubs, "other", tmp_path / "pages.xml", api=api, user_agent="kinject-test/0")
