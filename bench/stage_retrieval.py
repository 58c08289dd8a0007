"""bench/run.py's embedding and retrieval stages: batched embedding against one text at a time, FAISS against a
numpy scan on the demo's chunks and on synthetic vectors, exact against approximate search."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from harness import Demo, record, timed


def top5_numpy(queries, vectors, k: int = 5, block: int = 256):
    """Exact top-k by inner product, a plain numpy scan (blocks of queries to bound memory)."""
    out = []
    for i in range(0, len(queries), block):
        scores = queries[i:i + block] @ vectors.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if scores.shape[1] > k else \
            np.tile(np.arange(scores.shape[1]), (len(scores), 1))
        order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable")
        out.append(np.take_along_axis(top, order, 1))
    return np.vstack(out)


def normalised(rng, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# 1. embedding ----------------------------------------------------------------------------------------

def embedding_texts(demo: Demo) -> list[str]:
    """Distinct demo texts of varied length: atlas chunks and the largest current-events paraphrase set."""
    largest = max(demo.config["tasks"]["current_events"]["paraphrase_sets"])
    paraphrases = demo.results / "current_events" / "paraphrases" / f"paraphrases_k{largest}.parquet"
    texts = pd.concat([pd.read_parquet(demo.results / "atlas" / "chunks.parquet")["text"],
                       pd.read_parquet(paraphrases)["text"]])
    return list(dict.fromkeys(texts.astype(str)))


def bench_embedding(demo: Demo, model, batch_size: int) -> None:
    from kinject.evaluation.retrieval import embed

    texts = embedding_texts(demo)
    embed(model, texts[:16], batch_size=batch_size)  # warm-up
    t_batch, batched = timed(lambda: embed(model, texts, batch_size=batch_size), 2)
    t_one, single = timed(lambda: np.vstack([embed(model, [t], batch_size=1) for t in texts]))
    diff = float(np.abs(batched - single).max())
    record("embedding (retrieval.embed)", f"{len(texts)} demo texts, all-MiniLM-L6-v2", "one text at a time",
           len(texts) / t_one, f"batched ({batch_size}, length-sorted)", len(texts) / t_batch, "chunks/s",
           f"same vectors: max abs diff {diff:.1e}")


# 2. FAISS ----------------------------------------------------------------------------------------------

def bench_faiss_demo(results: Path, model, tmp: Path, batch_size: int, exact_max: int) -> None:
    """retrieval.build_index + retrieve on the demo, checked against numpy; FAISS part timed alone."""
    from kinject.evaluation.retrieval import build_index, embed, new_index, read_index, retrieve

    same, total, t_faiss, t_numpy, sizes = 0, 0, 0.0, 0.0, []
    for task in ("atlas", "current_events"):
        chunks = results / task / "chunks.parquet"
        questions = results / task / "questions.parquet"
        index_path, hits_path = tmp / f"{task}.index", tmp / f"{task}_hits.parquet"
        build_index(chunks, model, index_path, batch_size=batch_size, exact_max=exact_max)
        retrieve(index_path, chunks, questions, model, hits_path, k_max=5, batch_size=batch_size)
        index = read_index(index_path)
        vectors = np.ascontiguousarray(index.reconstruct_n(0, index.ntotal))
        question_rows = pd.read_parquet(questions, columns=["id", "question"])
        queries = embed(model, question_rows["question"].tolist(), batch_size=batch_size)
        ids = pd.read_parquet(chunks)["chunk_id"].to_numpy()
        expected = ids[top5_numpy(queries, vectors)]
        hits = pd.read_parquet(hits_path).sort_values(["question_id", "rank"])
        qids = question_rows["id"].tolist()
        got = hits.groupby("question_id", sort=False)["chunk_id"].apply(list).reindex(qids)
        same += sum(list(g) == list(e) for g, e in zip(got, expected))
        total += len(qids)
        sizes.append(f"{len(ids)} chunks x {len(qids)} questions")

        def faiss_way(vectors=vectors, queries=queries):
            index = new_index(vectors.shape[1], len(vectors), exact_max=exact_max)
            index.add(vectors)
            return index.search(queries, 5)

        t_faiss += timed(faiss_way, 200)[0]
        t_numpy += timed(lambda v=vectors, q=queries: top5_numpy(q, v), 200)[0]
    record("retrieval, demo (FAISS)", " + ".join(sizes), "numpy brute-force scan", 1 / t_numpy,
           "IndexFlatIP build + top-5", 1 / t_faiss, "runs/s",
           f"retrieve() top-5 == numpy top-5 for {same}/{total} questions; {t_faiss * 1e3:.2f} vs "
           f"{t_numpy * 1e3:.2f} ms per run (embedding excluded)")


def bench_faiss_synthetic(n_flat: int, n_hnsw: int, n_queries: int, exact_max: int, default_exact_max: int) -> None:
    """Exact search vs numpy at ``n_flat``; exact vs the HNSW index new_index picks just above ``exact_max``."""
    from kinject.evaluation.retrieval import new_index

    d = 384
    rng = np.random.default_rng(0)
    x = normalised(rng, n_flat, d)
    # a question is near its chunk: cosine about 0.7, like a paraphrased question and its source text
    source = rng.choice(n_hnsw, n_queries, replace=False)
    queries = x[source] + 0.05 * rng.standard_normal((n_queries, d), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)

    def flat(n):
        index = new_index(d, n, exact_max=n)
        index.add(x[:n])
        return index.search(queries, 5)[1]

    t_np, ref = timed(lambda: top5_numpy(queries, x))
    t_flat, got = timed(lambda: flat(n_flat), 2)
    same = float((got == ref).all(axis=1).mean())
    record("retrieval, synthetic exact", f"{n_flat:,} x {d} random unit vectors, {n_queries} queries",
           "numpy brute-force scan", n_queries / t_np, "IndexFlatIP build + top-5", n_queries / t_flat,
           "queries/s", f"identical top-5 for {same:.1%} of queries")

    hnsw = new_index(d, n_hnsw, exact_max=exact_max)
    t_build, _ = timed(lambda: hnsw.add(x[:n_hnsw]))
    t_search, approx = timed(lambda: hnsw.search(queries, 5)[1])
    flat_index = new_index(d, n_hnsw, exact_max=n_hnsw)  # one exact index: its add and search timed apart
    t_flat_add, _ = timed(lambda: flat_index.add(x[:n_hnsw]))
    t_flat_search, exact = timed(lambda: flat_index.search(queries, 5)[1], 2)
    t_exact = t_flat_add + t_flat_search
    recall = float(np.mean([len(set(a) & set(e)) / 5 for a, e in zip(approx, exact)]))
    gain = t_flat_search / n_queries - t_search / n_queries
    break_even = f"after {t_build / gain:,.0f} queries" if gain > 0 else "never (its search is not faster here)"
    record("retrieval, exact vs approximate", f"{n_hnsw:,} x {d} (just above exact_max {exact_max:,}), "
           f"{n_queries} queries", f"IndexHNSWFlat (what exact_max {exact_max:,} picks)",
           n_queries / (t_build + t_search), f"IndexFlatIP (default: exact up to exact_max {default_exact_max:,})",
           n_queries / t_exact, "queries/s",
           f"build + search; HNSW build {t_build:.1f} s, search {t_search * 1e3 / n_queries:.2f} ms/query vs exact "
           f"{t_flat_search * 1e3 / n_queries:.2f}; HNSW recall@5 {recall:.3f} (random vectors: its worst case); "
           f"HNSW pays off {break_even}")
