"""Retrievers as data: a retriever is one ``Retriever`` entry naming its index file (under
``results/{task}/index/``). ``retrieval.retrievers`` names the ones a run uses; the config checks
(kinject.grid) and the retrieval rules (rules/retrieval.smk) read the entry.

Today one is registered: ``dense`` (the paper's: sentence-transformers embeddings in a FAISS index,
kinject.evaluation.retrieval, whose ``build_index`` and ``retrieve`` its rules call). A run uses one
retriever: its cells (RAG, FT+RAG) carry no retriever name yet, so two retrievers would write the same cells.
"""

from __future__ import annotations

from dataclasses import dataclass

from kinject.errors import KinjectError
from kinject.registry import Registry


@dataclass(frozen=True)
class Retriever:
    name: str  # its value in retrieval.retrievers
    index: str  # its index file under results/{task}/index/ (rule index_chunks writes it, rule retrieve reads it)


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


# The registered retrievers ------------------------------------------------------------------------------------

register(Retriever("dense", index="faiss.index"))
