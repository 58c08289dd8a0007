"""Multistream dumps: a selection through the index equals the full pass byte for byte; the parallel scan
equals the sequential one; a dump and index that disagree are one line naming both."""

import bz2
import json
import logging
import random
import shutil

import pytest
import yaml
from wiki_fixtures import PROSE, export, messy_pages, page, write_dump

from kinject.errors import KinjectError
from kinject.knowledge import multistream
from kinject.knowledge.data import fetch_dump
from kinject.knowledge.multistream import DumpSource, index_path, repack
from kinject.knowledge.wikidump import DumpReader

DEMO = ["resources/demo/atlas.xml", "resources/demo/current_events.xml"]


def fetch(dump, tmp_path, name, threads=1, **kb):
    out, counts = tmp_path / f"{name}.xml", tmp_path / f"{name}.json"
    fetch_dump(dump, "t", out, counts, knowledge_base={"source": "dump", **kb}, seed=3, threads=threads)
    return out.read_bytes(), json.loads(counts.read_text())


def packed(tmp_path, export_path, per_stream, name="enwiki-20231101-pages-articles-multistream"):
    """The export re-packed as multistream with its index next to it (standard name), and a copy of the dump
    without one (the full pass)."""
    dump, index = tmp_path / f"{name}.xml.bz2", tmp_path / f"{name}-index.txt.bz2"
    repack(export_path, dump, index, per_stream)
    bare = tmp_path / "bare" / "pages.xml.bz2"
    bare.parent.mkdir(exist_ok=True)
    shutil.copy(dump, bare)
    return dump, index, bare


SAME = ("pages_kept", "dropped", "missing", "missing_titles", "redirects_followed", "requested", "hubs", "selection")


def assert_same(indexed, full, fewer=True):
    """The same export, byte for byte, and the same counts of what was selected, kept and dropped (pages not
    selected aside: the indexed read reads fewer pages); no pass over the dump."""
    (out_i, counts_i), (out_f, counts_f) = indexed, full
    assert out_i == out_f
    for counts in counts_i, counts_f:
        counts["dropped"].pop("not_selected")
    assert {k: counts_i.get(k) for k in SAME} == {k: counts_f.get(k) for k in SAME}
    assert counts_i["passes"] == 0 and counts_i["streams_read"] > 0 and counts_f["passes"] >= 1
    assert counts_i["pages_in"] < counts_f["pages_in"] or not fewer


def test_the_index_is_found_by_its_standard_name(tmp_path):
    dump, index, bare = packed(tmp_path, DEMO[0], 4)
    assert index_path(dump) == index and index_path(bare) is None
    with pytest.raises(KinjectError, match=r"nothing\.txt: multistream index not found"):
        index_path(dump, tmp_path / "nothing.txt")


@pytest.mark.parametrize("export_path", DEMO)
def test_demo_dumps_repacked_read_the_same_every_way(tmp_path, export_path):
    dump, index, bare = packed(tmp_path, export_path, 4)
    assert bz2.decompress(dump.read_bytes()) == open(export_path, "rb").read()  # re-packed byte for byte
    assert dump.read_bytes().count(b"BZh9") > 5
    plain = fetch(export_path, tmp_path, "plain")
    seq, par = fetch(dump, tmp_path, "seq"), fetch(dump, tmp_path, "par", threads=2)
    assert seq[0] == par[0] == plain[0]
    assert {k: v for k, v in seq[1].items() if k != "path"} == {k: v for k, v in par[1].items() if k != "path"}
    # a titles selection of every title (redirects, talk pages, a missing one) and a hub selection: every
    # page that links somewhere is a hub
    pages = list(DumpReader(export_path))
    titles = tmp_path / "titles.txt"
    titles.write_text("\n".join([p.title for p in reversed(pages)] + ["No such page"]) + "\n")
    assert_same(fetch(dump, tmp_path, "ti", titles=str(titles)), fetch(bare, tmp_path, "tf", titles=str(titles)),
                fewer=False)
    subset = tmp_path / "subset.txt"
    subset.write_text("\n".join(p.title for p in pages[::5]) + "\n")
    assert_same(fetch(dump, tmp_path, "si", threads=2, titles=str(subset)),
                fetch(bare, tmp_path, "sf", titles=str(subset)))
    hubs = tmp_path / "hubs.yaml"
    linking = [p.title for p in pages if p.ns == 0 and "[[" in p.text and p.redirect is None
               and not p.text.lstrip().upper().startswith("#REDIRECT")]
    hubs.write_text(yaml.safe_dump({"t": linking[:3]}))
    assert_same(fetch(dump, tmp_path, "hi", hub_pages_file=str(hubs)),
                fetch(bare, tmp_path, "hf", hub_pages_file=str(hubs)))


def synthetic(tmp_path, n=240, seed=0):
    """An export whose hubs, links and redirects span many streams: redirects to earlier and later pages, a
    double redirect, redirects to missing pages, disambiguation and talk pages, repeated links."""
    rng = random.Random(seed)
    titles = [f"Island {i:03d}" for i in range(n)]
    pages, articles = [], []
    for i, title in enumerate(titles):
        r = rng.random()
        if r < 0.15:
            target = rng.choice(titles + ["Atlantis"])
            pages.append(page(i + 1, title, f"#REDIRECT [[{target}]]", redirect=target))
        elif r < 0.2:
            pages.append(page(i + 1, title, "'''X''' may be:\n* [[A]]\n{{disambiguation}}"))
        elif r < 0.25:
            pages.append(page(i + 1, "Talk:" + title, "A talk page. " + PROSE, ns=1))
        else:
            links = " ".join(f"[[{rng.choice(titles)}]]" for _ in range(rng.randint(1, 8)))
            pages.append(page(i + 1, title, f"'''{title}''' is an island. {links} " + PROSE))
            articles.append(title)
    # a redirect chain: the sequential pass follows it when each target comes later
    pages.append(page(n + 1, "Old name", "#REDIRECT [[Older name]]", redirect="Older name"))
    pages.append(page(n + 2, "Older name", "#REDIRECT [[Island 001]]", redirect="Island 001"))
    pages.append(page(n + 3, "Sea", "The sea of [[Old name]], [[Island 100]], [[Island 100]], [[Island 007]], "
                      "[[Atlantis]], [[Island 239]]. " + PROSE))
    path = tmp_path / "synthetic.xml"
    path.write_text(export(*pages), encoding="utf-8")
    return path, [p.split("<title>")[1].split("</title>")[0] for p in pages], articles


@pytest.mark.parametrize("per_stream", [1, 3, 17])
def test_indexed_selection_equals_the_full_pass_on_many_streams(tmp_path, per_stream):
    path, titles, articles = synthetic(tmp_path)
    dump, index, bare = packed(tmp_path, path, per_stream)
    rng = random.Random(per_stream)
    chosen = tmp_path / "titles.txt"
    chosen.write_text("\n".join(rng.sample(titles, 60) + ["Old name", "Atlantis", "island_005"]) + "\n")
    full = fetch(bare, tmp_path, "tf", titles=str(chosen))
    assert full[1]["passes"] == 2 and full[1]["redirects_followed"] > 5  # targets before and after redirects
    # 17 pages a stream: the 63 titles and their redirects' targets touch every stream, some twice (a target
    # asked for after its stream was read for another title)
    assert_same(fetch(dump, tmp_path, "ti", titles=str(chosen)), full, fewer=per_stream < 17)
    hubs = tmp_path / "hubs.yaml"
    hubs.write_text(yaml.safe_dump({"t": ["Sea", *articles[::9]]}))
    for cap in (None, 3):
        kb = {"hub_pages_file": str(hubs), **({"max_links_per_hub": cap} if cap else {})}
        assert_same(fetch(dump, tmp_path, "hi", threads=2, **kb), fetch(bare, tmp_path, "hf", **kb),
                    fewer=per_stream < 17)


def test_a_category_hub_still_scans_the_dump(tmp_path):
    pages = [page(i, f"Island {i}", f"An island. [[Category:Islands]] " + PROSE) for i in range(1, 9)]
    path = tmp_path / "c.xml"
    path.write_text(export(*pages), encoding="utf-8")
    dump, index, bare = packed(tmp_path, path, 2)
    hubs = tmp_path / "hubs.yaml"
    hubs.write_text(yaml.safe_dump({"t": ["Category:Islands"]}))
    indexed, full = fetch(dump, tmp_path, "ci", hub_pages_file=str(hubs)), fetch(bare, tmp_path, "cf",
                                                                                 hub_pages_file=str(hubs))
    assert indexed[0] == full[0] and indexed[1]["passes"] == 1  # members found by a scan, read through the index


def test_parallel_scan_equals_the_sequential_one_group_by_group(tmp_path, monkeypatch):
    path, _, _ = synthetic(tmp_path, n=400)
    dump, _, _ = packed(tmp_path, path, 3)
    sequential = [(p.title, p.id, p.text, p.redirect) for p in DumpReader(dump)]
    for group_bytes in (1, 5000):
        monkeypatch.setattr(multistream, "GROUP_BYTES", group_bytes)
        reader = DumpSource(dump, threads=2).scan()
        assert [(p.title, p.id, p.text, p.redirect) for p in reader] == sequential
        assert reader.pages == len(sequential) and reader.bytes == path.stat().st_size


def test_stream_starts_across_read_chunks(tmp_path, monkeypatch):
    path, _, _ = synthetic(tmp_path, n=100)
    dump, _, _ = packed(tmp_path, path, 2)
    expected = list(multistream.stream_starts(dump))
    monkeypatch.setattr(multistream, "READ_BYTES", 7)
    assert list(multistream.stream_starts(dump)) == expected and len(expected) == 1 + 52 + 1  # 103 pages, 2 a stream


def test_single_stream_and_gzip_stay_sequential_and_say_so(tmp_path, caplog):
    for fmt, said in (("bz2", "not a Wikipedia multistream dump"), ("gz", "gzip"), ("xml", "plain XML")):
        dump = write_dump(tmp_path / f"d.{fmt}", messy_pages(), fmt)
        with caplog.at_level(logging.INFO, logger="kinject.knowledge.multistream"):
            caplog.clear()
            reader = DumpSource(dump, threads=2).scan()
        assert isinstance(reader, DumpReader) and said in caplog.text and "read sequentially" in caplog.text


def test_streams_not_holding_whole_pages_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(multistream, "GROUP_BYTES", 1)  # each stream parsed on its own
    text = export(*messy_pages()).encode()
    cut = text.index(b"</siteinfo>") + len(b"</siteinfo>\n")
    middle = text.index(b"<title>Albania")  # a stream ending inside a page
    dump = tmp_path / "split.xml.bz2"
    dump.write_bytes(b"".join(bz2.compress(p) for p in (text[:cut], text[cut:middle], text[middle:])))
    with pytest.raises(KinjectError, match=r"split\.xml\.bz2: the bzip2 stream at byte \d+ does not hold whole "
                                           r"<page> elements") as err:
        list(DumpSource(dump, threads=2).scan())
    assert "\n" not in str(err.value)


def corrupt(index, edit):
    lines = [line.split(":", 2) for line in bz2.decompress(index.read_bytes()).decode().splitlines(keepends=True)]
    edit(lines)
    index.write_bytes(bz2.compress("".join(":".join(parts) for parts in lines).encode()))


def shift_stream(lines):  # the third stream's pages said to start 3 bytes into it
    for parts in lines[4:6]:
        parts[0] = str(int(parts[0]) + 3)


def next_stream(lines):  # a page said to be in the next stream
    lines[5][0] = lines[6][0]


def other_id(lines):
    lines[4][1] = str(int(lines[4][1]) + 1000)


def garbage(lines):
    lines.insert(3, ["garbage\n"])


@pytest.mark.parametrize("edit, problem", [
    (shift_stream, "where the index .* says a stream starts, does not start a bzip2 stream: the dump and its "
                   "index disagree"),
    (next_stream, r"puts page \d+ '[^']*Island \d+' in the stream at byte \d+, which does not hold it"),
    (other_id, r"puts page \d+ '[^']*Island \d+' in the stream at byte \d+, which holds it with id \d+"),
    (garbage, r"-index\.txt\.bz2: line 4 is not 'offset:page_id:title'"),
])
def test_a_dump_and_index_that_disagree_are_one_line_naming_both(tmp_path, edit, problem):
    path, titles, _ = synthetic(tmp_path, n=60, seed=1)
    dump, index, _ = packed(tmp_path, path, 2)
    corrupt(index, edit)
    chosen = tmp_path / "titles.txt"
    chosen.write_text("\n".join(titles) + "\n")
    out = tmp_path / "ti.xml"
    with pytest.raises(KinjectError, match=problem) as err:
        fetch(dump, tmp_path, "ti", titles=str(chosen))
    message = str(err.value)
    assert "\n" not in message and str(dump) in message and index.name in message
    assert not out.exists()


def test_an_index_for_a_dump_that_is_not_multistream_is_one_line(tmp_path):
    dump = write_dump(tmp_path / "one.xml.bz2", messy_pages(), "bz2")
    index = tmp_path / "one-index.txt"
    index.write_text("10:1:Andorra\n")
    with pytest.raises(KinjectError, match=r"one-index\.txt: a multistream index, but .*one\.xml\.bz2 is not"):
        fetch(dump, tmp_path, "x", titles=str(index), index=str(index))


def test_an_events_selection_through_the_index_equals_the_full_pass(tmp_path):
    from test_events import MONTH_PAGE, YEAR_PAGE  # the month and year pages of tests/test_events.py

    linked = ["Donald Trump", "Washington, D.C.", "2023 Hawaii wildfires", "Maui", "Lahaina", "Crimea", "United States",
              "Fulton County Jail", "United States Open", "Greece", "Sandra Day O'Connor"]
    # the redirect after its target: found in a second pass over the dump, a later round through the index
    pages = [page(103, "Hawaii (island)", "'''Hawaii''' " + PROSE)]
    pages += [page(i, t, f"'''{t}''' is a page. " + PROSE) for i, t in enumerate(linked, 1)]
    pages += [page(100, "August 2023", MONTH_PAGE), page(101, "2023 in the United States", YEAR_PAGE),
              page(102, "Hawaii", "#REDIRECT [[Hawaii (island)]]", redirect="Hawaii (island)")]
    path = tmp_path / "events.xml"
    path.write_text(export(*pages), encoding="utf-8")
    dump, _, bare = packed(tmp_path, path, 2)
    hubs = tmp_path / "hubs.yaml"
    hubs.write_text(yaml.safe_dump({"t": ["August 2023", "2023 in the United States"]}))
    kb = {"hub_pages_file": str(hubs), "events": {"start": "2023-08-01", "end": "2023-11-30",
                                                  "scope": ["United States", "Hawaii", "Washington"]}}
    full = fetch(bare, tmp_path, "ef", **kb)
    assert full[1]["passes"] == 3 and b"<title>Hawaii (island)</title>" in full[0]
    assert_same(fetch(dump, tmp_path, "ei", threads=2, **kb), full)
