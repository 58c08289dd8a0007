import bz2
import gzip
import json

import pandas as pd
import pytest
import yaml
from wiki_fixtures import DISAMBIGUATION, HEAD, MESSY, PROSE, export, messy_pages, page, write_dump

from kinject.errors import KinjectError
from kinject.knowledge.chunks import chunk_article, knowledge_base_report, make_chunks, residue_counts
from kinject.knowledge.clean import clean_dump, tidy
from kinject.knowledge.data import check_dump, fetch_dump
from kinject.knowledge.wikidump import DumpReader

ARTICLE = ("'''Velmar''' is an island in the [[Orsan Sea|Orsan sea]] that was settled by fishing families long ago. "
           "The Port of Velmar opened in 1871 and handled wool, salt and amber for the whole northern coast.\n\n"
           "== History ==\nVelmar was founded by [[Ida Marr]] in 1802 after a storm drove her fleet ashore. "
           "The island had 4,300 inhabitants in the census of 1901, most of them living in the old harbour town.")


@pytest.fixture
def dump(tmp_path):
    return write_dump(tmp_path / "pages.xml", [page(1, "Velmar", ARTICLE), page(2, "Talk:Velmar", "A talk page with words.", ns=1),
                                              page(3, "Empty", "")])


def fetch(dump, tmp_path, name="raw", **kb):
    out, counts, seed = tmp_path / f"{name}.xml", tmp_path / f"{name}_counts.json", kb.pop("seed", 7)
    fetch_dump(dump, "t", out, counts, knowledge_base={"source": "dump", **kb}, seed=seed)
    return out, json.loads(counts.read_text())


def titles_of(path):
    return [p.title for p in DumpReader(path)]


def test_check_dump_counts_pages(dump):
    assert check_dump(dump) == 3


@pytest.mark.parametrize("fmt", ["xml", "bz2", "gz", "multistream"])
def test_dumps_plain_or_compressed_stream_the_same_pages(tmp_path, fmt):
    dump = write_dump(tmp_path / f"dump.{fmt}", messy_pages(), fmt)
    out, counts = fetch(dump, tmp_path)
    assert titles_of(out) == list(MESSY)  # disambiguation pages, the redirect and the talk page dropped
    assert counts["pages_in"] == len(messy_pages()) and counts["passes"] == 1
    assert counts["dropped"] == {"namespace": 1, "redirect": 1, "disambiguation": len(DISAMBIGUATION)}
    assert counts["xml_bytes"] == len(export(*messy_pages()).encode())  # decompressed as it was read


def test_multistream_is_really_several_streams(tmp_path):
    data = write_dump(tmp_path / "d.bz2", messy_pages(), "multistream").read_bytes()
    assert data.count(b"BZh9") >= 5  # so a reader that stops after the first stream would see only the header


@pytest.mark.parametrize("fmt, problem", [("xml", "malformed or truncated XML"), ("bz2", "truncated bzip2 archive"),
                                          ("gz", "truncated gzip archive")])
def test_truncated_dump_is_one_line_error_and_output_untouched(tmp_path, fmt, problem):
    full = write_dump(tmp_path / f"full.{fmt}", messy_pages() * 20, fmt).read_bytes()
    bad = tmp_path / f"bad.{fmt}"
    bad.write_bytes(full[: len(full) * 2 // 3])
    out = tmp_path / "raw.xml"
    out.write_text("previous good artifact")
    with pytest.raises(KinjectError, match=rf"bad\.{fmt}: {problem}") as err:
        fetch_dump(bad, "t", out, tmp_path / "counts.json", knowledge_base={"source": "dump"})
    assert "\n" not in str(err.value)
    assert out.read_text() == "previous good artifact" and not (tmp_path / "counts.json").exists()


def test_corrupt_archive_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.xml.gz"
    data = bytearray(gzip.compress(export(*messy_pages()).encode()))
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(KinjectError, match=r"bad\.xml\.gz: (corrupt gzip archive|malformed)"):
        check_dump(bad)


def test_foreign_xml_rejected(tmp_path):
    path = tmp_path / "x.xml"
    path.write_text("<html><body/></html>")
    with pytest.raises(KinjectError, match="not a MediaWiki XML export"):
        check_dump(path)


@pytest.mark.parametrize("text, reason", [
    ("'''Mars''' may refer to a planet or a god.\n{{Disambiguation}}", "disambiguation"),
    ("'''Marr''' may refer to several people.\n{{Human name disambiguation|Marr}}", "disambiguation"),
    ("'''A1''' may refer to a road or a paper size.\n{{Letter-NumberCombDisambig}}", "disambiguation"),
    ("'''Delta''' may refer to a river mouth.\n{{dab}}", "disambiguation"),
    ("'''Delta''' may refer to a river mouth.\n{{Disambiguation cleanup|date=May 2031}}", "disambiguation"),
    # ordinary articles: an inline cleanup tag and a hatnote name the word but are no disambiguation templates
    ("'''Orsa''' was settled by a [[fisher]]{{Disambiguation needed|date=May 2031}} in 1802.", None),
    ("{{About|the town|the river|Orsa (disambiguation)}}\n'''Orsa''' is a town.", None),
])
def test_which_pages_are_disambiguation_pages(text, reason):
    from kinject.knowledge.wikidump import Page, drop_reason

    assert drop_reason(Page("Orsa", 0, "1", text=text)) == reason


def build(dump, tmp_path, min_words=10, **kb):
    """fetch -> clean -> chunks -> report, as the rules chain them; returns the report."""
    raw, _ = fetch(dump, tmp_path, **kb)
    clean_dump(raw, tmp_path / "articles.jsonl", tmp_path / "clean_counts.json")
    make_chunks(tmp_path / "articles.jsonl", tmp_path / "chunks.parquet", min_words=min_words, max_words=200)
    return knowledge_base_report(tmp_path / "raw_counts.json", tmp_path / "clean_counts.json",
                                 tmp_path / "chunks.parquet", tmp_path / "report.json", task="t")


@pytest.mark.parametrize("fmt", ["bz2", "gz", "multistream"])
def test_messy_dump_leaves_no_residue(tmp_path, fmt):
    """The issue's patterns (entities, empty brackets left by templates, disambiguation pages, redirects)."""
    report = build(write_dump(tmp_path / f"dump.{fmt}", messy_pages(), fmt), tmp_path)
    assert report["residue"] == {"wiki_markup": 0, "html_entities": 0, "empty_brackets": 0}
    assert report["pages_in"] == 9 and report["pages_kept"] == 4
    assert report["dropped"] == {"namespace": 1, "redirect": 1, "disambiguation": 3, "empty": 0}
    assert report["pages_in"] == report["pages_kept"] + sum(report["dropped"].values())
    chunks = pd.read_parquet(tmp_path / "chunks.parquet")
    text = " ".join(chunks["text"])
    assert set(chunks["title"]) == set(MESSY) and report["chunks"] == len(chunks)
    for expected in ("Andorra, also called the Principality of the Valleys of Andorra, is a sovereign",
                     "Albania, officially the Republic of Albania", "Telecommunications provider AT&T hired",
                     "Brasfield & Gorrie", "10 km from the river – a tower of \"glass\"",
                     "Albert Marr (14 March 1879 – 18 April 1955) was", "Orsan Sea and its islands."):
        assert expected in text
    assert json.loads((tmp_path / "report.json").read_text()) == report


def test_report_counts_residue_when_there_is_some(tmp_path):
    assert residue_counts(["AT&amp;T [[Link]] Andorra (), also", "{{cite}} (; )"]) == \
        {"wiki_markup": 4, "html_entities": 1, "empty_brackets": 2}  # [[ ]] {{ }}


def test_tidy():
    assert tidy("Albania (, ; ;), officially") == "Albania, officially"
    assert tidy("X (; 14 March 1879 – 1955; ) was") == "X (14 March 1879 – 1955) was"
    assert tidy("AT&amp;amp;T, 10&nbsp;km\n\n  two\u00a0 spaces ") == "AT&T, 10 km\ntwo spaces"
    assert tidy("R&D and Q&A (2023)") == "R&D and Q&A (2023)"  # no entity, no empty bracket: untouched


def test_clean_dump_runs_wikiextractor(dump, tmp_path):
    out = tmp_path / "articles.jsonl"
    assert clean_dump(dump, out, tmp_path / "counts.json") == 1  # talk page and empty article dropped
    doc = json.loads(out.read_text().splitlines()[0])
    assert doc["title"] == "Velmar"
    assert "Orsan sea" in doc["text"] and "[[" not in doc["text"] and "'''" not in doc["text"]
    assert json.loads((tmp_path / "counts.json").read_text()) == {
        "pages_in": 3, "pages_kept": 1, "dropped": {"namespace": 1, "redirect": 0, "disambiguation": 0, "empty": 1}}


def test_a_pool_of_processes_cleans_the_same_articles_in_the_same_order(tmp_path):
    dump = write_dump(tmp_path / "d.xml", numbered(70, messy_pages()))
    assert clean_dump(dump, tmp_path / "one.jsonl", tmp_path / "one.json") == 74
    assert clean_dump(dump, tmp_path / "pool.jsonl", tmp_path / "pool.json", processes=2) == 74
    assert (tmp_path / "one.jsonl").read_text() == (tmp_path / "pool.jsonl").read_text()
    assert (tmp_path / "one.json").read_text() == (tmp_path / "pool.json").read_text()


def test_empty_corpus_after_cleaning_is_an_error(tmp_path):
    path = write_dump(tmp_path / "empty.xml", [page(3, "Empty", "")])
    out = tmp_path / "articles.jsonl"
    with pytest.raises(KinjectError, match="no article text left"):
        clean_dump(path, out, tmp_path / "counts.json")
    assert not out.exists()


def test_nothing_selected_is_an_error(tmp_path):
    path = write_dump(tmp_path / "d.xml", [page(2, "Talk:Velmar", "words", ns=1)])
    with pytest.raises(KinjectError, match=r"d\.xml: no article page selected .*namespace 1"):
        fetch(path, tmp_path)


# Page selection ------------------------------------------------------------------------------------------

def numbered(n, extra=()):
    return [page(i, f"Island {i:03d}", f"'''Island {i:03d}''' is an invented island. " + PROSE) for i in range(n)] + list(extra)


def test_titles_file_keeps_only_its_pages_redirects_followed_in_one_pass(tmp_path):
    later = page(900, "Island 999", "'''Island 999''' is the last island. " + PROSE)
    dump = write_dump(tmp_path / "d.xml.bz2", [page(800, "Isle 999", "#REDIRECT [[Island 999]]", redirect="Island 999")]
                      + numbered(50, [later]), "bz2")
    titles = tmp_path / "titles.txt"
    titles.write_text("# the knowledge base\nisland 007\n\nIsland_042\nIsle 999\nNo such page\nTalk:Island 001\n")
    out, counts = fetch(dump, tmp_path, titles=str(titles))
    assert titles_of(out) == ["Island 007", "Island 042", "Island 999"]
    assert counts["passes"] == 1 and counts["redirects_followed"] == 1
    assert counts["missing"] == 2 and counts["missing_titles"] == ["No such page", "Talk:Island 001"]
    assert counts["dropped"]["redirect"] == 1 and counts["pages_in"] == 52
    assert counts["pages_in"] == counts["pages_kept"] + sum(counts["dropped"].values())


def test_a_redirect_to_an_earlier_page_takes_a_second_pass(tmp_path):
    dump = write_dump(tmp_path / "d.xml", numbered(5, [page(900, "Isle 3", "#REDIRECT [[Island 003]]")]))
    titles = tmp_path / "titles.txt"
    titles.write_text("Isle 3\n")
    out, counts = fetch(dump, tmp_path, titles=str(titles))
    assert titles_of(out) == ["Island 003"] and counts["passes"] == 2 and counts["missing"] == 0


HUB = ("'''Orsan Sea''' islands: [[Island 001]], [[island_002|the second]], [[Isle 4]], [[Island 003#History]], "
       "[[File:Map.png|thumb|a map of [[Island 005]]]], [[fr:Île]], [[Category:Seas]], [[:Category:Islands]], "
       "[[Nowhere]].<ref>[[Island 006]] in a citation</ref> {{Navbox|[[Island 007]]}} <!-- [[Island 008]] -->")


def test_hub_pages_resolved_against_the_dump(tmp_path):
    filed = page(950, "Reef", "'''Reef''' is a reef. " + PROSE + "\n[[Category:Islands|Reef]]")
    dump = write_dump(tmp_path / "d.xml.gz", numbered(10, [page(900, "Isle 4", "#REDIRECT [[Island 004]]"),
                                                           page(901, "Orsan Sea", HUB), filed]), "gz")
    hubs = tmp_path / "hubs.yaml"
    hubs.write_text(yaml.safe_dump({"t": ["Orsan Sea", "Category:Islands"]}))
    out, counts = fetch(dump, tmp_path, hub_pages_file=str(hubs))
    # the hub itself, its prose links (redirect followed, section and piped links), the category's article;
    # not the links of images' captions' targets' namespaces, citations, templates, comments, interwiki
    assert sorted(titles_of(out)) == ["Island 001", "Island 002", "Island 003", "Island 004", "Island 005",
                                      "Orsan Sea", "Reef"]
    assert [h["kind"] for h in counts["hubs"]] == ["page", "category"]
    assert counts["missing_titles"] == ["Nowhere"] and counts["redirects_followed"] == 1
    # hub texts and category members; the pages; Island 004, which comes before the redirect to it
    assert counts["passes"] == 3


def test_missing_hub_and_redirect_hub_are_errors(tmp_path):
    dump = write_dump(tmp_path / "d.xml", numbered(3, [page(9, "Sea", "#REDIRECT [[Island 001]]")]))
    hubs = tmp_path / "hubs.yaml"
    hubs.write_text(yaml.safe_dump({"t": ["Orsan Sea"]}))
    with pytest.raises(KinjectError, match=r"d\.xml: hub page\(s\) not in the dump: Orsan Sea"):
        fetch(dump, tmp_path, hub_pages_file=str(hubs))
    hubs.write_text(yaml.safe_dump({"t": ["Sea"]}))
    with pytest.raises(KinjectError, match="hub page 'Sea' is a redirect to 'Island 001'"):
        fetch(dump, tmp_path, hub_pages_file=str(hubs))


def test_max_links_per_hub_is_a_seeded_sample_not_the_first_links(tmp_path):
    links = "".join(f"[[Island {i:03d}]] " for i in range(100))
    dump = write_dump(tmp_path / "d.xml", numbered(100, [page(901, "Orsan Sea", links)]))
    hubs = tmp_path / "hubs.yaml"
    hubs.write_text(yaml.safe_dump({"t": ["Orsan Sea"]}))
    runs = [titles_of(fetch(dump, tmp_path, name=f"r{seed}", hub_pages_file=str(hubs), max_links_per_hub=10, seed=seed)[0])
            for seed in (1, 1, 2)]
    assert runs[0] == runs[1] != runs[2]
    assert len(runs[0]) == 11 and "Orsan Sea" in runs[0]  # the hub itself, always
    assert runs[0] != sorted(runs[0])[:1] + [f"Island {i:03d}" for i in range(10)]
    counts = json.loads((tmp_path / "r1_counts.json").read_text())
    assert counts["hubs"][0]["links"] == 100 and counts["hubs"][0]["sampled_out"] == 90


# Chunks ---------------------------------------------------------------------------------------------------

def test_chunk_article_packs_paragraphs_and_drops_small():
    para = " ".join(f"w{i}" for i in range(30))
    text = "\n".join([para, "History.", para, para, "tiny para here ok"])
    chunks = chunk_article(text, min_words=10, max_words=70)
    assert [len(c.split()) for c in chunks] == [60, 34]  # 30+30, then 30 + the 4-word line
    assert chunk_article(text, min_words=50, max_words=70) == [chunks[0]]


def test_chunk_article_splits_long_paragraph_at_sentences():
    sentence = "This sentence has exactly eight words in it."
    chunks = chunk_article(" ".join([sentence] * 10), min_words=1, max_words=20)
    assert all(len(c.split()) <= 20 for c in chunks) and len(chunks) == 5


def test_make_chunks_writes_parquet(dump, tmp_path):
    articles = tmp_path / "articles.jsonl"
    clean_dump(dump, articles, tmp_path / "counts.json")
    out = tmp_path / "chunks.parquet"
    make_chunks(articles, out, min_words=10, max_words=200)
    df = pd.read_parquet(out)
    assert list(df.columns) == ["chunk_id", "title", "text", "n_words"]
    assert df["chunk_id"].is_unique and (df["n_words"] >= 10).all()


def test_make_chunks_nothing_left_is_error(dump, tmp_path):
    articles = tmp_path / "articles.jsonl"
    clean_dump(dump, articles, tmp_path / "counts.json")
    with pytest.raises(KinjectError, match="chunking.min_words"):
        make_chunks(articles, tmp_path / "c.parquet", min_words=10_000, max_words=20_000)


def test_written_export_reads_back_the_same(tmp_path):
    dump = write_dump(tmp_path / "d.xml.bz2", messy_pages(), "bz2")
    out, _ = fetch(dump, tmp_path)
    original = {p.title: p.text for p in DumpReader(dump)}
    assert all(original[p.title] == p.text for p in DumpReader(out))
    assert bz2.decompress(dump.read_bytes()).decode().startswith(HEAD[:60])
