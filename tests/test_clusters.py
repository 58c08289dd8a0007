"""Each question's cluster (kinject.reporting.clusters: its source chunk, its table's group, or itself) and the
tables computed over clusters: intervals widened by the design effect, the K halves keeping a cluster
together, the clustered McNemar in the comparisons."""

import json

import pandas as pd
import pytest

from kinject.errors import KinjectError
from kinject.knowledge.corpus import table_question_groups
from kinject.paths import clusters_path
from kinject.qa.question_file import write_questions
from kinject.qa.sources import question_source
from kinject.reporting.clusters import question_clusters, read_clusters
from kinject.reporting.report import write_tables
from kinject.reporting.stats import halves, setting_seed, wilson

N = 20
SEED = 1234


def _questions(path, chunk_ids, ids=None):
    ids = ids or [f"q{i:02d}" for i in range(len(chunk_ids))]
    write_questions(path, pd.DataFrame({"id": ids, "question": "Q?", "choices": [["x", "y"]] * len(ids),
                                        "answer": 0, "split": "test", "chunk_id": chunk_ids}))
    return path


def test_generated_questions_cluster_by_chunk_and_mmlu_questions_stand_alone(tmp_path):
    generated = _questions(tmp_path / "gen.parquet", ["c1", "c1", "c2", "c2", "c3"])
    assert question_clusters(generated, tmp_path / "gen_clusters.parquet") == "5 questions in 3 clusters (source chunks)"
    assert read_clusters(tmp_path / "gen_clusters.parquet").to_dict() == {
        "q00": "chunk:c1", "q01": "chunk:c1", "q02": "chunk:c2", "q03": "chunk:c2", "q04": "chunk:c3"}
    mmlu = _questions(tmp_path / "mmlu.parquet", [None, None, None])
    assert question_clusters(mmlu, tmp_path / "mmlu_clusters.parquet") == "3 questions in 3 clusters (one question each)"
    assert read_clusters(tmp_path / "mmlu_clusters.parquet").tolist() == ["question:q00", "question:q01", "question:q02"]


def test_table_questions_cluster_by_their_group_column(tmp_path):
    table = tmp_path / "quiz.csv"
    table.write_text("id,question,A,B,answer,passage\na,Q?,x,y,0,p1\nb,R?,x,y,1,p1\n,S?,x,y,0,p2\n")
    assert table_question_groups(table, "passage").to_dict() == {"a": "p1", "b": "p1", "quiz-2": "p2"}
    questions = _questions(tmp_path / "questions.parquet", [None] * 3, ids=["a", "b", "quiz-2"])
    out = tmp_path / "clusters.parquet"
    assert question_clusters(questions, out, table, "passage") == "3 questions in 2 clusters (column 'passage')"
    assert read_clusters(out).to_dict() == {"a": "group:p1", "b": "group:p1", "quiz-2": "group:p2"}


@pytest.mark.parametrize("body, problem", [
    ("question,A,B,answer\nQ?,x,y,0\n", r"quiz\.csv: no column 'passage' \(questions\.group_column; the columns "
                                        r"are question, A, B, answer\)"),
    ("question,A,B,answer,passage\nQ?,x,y,0,p1\nR?,x,y,1,\n", r"quiz\.csv: row 1: the group column 'passage' is empty"),
])
def test_a_group_column_missing_or_empty_is_one_line_naming_the_file_and_row(tmp_path, body, problem):
    table = tmp_path / "quiz.csv"
    table.write_text(body)
    questions = _questions(tmp_path / "questions.parquet", [None, None][: body.count("\n") - 1])
    with pytest.raises(KinjectError, match=problem):
        question_clusters(questions, tmp_path / "clusters.parquet", table, "passage")
    assert not (tmp_path / "clusters.parquet").exists()


def test_group_column_is_only_for_table_questions():
    question_source({"source": "table", "path": "q.csv", "group_column": "passage"}, "tasks.t.questions")
    with pytest.raises(KinjectError, match=r"tasks\.t\.questions\.group_column: source mmlu has no group column"):
        question_source({"source": "mmlu", "subject": "anatomy", "group_column": "x"}, "tasks.t.questions")


def test_the_clusters_of_a_score_file_are_its_tasks():
    assert clusters_path("results/paper/scores/m/news/base_k0_0shot_options.json") == \
        "results/paper/news/question_clusters.parquet"


def _score(root, task, method, k, right):
    ids = [f"q{i:02d}" for i in range(N)]
    correct = [q in right for q in ids] if isinstance(right, list) else [i < right for i in range(N)]
    path = root / "scores" / "m" / task / f"{method}_k{k}_0shot_options.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"accuracy": sum(correct) / N}))
    pd.DataFrame({"question_id": ids, "correct": correct}).to_parquet(path.with_suffix(".parquet"))
    return path


def test_tables_count_clusters(tmp_path):
    """news: ten chunks of two questions (q00, q01 from chunk 0, ...). Its K halves are the clustered ones:
    RAG K=1 right exactly on clustered half A and K=2 on half B reports 0 (each half at the K the other chose);
    every cell has 10 clusters and a design effect, the comparisons use Durkalski's clustered McNemar."""
    ids = [f"q{i:02d}" for i in range(N)]
    chunks = [f"c{i // 2}" for i in range(N)]
    (tmp_path / "news").mkdir()
    pd.DataFrame({"question_id": ids, "cluster": chunks}).to_parquet(tmp_path / "news" / "question_clusters.parquet")
    half = halves(ids, setting_seed(SEED, "news"), chunks)
    paths = [_score(tmp_path, "news", "base", 0, [q for q in ids if int(q[1:]) // 2 < 3]),  # three whole chunks
             _score(tmp_path, "news", "ft-p0", 0, 7)]
    paths += [_score(tmp_path, "news", "rag", k, list(half[half == h].index)) for k, h in ((1, "A"), (2, "B"))]
    out = tmp_path / "tables"
    write_tables(paths, {"news": "current_events"}, out, out / "scores.csv", out / "best_k.csv", seed=SEED,
                 comparisons_csv=out / "comparisons.csv")
    scores = pd.read_csv(out / "scores.csv")
    assert (scores["n_clusters"] == 10).all() and (scores["n_questions"] == N).all()
    base = scores[scores["method"] == "base"].iloc[0]
    # answers alike within every chunk: each chunk counts as one question, so deff = 2 (n/(n-1) over G/(G-1))
    assert base["design_effect"] == pytest.approx(2 * (19 / 20) / (9 / 10))
    assert base["ci_high"] - base["ci_low"] > wilson(6, 20)[1] - wilson(6, 20)[0]
    cross = pd.read_csv(out / "best_k.csv").query("selection == 'cross-fit'")
    assert cross["accuracy"].tolist() == [0.0, 0.0] and cross["best_k"].tolist() == [1, 2]
    table = pd.read_csv(out / "current_events_0shot.csv").iloc[0]
    assert (table["n_questions"], table["n_clusters"], table["RAG"]) == (20, 10, 0.0)
    assert table["Base design_effect"] == pytest.approx(base["design_effect"], abs=1e-4)  # the CSV keeps 4 decimals
    assert "deff 2.11" in (out / "current_events_0shot.md").read_text()
    comparisons = pd.read_csv(out / "comparisons.csv")
    assert (comparisons["test"] == "Durkalski clustered McNemar").all() and (comparisons["n_clusters"] == 10).all()
    assert (comparisons["p_bh"] >= comparisons["p_clustered"] - 1e-12).all()
