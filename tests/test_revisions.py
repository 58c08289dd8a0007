"""revisions.json for a dump (what the fetch read), knowledge_base.as_of as a check on a dump, a dump checked
against pinned revisions, and the revisions file's shape."""

import json

import pytest
import yaml
from wiki_fixtures import PROSE, page, write_dump

from kinject.errors import KinjectError
from kinject.knowledge.data import fetch_dump
from kinject.knowledge.revisions import RevisionRecord, read_revisions
from kinject.knowledge.wikidump import Page


def dated(pid, title, text, timestamp, **kw):
    """A page whose revision is of `timestamp`."""
    return page(pid, title, text, **kw).replace("2031-01-01T00:00:00Z", timestamp)


PAGES = [
    dated(1, "Velmar", "'''Velmar''' links to [[Orsa]] and [[Marr harbour]] and [[Nowhere]]. " + PROSE,
          "2023-05-01T10:00:00Z"),
    dated(2, "Orsa", "'''Orsa''' is an invented island. " + PROSE, "2023-11-30T23:59:59Z"),
    dated(3, "Marr harbour", "#REDIRECT [[Port Marr]]", "2022-01-01T00:00:00Z", redirect="Port Marr"),
    dated(4, "Port Marr", "'''Port Marr''' is an invented harbour. " + PROSE, "2023-12-01T00:00:01Z"),
    dated(5, "Talk:Orsa", "A talk page. " + PROSE, "2030-01-01T00:00:00Z", ns=1),
]


def fetch(tmp_path, name="raw", **kb):
    dump = write_dump(tmp_path / "dump.xml", PAGES)
    hubs = tmp_path / "hubs.yaml"
    hubs.write_text(yaml.safe_dump({"t": ["Velmar"]}))
    out, revisions = tmp_path / f"{name}.xml", tmp_path / f"{name}.revisions.json"
    kb = {"source": "dump", "hub_pages_file": str(hubs), **kb}
    fetch_dump(dump, "t", out, tmp_path / f"{name}.counts.json", revisions, knowledge_base=kb)
    return out, revisions


def test_a_dump_records_the_revisions_it_read(tmp_path):
    _, revisions = fetch(tmp_path)
    assert json.loads(revisions.read_text()) == {"source": "dump", "as_of": None, "missing": ["Nowhere"], "pages": [
        {"title": "Marr harbour", "pageid": 3, "revid": 30, "timestamp": "2022-01-01T00:00:00Z"},  # the redirect
        {"title": "Orsa", "pageid": 2, "revid": 20, "timestamp": "2023-11-30T23:59:59Z"},
        {"title": "Port Marr", "pageid": 4, "revid": 40, "timestamp": "2023-12-01T00:00:01Z"},
        {"title": "Velmar", "pageid": 1, "revid": 10, "timestamp": "2023-05-01T10:00:00Z"}]}  # the hub


def test_as_of_on_a_dump_names_the_first_newer_revision(tmp_path):
    with pytest.raises(KinjectError, match=r"dump.xml: page 'Port Marr' is revision 40 of 2023-12-01T00:00:01Z, "
                                           r"newer than knowledge_base.as_of 2023-12-01T00:00:00Z: the dump is newer"):
        fetch(tmp_path, as_of="2023-12-01T00:00:00Z")
    assert not (tmp_path / "raw.xml").exists() and not (tmp_path / "raw.revisions.json").exists()
    # one second later every revision read is old enough (the talk page of 2030 is not read: not selected)
    _, revisions = fetch(tmp_path, as_of="2023-12-01T00:00:01Z")
    assert json.loads(revisions.read_text())["as_of"] == "2023-12-01T00:00:01Z"


def test_a_hub_revision_newer_than_as_of_is_named(tmp_path):
    with pytest.raises(KinjectError, match="page 'Velmar' is revision 10 of 2023-05-01T10:00:00Z, newer than"):
        fetch(tmp_path, as_of="2023-01-01T00:00:00Z")


def test_a_dump_checked_against_pinned_revisions(tmp_path):
    _, revisions = fetch(tmp_path)
    fetch(tmp_path, "again", revisions_file=str(revisions))  # the same dump: the same revisions
    lock = json.loads(revisions.read_text())
    lock["pages"][1]["revid"] = 19  # Orsa pinned at an older revision than the dump holds
    (tmp_path / "lock.json").write_text(json.dumps(lock))
    with pytest.raises(KinjectError, match="lock.json: page 'Orsa' drifted from the pinned revisions: pinned "
                                           "revision 19 of 2023-11-30T23:59:59Z, .*dump.xml holds revision 20"):
        fetch(tmp_path, "drifted", revisions_file=str(tmp_path / "lock.json"))
    assert not (tmp_path / "drifted.xml").exists()


def test_the_record_is_sorted_by_title_and_written_the_same_way_twice(tmp_path):
    record = RevisionRecord()
    for title in ("Zeta", "Alpha beta", "Alpha", "Alpha"):  # a page read twice is listed once
        record.add(Page(title, 0, "7", "70", "2023-01-01T00:00:00Z"))
    record.missing = {"Omega", "Eta"}
    record.write(tmp_path / "a.json", "mediawiki", "2023-06-01T00:00:00Z")
    record.write(tmp_path / "b.json", "mediawiki", "2023-06-01T00:00:00Z")
    data = read_revisions(tmp_path / "a.json")
    assert [p["title"] for p in data["pages"]] == ["Alpha", "Alpha beta", "Zeta"]
    assert data["missing"] == ["Eta", "Omega"]
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


@pytest.mark.parametrize("text, problem", [
    ("{", "not valid JSON"),
    ('{"pages": []}', "expected an object with source, as_of, pages, missing"),
    ('{"source": "dump", "as_of": null, "pages": [{"title": "A"}], "missing": []}',
     r"pages\[0\] is not \{title, pageid, revid, timestamp\}"),
])
def test_a_bad_revisions_file_is_one_line(tmp_path, text, problem):
    path = tmp_path / "lock.json"
    path.write_text(text)
    with pytest.raises(KinjectError, match=problem):
        read_revisions(path)


def test_a_fetch_under_a_lock_takes_the_pages_it_pinned(tmp_path, monkeypatch):
    """`kinject lock` pins each task's pages (revisions.json's shape, under pages.<task>); a fetch job under
    that lock reads them from the lock itself (LOCK#task), so locking re-runs nothing and a drifted source is
    one line naming the lock."""
    from kinject.provenance.lock import LOCKFILE_VERSION, fetch_locked, pinned_knowledge_base

    monkeypatch.chdir(tmp_path)
    _, revisions = fetch(tmp_path)
    pinned = json.loads(revisions.read_text())
    lock = {"lockfile_version": LOCKFILE_VERSION, "config": [], "hub": {}, "files": {}, "pages": {"t": pinned}}
    (tmp_path / "config.lock.json").write_text(json.dumps(lock))
    config = {"lock": "config.lock.json"}
    kb = {"source": "dump", "hub_pages_file": str(tmp_path / "hubs.yaml"), "path": str(tmp_path / "dump.xml")}
    assert pinned_knowledge_base(config, "t", kb)["revisions_file"] == "config.lock.json#t"
    assert pinned_knowledge_base({}, "t", kb) == kb  # no lock: as configured
    assert read_revisions("config.lock.json#t") == pinned
    fetch_locked(config, kb, "t", tmp_path / "a.xml", tmp_path / "a.json", tmp_path / "a.rev.json", {}, None)
    assert (tmp_path / "a.rev.json").read_text() == revisions.read_text()
    lock["pages"]["t"]["pages"][1]["revid"] = 19
    (tmp_path / "config.lock.json").write_text(json.dumps(lock))
    with pytest.raises(KinjectError, match=r"config.lock.json#t: page 'Orsa' drifted from the pinned revisions"):
        fetch_locked(config, kb, "t", tmp_path / "b.xml", tmp_path / "b.json", tmp_path / "b.rev.json", {}, None)
    with pytest.raises(KinjectError, match=r"config.lock.json: has no pages for task other"):
        pinned_knowledge_base(config, "other", kb)
