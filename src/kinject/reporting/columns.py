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
