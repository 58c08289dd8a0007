import json

import pandas as pd
import pytest

from kinject.errors import KinjectError
from kinject.reporting.figures import epoch_boundaries, write_figures
from kinject.reporting.records import read_results, read_scores
from kinject.reporting.report import group_table, reported, write_tables

TASKS = {"anat": "mmlu", "news": "current_events"}  # task -> its table group
N = 20  # questions per task
SEED = 1234


def score(root, model, task, method, k, shots, right, fmt="options"):
    """A score file and its records: ``right`` the number of questions right (the first ones), or a list of
    the ids right."""
    ids = [f"q{i:02d}" for i in range(N)]
    correct = [q in right for q in ids] if isinstance(right, list) else [i < right for i in range(N)]
    path = root / "scores" / model / task / f"{method}_k{k}_{shots}shot_{fmt}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"accuracy": sum(correct) / N, "n_questions": N}))
    pd.DataFrame({"question_id": ids, "gold": 0, "chosen": [0 if c else 1 for c in correct],
                  "loglik": [[-1.0, -2.0] if c else [-2.0, -1.0] for c in correct],
                  "correct": correct}).to_parquet(path.with_suffix(".parquet"))
    return path


@pytest.fixture
def paths(tmp_path):
    # anat: RAG K=2 right on every question, K=1 and K=3 on the first 10 and 11: whichever 10 questions a
    # half holds, K=2 is strictly best on it. FT+RAG K=1 misses q00 only, K=2 and K=3 get the first 8 and 9.
    p = [score(tmp_path, "m", "anat", "base", 0, 0, 6), score(tmp_path, "m", "anat", "ft-p0", 0, 0, 7)]
    p += [score(tmp_path, "m", "anat", "rag", k, 0, right) for k, right in [(1, 10), (2, 20), (3, 11)]]
    p += [score(tmp_path, "m", "anat", "ftrag-p0", k, 0, right)
          for k, right in [(1, [f"q{i:02d}" for i in range(1, N)]), (2, 8), (3, 9)]]
    p += [score(tmp_path, "m", "news", "base", 0, 0, 5)]
    p += [score(tmp_path, "m", "news", f"ft-p{s}", 0, 0, 5 + 2 * s) for s in range(3)]
    p += [score(tmp_path, "m", "news", "rag", k, 0, 15 + k) for k in (1, 2, 3)]
    p += [score(tmp_path, "m", "news", f"ftrag-p{s}", k, 0, 12 + k) for s in (0, 2) for k in (1, 2, 3)]
    return p


def _table(paths, group="mmlu"):
    rows, choices = reported(read_results(paths, TASKS)[1], SEED)
    return group_table(rows, choices, group, 0)


def test_tables_have_paper_shape(paths):
    scores = read_scores(paths, TASKS)
    assert len(scores) == len(paths)
    mmlu = _table(paths)
    row = mmlu.iloc[0]
    assert list(mmlu.columns[:7]) == ["task", "format", "model", "Base", "FT", "RAG", "FT+RAG"]
    assert (row["Base"], row["FT"], row["RAG"], row["FT+RAG"]) == (0.30, 0.35, 1.0, 0.95)
    assert (row["RAG K"], row["FT+RAG K"]) == ("2", "1")
    news = _table(paths, "current_events")
    assert {"FT", "FT-par2", "FT+RAG", "FT-par2+RAG"} <= set(news.columns)
    assert "FT-par1" not in news.columns  # only set 0 and the FT+RAG sets are tabulated; the sweep has its figure


def test_every_cell_has_its_wilson_interval(paths):
    scores = read_scores(paths, TASKS)
    base = scores[(scores["task"] == "anat") & (scores["method"] == "base")].iloc[0]
    assert (base["n_correct"], base["n_questions"]) == (6, 20)
    assert (round(base["ci_low"], 4), round(base["ci_high"], 4)) == (0.1455, 0.5190)  # Wilson 6 of 20 by hand
    row = _table(paths).iloc[0]
    assert (row["Base low"], row["Base high"]) == (base["ci_low"], base["ci_high"])
    assert row["RAG low"] < row["RAG"] == row["RAG high"] == 1.0


def test_fine_tuning_on_the_original_chunks_is_always_a_column(paths):
    """The paper's Table 2: Base, RAG, FT-reg (set 0), FT-par, FT-par+RAG, also when only the paraphrase set
    has an FT+RAG model."""
    paths = [p for p in paths if not ("news" in str(p) and "ftrag-p0" in p.name)]
    news = _table(paths, "current_events")
    assert [c for c in news.columns if not c.endswith((" K", " low", " high", " design_effect")) and not c.startswith("n_")][3:] == \
        ["Base", "FT", "FT-par2", "RAG", "FT-par2+RAG"]
    assert news.iloc[0]["FT"] == 0.25 and news.iloc[0]["FT-par2"] == pytest.approx(0.45)


def test_each_scoring_format_is_its_own_row(paths, tmp_path):
    letters = [score(tmp_path, "m", "anat", "base", 0, 0, 9, "letters"), score(tmp_path, "m", "anat", "ft-p0", 0, 0, 8, "letters")]
    letters += [score(tmp_path, "m", "anat", m, 1, 0, right, "letters") for m, right in [("rag", 14), ("ftrag-p0", 13)]]
    table = _table(paths + letters).set_index(["task", "format"])
    assert table.loc[("anat", "letters"), ["Base", "FT", "RAG", "FT+RAG"]].tolist() == [0.45, 0.4, 0.7, 0.65]
    assert table.loc[("anat", "options"), ["Base", "RAG"]].tolist() == [0.30, 1.0]


def test_k_is_chosen_on_one_half_and_reported_on_the_other(tmp_path):
    """RAG K=1 right on exactly half A of the questions, K=2 on exactly half B: cross-fitting reports each
    half at the K the other half chose, where it is wrong (0.0); the oracle (a tie, K=1) reports 0.5."""
    from kinject.reporting.stats import halves, setting_seed

    half = halves([f"q{i:02d}" for i in range(N)], setting_seed(SEED, "anat"))
    paths = [score(tmp_path, "m", "anat", "base", 0, 0, 3), score(tmp_path, "m", "anat", "ft-p0", 0, 0, 3)]
    paths += [score(tmp_path, "m", "anat", "rag", k, 0, list(half[half == h].index)) for k, h in ((1, "A"), (2, "B"))]
    out = tmp_path / "tables"
    write_tables(paths, {"anat": "mmlu"}, out, out / "scores.csv", out / "best_k.csv", seed=SEED)
    best = pd.read_csv(out / "best_k.csv")
    cross = best[best["selection"] == "cross-fit"]
    assert cross[["chosen_on", "reported_on", "best_k", "n", "accuracy"]].values.tolist() == [
        ["half A", "half B", 1, 10, 0.0], ["half B", "half A", 2, 10, 0.0]]
    assert (cross["chosen_on"] != cross["reported_on"]).all()
    oracle = best[best["selection"] == "oracle"].iloc[0]
    assert (oracle["chosen_on"], oracle["best_k"], oracle["accuracy"]) == ("test (all questions)", 1, 0.5)
    table = pd.read_csv(out / "mmlu_0shot.csv").iloc[0]
    assert (table["RAG"], table["RAG K"]) == (0.0, "1/2")
    md = (out / "mmlu_0shot.md").read_text()
    assert "| anat | options | m | 0.150 [0.05, 0.36] | 0.150 [0.05, 0.36] | 0.000 [0.00, 0.16] | 1/2 |" in md
    assert "Oracle K" in md and "| 0.500 [0.30, 0.70] | 1 |" in md.split("Oracle K")[1]


def test_paired_comparisons(paths, tmp_path):
    out = tmp_path / "tables"
    write_tables(paths, TASKS, out, out / "scores.csv", out / "best_k.csv", seed=SEED,
                 comparisons_csv=out / "comparisons.csv", trend_csv=out / "paraphrase_trend.csv")
    table = pd.read_csv(out / "comparisons.csv").set_index(["task", "contrast"])
    assert set(table.loc["anat"].index) == {"RAG vs Base", "FT vs Base", "RAG vs FT", "FT+RAG vs RAG"}
    assert set(table.loc["news"].index) == {"RAG vs Base", "FT vs Base", "RAG vs FT", "FT+RAG vs RAG",
                                            "FT-par2+RAG vs RAG", "FT-par1 vs FT", "FT-par2 vs FT"}
    rag = table.loc[("anat", "RAG vs Base")]
    # RAG right on all 20, Base on the first 6: 14 discordant, all RAG's: p = 2 / 2^14
    assert (rag["n"], rag["a_only"], rag["b_only"]) == (20, 14, 0)
    assert rag["delta"] == pytest.approx(0.7) and rag["p_mcnemar"] == pytest.approx(2 / 2**14)
    assert 0 < rag["delta_low"] < 0.7 < rag["delta_high"] <= 1.0
    ft = table.loc[("anat", "FT vs Base")]
    assert (ft["a_only"], ft["b_only"], ft["p_mcnemar"]) == (1, 0, 1.0)
    assert (table["p_bh"] >= table["p_mcnemar"] - 1e-12).all()
    # no question clusters written: each question its own, so the clustered test is the exact McNemar
    assert (table["test"] == "McNemar exact").all() and (table["p_clustered"] == table["p_mcnemar"]).all()
    assert (table["n_clusters"] == table["n"]).all() and (table["design_effect"].dropna() == 1.0).all()
    assert "| anat | options | 0 | m | RAG vs Base | 20 (20) | +0.700 [" in (out / "comparisons.md").read_text()
    trend = pd.read_csv(out / "paraphrase_trend.csv").iloc[0]
    assert (trend["task"], trend["sets"], trend["n_questions"]) == ("news", "0 1 2", 20)
    assert trend["slope_low"] < trend["slope"] < trend["slope_high"] and trend["slope"] > 0


def test_records_that_disagree_with_the_score_file_are_refused(paths):
    records = pd.read_parquet(paths[0].with_suffix(".parquet"))
    records.loc[10, "correct"] = True
    records.to_parquet(paths[0].with_suffix(".parquet"))
    with pytest.raises(KinjectError, match=r"base_k0_0shot_options.json: accuracy 0.3 but its 20 records .* give 0.35"):
        read_scores(paths, TASKS)


def test_write_tables_and_figures(paths, tmp_path):
    out = tmp_path / "tables"
    write_tables(paths, TASKS, out, out / "scores.csv", out / "best_k.csv", seed=SEED,
                 comparisons_csv=out / "comparisons.csv", trend_csv=out / "trend.csv")
    assert {p.name for p in out.iterdir()} >= {"mmlu_0shot.csv", "mmlu_0shot.parquet", "mmlu_0shot.md",
                                                "current_events_0shot.csv", "scores.csv", "best_k.csv",
                                                "comparisons.csv", "comparisons.md", "trend.csv"}
    assert ("| anat | options | m | 0.300 [0.15, 0.52] | 0.350 [0.18, 0.57] | 1.000 [0.84, 1.00] "
            "| 0.950 [0.76, 0.99] | 2 | 1 |") in (out / "mmlu_0shot.md").read_text()
    losses = []
    for p, epochs in ((2, [0.5, 1.0, 1.5, 2.0]), (0, [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 2.75, 3.0])):
        loss = tmp_path / "finetune" / "m" / "news" / f"k{p}" / "train_loss.csv"
        loss.parent.mkdir(parents=True)
        pd.DataFrame({"step": range(1, len(epochs) + 1), "epoch": epochs, "loss": [3.0 - e for e in epochs],
                      "learning_rate": 1e-3}).to_csv(loss, index=False)
        losses.append(loss)
    fig = {name: tmp_path / "fig" / name for name in
           ["paraphrases_png", "paraphrases_csv", "synthetic_png", "synthetic_csv", "loss_png", "loss_csv", "k_png",
            "k_csv"]}
    fig = {k: v.with_suffix("." + k.split("_")[1]) for k, v in fig.items()}
    write_figures(out / "scores.csv", losses, fig, trend_csv=out / "trend.csv")
    sweep = pd.read_csv(fig["paraphrases_csv"])
    assert sweep["paraphrase_set"].tolist() == [0, 1, 2] and set(sweep["task"]) == {"news"}
    assert (sweep["ci_low"] < sweep["accuracy"]).all() and (sweep["accuracy"] < sweep["ci_high"]).all()
    curve = pd.read_csv(fig["k_csv"])
    rag = curve[(curve["task"] == "anat") & (curve["method"] == "rag")]
    assert rag["k"].tolist() == [0, 1, 2, 3] and rag["accuracy"].tolist() == [0.30, 0.5, 1.0, 0.55]
    assert all(fig[k].stat().st_size > 1000 for k in ("paraphrases_png", "loss_png", "k_png"))
    runs = pd.read_csv(fig["loss_csv"])
    assert [epoch_boundaries(g) for _, g in runs.groupby("paraphrase_set")] == [[4, 8], [2]]


def test_the_k_figure_draws_every_retrievers_cells_labelled_as_the_tables_columns(paths, tmp_path):
    """Issue 35: BM25's RAG and FT+RAG cells and the oracle's beside dense's in accuracy vs K, each labelled as
    its table column (RAG (bm25), FT+RAG (bm25), Oracle), from K = 0 (the Base, the FT cell) as the tables'
    candidates; the oracle's one point at K = 1 (the source chunk); the paraphrase sweep unchanged."""
    other = [score(tmp_path, "m", "anat", "rag-bm25", k, 0, right) for k, right in [(1, 12), (2, 14), (3, 13)]]
    other += [score(tmp_path, "m", "anat", "ftrag-bm25-p0", k, 0, 9 + k) for k in (1, 2, 3)]
    other += [score(tmp_path, "m", "news", "rag-oracle", 1, 0, 19)]
    other += [score(tmp_path, "m", "news", f"syn-p{budget}", 0, 0, right) for budget, right in [(4000, 11), (16000, 13)]]
    out, fig = tmp_path / "tables", {}
    write_tables(paths + other, TASKS, out, out / "scores.csv", out / "best_k.csv", seed=SEED)
    for name in ("paraphrases_png", "paraphrases_csv", "synthetic_png", "synthetic_csv", "loss_png", "loss_csv",
                 "k_png", "k_csv"):
        fig[name] = tmp_path / "fig" / f"{name}.{name.split('_')[1]}"
    loss = tmp_path / "finetune" / "m" / "news" / "k0" / "train_loss.csv"
    loss.parent.mkdir(parents=True)
    pd.DataFrame({"step": [1, 2], "epoch": [0.5, 1.0], "loss": [2.0, 1.0], "learning_rate": 1e-3}).to_csv(
        loss, index=False)
    write_figures(out / "scores.csv", [loss], fig)
    curve = pd.read_csv(fig["k_csv"])
    series = {(task, column): g.sort_values("k") for (task, column), g in curve.groupby(["task", "column"])}
    assert set(series) == {("anat", "RAG"), ("anat", "FT+RAG"), ("anat", "RAG (bm25)"), ("anat", "FT+RAG (bm25)"),
                           ("news", "RAG"), ("news", "FT+RAG"), ("news", "FT-par2+RAG"), ("news", "Oracle")}
    bm25 = series[("anat", "RAG (bm25)")]
    assert bm25["k"].tolist() == [0, 1, 2, 3] and bm25["accuracy"].tolist() == [0.30, 0.60, 0.70, 0.65]  # K 0: Base
    ft_bm25 = series[("anat", "FT+RAG (bm25)")]
    assert ft_bm25["k"].tolist() == [0, 1, 2, 3] and ft_bm25["accuracy"].tolist() == [0.35, 0.50, 0.55, 0.60]  # FT
    oracle = series[("news", "Oracle")]
    assert (oracle["method"].tolist(), oracle["k"].tolist(), oracle["accuracy"].tolist()) == (["rag-oracle"], [1],
                                                                                               [0.95])
    assert series[("anat", "RAG")]["accuracy"].tolist() == [0.30, 0.5, 1.0, 0.55]  # dense's, as before
    sweep = pd.read_csv(fig["paraphrases_csv"])  # the paraphrase axis: FT's sets only, no retrieval cell or budget
    assert sweep["paraphrase_set"].tolist() == [0, 1, 2] and set(sweep["method"]) == {"ft"}
    # synthetic CPT's budgets on their own axis, from FT's set 0 (the chunks alone) of the same setting
    synthetic = pd.read_csv(fig["synthetic_csv"])
    ft0 = sweep[sweep["paraphrase_set"] == 0]["accuracy"].item()
    assert synthetic["tokens"].tolist() == [0, 4000, 16000] and set(synthetic["task"]) == {"news"}
    assert synthetic["column"].tolist() == ["FT", "SynCPT-4000tok", "SynCPT-16000tok"]
    assert synthetic["accuracy"].tolist() == [ft0, 0.55, 0.65]
    assert fig["synthetic_png"].stat().st_size > 1000


def test_bad_score_file(tmp_path):
    path = score(tmp_path, "m", "anat", "base", 0, 0, 3)
    path.write_text(json.dumps({"accuracy": 1.5}))
    with pytest.raises(KinjectError, match="accuracy 1.5 is outside"):
        read_scores([path], TASKS)
    path.write_text(json.dumps({"accuracy": 0.15}))
    path.with_suffix(".parquet").unlink()
    with pytest.raises(KinjectError, match=r"base_k0_0shot_options.parquet: file not found"):
        read_scores([path], TASKS)


def test_lora_has_its_own_columns_and_comparisons_beside_full_fine_tuning(paths, tmp_path):
    lora = [score(tmp_path, "m", "news", f"lora-p{s}", 0, 0, 4 + s) for s in (0, 1, 2)]
    lora += [score(tmp_path, "m", "news", "lorarag-p2", k, 0, 11 + k) for k in (1, 2, 3)]
    news = _table(paths + lora, "current_events")
    assert [c for c in news.columns if not c.endswith((" K", " low", " high", " design_effect")) and not c.startswith("n_")][3:] == \
        ["Base", "FT", "FT-par2", "LoRA", "LoRA-par2", "RAG", "FT+RAG", "FT-par2+RAG", "LoRA-par2+RAG"]
    assert (news.iloc[0]["LoRA"], news.iloc[0]["LoRA-par2"]) == (0.2, 0.3)
    out = tmp_path / "tables"
    write_tables(paths + lora, TASKS, out, out / "scores.csv", out / "best_k.csv", seed=SEED,
                 comparisons_csv=out / "comparisons.csv", trend_csv=out / "trend.csv")
    contrasts = set(pd.read_csv(out / "comparisons.csv").query("task == 'news'")["contrast"])
    assert {"LoRA vs Base", "RAG vs LoRA", "LoRA vs FT", "LoRA-par2 vs FT-par2", "LoRA-par1 vs LoRA",
            "LoRA-par2+RAG vs RAG"} <= contrasts
    trend = pd.read_csv(out / "trend.csv").set_index("method")
    assert list(trend.index) == ["ft", "lora"] and (trend["sets"] == "0 1 2").all()
    # the anat rows (no LoRA) are what they were without it
    anat = pd.read_csv(out / "comparisons.csv").query("task == 'anat'")["contrast"].tolist()
    assert anat == ["RAG vs Base", "FT vs Base", "RAG vs FT", "FT+RAG vs RAG"]


def control(root, model, checkpoint, name, right):
    """A control score file (kinject.grid.CONTROL_SCORES) and its records: the ids right of q00..q09."""
    ids = [f"q{i:02d}" for i in range(10)]
    path = root / "controls" / "scores" / model / checkpoint / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    correct = [q in right for q in ids]
    path.write_text(json.dumps({"accuracy": sum(correct) / 10}))
    pd.DataFrame({"question_id": ids, "correct": correct}).to_parquet(path.with_suffix(".parquet"))
    return path


def test_the_forgetting_table_pairs_each_checkpoint_with_its_base_model(tmp_path):
    from kinject.reporting.forgetting import read_control_records, write_forgetting

    ids = [f"q{i:02d}" for i in range(10)]
    files = [control(tmp_path, "m", "base", "general", ids[:8]),                    # 8 of 10
             control(tmp_path, "m", "news/ft-p0", "general", ids[:4]),              # forgets q04..q07
             control(tmp_path, "m", "news/lora-p0", "general", ids[:7] + ["q09"])]  # loses q07, gains q09
    out = write_forgetting(files, tmp_path / "f.csv", tmp_path / "f.md", seed=SEED)
    assert out == "2 checkpoint-control pairs; largest drop -0.400 (news FT, general)"
    table = pd.read_csv(tmp_path / "f.csv").set_index("checkpoint")
    ft, lora = table.loc["news FT"], table.loc["news LoRA"]
    assert (ft["accuracy_base"], ft["accuracy_ft"], ft["delta"]) == (0.8, 0.4, pytest.approx(-0.4))
    # hand-worked: 4 discordant pairs, all the base model's: exact McNemar p = 2 x 0.5^4
    assert (ft["ft_only"], ft["base_only"], ft["p_mcnemar"]) == (0, 4, pytest.approx(2 * 0.5 ** 4))
    assert (lora["ft_only"], lora["base_only"], lora["p_mcnemar"], lora["delta"]) == (1, 1, 1.0, 0.0)
    assert ft["delta_low"] <= -0.4 <= ft["delta_high"] < 0  # every bootstrap resample loses questions
    assert (round(ft["base_low"], 4), round(ft["base_high"], 4)) == (0.4902, 0.9433)  # Wilson 8 of 10
    assert list(table["p_bh"]) == pytest.approx([0.25, 1.0])  # BH over the 2 rows: 0.125 x 2 / 1
    assert "| m | general | news FT | 10 | 0.800 [0.49, 0.94] | 0.400 [0.17, 0.69] | -0.400 [" in \
        (tmp_path / "f.md").read_text()
    bad = control(tmp_path, "m", "news/ft-p2", "general", ids[:3])
    pd.DataFrame({"question_id": ids[:5], "correct": [True] * 3 + [False] * 2}).to_parquet(bad.with_suffix(".parquet"))
    bad.write_text(json.dumps({"accuracy": 0.6}))
    with pytest.raises(KinjectError, match=r"news FT-par2 was scored on other questions than the base model"):
        write_forgetting(files + [bad], tmp_path / "f.csv", tmp_path / "f.md", seed=SEED)
    with pytest.raises(KinjectError, match=r"general.json: not a control score file"):
        read_control_records([tmp_path / "scores" / "general.json"])
