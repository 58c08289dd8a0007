"""Benchmark: the retrievers side by side (docs/retrieval.md).

    .venv/bin/python bench/retrievers.py [--sizes demo 200000] [--queries 1000] [--results results] [--out FILE]

Rows, per corpus size: BM25 (bm25s, the pipeline's settings) index build and query throughput, against the flat
FAISS inner-product index (dense's up to retrieval.exact_max) on unit vectors of the demo embedder's dimension
(384: the index alone, embedding excluded, which the `embedding` stage of bench/run.py measures), and the
reciprocal-rank fusion's own time per query over the two top-5 lists (hybrid's overhead on top of both). ``demo``
is the demo's corpus size (its chunks, read from --results, else 120); other sizes are synthetic chunks of 60-120
words drawn from a Zipf-like vocabulary of 30,000 words (seeded). Where a finished demo run is under --results,
recall@1, @2 and @5 of each retriever on its generated questions' source chunks (dense with the run's index and embedder).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DIM = 384  # all-MiniLM-L6-v2
K = 5


def synthetic_chunks(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(30_000)])
    p = 1 / np.arange(1, len(vocab) + 1)
    p /= p.sum()
    lengths = rng.integers(60, 121, n)
    words = rng.choice(vocab, size=int(lengths.sum()), p=p)
    return [" ".join(chunk) for chunk in np.split(words, np.cumsum(lengths)[:-1])]


def demo_chunks(results: Path) -> list[str]:
    files = sorted(results.glob("*/chunks.parquet"))
    return pd.concat([pd.read_parquet(f, columns=["text"]) for f in files])["text"].tolist() if files else []


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def bench_size(texts: list[str], queries: list[str], label: str) -> list[dict]:
    import bm25s
    import faiss

    from kinject.evaluation.fusion import rrf
    from kinject.evaluation.lexical import DEFAULTS, tokenize

    rows = []
    model = bm25s.BM25(method=DEFAULTS["method"], k1=DEFAULTS["k1"], b=DEFAULTS["b"])
    _, build = timed(lambda: model.index(tokenize(texts, DEFAULTS), show_progress=False))
    (ids, _), search = timed(lambda: model.retrieve(tokenize(queries, DEFAULTS), k=K, show_progress=False))
    rows.append({"retriever": "bm25", "size": label, "chunks": len(texts), "build_s": build,
                 "queries_per_s": len(queries) / search})
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((len(texts), DIM), dtype=np.float32)
    faiss.normalize_L2(vectors)
    queries_v = rng.standard_normal((len(queries), DIM), dtype=np.float32)
    faiss.normalize_L2(queries_v)
    index = faiss.IndexFlatIP(DIM)
    _, build = timed(index.add, vectors)
    (_, rows_dense), search = timed(index.search, queries_v, K)
    rows.append({"retriever": "dense (flat FAISS, index only)", "size": label, "chunks": len(texts), "build_s": build,
                 "queries_per_s": len(queries) / search})
    lists = [pd.DataFrame({"question_id": np.repeat(np.arange(len(queries)), K), "rank": np.tile(np.arange(K), len(queries)),
                           "chunk_id": r.ravel()}) for r in (rows_dense, np.asarray(ids))]
    _, fuse = timed(rrf, lists, k_max=K)
    rows.append({"retriever": "hybrid (RRF of both lists, fusion only)", "size": label, "chunks": len(texts),
                 "build_s": 0.0, "queries_per_s": len(queries) / fuse})
    return rows


def demo_recall(results: Path) -> list[dict]:
    """recall@1, @2 and @5 of each retriever on the demo's generated questions (the tasks whose questions name a
    source): the demo's K are 1 and 2, and at its size recall@5 may be saturated."""
    from kinject.evaluation import lexical, retrieval
    from kinject.evaluation.fusion import fuse
    from kinject.reporting.retrieval import source_ranks

    rows = []
    embedder = results / "embedder"
    for task in sorted(p.parent for p in results.glob("*/questions.parquet")):
        questions = pd.read_parquet(task / "questions.parquet")
        index = task / "index" / "faiss.index"
        if questions["chunk_id"].isna().all() or not index.exists() or not embedder.exists():
            continue
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            retrieval.retrieve(index, task / "chunks.parquet", task / "questions.parquet", embedder,
                               tmp / "dense.parquet", k_max=K)
            lexical.build_index(task / "chunks.parquet", None, tmp / "bm25")
            lexical.retrieve(tmp / "bm25", task / "chunks.parquet", task / "questions.parquet", None,
                             tmp / "bm25.parquet", k_max=K)
            fuse({"dense": tmp / "dense.parquet", "bm25": tmp / "bm25.parquet"}, task / "questions.parquet",
                 tmp / "hybrid.parquet", k_max=K)
            for name in ("dense", "bm25", "hybrid"):
                ranks = source_ranks(questions, pd.read_parquet(tmp / f"{name}.parquet"))
                found = ranks["source_rank"].fillna(0)
                rows.append({"task": task.name, "retriever": name, "n_questions": len(ranks),
                             **{f"recall@{k}": float(found.between(1, k).mean()) for k in (1, 2, K)}})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["demo", "200000"])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--results", type=Path, default=ROOT / "results")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    queries = [" ".join(text.split()[:12]) for text in synthetic_chunks(args.queries, seed=2)]
    rows = []
    for size in args.sizes:
        texts = (demo_chunks(args.results) or synthetic_chunks(120)) if size == "demo" else synthetic_chunks(int(size))
        rows += bench_size(texts, queries, size)
    table = pd.DataFrame(rows)
    recall = pd.DataFrame(demo_recall(args.results))
    text = "## Retrievers: index build and query throughput\n\n" + table.to_string(index=False, float_format="%.4g")
    text += ("\n\n## recall@K on the demo's generated questions\n\n"
             + (recall.to_string(index=False, float_format="%.3f") if len(recall) else "(no finished demo run found)"))
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
