"""Current events as the paper built them: the dated entries of month pages in a window and a scope."""

import datetime as dt
import json

import yaml
from wiki_fixtures import PROSE, page, write_dump

from kinject.knowledge.clean import clean_dump
from kinject.knowledge.data import fetch_dump
from kinject.knowledge.events import event_entries, scope_regex, select_events
from kinject.knowledge.wikidump import DumpReader

MONTH_PAGE = """{{Short description|none}}
The following events occurred in '''August 2023'''.<ref>{{cite web|date=July 31, 2023}}</ref>

==[[August 1]], 2023 (Tuesday)==
{{anchor|August 1, 2023}}
*[[Donald Trump]] is indicted by a grand jury in [[Washington, D.C.]]<ref>{{cite news|date=August 1, 2023|work=[[Reuters]]}}</ref>
*A [[heat wave]] in [[Greece]] closes the [[Acropolis]].

==[[August 8]], 2023 (Tuesday)==
*[[2023 Hawaii wildfires]]: Wildfires on [[Maui]], [[Hawaii]], destroy the town of [[Lahaina]].
*[[Russian invasion of Ukraine]]
**Ukraine strikes a bridge in [[Crimea]].
**The [[United States]] announces new aid.

==See also==
*[[2023 in the United States]]
"""

YEAR_PAGE = """'''2023 in the United States''' lists events of the year.
== Events ==
=== August ===
* [[August 8]] – The [[2023 Hawaii wildfires]] begin.
* August 24 – [[Donald Trump]] surrenders at the [[Fulton County Jail]].
* [[September 5]]
** The [[United States Open]] is played.
=== December ===
* [[December 1]] – [[Sandra Day O'Connor]] dies.
== Deaths ==
* [[Someone Else]], an actor.
"""

WINDOW = {"start": dt.date(2023, 8, 1), "end": dt.date(2023, 11, 30)}
US = scope_regex(["United States", "U.S.", "American", "Hawaii", "Washington", "Georgia"])


def test_entries_of_a_month_page_with_their_dates():
    entries = event_entries("August 2023", MONTH_PAGE)
    assert [e.date for e in entries] == [dt.date(2023, 8, 1)] * 2 + [dt.date(2023, 8, 8)] * 2 + [None]
    assert entries[3].lines == ["[[Russian invasion of Ukraine]]", "Ukraine strikes a bridge in [[Crimea]].",
                                "The [[United States]] announces new aid."]  # a bullet with its sub-bullets
    assert "Reuters" not in entries[0].wikitext  # references are not the entry's text


def test_entries_of_a_year_page_take_their_day_from_their_head():
    entries = event_entries("2023 in the United States", YEAR_PAGE)
    assert [e.date for e in entries] == [dt.date(2023, 8, 8), dt.date(2023, 8, 24), dt.date(2023, 9, 5),
                                         dt.date(2023, 12, 1), None]
    assert entries[2].lines == ["", "The [[United States Open]] is played."]  # a day bullet, its events below


def test_selection_by_window_and_scope():
    month = select_events("August 2023", MONTH_PAGE, scope=US, **WINDOW)
    assert month.counts == {"entries": 5, "undated": 1, "in_window": 4, "selected": 3}  # Greece is out of scope
    year = select_events("2023 in the United States", YEAR_PAGE, scope=US, **WINDOW)
    assert year.counts == {"entries": 5, "undated": 1, "in_window": 3, "selected": 3}  # the title is in scope
    late = select_events("August 2023", MONTH_PAGE, scope=US, start=dt.date(2023, 8, 2), end=dt.date(2023, 8, 31))
    assert late.counts["selected"] == 2
    assert select_events("August 2023", MONTH_PAGE, scope=None, **WINDOW).counts["selected"] == 4


def test_an_events_knowledge_base_from_a_dump(tmp_path):
    linked = ["Donald Trump", "Washington, D.C.", "2023 Hawaii wildfires", "Maui", "Lahaina", "Crimea", "United States",
              "Fulton County Jail", "United States Open", "Greece", "Acropolis", "Reuters", "Sandra Day O'Connor", "August 8"]
    pages = [page(i, t, f"'''{t}''' is a page. " + PROSE) for i, t in enumerate(linked, 1)]
    pages += [page(100, "August 2023", MONTH_PAGE), page(101, "2023 in the United States", YEAR_PAGE),
              page(102, "Hawaii", "#REDIRECT [[Hawaii (island)]]"), page(103, "Hawaii (island)", "'''Hawaii''' " + PROSE)]
    dump = write_dump(tmp_path / "d.xml.bz2", pages, "bz2")
    hubs = tmp_path / "hubs.yaml"
    hubs.write_text(yaml.safe_dump({"news": ["August 2023", "2023 in the United States"]}))
    kb = {"source": "dump", "hub_pages_file": str(hubs),
          "events": {"start": "2023-08-01", "end": "2023-11-30", "scope": ["United States", "Hawaii", "Washington"]}}
    fetch_dump(dump, "news", tmp_path / "raw.xml", tmp_path / "counts.json", knowledge_base=kb)
    titles = [p.title for p in DumpReader(tmp_path / "raw.xml")]
    # the hubs (as their selected entries), the articles the selected entries link to (a redirect followed);
    # not what out-of-scope, out-of-window or undated entries, references or calendar links point to
    assert sorted(titles) == sorted(["August 2023", "2023 in the United States", "Donald Trump", "Washington, D.C.",
                                     "2023 Hawaii wildfires", "Maui", "Hawaii (island)", "Lahaina", "Crimea",
                                     "United States", "Fulton County Jail", "United States Open"])
    counts = json.loads((tmp_path / "counts.json").read_text())
    assert [(h["kind"], h["selected"]) for h in counts["hubs"]] == [("events", 3), ("events", 3)]
    clean_dump(tmp_path / "raw.xml", tmp_path / "articles.jsonl", tmp_path / "clean.json")
    docs = {d["title"]: d["text"] for d in map(json.loads, (tmp_path / "articles.jsonl").read_text().splitlines())}
    assert docs["August 2023"].split("\n") == [
        "August 1, 2023: Donald Trump is indicted by a grand jury in Washington, D.C.",
        "August 8, 2023: 2023 Hawaii wildfires: Wildfires on Maui, Hawaii, destroy the town of Lahaina.",
        "August 8, 2023: Russian invasion of Ukraine: Ukraine strikes a bridge in Crimea. "
        "The United States announces new aid."]
    assert docs["2023 in the United States"].split("\n") == [
        "August 8, 2023: The 2023 Hawaii wildfires begin.",
        "August 24, 2023: Donald Trump surrenders at the Fulton County Jail.",
        "September 5, 2023: The United States Open is played."]


def test_linked_articles_all_dated_or_none(tmp_path):
    """linked_articles: which of the selected entries' links join the knowledge base. dated keeps the articles
    whose title names a year of the window, as Wikipedia titles its event articles ("2023 Hawaii wildfires")."""
    linked = ["Donald Trump", "2023 Hawaii wildfires", "Maui", "2022 Hawaii wildfires"]
    month = ("==[[August 8]], 2023 (Tuesday)==\n"
             "*[[2023 Hawaii wildfires]]: Wildfires on [[Maui]], [[Hawaii]], worse than the [[2022 Hawaii wildfires]].\n"
             "*[[Donald Trump]] speaks in [[Washington, D.C.]]\n")
    pages = [page(i, t, f"'''{t}''' is a page. " + PROSE) for i, t in enumerate(linked, 1)]
    dump = write_dump(tmp_path / "d.xml", pages + [page(100, "August 2023", month)])
    hubs = tmp_path / "hubs.yaml"
    hubs.write_text(yaml.safe_dump({"news": ["August 2023"]}))
    kept = {}
    for mode in ("all", "dated", "none"):
        kb = {"source": "dump", "hub_pages_file": str(hubs), "events": {
            "start": "2023-08-01", "end": "2023-11-30", "scope": ["Hawaii", "Washington"], "linked_articles": mode}}
        fetch_dump(dump, "news", tmp_path / f"{mode}.xml", tmp_path / f"{mode}.json", knowledge_base=kb)
        kept[mode] = sorted(p.title for p in DumpReader(tmp_path / f"{mode}.xml"))
        assert json.loads((tmp_path / f"{mode}.json").read_text())["hubs"][0]["linked_articles"] == mode
    assert kept["all"] == sorted(["August 2023", *linked])  # Washington, D.C. and Hawaii are not in the dump
    assert kept["dated"] == ["2023 Hawaii wildfires", "August 2023"]  # 2022 lies outside the window's years
    assert kept["none"] == ["August 2023"]
