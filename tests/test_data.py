import json

import pandas as pd
import pytest

from kinject.data import check_dump, chunk_article, clean_dump, copy_dump, make_chunks, merge_exports
from kinject.errors import KinjectError

HEAD = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10" xml:lang="en">
  <siteinfo>
    <sitename>T</sitename>
    <dbname>t</dbname>
    <base>https://t.invalid/wiki/Main</base>
    <generator>MediaWiki 1.41</generator>
    <case>first-letter</case>
    <namespaces>
      <namespace key="0" case="first-letter" />
      <namespace key="1" case="first-letter">Talk</namespace>
      <namespace key="10" case="first-letter">Template</namespace>
    </namespaces>
  </siteinfo>
"""


def page(pid, title, text, ns=0):
    # wikiextractor reads dumps line by line, as MediaWiki writes them: one element per line
    return (f"  <page>\n    <title>{title}</title>\n    <ns>{ns}</ns>\n    <id>{pid}</id>\n    <revision>\n"
            f"      <id>{pid}0</id>\n      <timestamp>2031-01-01T00:00:00Z</timestamp>\n"
            f"      <text xml:space=\"preserve\">{text}</text>\n    </revision>\n  </page>\n")


ARTICLE = ("'''Velmar''' is an island in the [[Orsan Sea|Orsan sea]] that was settled by fishing families long ago. "
           "The Port of Velmar opened in 1871 and handled wool, salt and amber for the whole northern coast.\n\n"
           "== History ==\nVelmar was founded by [[Ida Marr]] in 1802 after a storm drove her fleet ashore. "
           "The island had 4,300 inhabitants in the census of 1901, most of them living in the old harbour town.")


@pytest.fixture
def dump(tmp_path):
    path = tmp_path / "pages.xml"
    path.write_text(HEAD + page(1, "Velmar", ARTICLE) + page(2, "Talk:Velmar", "A talk page with words.", ns=1)
                    + page(3, "Empty", "") + "</mediawiki>\n")
    return path


def test_check_dump_counts_pages(dump):
    assert check_dump(dump) == 3


def test_truncated_dump_is_one_line_error_and_output_untouched(dump, tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_text(dump.read_text()[:-40])
    out = tmp_path / "out.xml"
    out.write_text("previous good artifact")
    with pytest.raises(KinjectError, match=r"bad\.xml: malformed or truncated XML") as err:
        copy_dump(bad, out)
    assert "\n" not in str(err.value)
    assert out.read_text() == "previous good artifact"


def test_foreign_xml_rejected(tmp_path):
    path = tmp_path / "x.xml"
    path.write_text("<html><body/></html>")
    with pytest.raises(KinjectError, match="not a MediaWiki XML export"):
        check_dump(path)


def test_clean_dump_runs_wikiextractor(dump, tmp_path):
    out = tmp_path / "articles.jsonl"
    assert clean_dump(dump, out) == 1  # Talk page dropped, empty article dropped
    doc = json.loads(out.read_text().splitlines()[0])
    assert doc["title"] == "Velmar"
    assert "Orsan sea" in doc["text"] and "[[" not in doc["text"] and "'''" not in doc["text"]


def test_empty_corpus_after_cleaning_is_an_error(tmp_path):
    path = tmp_path / "empty.xml"
    path.write_text(HEAD + page(3, "Empty", "") + "</mediawiki>\n")
    out = tmp_path / "articles.jsonl"
    with pytest.raises(KinjectError, match="no article text left"):
        clean_dump(path, out)
    assert not out.exists()


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
    clean_dump(dump, articles)
    out = tmp_path / "chunks.parquet"
    make_chunks(articles, out, min_words=10, max_words=200)
    df = pd.read_parquet(out)
    assert list(df.columns) == ["chunk_id", "title", "text", "n_words"]
    assert df["chunk_id"].is_unique and (df["n_words"] >= 10).all()


def test_make_chunks_nothing_left_is_error(dump, tmp_path):
    articles = tmp_path / "articles.jsonl"
    clean_dump(dump, articles)
    with pytest.raises(KinjectError, match="chunking.min_words"):
        make_chunks(articles, tmp_path / "c.parquet", min_words=10_000, max_words=20_000)


def test_merge_exports_keeps_every_page():
    a = HEAD + page(1, "A", "alpha") + "</mediawiki>"
    b = HEAD + page(2, "B", "beta") + page(3, "C", "gamma") + "</mediawiki>"
    merged = merge_exports([a, b])
    assert merged.count("<page>") == 3 and merged.count("<siteinfo>") == 1 and merged.rstrip().endswith("</mediawiki>")
