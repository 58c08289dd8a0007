"""Knowledge bases and questions from the user's own files: a folder of text or markdown documents, a table
(JSONL, CSV, parquet, or a Hugging Face dataset at a pinned revision), and multiple-choice questions in a table.

A corpus becomes the same ``clean/articles.jsonl`` (one JSON line per document: id, title, text) and count
files that cleaning a MediaWiki dump writes, so chunking, the knowledge-base report and everything downstream
are shared with the Wikipedia sources.
"""

from __future__ import annotations

import glob
import json
import logging
import math
from collections import Counter
from pathlib import Path

import pandas as pd
from markdown_it import MarkdownIt
from mdit_py_plugins.front_matter import front_matter_plugin

from kinject.errors import KinjectError
from kinject.io import atomic_path, write_json
from kinject.qa.question_file import write_questions

log = logging.getLogger(__name__)

DOCUMENT_SUFFIXES = (".txt", ".md", ".markdown")
TABLE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
# block tokens whose inline content is prose; code blocks, HTML blocks and front matter are not
_PROSE_BLOCKS = {"paragraph_open", "heading_open", "list_item_open", "blockquote_open", "td_open", "th_open"}


# Documents ------------------------------------------------------------------------------------------------


def corpus_files(path) -> list[Path]:
    """The documents of source `files`: a folder (every .txt/.md file under it) or a glob, sorted by path."""
    root = Path(path)
    if root.is_dir():
        found = [p for p in root.rglob("*") if p.is_file()]
    else:
        found = [Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file()]
    files = sorted(p for p in found if p.suffix.lower() in DOCUMENT_SUFFIXES)
    if not files:
        raise KinjectError(path, f"no {'/'.join(DOCUMENT_SUFFIXES)} file found (knowledge_base.path)")
    return files


def markdown_text(source: str) -> tuple[str | None, str]:
    """(first heading or None, the prose as plain text): markdown parsed by markdown-it-py (CommonMark), one
    line per block (paragraph, heading, list item, table cell), the inline markup (emphasis, links, inline
    code) reduced to its text; YAML front matter (mdit-py-plugins), code blocks, images and raw HTML dropped."""
    tokens = MarkdownIt("commonmark").enable("table").use(front_matter_plugin).parse(source)
    heading, lines, in_prose = None, [], 0
    for i, token in enumerate(tokens):
        if token.type in _PROSE_BLOCKS:
            in_prose += 1
        elif token.type.replace("_close", "_open") in _PROSE_BLOCKS and token.type.endswith("_close"):
            in_prose -= 1
        elif token.type == "inline" and in_prose:
            text = "".join(child.content if child.type in ("text", "code_inline") else
                           " " if child.type in ("softbreak", "hardbreak") else ""
                           for child in token.children or [])
            text = " ".join(text.split())
            if not text:
                continue
            if heading is None and i > 0 and tokens[i - 1].type == "heading_open":
                heading = text
            lines.append(text)
    return heading, "\n".join(lines)


def plain_lines(text: str) -> str:
    """A plain text's non-blank lines, each with its whitespace runs made single spaces."""
    return "\n".join(" ".join(line.split()) for line in text.splitlines() if line.strip())


def read_document(path: Path) -> tuple[str, str]:
    """(title, text) of one document: markdown by markdown-it-py, titled by its first heading (else the file
    name); a .txt file as it is, titled by its file name. Undecodable bytes are one line naming the file."""
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise KinjectError(path, f"not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    if path.suffix.lower() == ".txt":
        return path.stem, plain_lines(raw)
    heading, text = markdown_text(raw)
    return heading or path.stem, text


# Tables ---------------------------------------------------------------------------------------------------


def read_table(path) -> pd.DataFrame:
    """A JSONL / JSON-lines, CSV or parquet file as a DataFrame; an unreadable one is one line naming it."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise KinjectError(path, f"not a table file (expected {', '.join(TABLE_SUFFIXES)})")
    try:
        if suffix in (".jsonl", ".json"):
            return pd.read_json(path, lines=True, dtype=False)
        if suffix == ".csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        return pd.read_parquet(path)
    except FileNotFoundError:
        raise KinjectError(path, "not found") from None
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        raise KinjectError(path, f"unreadable {suffix[1:]} table ({' '.join(str(exc).split())[:200]})") from None


def dataset_table(spec: dict) -> pd.DataFrame:
    """A Hugging Face dataset's split at a pinned revision (datasets.load_dataset), as a DataFrame."""
    import datasets

    where = f"{spec['dataset']}@{spec['revision']}"
    try:
        return datasets.load_dataset(spec["dataset"], spec.get("config"), split=spec["split"],
                                     revision=spec["revision"]).to_pandas()
    except Exception as exc:  # the datasets library raises many kinds for a missing repo, split or revision
        raise KinjectError(where, f"cannot load split {spec['split']!r} ({' '.join(str(exc).split())[:200]})") from None


def _column(df: pd.DataFrame, name: str, where, key: str) -> pd.Series:
    if name not in df.columns:
        raise KinjectError(where, f"no column {name!r} ({key}; the columns are {', '.join(map(str, df.columns))})")
    return df[name]


def table_documents(df: pd.DataFrame, where, kb: dict) -> list[tuple[str, str, str]]:
    """(id, title, text) per row of a table source: its text_column (unset: text), title_column (unset: title)
    and id_column (unset: the row number)."""
    if df.empty:
        raise KinjectError(where, "has no rows")
    text_column, title_column = kb.get("text_column", "text"), kb.get("title_column", "title")
    texts = _column(df, text_column, where, "knowledge_base.text_column")
    titles = _column(df, title_column, where, "knowledge_base.title_column")
    ids = _column(df, kb["id_column"], where, "knowledge_base.id_column") if "id_column" in kb \
        else pd.Series(range(len(df)))
    if ids.astype(str).duplicated().any():
        raise KinjectError(where, f"duplicate id {ids[ids.astype(str).duplicated()].iloc[0]!r} in column "
                           f"{kb['id_column']!r}")
    out = []
    for row, (doc_id, title, text) in enumerate(zip(ids, titles, texts)):
        if text is not None and not isinstance(text, str):
            raise KinjectError(where, f"row {row}: {text_column!r} is not text ({type(text).__name__})")
        out.append((str(doc_id), str(title), plain_lines(text or "")))
    return out


# The rule -------------------------------------------------------------------------------------------------


def corpus_documents(kb: dict) -> tuple[list[tuple[str, str, str]], list[str]]:
    """((id, title, text) per document, the input files read) for source files or table."""
    if kb["source"] == "files":
        files = corpus_files(kb["path"])
        docs = []
        for path in files:
            title, text = read_document(path)
            docs.append((str(path.relative_to(kb["path"]) if Path(kb["path"]).is_dir() else path), title, text))
        return docs, [str(p) for p in files]
    if "dataset" in kb:
        return table_documents(dataset_table(kb), f"{kb['dataset']}@{kb['revision']}", kb), []
    return table_documents(read_table(kb["path"]), kb["path"], kb), [kb["path"]]


def load_corpus(knowledge_base: dict, articles, fetch_counts, clean_counts) -> str:
    """Rule load_corpus: the documents of a files or table source written as cleaned articles (the shape
    clean_dump writes), with the count files the knowledge-base report reads; returns the console line."""
    docs, files = corpus_documents(knowledge_base)
    kept, dropped = 0, Counter({"empty": 0})
    with atomic_path(articles) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for doc_id, title, text in docs:
            if not text:
                dropped["empty"] += 1
                continue
            fh.write(json.dumps({"id": doc_id, "title": title, "text": text}, ensure_ascii=False) + "\n")
            kept += 1
        if not kept:
            raise KinjectError(knowledge_base.get("path") or knowledge_base["dataset"], "no document has text")
    source = knowledge_base["source"]
    write_json(fetch_counts, {"source": source, "selection": "every document", "files": files,
                              "pages_in": len(docs), "pages_kept": len(docs), "dropped": {}})
    write_json(clean_counts, {"pages_in": len(docs), "pages_kept": kept, "dropped": dict(dropped)})
    log.info("%d of %d documents have text (source %s); dropped: empty %d", kept, len(docs), source,
             dropped["empty"])
    return f"{kept} of {len(docs)} documents with text (source {source})"


# Questions ------------------------------------------------------------------------------------------------

LETTERS = "ABCDEFGHIJ"


def _value(row: dict, key: str):
    """A cell's value, or None where the table leaves it out (a missing JSON key, an empty CSV cell, NaN)."""
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)) or \
            (isinstance(value, str) and not value.strip()):
        return None
    return value


def _choices(row: dict, where, n: int) -> list[str]:
    if _value(row, "choices") is not None:
        choices = row["choices"]
        if isinstance(choices, str):
            try:
                choices = json.loads(choices)
            except json.JSONDecodeError:
                raise KinjectError(where, f"row {n}: choices is not a JSON list ({choices[:60]!r})") from None
        if not isinstance(choices, (list, tuple)) and not hasattr(choices, "tolist"):
            raise KinjectError(where, f"row {n}: choices is not a list")
        return [str(c) for c in list(choices)]
    letters = [c for c in LETTERS if _value(row, c) is not None]
    if not letters:
        raise KinjectError(where, f"row {n}: no choices (a 'choices' list or columns A, B, C, D)")
    return [str(row[c]) for c in letters]


def _answer(value, choices: list[str], where, n: int) -> int:
    text = str(value).strip()
    if len(text) == 1 and text.upper() in LETTERS:
        index = LETTERS.index(text.upper())
    else:
        try:
            index = int(text)
        except ValueError:
            raise KinjectError(where, f"row {n}: answer {value!r} is neither a letter nor an index") from None
    if not 0 <= index < len(choices):
        raise KinjectError(where, f"row {n}: answer {value!r} is out of range for {len(choices)} choices")
    return index


def _question_id(row: dict, path, n: int) -> str:
    """A table question's id: its id column, else <file stem>-<row>."""
    return str(row["id"]) if _value(row, "id") is not None else f"{Path(path).stem}-{n}"


def table_question_groups(path, group_column: str) -> pd.Series:
    """Each table question's group (questions.group_column: the questions sharing a value share a source,
    kinject.reporting.clusters), indexed by its id as table_questions gives it. A missing column, or a row
    that leaves it empty, is one line naming the file (and the row)."""
    df = read_table(path)
    _column(df, group_column, path, "questions.group_column")
    groups = {}
    for n, row in enumerate(df.to_dict("records")):
        group = _value(row, group_column)
        if group is None:
            raise KinjectError(path, f"row {n}: the group column {group_column!r} is empty (questions.group_column)")
        groups[_question_id(row, path, n)] = str(group)
    return pd.Series(groups, name="cluster", dtype=str)


def table_questions(path) -> pd.DataFrame:
    """Questions of source table: question, choices (a list, or A-D columns), answer (an index or a letter),
    optional id (default: <file stem>-<row>) and split (test or dev; default test)."""
    df = read_table(path)
    if df.empty:
        raise KinjectError(path, "has no questions")
    _column(df, "question", path, "questions.path")
    _column(df, "answer", path, "questions.path")
    rows = []
    for n, row in enumerate(df.to_dict("records")):
        choices = _choices(row, path, n)
        split = str(_value(row, "split") or "test")
        if split not in ("test", "dev"):
            raise KinjectError(path, f"row {n}: split {split!r} (expected test or dev)")
        rows.append({"id": _question_id(row, path, n), "question": str(row["question"]), "choices": choices,
                     "answer": _answer(row["answer"], choices, path, n), "split": split, "chunk_id": None})
    return pd.DataFrame(rows)


def load_table_questions(path, out) -> str:
    """Rule load_table_questions: the table's questions, checked as every question file is, written."""
    df = table_questions(path)
    try:
        write_questions(out, df)
    except KinjectError as exc:  # name the user's table, not the parquet being written
        raise KinjectError(path, exc.problem) from None
    splits = df["split"].value_counts()
    return f"{len(df)} questions ({', '.join(f'{n} {s}' for s, n in splits.items())})"
