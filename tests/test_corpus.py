"""Knowledge bases and questions from the user's own files (kinject.knowledge.corpus)."""

import json

import pandas as pd
import pytest

from kinject.errors import KinjectError
from kinject.grid import check_knowledge_base
from kinject.knowledge.corpus import (
    corpus_files,
    load_corpus,
    load_table_questions,
    markdown_text,
    read_document,
    table_questions,
)

MANUAL = """---
front_matter: YAML metadata, not prose
---

# The Harbour Crane

The **crane** lifts *containers* of up to `40 t`; see [the manual](http://example.org/m.pdf).
It was built in 1931.

## Safety

- Never stand under the [load](#load).
- Check the ![hook](hook.png) daily.

```python
print("code is not prose")
```

<div>raw html is not prose</div>

| part | weight |
|------|--------|
| boom | 12 t   |
"""


def test_markdown_text_keeps_prose_drops_markup_and_code():
    heading, text = markdown_text(MANUAL)
    assert heading == "The Harbour Crane"
    lines = text.split("\n")
    assert "The crane lifts containers of up to 40 t; see the manual. It was built in 1931." in lines
    assert "Never stand under the load." in lines
    assert "Check the daily." in lines  # an image's alt text is not prose
    assert {"part", "weight", "boom", "12 t", "Safety"} <= set(lines)
    for gone in ("**", "](", "print(", "raw html", "<div>", "```", "#", "front_matter"):
        assert gone not in text


def test_documents_titles_from_heading_or_file_name(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "crane.md").write_text(MANUAL)
    (tmp_path / "sub" / "notes.md").write_text("Plain paragraph, no heading.\n")
    (tmp_path / "log.txt").write_text("  First   line.\n\n\nSecond line.  \n")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    files = corpus_files(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in files] == ["crane.md", "log.txt", "sub/notes.md"]
    assert read_document(files[0])[0] == "The Harbour Crane"
    assert read_document(files[1]) == ("log", "First line.\nSecond line.")
    assert read_document(files[2]) == ("notes", "Plain paragraph, no heading.")
    assert [p.name for p in corpus_files(tmp_path / "*.md")] == ["crane.md"]


def test_bad_documents_are_one_line_naming_the_file(tmp_path):
    with pytest.raises(KinjectError, match=r"no \.txt/\.md/\.markdown file found"):
        corpus_files(tmp_path)
    bad = tmp_path / "latin1.md"
    bad.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(KinjectError, match=r"latin1\.md: not UTF-8 text \(byte 3"):
        read_document(bad)


def _load(kb, tmp_path):
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    paths = [out / name for name in ("articles.jsonl", "fetch_counts.json", "clean_counts.json")]
    line = load_corpus(kb, *paths)
    return line, [json.loads(l) for l in paths[0].read_text().splitlines()], *(json.loads(p.read_text())
                                                                               for p in paths[1:])


def test_load_corpus_from_files_writes_cleaned_articles(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "crane.md").write_text(MANUAL)
    (docs / "empty.md").write_text("```\nonly code\n```\n")
    line, articles, fetch, clean = _load({"source": "files", "path": str(docs)}, tmp_path)
    assert line == "1 of 2 documents with text (source files)"
    assert [(a["id"], a["title"]) for a in articles] == [("crane.md", "The Harbour Crane")]
    assert fetch["source"] == "files" and fetch["pages_in"] == 2 and fetch["files"] == [str(docs / "crane.md"),
                                                                                          str(docs / "empty.md")]
    assert clean == {"pages_in": 2, "pages_kept": 1, "dropped": {"empty": 1}}


@pytest.mark.parametrize("suffix", ["jsonl", "csv", "parquet"])
def test_load_corpus_from_a_table(tmp_path, suffix):
    df = pd.DataFrame({"doc": ["a", "b"], "heading": ["Alpha", "Beta"], "body": ["One  two.\nThree.", "Four."]})
    path = tmp_path / f"corpus.{suffix}"
    {"jsonl": lambda: df.to_json(path, orient="records", lines=True), "csv": lambda: df.to_csv(path, index=False),
     "parquet": lambda: df.to_parquet(path)}[suffix]()
    kb = {"source": "table", "path": str(path), "text_column": "body", "title_column": "heading", "id_column": "doc"}
    _, articles, _, _ = _load(kb, tmp_path)
    assert articles == [{"id": "a", "title": "Alpha", "text": "One two.\nThree."},
                        {"id": "b", "title": "Beta", "text": "Four."}]
    with pytest.raises(KinjectError, match=rf"corpus\.{suffix}: no column 'text' \(knowledge_base\.text_column; "
                                           r"the columns are doc, heading, body\)"):
        _load({"source": "table", "path": str(path)}, tmp_path)


def test_bad_tables_are_one_line(tmp_path):
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "a", "title": "b"}\n{not json\n')
    with pytest.raises(KinjectError, match=r"broken\.jsonl: unreadable jsonl table"):
        _load({"source": "table", "path": str(broken)}, tmp_path)
    dup = tmp_path / "dup.csv"
    dup.write_text("id,title,text\n1,a,x\n1,b,y\n")
    with pytest.raises(KinjectError, match=r"dup\.csv: duplicate id '1' in column 'id'"):
        _load({"source": "table", "path": str(dup), "id_column": "id"}, tmp_path)
    with pytest.raises(KinjectError, match=r"not a table file"):
        _load({"source": "table", "path": str(tmp_path / "corpus.xlsx")}, tmp_path)


def test_table_questions_lists_letters_and_columns(tmp_path):
    path = tmp_path / "quiz.jsonl"
    rows = [{"id": "q1", "question": "Lift?", "choices": ["1 t", "40 t", "9 t", "2 t"], "answer": "B"},
            {"question": "Built?", "choices": ["1931", "1950"], "answer": 0, "split": "dev"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    df = table_questions(path)
    assert df[["id", "answer", "split"]].values.tolist() == [["q1", 1, "test"], ["quiz-1", 0, "dev"]]
    assert list(df["choices"][0]) == ["1 t", "40 t", "9 t", "2 t"]
    csv = tmp_path / "quiz.csv"
    csv.write_text("question,A,B,C,D,answer\nLift?,1 t,40 t,9 t,2 t,d\n")
    assert table_questions(csv)[["answer"]].values.tolist() == [[3]]
    out = tmp_path / "questions.parquet"
    assert load_table_questions(path, out) == "2 questions (1 test, 1 dev)"
    assert len(pd.read_parquet(out)) == 2


@pytest.mark.parametrize("body, problem", [
    ("question,A,B,answer\nQ?,x,y,C\n", r"row 0: answer 'C' is out of range for 2 choices"),
    ("question,A,B,answer\nQ?,x,y,yes\n", r"row 0: answer 'yes' is neither a letter nor an index"),
    ("question,A,B,answer\nQ?,x,y,5\n", r"row 0: answer '5' is out of range for 2 choices"),
    ("question,answer\nQ?,0\n", r"row 0: no choices"),
    ("question,A,B,answer,split\nQ?,x,y,0,train\n", r"row 0: split 'train' \(expected test or dev\)"),
    ("question,A,B\nQ?,x,y\n", r"no column 'answer'"),
    ("id,question,A,B,answer\n1,Q?,x,y,0\n1,R?,x,y,1\n", r"duplicate question id '1'"),
])
def test_bad_question_tables_are_one_line_naming_the_file(tmp_path, body, problem):
    path = tmp_path / "quiz.csv"
    path.write_text(body)
    with pytest.raises(KinjectError, match=rf"quiz\.csv: {problem}"):
        load_table_questions(path, tmp_path / "questions.parquet")
    assert not (tmp_path / "questions.parquet").exists()


@pytest.mark.parametrize("kb, problem", [
    ({"source": "files"}, r"k\.path is required for source files"),
    ({"source": "table"}, r"source table needs path \(a file\) or dataset"),
    ({"source": "table", "dataset": "org/corpus", "split": "train"}, r"k\.revision is required with dataset"),
    ({"source": "dump", "path": "d.xml", "text_column": "body"}, r"k\.text_column is only for source table"),
    ({"source": "files", "path": "docs", "titles": "t.txt"}, r"titles, hub_pages_file and events select"),
])
def test_corpus_config_checks(kb, problem):
    with pytest.raises(KinjectError, match=problem):
        check_knowledge_base({}, kb, "k", "config.yaml")
