"""The bm25 and hybrid retrievers (kinject.evaluation.lexical, fusion) and the retrieval diagnostics
(kinject.reporting.retrieval): hand-worked cases and the libraries' own answers."""

import json
from pathlib import Path

import bm25s
import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.proportion import proportion_confint

from kinject.errors import KinjectError
from kinject.evaluation import lexical, retrievers
from kinject.evaluation.fusion import fuse, rrf
from kinject.reporting.retrieval import recall_rows, source_ranks, split_row, write_retrieval_tables

TEXTS = [
    "The Amazon rainforest is home to jaguars, sloths and river dolphins.",
    "Bread is made by mixing flour, water, salt and yeast, then baking the dough.",
    "The violin is a string instrument; Stradivari built the most famous violins.",
    "Jupiter is the largest planet in the solar system, a gas giant with many moons.",
]


@pytest.fixture
def corpus(tmp_path):
    chunks = tmp_path / "chunks.parquet"
    pd.DataFrame({"chunk_id": [f"c{i}" for i in range(4)], "text": TEXTS}).to_parquet(chunks)
    questions = tmp_path / "questions.parquet"
    pd.DataFrame({"id": ["q-planet", "q-bread", "q-mmlu"],
                  "question": ["Which gas giant is the largest planet?", "What goes into bread dough besides flour?",
                               "Who built famous violins?"],
                  "choices": [["a", "b"]] * 3, "answer": [0, 0, 0], "split": "test",
                  "chunk_id": ["c3", "c1", None]}).to_parquet(questions)
    return chunks, questions


def test_bm25_ranks_as_bm25s_does_and_puts_the_matching_chunk_first(tmp_path, corpus):
    chunks, questions = corpus
    index, out = tmp_path / "bm25", tmp_path / "retrieved.parquet"
    retrievers.build_index(chunks, None, index, k1=1.2, b=0.75, method="lucene", lower=True, stopwords="english")
    assert retrievers.index_retriever(index) is retrievers.RETRIEVERS["bm25"]
    retrievers.retrieve(index, chunks, questions, None, out, k_max=2)
    hits = pd.read_parquet(out)
    assert list(hits.columns) == ["question_id", "rank", "chunk_id", "score"] and len(hits) == 6
    top = hits[hits["rank"] == 0].set_index("question_id")["chunk_id"]
    assert top.to_dict() == {"q-planet": "c3", "q-bread": "c1", "q-mmlu": "c2"}
    # the same scores as bm25s indexing and querying directly with those settings
    model = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
    model.index(bm25s.tokenize(TEXTS, stopwords="en", show_progress=False), show_progress=False)
    _, scores = model.retrieve(bm25s.tokenize(["Which gas giant is the largest planet?"], stopwords="en",
                                              return_ids=False, show_progress=False), k=2, show_progress=False)
    np.testing.assert_allclose(hits[hits["question_id"] == "q-planet"]["score"], scores[0], rtol=1e-6)


def test_bm25_index_of_other_chunks_is_one_line(tmp_path, corpus):
    chunks, questions = corpus
    index = tmp_path / "bm25"
    lexical.build_index(chunks, None, index)
    fewer = tmp_path / "fewer.parquet"
    pd.read_parquet(chunks).head(3).to_parquet(fewer)
    with pytest.raises(KinjectError, match=r"indexes 4 chunks but .*fewer.parquet has 3; rebuild the index"):
        lexical.retrieve(index, fewer, questions, None, tmp_path / "out.parquet", k_max=2)
    with pytest.raises(KinjectError, match="not a BM25 index folder"):
        lexical.retrieve(tmp_path, chunks, questions, None, tmp_path / "out.parquet", k_max=2)
    assert not (tmp_path / "out.parquet").exists()


def test_rrf_by_hand():
    dense = pd.DataFrame({"question_id": "q", "rank": [0, 1, 2], "chunk_id": ["a", "b", "c"]})
    bm25 = pd.DataFrame({"question_id": "q", "rank": [0, 1, 2], "chunk_id": ["c", "d", "a"]})
    fused = rrf([dense, bm25], k_max=3, rrf_k=60)
    # a: 1/61 + 1/63, c: 1/63 + 1/61 (a tie: both best at rank 0, then by id), b: 1/62, d: 1/62 (tie: b first)
    assert fused["chunk_id"].tolist() == ["a", "c", "b"]
    assert fused["rank"].tolist() == [0, 1, 2]
    assert fused["score"].iloc[0] == pytest.approx(1 / 61 + 1 / 63)
    assert fused["score"].iloc[2] == pytest.approx(1 / 62)


def test_fuse_needs_every_question_in_every_part(tmp_path, corpus):
    _, questions = corpus
    part = tmp_path / "dense.parquet"
    pd.DataFrame({"question_id": ["q-planet", "q-bread"], "rank": 0, "chunk_id": ["c3", "c1"], "score": 1.0}
                 ).to_parquet(part)
    with pytest.raises(KinjectError, match=r"dense.parquet: has no dense hits for question 'q-mmlu'"):
        fuse({"dense": part, "bm25": part}, questions, tmp_path / "out.parquet", k_max=2)
    with pytest.raises(KinjectError, match="fusion needs two retrieved lists or more"):
        fuse({"dense": part}, questions, tmp_path / "out.parquet", k_max=2)


def questions_frame():
    return pd.DataFrame({"id": ["q1", "q2", "q3", "q4", "m1"], "chunk_id": ["c1", "c2", "c3", "c3", None]})


def retrieved_frame():
    rows = {"q1": ["c1", "c9"], "q2": ["c9", "c2"], "q3": ["c8", "c9"], "q4": ["c3", "c8"], "m1": ["c1", "c2"]}
    return pd.DataFrame([{"question_id": q, "rank": r, "chunk_id": c} for q, cs in rows.items()
                         for r, c in enumerate(cs)])


def test_source_rank_is_the_source_chunks_1_based_rank_and_sourceless_questions_are_left_out():
    ranks = source_ranks(questions_frame(), retrieved_frame())
    assert ranks["question_id"].tolist() == ["q1", "q2", "q3", "q4"]
    assert ranks["source_rank"].tolist() == [1, 2, pd.NA, 1]
    assert ranks["depth"].tolist() == [2, 2, 2, 2]
    with pytest.raises(KinjectError, match=r"ret.parquet: has no retrieved chunks for question 'q4'"):
        source_ranks(questions_frame(), retrieved_frame().query("question_id != 'q4'"), "ret.parquet")


def test_recall_at_k_with_its_clustered_interval():
    ranks = source_ranks(questions_frame(), retrieved_frame())
    singletons = pd.Series({q: f"question:{q}" for q in ranks["question_id"]})
    rows = recall_rows(ranks, singletons, [1, 2], n_without_source=1)
    assert [(r["k"], r["n_found"], r["n_questions"], r["n_without_source"]) for r in rows] == [(1, 2, 4, 1), (2, 3, 4, 1)]
    # one question per cluster: exactly Wilson on the 4 questions (statsmodels)
    assert (rows[1]["ci_low"], rows[1]["ci_high"]) == pytest.approx(proportion_confint(3, 4, method="wilson"))
    # q3 and q4 share source c3: one cluster, the interval is never narrower than Wilson
    shared = pd.Series({"q1": "chunk:c1", "q2": "chunk:c2", "q3": "chunk:c3", "q4": "chunk:c3"})
    clustered = recall_rows(ranks, shared, [1], n_without_source=1)[0]
    assert clustered["n_clusters"] == 3
    assert clustered["ci_high"] - clustered["ci_low"] >= rows[0]["ci_high"] - rows[0]["ci_low"] - 1e-12


def test_split_of_a_rag_cell_into_retrieval_misses_and_reading_errors():
    ranks = source_ranks(questions_frame(), retrieved_frame())
    records = pd.DataFrame({"question_id": ["q1", "q2", "q3", "q4", "m1"], "correct": [True, False, False, True, True]})
    # K=1: retrieved q1 (right), q4 (right); missed q2 (wrong), q3 (wrong)
    row = split_row(records, ranks, 1)
    assert {k: row[k] for k in ("retrieved_right", "retrieved_wrong", "missed_right", "missed_wrong")} == \
        {"retrieved_right": 2, "retrieved_wrong": 0, "missed_right": 0, "missed_wrong": 2}
    assert row["miss_share_of_errors"] == 1.0 and row["n_questions"] == 4
    # K=2: q2 retrieved too, and wrong: a reading error
    row = split_row(records, ranks, 2)
    assert (row["retrieved_wrong"], row["missed_wrong"], row["miss_share_of_errors"]) == (1, 1, 0.5)
    assert row["accuracy_retrieved"] == pytest.approx(2 / 3) and row["accuracy_missed"] == 0.0
    with pytest.raises(KinjectError, match=r"cell.parquet: has no record of question 'q3'"):
        split_row(records[records["question_id"] != "q3"], ranks, 1, "cell.parquet")


def test_retrieval_tables_from_files(tmp_path):
    questions = tmp_path / "t" / "questions.parquet"
    questions.parent.mkdir()
    qs = questions_frame().assign(question="?", choices=[["a", "b"]] * 5, answer=0, split="test")
    dev = qs.tail(1).assign(id="d1", split="dev")  # a few-shot example (an MMLU task's dev split): not reported
    pd.concat([qs, dev], ignore_index=True).to_parquet(questions)
    clusters = tmp_path / "t" / "question_clusters.parquet"
    pd.DataFrame({"question_id": qs["id"], "cluster": ["chunk:c1", "chunk:c2", "chunk:c3", "chunk:c3", "question:m1"]}
                 ).to_parquet(clusters)
    dense = tmp_path / "dense.parquet"
    retrieved_frame().assign(score=1.0).to_parquet(dense)
    score = tmp_path / "scores" / "m" / "t" / "rag_k1_0shot_options.json"
    score.parent.mkdir(parents=True)
    score.write_text('{"accuracy": 0.6}')
    pd.DataFrame({"question_id": ["q1", "q2", "q3", "q4", "m1"], "correct": [True, False, False, True, True]}
                 ).to_parquet(score.with_suffix(".parquet"))
    out = {k: tmp_path / name for k, name in [("ranks", "r.parquet"), ("recall_csv", "r.csv"), ("recall_md", "r.md"),
                                              ("split_csv", "s.csv"), ("split_md", "s.md")]}
    # an FT+RAG cell under the run's seed and under an extra training seed (kinject.training.seeds: tagged _s7)
    seeded = []
    for name, right in (("ftrag-p0_k1_0shot_options", [True] * 5), ("ftrag-p0_s7_k1_0shot_options", [False] * 5)):
        seeded.append(score.with_name(name + ".json"))
        seeded[-1].write_text(json.dumps({"accuracy": sum(right) / 5}))
        pd.DataFrame({"question_id": ["q1", "q2", "q3", "q4", "m1"], "correct": right}).to_parquet(
            seeded[-1].with_suffix(".parquet"))
    write_retrieval_tables({"t": questions}, {("t", "dense"): dense}, {"t": clusters}, [score, *seeded], [1, 2], out)
    recall = pd.read_csv(out["recall_csv"])
    assert recall[["retriever", "k", "n_found", "n_questions", "n_without_source", "n_clusters"]].values.tolist() == \
        [["dense", 1, 2, 4, 1, 3], ["dense", 2, 3, 4, 1, 3]]
    split = pd.read_csv(out["split_csv"])
    rows = split[["method", "seed", "k", "retrieved_right", "missed_wrong"]].astype(object).where(split.notna(), None)
    assert rows.values.tolist() == [["ftrag", None, 1, 2, 0], ["ftrag", 7, 1, 0, 2], ["rag", None, 1, 2, 2]]
    assert "| t | dense | 1 | 0.500 [" in out["recall_md"].read_text()


NEW = ("_bm25", "_hybrid", "_rerank", "_oracle")  # the other retrievers' rules: index_chunks_bm25, evaluate_ftrag_oracle
REPORTING = {"tables", "figures", "retrieval_tables", "manifest", "all"}  # the rules that read every cell


@pytest.mark.slow
def test_other_retrievers_and_the_oracle_run_beside_dense_with_no_rerun(demo_copy, cross_encoder):
    """The tiny demo finished with dense retrieval; listing bm25, hybrid, rerank (hybrid's top 20 re-scored by the
    tiny cross-encoder, a local folder) and the oracle too adds their own jobs and re-runs nothing else but the
    reporting. A few of their cells (current_events: the base model's and one FT+RAG model's) then run through
    Snakemake, and the tables and diagnostics read them beside dense's."""
    import yaml
    from conftest import TINY_DEMO, run_snakemake

    from kinject.grid import dry_run_jobs
    from kinject.reporting.comparisons import comparisons
    from kinject.reporting.records import read_results
    from kinject.reporting.report import group_table, reported

    config_file = demo_copy / TINY_DEMO
    config = yaml.safe_load(config_file.read_text())
    config["retrieval"]["retrievers"] = ["dense", "bm25", "hybrid", "rerank", "oracle"]
    config["retrieval"]["rerank"] = {"model": str(cross_encoder), "base": "hybrid"}
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    dry = run_snakemake(demo_copy, "all", "-n", "--cores", "2", "--configfile", TINY_DEMO)
    assert dry.returncode == 0, dry.stderr[-3000:]
    jobs = dry_run_jobs(dry.stdout + dry.stderr)
    assert jobs and all(rule.endswith(NEW) or rule in REPORTING for rule in jobs), jobs
    assert jobs["retrieve_oracle"] == 1 and jobs["index_chunks_bm25"] == jobs["retrieve_rerank"] == 2  # the oracle:
    assert "download_reranker" not in jobs  # current_events only; a local cross-encoder folder: no download

    scores = "results/scores/tiny-llama/current_events"
    targets = [f"{scores}/{m}_k1_0shot_options.json"
               for m in ("rag-bm25", "rag-hybrid", "rag-rerank", "rag-oracle", "ftrag-oracle-p10")]
    proc = run_snakemake(demo_copy, *targets, "--cores", "2", "--configfile", TINY_DEMO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    task = demo_copy / "results" / "current_events"
    retrieved = {name: pd.read_parquet(task / "retrieval" / f"{name}" / "retrieved.parquet")
                 for name in ("bm25", "hybrid", "rerank")}
    dense = pd.read_parquet(task / "retrieval" / "retrieved.parquet")
    # hybrid: the RRF of dense's and bm25's lists, as kinject.evaluation.fusion computes it by hand
    expected = rrf([dense, retrieved["bm25"]], k_max=3, rrf_k=60)
    pd.testing.assert_frame_equal(retrieved["hybrid"].sort_values(["question_id", "rank"]).reset_index(drop=True),
                                  expected.sort_values(["question_id", "rank"]).reset_index(drop=True),
                                  check_dtype=False)
    # rerank: 3 chunks per question, best first by the cross-encoder's score
    reranked = retrieved["rerank"].sort_values(["question_id", "rank"])
    assert (reranked.groupby("question_id").size() == 3).all()
    assert (reranked.groupby("question_id")["score"].diff().dropna() <= 0).all()
    # the oracle's lm-eval task: each question's context is its own source chunk's text
    questions = pd.read_parquet(task / "questions.parquet")
    chunks = pd.read_parquet(task / "chunks.parquet").set_index("chunk_id")["text"]
    docs = pd.read_json(task / "lmeval" / "options" / "oracle" / "k1" / "test.jsonl", lines=True)
    source = questions.set_index("id")["chunk_id"]
    assert (docs["context"] == docs["id"].astype(str).map(source).map(chunks)).all()

    cells = sorted((demo_copy / scores).glob("*_0shot_options.json"))
    new = [c for c in cells if any(f"-{r}" in c.name for r in ("bm25", "hybrid", "rerank", "oracle"))]
    assert len(new) == 3 + 3 + 3 + 1 + 1  # bm25, hybrid, rerank: K 1..3 from one job each; the oracle's K = 1
    _, records = read_results(cells, {"current_events": "current_events"})
    rows, choices = reported(records, seed=0)
    table = group_table(rows.assign(group="current_events"), choices.assign(group="current_events"), "current_events", 0)
    for column in ("RAG (bm25)", "RAG (hybrid)", "RAG (rerank)", "Oracle", "FT-par10+Oracle", "RAG (bm25) K"):
        assert column in table.columns, column
    contrasts = set(comparisons(rows, seed=0)["contrast"])
    assert {"RAG vs Oracle", "RAG (bm25) vs RAG", "RAG (hybrid) vs Oracle", "FT-par10+RAG vs FT-par10+Oracle"} <= contrasts

    out = {k: demo_copy / name for k, name in [("ranks", "r.parquet"), ("recall_csv", "r.csv"), ("recall_md", "r.md"),
                                               ("split_csv", "s.csv"), ("split_md", "s.md")]}
    write_retrieval_tables({"current_events": task / "questions.parquet"},
                           {("current_events", "dense"): task / "retrieval" / "retrieved.parquet",
                            **{("current_events", n): task / "retrieval" / n / "retrieved.parquet" for n in retrieved}},
                           {"current_events": task / "question_clusters.parquet"},
                           [c for c in cells if "_k0_" not in c.name], [1, 2, 3], out)
    recall = pd.read_csv(out["recall_csv"]).set_index(["retriever", "k"])
    for name, hits in {"dense": dense, **retrieved}.items():
        found = hits.merge(questions[["id", "chunk_id"]], left_on=["question_id", "chunk_id"], right_on=["id", "chunk_id"])
        for k in (1, 2, 3):  # recall@K: the questions whose source is within the list's first K
            assert recall.loc[(name, k), "n_found"] == (found["rank"] < k).sum(), (name, k)
            assert recall.loc[(name, k), "n_questions"] == questions["chunk_id"].notna().sum()
    split = pd.read_csv(out["split_csv"])
    assert set(split["retriever"]) == {"dense", "bm25", "hybrid", "rerank"}  # the oracle's context is its source
    assert (split[["retrieved_right", "retrieved_wrong", "missed_right", "missed_wrong"]].sum(axis=1)
            == split["n_questions"]).all()


@pytest.fixture(scope="module")
def cross_encoder(tmp_path_factory):
    """A tiny BERT cross-encoder (one label) with its own word-piece vocabulary, built here: no cross-encoder
    ships offline. Its weights are random (a wide init, so the pairs' scores differ): the mechanics, not a ranking."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    folder = tmp_path_factory.mktemp("cross_encoder")
    words = sorted({w.strip(".,;?").lower() for t in TEXTS for w in t.split()} | {"which", "what", "who", "goes"})
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=5 + len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=512, num_labels=1, initializer_range=1.0)
    BertForSequenceClassification(config).save_pretrained(folder)
    BertTokenizer(str(folder / "vocab.txt"), model_max_length=512).save_pretrained(folder)
    return folder


def test_rerank_orders_the_base_lists_by_the_cross_encoders_scores(tmp_path, corpus, cross_encoder):
    from sentence_transformers import CrossEncoder

    from kinject.evaluation.rerank import rerank

    chunks, questions = corpus
    lexical.build_index(chunks, None, tmp_path / "bm25")
    out = tmp_path / "reranked.parquet"
    rerank("bm25", {"bm25": tmp_path / "bm25"}, chunks, questions, None, cross_encoder, out, k_max=2, top_n=4)
    got = pd.read_parquet(out)
    assert got.groupby("question_id").size().tolist() == [2, 2, 2]
    # the top 2 of all 4 chunks by the cross-encoder's own score of (question, chunk)
    model = CrossEncoder(str(cross_encoder))
    qs = pd.read_parquet(questions).set_index("id")["question"]
    for qid, hits in got.groupby("question_id"):
        scores = model.predict([(qs[qid], t) for t in TEXTS], show_progress_bar=False)
        assert hits.sort_values("rank")["chunk_id"].tolist() == [f"c{i}" for i in np.argsort(-scores)[:2]]
        np.testing.assert_allclose(hits.sort_values("rank")["score"], np.sort(scores)[::-1][:2], rtol=1e-5)


def test_rerank_bad_input_is_one_line(tmp_path, corpus, cross_encoder):
    import shutil

    from kinject.evaluation.rerank import rerank

    chunks, questions = corpus
    lexical.build_index(chunks, None, tmp_path / "bm25")
    args = ("bm25", {"bm25": tmp_path / "bm25"}, chunks, questions, None)
    with pytest.raises(KinjectError, match=r"empty: retrieval.rerank.model: no cross-encoder here \(config.json missing\)"):
        rerank(*args, tmp_path / "empty", tmp_path / "out.parquet", k_max=2, top_n=4)
    shutil.copytree(cross_encoder, tmp_path / "no_weights", ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(KinjectError, match=r"retrieval.rerank.model: no weights"):
        rerank(*args, tmp_path / "no_weights", tmp_path / "out.parquet", k_max=2, top_n=4)
    with pytest.raises(KinjectError, match=r"retrieval.rerank.top_n \(1\) is below max\(retrieval.k\) \(2\)"):
        rerank(*args, cross_encoder, tmp_path / "out.parquet", k_max=2, top_n=1)
    assert not (tmp_path / "out.parquet").exists()


@pytest.mark.parametrize("listed, rerank, message", [
    (["dense", "rerank"], {}, r"retrieval.rerank.model: required where rerank is listed"),
    (["dense", "rerank"], {"model": "m/x", "base": "bm25"}, r"retrieval.rerank.base: bm25 is not listed"),
    (["dense", "oracle", "rerank"], {"model": "m/x", "base": "oracle"}, r"retrieval.rerank.base: oracle has no ranked"),
])
def test_rerank_config_is_checked_in_one_line(listed, rerank, message):
    config = {"retrieval": {"retrievers": listed, "rerank": rerank}}
    with pytest.raises(KinjectError, match=message) as err:
        retrievers.run_retrievers(config, "my.yaml")
    assert str(err.value).startswith("my.yaml: ") and "\n" not in str(err.value)


def test_a_hub_reranker_is_a_hub_artifact_the_lock_pins():
    from kinject.provenance.hub import hub_artifacts

    config = {"models": {}, "embedder": {"name": "e", "package": "p"}, "tasks": {}, "evaluation": {},
              "retrieval": {"retrievers": ["dense", "rerank"], "rerank": {"model": "org/ce", "revision": "v1"}}}
    assert hub_artifacts(config) == {"results/hub/reranker/org--ce": {
        "key": "retrieval.rerank.model", "repo": "org/ce", "repo_type": "model", "revision": "v1",
        "allow_patterns": None}}
    config["retrieval"]["retrievers"] = ["dense"]
    assert hub_artifacts(config) == {}


def test_other_retrievers_cells_are_named_labelled_and_compared():
    from kinject.grid import cells
    from kinject.reporting.columns import column_label
    from kinject.reporting.comparisons import contrasts
    from kinject.settings import load_config

    assert retrievers.rag_cell("rag", "dense") == "rag" and retrievers.rag_cell("ftrag-p1", "dense") == "ftrag-p1"
    assert retrievers.rag_cell("ftrag-p10", "bm25") == "ftrag-bm25-p10" and retrievers.rag_cell("rag", "oracle") == "rag-oracle"
    assert retrievers.cell_retriever("lorarag-hybrid") == ("lorarag", "hybrid")
    assert retrievers.cell_retriever("ftrag") == ("ftrag", "dense")
    labels = {m: column_label(m, p) for m, p in [("rag-bm25", None), ("ftrag-hybrid", 10), ("rag-oracle", None),
                                                 ("ftrag-oracle", 0), ("lorarag-rerank", 2)]}
    assert labels == {"rag-bm25": "RAG (bm25)", "ftrag-hybrid": "FT-par10+RAG (hybrid)", "rag-oracle": "Oracle",
                      "ftrag-oracle": "FT+Oracle", "lorarag-rerank": "LoRA-par2+RAG (rerank)"}
    pairs = contrasts(["Base", "RAG", "FT", "FT+RAG", "RAG (bm25)", "FT+RAG (bm25)", "Oracle", "FT+Oracle"])
    assert {("RAG (bm25)", "RAG"), ("RAG (bm25)", "Base"), ("FT+RAG (bm25)", "FT+RAG"), ("RAG", "Oracle"),
            ("RAG (bm25)", "Oracle"), ("Oracle", "Base"), ("FT+RAG", "FT+Oracle")} <= set(pairs)
    # the demo's grid with every retriever but rerank: bm25's and hybrid's cells at each K on every task, the
    # oracle's at K = 1 on current_events only (its questions name their source chunk; atlas's are MMLU)
    root = Path(__file__).resolve().parents[1]
    config = load_config(root / "config" / "demo.yaml")
    config["retrieval"]["retrievers"] = ["dense", "bm25", "hybrid", "oracle"]
    by_method = {}
    for cell in cells(config):
        by_method.setdefault((cell.task, cell.method), []).append(cell.k)
    assert by_method[("atlas", "rag-bm25")] == by_method[("atlas", "rag")] == [1, 2]
    assert by_method[("current_events", "ftrag-hybrid-p4")] == [1, 2]
    assert by_method[("current_events", "rag-oracle")] == [1]
    assert by_method[("current_events", "ftrag-oracle-p4")] == [1]
    assert not [m for t, m in by_method if t == "atlas" and "oracle" in m]
