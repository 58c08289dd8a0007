"""BM25 retrieval (the ``bm25`` retriever of kinject.evaluation.retrievers): every chunk tokenised and indexed by
``bm25s`` (a sparse-matrix BM25), its index a folder the library writes; the top-K chunks per question, written in
the shape the dense retriever writes (question_id, rank, chunk_id, score).

Tokenisation and scoring come from ``retrieval.bm25`` in the config (schema defaults: bm25s's own: lucene BM25,
k1 1.5, b 0.75, lower-cased words of two or more characters, English stopwords removed, no stemming). A query
word the index has never seen scores nothing; a question whose every word is unknown or a stopword scores 0 on
every chunk, and its top K are then the library's tie order: logged with their count, never dropped.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from kinject.errors import KinjectError
from kinject.io import atomic_path, read_parquet, write_parquet

log = logging.getLogger(__name__)

SETTINGS = "kinject_bm25.json"  # beside the library's files: the tokenisation the queries must repeat
DEFAULTS = {"method": "lucene", "k1": 1.5, "b": 0.75, "lower": True, "stopwords": "english"}


def _settings(settings: dict) -> dict:
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise KinjectError("config", f"retrieval.bm25.{unknown[0]}: not a BM25 setting ({', '.join(DEFAULTS)})")
    return {**DEFAULTS, **settings}


def tokenize(texts, settings: dict):
    """bm25s's tokeniser with the config's lower-casing and stopwords (``none``: keep every word)."""
    import bm25s

    stopwords = settings["stopwords"]
    return bm25s.tokenize(list(texts), lower=settings["lower"], stopwords=None if stopwords == "none" else stopwords,
                          return_ids=False, show_progress=False)


def _chunks(path, columns) -> pd.DataFrame:
    chunks = read_parquet(path, columns=columns)
    dup = chunks["chunk_id"][chunks["chunk_id"].duplicated()]
    if len(dup):
        raise KinjectError(path, f"duplicate chunk_id {dup.iloc[0]!r}")
    return chunks


def build_index(chunks_parquet, embedder, index_dir, **settings) -> str:
    """Index every chunk's text (``embedder`` is unused: BM25 reads words); row i of the index is row i of
    ``chunks_parquet``. The settings are saved beside the index, so the queries are tokenised alike."""
    import bm25s

    settings = _settings(settings)
    chunks = _chunks(chunks_parquet, ["chunk_id", "text"])
    model = bm25s.BM25(method=settings["method"], k1=settings["k1"], b=settings["b"])
    model.index(tokenize(chunks["text"], settings), show_progress=False)
    with atomic_path(index_dir, directory=True) as tmp:
        model.save(str(tmp), show_progress=False)
        (Path(tmp) / SETTINGS).write_text(json.dumps({**settings, "chunks": len(chunks)}, indent=1))
    summary = f"BM25 index of {len(chunks)} chunks ({settings['method']}, k1 {settings['k1']}, b {settings['b']})"
    log.info("%s", summary)
    return summary


def load_index(index_dir):
    """(bm25s model, the settings it was built with, its chunk count); one line for a folder that is none."""
    import bm25s

    meta = Path(index_dir) / SETTINGS
    if not meta.is_file():
        raise KinjectError(index_dir, f"not a BM25 index folder (no {SETTINGS}); rebuild it")
    settings = json.loads(meta.read_text())
    return bm25s.BM25.load(str(index_dir), show_progress=False), settings, int(settings.pop("chunks"))


def search(model, settings: dict, questions, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and scores (questions x k, best first) of the top ``k`` chunks for each question text."""
    rows, scores = model.retrieve(tokenize(questions, settings), k=k, show_progress=False)
    return np.asarray(rows), np.asarray(scores)


def retrieve(index_dir, chunks_parquet, questions_parquet, embedder, out_parquet, *, k_max: int) -> str:
    """Top ``k_max`` chunks per question (fewer only if there are fewer chunks), best first: columns
    question_id, rank (0-based), chunk_id, score (BM25)."""
    if k_max < 1:
        raise KinjectError(out_parquet, f"k_max must be at least 1 (got {k_max})")
    model, settings, n_chunks = load_index(index_dir)
    chunk_ids = _chunks(chunks_parquet, ["chunk_id"])["chunk_id"].to_numpy()
    if n_chunks != len(chunk_ids):
        raise KinjectError(index_dir, f"indexes {n_chunks} chunks but {chunks_parquet} has {len(chunk_ids)}; "
                                      "rebuild the index")
    questions = read_parquet(questions_parquet, columns=["id", "question"])
    k = min(k_max, len(chunk_ids))
    rows, scores = search(model, settings, questions["question"].tolist(), k)
    blank = int((scores.max(axis=1) <= 0).sum())
    if blank:
        log.warning("%d of %d questions share no indexed word with any chunk: their top %d are BM25's tie order",
                    blank, len(questions), k)
    hits = pd.DataFrame({
        "question_id": np.repeat(questions["id"].to_numpy(), k),
        "rank": np.tile(np.arange(k), len(questions)),
        "chunk_id": chunk_ids[rows.ravel()],
        "score": scores.ravel().astype(np.float32),
    })
    write_parquet(out_parquet, hits)
    return f"top {k} chunks (BM25) for {len(questions)} questions"
