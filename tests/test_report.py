import json

import pandas as pd
import pytest

from kinject.errors import KinjectError
from kinject.report import best_k, group_table, read_scores, write_figures, write_tables

TASKS = {"anat": "mmlu", "news": "current_events"}  # task -> its table group


def score(root, model, task, method, k, shots, acc, fmt="options"):
    path = root / "scores" / model / task / f"{method}_k{k}_{shots}shot_{fmt}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"accuracy": acc, "n_questions": 10}))
    return path


@pytest.fixture
def paths(tmp_path):
    p = [score(tmp_path, "m", "anat", "base", 0, 0, 0.30), score(tmp_path, "m", "anat", "ft-p0", 0, 0, 0.35)]
    p += [score(tmp_path, "m", "anat", "rag", k, 0, acc) for k, acc in [(1, 0.5), (2, 0.6), (3, 0.55)]]
    p += [score(tmp_path, "m", "anat", "ftrag-p0", k, 0, acc) for k, acc in [(1, 0.62), (2, 0.4), (3, 0.41)]]
    p += [score(tmp_path, "m", "news", "base", 0, 0, 0.25)]
    p += [score(tmp_path, "m", "news", f"ft-p{s}", 0, 0, 0.25 + 0.02 * s) for s in range(3)]
    p += [score(tmp_path, "m", "news", "rag", k, 0, 0.8 + k / 100) for k in (1, 2, 3)]
    p += [score(tmp_path, "m", "news", f"ftrag-p{s}", k, 0, 0.7 + k / 100) for s in (0, 2) for k in (1, 2, 3)]
    return p


def test_tables_have_paper_shape(paths):
    scores = read_scores(paths, TASKS)
    assert len(scores) == len(paths)
    mmlu = group_table(scores, "mmlu", 0)
    row = mmlu.iloc[0]
    assert list(mmlu.columns[:7]) == ["task", "format", "model", "Base", "FT", "RAG", "FT+RAG"]
    assert (row["Base"], row["FT"], row["RAG"], row["FT+RAG"]) == (0.30, 0.35, 0.6, 0.62)
    assert (row["RAG K"], row["FT+RAG K"]) == (2, 1)
    news = group_table(scores, "current_events", 0)
    assert {"FT", "FT-par2", "FT+RAG", "FT-par2+RAG"} <= set(news.columns)
    assert "FT-par1" not in news.columns  # only set 0 and the FT+RAG sets are tabulated; the sweep has its figure


def test_fine_tuning_on_the_original_chunks_is_always_a_column(paths):
    """The paper's Table 2: Base, RAG, FT-reg (set 0), FT-par, FT-par+RAG, also when only the paraphrase set
    has an FT+RAG model."""
    scores = read_scores(paths, TASKS)
    scores = scores[~((scores["method"] == "ftrag") & (scores["paraphrase_set"] == 0))]
    news = group_table(scores, "current_events", 0)
    assert [c for c in news.columns if not c.endswith(" K")][3:] == ["Base", "FT", "FT-par2", "RAG", "FT-par2+RAG"]
    assert news.iloc[0]["FT"] == 0.25 and news.iloc[0]["FT-par2"] == pytest.approx(0.29)


def test_each_scoring_format_is_its_own_row(paths, tmp_path):
    letters = [score(tmp_path, "m", "anat", "base", 0, 0, 0.45, "letters"), score(tmp_path, "m", "anat", "ft-p0", 0, 0, 0.4, "letters")]
    letters += [score(tmp_path, "m", "anat", m, 1, 0, acc, "letters") for m, acc in [("rag", 0.7), ("ftrag-p0", 0.66)]]
    table = group_table(read_scores(paths + letters, TASKS), "mmlu", 0).set_index(["task", "format"])
    assert table.loc[("anat", "letters"), ["Base", "FT", "RAG", "FT+RAG"]].tolist() == [0.45, 0.4, 0.7, 0.66]
    assert table.loc[("anat", "options"), ["Base", "RAG"]].tolist() == [0.30, 0.6]


def test_best_k(paths):
    bk = best_k(read_scores(paths, TASKS))
    rag = bk[(bk["task"] == "news") & (bk["method"] == "rag")].iloc[0]
    assert rag["best_k"] == 3 and rag["accuracy"] == pytest.approx(0.83)


def test_write_tables_and_figures(paths, tmp_path):
    out = tmp_path / "tables"
    write_tables(paths, TASKS, out, out / "scores.csv", out / "best_k.csv")
    assert {p.name for p in out.iterdir()} >= {"mmlu_0shot.csv", "mmlu_0shot.parquet", "mmlu_0shot.md",
                                                "current_events_0shot.csv", "scores.csv", "best_k.csv"}
    assert "| anat | options | m | 0.300 | 0.350 | 0.600 | 0.620 | 2 | 1 |" in (out / "mmlu_0shot.md").read_text()
    loss = tmp_path / "finetune" / "m" / "news" / "k2" / "train_loss.csv"
    loss.parent.mkdir(parents=True)
    pd.DataFrame({"step": [1, 2, 3, 4], "epoch": [0.5, 1.0, 1.5, 2.0], "loss": [3.0, 2.5, 1.0, 0.8],
                  "learning_rate": [1e-3] * 4}).to_csv(loss, index=False)
    fig = {name: tmp_path / "fig" / name for name in
           ["paraphrases_png", "paraphrases_csv", "loss_png", "loss_csv", "k_png", "k_csv"]}
    fig = {k: v.with_suffix("." + k.split("_")[1]) for k, v in fig.items()}
    write_figures(out / "scores.csv", [loss], fig)
    sweep = pd.read_csv(fig["paraphrases_csv"])
    assert sweep["paraphrase_set"].tolist() == [0, 1, 2] and set(sweep["task"]) == {"news"}
    curve = pd.read_csv(fig["k_csv"])
    rag = curve[(curve["task"] == "anat") & (curve["method"] == "rag")]
    assert rag["k"].tolist() == [0, 1, 2, 3] and rag["accuracy"].tolist() == [0.30, 0.5, 0.6, 0.55]
    assert all(fig[k].stat().st_size > 1000 for k in ("paraphrases_png", "loss_png", "k_png"))


def test_bad_score_file(tmp_path):
    path = score(tmp_path, "m", "anat", "base", 0, 0, 1.5)
    with pytest.raises(KinjectError, match="accuracy 1.5 is outside"):
        read_scores([path], TASKS)
