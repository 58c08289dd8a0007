"""The grid's cells as the tables' columns: which methods are fine-tuned and retrieve, and each cell's column name
(Base, RAG, FT-par{p}+RAG, another retriever's RAG (bm25), the oracle's), from the method and retriever
registries (kinject.training.methods, kinject.evaluation.retrievers)."""

from __future__ import annotations

import pandas as pd

from kinject.evaluation.retrievers import RAG_RETRIEVER, RETRIEVERS, cell_retriever
from kinject.training.methods import METHODS, by_prefix

# the fine-tuned cells' methods (each fine-tuning method's prefix: kinject.training.methods), their FT+RAG
# methods and their columns' names
FINETUNED = {m.prefix: f"{m.prefix}rag" for m in METHODS.values()}
NAMES = {m.prefix: m.label for m in METHODS.values()}
RETRIEVAL = ("rag", *FINETUNED.values())  # the paper's retrieval cells (dense); another retriever's: retrieval()


def retrieval_of(methods: pd.Series) -> pd.Series:
    """Which cells' methods retrieve (RAG, FT+RAG of every retriever: rag, ftrag, rag-bm25, ftrag-oracle): the ones
    whose K is chosen (kinject.evaluation.retrievers.cell_retriever splits off the retriever)."""
    return methods.map(lambda m: cell_retriever(m)[0] in RETRIEVAL).astype(bool)


def column_label(method: str, p) -> str:
    """A cell's table column: Base, RAG, FT, FT-par{p}, FT+RAG, FT-par{p}+RAG, each other method's as FT's, a
    control's FT-steps{p} (kinject.training.methods.Method.column); another retriever's RAG (bm25), FT+RAG (bm25),
    and the oracle's (the source chunk as the context) Oracle, FT+Oracle."""
    stem, retriever = cell_retriever(method)
    if retriever != RAG_RETRIEVER:
        plain = column_label(stem, p)
        if RETRIEVERS[retriever].oracle:
            return plain.removesuffix("RAG") + "Oracle"
        return plain + RETRIEVERS[retriever].label
    if method in ("base", "rag"):
        return {"base": "Base", "rag": "RAG"}[method]
    tuned = method.removesuffix("rag")
    name = by_prefix(tuned).column(p)
    return name if method == tuned else f"{name}+RAG"


def with_k0(retrieval: pd.DataFrame, records: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The retrieval records with K = 0 among each setting's candidates, as the paper's K ranges 0..5: no
    retrieval, RAG's K = 0 being the Base cell and FT+RAG's the FT cell of the same model (its records relabelled),
    for every retrieval setting that has records at K > 0 (none is made for a model without FT+RAG cells); so for
    every other retriever's (rag-bm25, ftrag-bm25), but the oracle's (its K = 1 is the source as the context)."""
    sources = {}  # every retrieval method's K = 0 cell: rag's, rag-bm25's the Base; ftrag's, ftrag-bm25's the FT
    for method in retrieval["method"].unique():
        stem, retriever = cell_retriever(method)
        if not RETRIEVERS[retriever].oracle:  # the oracle's context is the source itself: its K = 1 as scored
            sources[method] = "base" if stem == "rag" else stem.removesuffix("rag")
    anchors = pd.concat([records.iloc[:0]] + [records[records["method"] == source].assign(method=method)
                                              for method, source in sources.items()], ignore_index=True)
    anchors = anchors[anchors["k"] == 0].merge(retrieval[keys].drop_duplicates(), on=keys)  # NA keys match NA
    return pd.concat([anchors, retrieval], ignore_index=True) if len(anchors) else retrieval
