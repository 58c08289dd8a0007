"""Reciprocal-rank fusion (Cormack, Clarke & Büttcher 2009, "Reciprocal rank fusion outperforms Condorcet and
individual rank learning methods", SIGIR): the ``hybrid`` retriever of kinject.evaluation.retrievers. Each chunk's
score is the sum over the fused retrievers' lists of 1 / (rrf_k + rank), rank 1-based (a chunk absent from a list
adds nothing); the top K by that score, ties broken by the chunk's best rank in any list, then its id.

The fused lists are the parts' retrieved files (their top max(retrieval.k) each), as FlashRAG fuses its parts'
top K: a chunk that no part ranks within its top K cannot be fused in.
"""

from __future__ import annotations

import pandas as pd

from kinject.errors import KinjectError
from kinject.io import read_parquet, write_parquet

COLUMNS = ["question_id", "rank", "chunk_id", "score"]


def rrf(lists: list[pd.DataFrame], *, k_max: int, rrf_k: int = 60) -> pd.DataFrame:
    """The fused top ``k_max`` of retrieved lists (each: question_id, rank 0-based, chunk_id), in the same
    columns, ``score`` the fused one."""
    if rrf_k < 0:
        raise ValueError(f"rrf_k must be at least 0 (got {rrf_k})")
    hits = pd.concat([df[["question_id", "rank", "chunk_id"]] for df in lists], ignore_index=True)
    hits["score"] = 1.0 / (rrf_k + hits["rank"] + 1)
    fused = hits.groupby(["question_id", "chunk_id"], sort=False).agg(score=("score", "sum"), best=("rank", "min"))
    fused = fused.reset_index().sort_values(["question_id", "score", "best", "chunk_id"],
                                            ascending=[True, False, True, True], kind="stable")
    fused["rank"] = fused.groupby("question_id").cumcount()
    fused = fused[fused["rank"] < k_max]
    return fused[COLUMNS].reset_index(drop=True)


def fuse(parts: dict, questions_parquet, out_parquet, *, k_max: int, rrf_k: int = 60) -> str:
    """Rule retrieve_hybrid: the fused top ``k_max`` of the parts' retrieved files (``parts``: retriever name ->
    its retrieved.parquet) for every question of ``questions_parquet``, in the question file's order."""
    if len(parts) < 2:
        raise KinjectError(out_parquet, f"fusion needs two retrieved lists or more (got {', '.join(parts) or 'none'})")
    questions = read_parquet(questions_parquet, columns=["id"])["id"]
    lists = []
    for name, path in parts.items():
        df = read_parquet(path, columns=COLUMNS)
        missing = questions[~questions.isin(df["question_id"])]
        if len(missing):
            raise KinjectError(path, f"has no {name} hits for question {missing.iloc[0]!r} of {questions_parquet}; "
                               "retrieved for another question file")
        lists.append(df)
    fused = rrf(lists, k_max=k_max, rrf_k=rrf_k)
    order = {q: i for i, q in enumerate(questions)}
    fused = fused[fused["question_id"].isin(order)]
    fused = fused.sort_values(["question_id", "rank"], key=lambda c: c.map(order) if c.name == "question_id" else c)
    write_parquet(out_parquet, fused.reset_index(drop=True))
    return f"top {k_max} chunks fused from {' + '.join(parts)} (RRF, k={rrf_k}) for {len(questions)} questions"
