"""The ``rerank`` retriever (kinject.evaluation.retrievers): another retriever's top ``retrieval.rerank.top_n``
chunks per question (``retrieval.rerank.base``: dense, bm25 or hybrid, searched again at that depth) re-scored by
a sentence-transformers ``CrossEncoder`` (``retrieval.rerank.model``: a hub id, downloaded by rule
download_reranker and pinned in the lock, or a local folder), the top K by its score written in the shape every
retriever writes (question_id, rank, chunk_id, score); ties keep the base retriever's order.

No cross-encoder ships offline: the demo does not list ``rerank``; the tests build a tiny BERT cross-encoder.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import pandas as pd

from kinject.errors import KinjectError
from kinject.io import read_parquet, write_parquet

log = logging.getLogger(__name__)


def check_model(model_dir) -> Path:
    """A cross-encoder folder (config.json and weights, as save_pretrained writes them); one line otherwise."""
    folder = Path(model_dir)
    if not (folder / "config.json").is_file():
        raise KinjectError(folder, "retrieval.rerank.model: no cross-encoder here (config.json missing); download it "
                           "with rule download_reranker or give a folder that save_pretrained wrote")
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise KinjectError(folder, "retrieval.rerank.model: no weights (*.safetensors, *.bin) in the folder")
    return folder


def candidates(name: str, indexes: dict, chunks, questions, embedder, depth: int, tmp: Path,
               settings: dict) -> Path:
    """Retriever ``name``'s top ``depth`` chunks per question, written under ``tmp``: searched in its index
    (``indexes``: name -> index path), or, for a fusion, fused from its parts' own lists at that depth.
    ``settings``: name -> the keyword settings of its search or fusion (dense: query_prefix, batch_size)."""
    from kinject.evaluation.retrievers import RETRIEVERS

    entry, out = RETRIEVERS[name], tmp / f"{name}.parquet"
    if entry.parts:
        from kinject.evaluation.fusion import fuse

        parts = {p: candidates(p, indexes, chunks, questions, embedder, depth, tmp, settings) for p in entry.parts}
        fuse(parts, questions, out, k_max=depth, **settings.get(name, {}))
    elif entry.index:
        if name not in indexes:
            raise KinjectError(out, f"retrieval.rerank.base: no index of {name} was given")
        entry.search(indexes[name], chunks, questions, embedder, out, k_max=depth, **settings.get(name, {}))
    else:
        raise KinjectError("config", f"retrieval.rerank.base: {name} has no ranked list of its own to rerank")
    return out


def rescore(hits: pd.DataFrame, questions: pd.DataFrame, chunks: pd.DataFrame, model, *, k_max: int,
            batch_size: int = 32) -> pd.DataFrame:
    """``hits`` (question_id, rank, chunk_id) re-ranked by ``model`` (a CrossEncoder) over (question, chunk text)
    pairs; the top ``k_max`` per question, ``score`` the cross-encoder's."""
    text = chunks.set_index("chunk_id")["text"]
    asked = questions.set_index(questions["id"].astype(str))["question"]
    pairs = list(zip(hits["question_id"].astype(str).map(asked), hits["chunk_id"].map(text), strict=True))
    scores = model.predict(pairs, batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True)
    ranked = hits.assign(score=scores.astype("float32")).sort_values(
        ["question_id", "score", "rank"], ascending=[True, False, True], kind="stable")
    ranked["rank"] = ranked.groupby("question_id").cumcount()
    return ranked[ranked["rank"] < k_max][["question_id", "rank", "chunk_id", "score"]].reset_index(drop=True)


def rerank(base: str, indexes: dict, chunks_parquet, questions_parquet, embedder, model_dir, out_parquet, *,
           k_max: int, top_n: int, batch_size: int = 32, settings: dict | None = None) -> str:
    """Rule retrieve_rerank: ``base``'s top ``top_n`` per question, re-scored by the cross-encoder in
    ``model_dir``; the top ``k_max`` written to ``out_parquet``."""
    from sentence_transformers import CrossEncoder

    if top_n < k_max:
        raise KinjectError("config", f"retrieval.rerank.top_n ({top_n}) is below max(retrieval.k) ({k_max})")
    model = CrossEncoder(str(check_model(model_dir)))
    questions = read_parquet(questions_parquet, columns=["id", "question"])
    chunks = read_parquet(chunks_parquet, columns=["chunk_id", "text"])
    with tempfile.TemporaryDirectory() as tmp:
        listed = candidates(base, indexes, chunks_parquet, questions_parquet, embedder, top_n, Path(tmp),
                            settings or {})
        hits = read_parquet(listed, columns=["question_id", "rank", "chunk_id"])
    write_parquet(out_parquet, rescore(hits, questions, chunks, model, k_max=k_max, batch_size=batch_size))
    return f"top {k_max} of {base}'s top {top_n} re-scored by a cross-encoder for {len(questions)} questions"
