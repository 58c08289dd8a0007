"""Retrieval with the real all-MiniLM-L6-v2 (shipped in a PyPI package) and FAISS."""

import faiss
import numpy as np
import pandas as pd
import pytest

from kinject.errors import KinjectError
from kinject.evaluation.retrieval import build_index, embed, extract_embedder, load_embedder, retrieve

pytestmark = pytest.mark.usefixtures("hf_offline")

TEXTS = [
    "The Amazon rainforest is the largest tropical rainforest, home to jaguars, sloths and river dolphins.",
    "Bread is made by mixing flour, water, salt and yeast, letting the dough rise, then baking it in an oven.",
    "The violin is a string instrument played with a bow; Stradivari built the most famous violins.",
    "Jupiter is the largest planet in the solar system, a gas giant with a great red storm and many moons.",
    "The French Revolution began in 1789 with the storming of the Bastille and ended the monarchy.",
    "Football's World Cup is held every four years; Brazil has won the tournament five times.",
]


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    return load_embedder(extract_embedder(tmp_path_factory.mktemp("embedder") / "minilm"), device="cpu")


@pytest.fixture
def corpus(tmp_path):
    chunks = tmp_path / "chunks.parquet"
    pd.DataFrame({"chunk_id": [f"c{i}" for i in range(6)], "title": "t", "text": TEXTS,
                  "n_words": [len(t.split()) for t in TEXTS]}).to_parquet(chunks)
    questions = tmp_path / "questions.parquet"
    pd.DataFrame({"id": ["q-planet", "q-bread"],
                  "question": ["Which gas giant is the biggest planet orbiting the Sun?",
                               "What ingredients go into baking a loaf?"],
                  "choices": [["a", "b"], ["a", "b"]], "answer": [0, 0], "split": "test",
                  "chunk_id": ["c3", "c1"]}).to_parquet(questions)
    return chunks, questions


def test_embeddings_are_normalised_float32(embedder):
    vectors = embed(embedder, TEXTS[:2], query_prefix="query: ")
    assert vectors.dtype == np.float32 and vectors.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("exact_max, index_type", [(100_000, faiss.IndexFlatIP), (2, faiss.IndexHNSWFlat)])
def test_paraphrased_question_retrieves_its_chunk(embedder, corpus, tmp_path, exact_max, index_type):
    chunks, questions = corpus
    index = tmp_path / "faiss.index"
    build_index(chunks, embedder, index, exact_max=exact_max)
    assert isinstance(faiss.read_index(str(index)), index_type)
    out = tmp_path / "retrieved.parquet"
    retrieve(index, chunks, questions, embedder, out, k_max=3)
    hits = pd.read_parquet(out)
    assert list(hits.columns) == ["question_id", "rank", "chunk_id", "score"]
    assert hits.groupby("question_id").size().to_dict() == {"q-planet": 3, "q-bread": 3}
    top = hits[hits["rank"] == 0].set_index("question_id")["chunk_id"].to_dict()
    assert top == {"q-planet": "c3", "q-bread": "c1"}
    planet = hits[hits["question_id"] == "q-planet"]
    assert planet["rank"].tolist() == [0, 1, 2]
    assert planet["score"].is_monotonic_decreasing


def test_k_max_above_index_size_gives_every_chunk(embedder, corpus, tmp_path):
    chunks, questions = corpus
    index = tmp_path / "faiss.index"
    build_index(chunks, embedder, index)
    out = tmp_path / "retrieved.parquet"
    retrieve(index, chunks, questions, embedder, out, k_max=10)
    hits = pd.read_parquet(out)
    assert sorted(hits[hits["question_id"] == "q-bread"]["chunk_id"]) == [f"c{i}" for i in range(6)]


def test_bad_chunks_name_the_file(embedder, tmp_path):
    empty = tmp_path / "empty.parquet"
    pd.DataFrame({"chunk_id": pd.Series([], dtype=str), "title": pd.Series([], dtype=str),
                  "text": pd.Series([], dtype=str), "n_words": pd.Series([], dtype=int)}).to_parquet(empty)
    with pytest.raises(KinjectError, match="empty.parquet: has no rows"):
        build_index(empty, embedder, tmp_path / "faiss.index")
    no_text = tmp_path / "no_text.parquet"
    pd.DataFrame({"chunk_id": ["c0"], "title": ["t"]}).to_parquet(no_text)
    with pytest.raises(KinjectError, match="no_text.parquet: missing column.*text"):
        build_index(no_text, embedder, tmp_path / "faiss.index")
    assert not (tmp_path / "faiss.index").exists()


def test_index_of_other_chunks_is_refused(embedder, corpus, tmp_path):
    chunks, questions = corpus
    index = tmp_path / "faiss.index"
    build_index(chunks, embedder, index)
    fewer = tmp_path / "fewer.parquet"
    pd.read_parquet(chunks).head(4).to_parquet(fewer)
    with pytest.raises(KinjectError, match="faiss.index: has 6 vectors but .*fewer.parquet has 4"):
        retrieve(index, fewer, questions, embedder, tmp_path / "out.parquet", k_max=2)


def test_the_rules_scripts_run_the_retriever_their_index_file_names(tmp_path, monkeypatch):
    """scripts/index_chunks.py and retrieve.py call kinject.evaluation.retrievers' build_index / retrieve, which run
    the registered entry whose index file the rule's path names; an unregistered file name is one line."""
    from kinject.evaluation import retrievers

    calls = []
    fake = retrievers.Retriever("fake", index="fake.idx", build=lambda *a, **kw: calls.append(("build", a, kw)) or "b",
                                search=lambda *a, **kw: calls.append(("search", a, kw)) or "s")
    monkeypatch.setitem(retrievers.RETRIEVERS, "fake", fake)
    index = tmp_path / "index" / "fake.idx"
    assert retrievers.build_index("chunks.parquet", "emb", index, batch_size=4) == "b"
    assert retrievers.retrieve(index, "chunks.parquet", "questions.parquet", "emb", "out.parquet", k_max=2) == "s"
    assert calls == [("build", ("chunks.parquet", "emb", index), {"batch_size": 4}),
                     ("search", (index, "chunks.parquet", "questions.parquet", "emb", "out.parquet"), {"k_max": 2})]
    assert retrievers.index_retriever(tmp_path / "faiss.index") is retrievers.RETRIEVERS["dense"]
    with pytest.raises(KinjectError, match=r"other\.bin: no registered retriever's index file \(registered: dense: "
                                           r"faiss\.index, bm25: bm25, fake: fake\.idx\)"):
        retrievers.build_index("chunks.parquet", "emb", tmp_path / "other.bin")
