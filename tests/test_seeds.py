"""Training seeds (finetune.seeds, kinject.training.seeds): the extra seeds' cells and runs beside the run seed's
unchanged ones, the two-level bootstrap of seeds and question clusters against its closed-form variance, the
comparisons paired within seed, the config checks, and the pipeline end to end on the tiny Llama."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kinject.grid import cells
from kinject.reporting.comparisons import comparisons, seed_pairs
from kinject.reporting.report import group_table, markdown_table, reported
from kinject.reporting.stats import paired_bootstrap, seeds_interval, seeds_paired, two_level_replicates
from kinject.settings import load_config
from kinject.training.seeds import extra_seeds, run_seeds, tag, untag

pytestmark = pytest.mark.usefixtures("hf_offline")

ROOT = Path(__file__).resolve().parents[1]


def test_a_seed_tags_the_paraphrase_set_and_the_run_seed_has_no_tag():
    assert (tag(10), tag(10, 7), untag("10_s7"), untag("10"), untag(4)) == ("10", "10_s7", (10, 7), (10, None),
                                                                           (4, None))
    with pytest.raises(ValueError):
        untag("10_x7")
    config = {"seed": 5, "finetune": {}}
    assert (run_seeds(config), extra_seeds(config)) == ([5], [])
    config["finetune"]["seeds"] = [9, 5, 3]
    assert (run_seeds(config), extra_seeds(config)) == ([9, 5, 3], [9, 3])


def _extended(**seeds) -> dict:
    config = load_config(ROOT / "config" / "demo.yaml", ROOT / "config" / "demo_extended.yaml")
    config["finetune"].update(seeds)
    return config


def test_the_seeded_cells_are_the_limited_ones_and_the_rest_of_the_grid_is_unchanged():
    plain = load_config(ROOT / "config" / "demo.yaml", ROOT / "config" / "demo_extended.yaml")
    plain["finetune"] = {k: v for k, v in plain["finetune"].items() if not k.startswith("seed")}
    before = {c.path for c in cells(plain)}
    seeded = _extended(seeds=[1234, 7], seed_tasks=["current_events"], seed_methods=["full", "steps"],
                       seed_sets=[0, 10])
    after = {c.path for c in cells(seeded)}
    assert before < after  # every cell of the grid without seeds keeps its path
    new = sorted(Path(p).name for p in after - before)
    ks = seeded["retrieval"]["k"]  # K > 0 of FT+RAG's cells
    assert new == sorted(["ft-p0_s7_k0_0shot_options.json", "ft-p10_s7_k0_0shot_options.json",
                          "steps-p10_s7_k0_0shot_options.json"]
                         + [f"ftrag-p{p}_s7_k{k}_0shot_options.json" for p in (0, 10) for k in ks if k])
    assert all("/current_events/" in p for p in after - before)
    extra = [c for c in cells(seeded) if c.seed is not None]
    assert {(c.paraphrase_set, c.seed) for c in extra} == {(0, 7), (10, 7)}


def _setting(n=30, seeds=(1234, 7, 8), rng_seed=4):
    """Per-question records of one setting: Base and RAG (untrained), FT and FT-par4 under every seed, FT-par2 under
    the run seed (1234) only; clusters of two questions."""
    rng = np.random.default_rng(rng_seed)
    rows = []

    def add(method, p, seed, acc, k=0):
        for q in range(n):
            rows.append({"group": "g", "model": "m", "task": "t", "format": "options", "shots": 0, "method": method,
                         "paraphrase_set": p, "k": k, "question_id": f"q{q:02d}", "correct": bool(rng.random() < acc),
                         "cluster": f"chunk{q // 2}", "seed": seed, "extra_seed": seed not in (None, 1234)})

    add("base", None, None, 0.3)
    add("rag", None, None, 0.6, k=1)
    for s in seeds:
        add("ft", 0, s, 0.4)
        add("ft", 4, s, 0.6)
    add("ft", 2, 1234, 0.5)
    records = pd.DataFrame(rows)
    records["paraphrase_set"] = records["paraphrase_set"].astype("Int64")
    records["seed"] = records["seed"].astype("Int64")
    return records


def test_comparisons_pair_within_seed_and_fall_back_to_the_one_seed_comparison():
    records = _setting()
    rows, _ = reported(records, seed=0)
    table = comparisons(rows, seed=0).set_index("contrast")
    by = {(m, p, s): g.set_index("question_id")["correct"].astype(float)
          for (m, p, s), g in records.groupby(["method", "paraphrase_set", "seed"], dropna=False)}
    # FT-par4 vs FT: both under 3 seeds, the difference within each seed, averaged
    diffs = [by[("ft", 4, s)] - by[("ft", 0, s)] for s in (1234, 7, 8)]
    row = table.loc["FT-par4 vs FT"]
    assert (row["n_seeds"], row["test"]) == (3, "two-level bootstrap") and np.isnan(row["p_mcnemar"])
    assert row["delta"] == pytest.approx(np.mean([d.mean() for d in diffs]))
    assert row["a_only"] == sum(int((d > 0).sum()) for d in diffs)
    low, high, p = seeds_paired(np.stack(diffs), np.repeat(np.arange(15), 2), seed=0)
    assert row["delta_low"] < row["delta"] < row["delta_high"]
    assert (row["delta_high"] - row["delta_low"]) == pytest.approx(high - low, rel=0.3)  # another seeded stream
    # FT vs Base: the untrained Base against every seed of FT
    base = records[records["method"] == "base"]["correct"]
    assert table.loc["FT vs Base", "n_seeds"] == 3
    assert table.loc["FT vs Base", "delta"] == pytest.approx(np.mean([by[("ft", 0, s)].mean() for s in (1234, 7, 8)])
                                                             - base.mean())
    # FT-par2 (the run seed only) vs FT: paired on the seed both have, the one-seed comparison as before
    one = table.loc["FT-par2 vs FT"]
    assert (one["n_seeds"], one["test"]) == (1, "Durkalski clustered McNemar")  # clusters of two
    assert one["delta"] == pytest.approx(by[("ft", 2, 1234)].mean() - by[("ft", 0, 1234)].mean())
    assert (one["delta_low"], one["delta_high"]) == pytest.approx(paired_bootstrap(
        by[("ft", 2, 1234)].astype(bool), by[("ft", 0, 1234)].astype(bool), seed=_setting_seed(0, "FT-par2", "FT"),
        clusters=np.repeat(np.arange(15), 2)))
    assert seed_pairs([None], [1, 2]) == [(None, 1), (None, 2)] and seed_pairs([3, 1, 2], [2, 3]) == [(2, 2), (3, 3)]


def _setting_seed(seed, a, b):
    from kinject.reporting.stats import setting_seed

    return setting_seed(seed, "g", "m", "t", "options", 0, a, b)


def test_the_table_shows_the_mean_over_seeds_with_its_count_of_seeds():
    records = _setting()
    rows, choices = reported(records, seed=0)
    table = group_table(rows, choices, "g", 0, seed=0).iloc[0]
    ft = records[(records["method"] == "ft") & (records["paraphrase_set"] == 0)]
    assert table["FT"] == pytest.approx(ft["correct"].mean())
    assert table["FT n_seeds"] == 3 and table["Base n_seeds"] == table["RAG n_seeds"] == 1
    assert table["FT low"] < table["FT"] < table["FT high"]
    assert "3 seeds" in markdown_table(pd.DataFrame([table]))


def test_the_two_level_bootstrap_has_the_closed_form_variance_of_resampling_seeds_and_clusters():
    """Independent computation: with equal cluster sizes the replicate is mean_i a(s_i) + mean_j b(g_j) + mean_ij
    e(s_i, g_j) on the seed x cluster means (μ + a_s + b_g + e_sg), drawn independently with replacement, so its
    variance is var(a)/S + var(b)/G + var(e)/(S G) (population variances; Owen 2007). 100,000 replicates: within
    3% of it."""
    rng = np.random.default_rng(0)
    seeds, n_clusters = 3, 25
    x = (rng.random((seeds, 2 * n_clusters)) < np.array([[0.5], [0.65], [0.55]])).astype(float)
    clusters = np.repeat(np.arange(n_clusters), 2)
    replicates = two_level_replicates(x, clusters, seed=1, n_resamples=100_000)
    c = x.reshape(seeds, n_clusters, 2).mean(axis=2)
    a, b = c.mean(axis=1) - c.mean(), c.mean(axis=0) - c.mean()
    e = c - c.mean() - a[:, None] - b[None, :]
    expected = (a ** 2).mean() / seeds + (b ** 2).mean() / n_clusters + (e ** 2).mean() / (seeds * n_clusters)
    assert replicates.mean() == pytest.approx(x.mean(), abs=2e-3)
    assert replicates.var() == pytest.approx(expected, rel=0.03)
    # one seed: the cluster bootstrap of the mean, variance var(b)/G (hand-worked: b as above for that seed)
    one = two_level_replicates(x[:1], clusters, seed=2, n_resamples=100_000)
    assert one.var() == pytest.approx(((c[0] - c[0].mean()) ** 2).mean() / n_clusters, rel=0.03)
    # seeds that agree add nothing: three copies of one row give that row's cluster bootstrap
    same = two_level_replicates(np.repeat(x[:1], 3, axis=0), clusters, seed=2, n_resamples=100_000)
    assert same.var() == pytest.approx(one.var(), rel=0.03)


def test_the_seed_interval_widens_with_seed_variance_and_its_p_is_two_sided():
    rng = np.random.default_rng(5)
    row = (rng.random(60) < 0.6).astype(float)
    agree = seeds_interval(np.stack([row, row, row]), seed=0)
    flip = seeds_interval(np.stack([row, 1 - row, row]), seed=0)  # seeds that disagree on every question
    assert agree["n_seeds"] == flip["n_seeds"] == 3 and agree["accuracy"] == pytest.approx(row.mean())
    assert flip["ci_high"] - flip["ci_low"] > agree["ci_high"] - agree["ci_low"]
    assert seeds_paired(np.ones((2, 30)), seed=0)[2] == pytest.approx(2 / 10_001)  # every replicate above 0
    assert seeds_paired(np.zeros((2, 30)), seed=0)[2] == 1.0


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["finetune"].update(seeds=[]), r"finetune\.seeds is empty"),
    (lambda c: c["finetune"].update(seeds=[1234, 7, 7]), r"finetune\.seeds lists 7 more than once"),
    (lambda c: c["finetune"].update(seeds=[7, 8]), r"finetune\.seeds leaves out the run's seed \(1234\)"),
    (lambda c: c["finetune"].update(seed_sets=[]), r"finetune\.seed_sets is empty"),
    (lambda c: c["finetune"].update(seed_sets=[0, 0]), r"finetune\.seed_sets lists 0 more than once"),
    (lambda c: c["finetune"].update(seed_sets=[3]), r"finetune\.seed_sets: set 3 is in no task's paraphrase_sets"),
    (lambda c: c["finetune"].update(seed_methods=["lora", "fulll"]), r"finetune\.seed_methods: 'fulll' trains no"),
    (lambda c: c["finetune"].update(seed_tasks=["news"]), r"finetune\.seed_tasks: 'news' is not a task"),
])
def test_a_bad_seed_list_is_one_line_naming_the_key(tmp_path, edit, message):
    from conftest import bad_extended_config

    assert re.search(message, bad_extended_config(tmp_path, edit))


@pytest.mark.slow
def test_two_seeds_run_end_to_end_on_the_tiny_llama(tmp_path):
    """Current events, full fine-tuning of set 0 only, no search, K in {0, 1}, finetune.seeds [run seed, 7]: the
    run seed's run as without seeds, seed 7's beside it (k0_s7, trained with seed 7), both scored, the table's FT
    their mean over 2 seeds, the comparisons paired within seed."""
    import yaml
    from conftest import copy_checkout, run_snakemake, small_demo_config

    workdir = copy_checkout(tmp_path)
    path = small_demo_config(workdir)
    config = yaml.safe_load((workdir / path).read_text())
    del config["tasks"]["atlas"]
    news = config["tasks"]["current_events"]
    news.update(finetune_methods=["full"], paraphrase_sets=[0], ft_rag_paraphrase_sets=[0])
    del news["validation"]
    config["finetune"].update(steps_matched=[], seeds=[config["seed"], 7])
    (workdir / path).write_text(yaml.safe_dump(config))
    proc = run_snakemake(workdir, "all", "--cores", "2", "--configfile", path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = workdir / "results" / "finetune" / "tiny-llama" / "current_events"
    assert sorted(p.name for p in runs.iterdir()) == ["k0", "k0_s7"]
    logs = {p.name: p.read_text() for p in (workdir / "logs" / "finetune").glob("*.log")}
    trained = {name: re.findall(r"--seed (\d+)", text) for name, text in logs.items()}
    assert trained == {"tiny-llama_current_events_k0.log": [str(config["seed"])],
                       "tiny-llama_current_events_k0_s7.log": ["7"]}
    scores = workdir / "results" / "scores" / "tiny-llama" / "current_events"
    assert {p.name for p in scores.glob("ft*.json")} == {
        "ft-p0_k0_0shot_options.json", "ft-p0_s7_k0_0shot_options.json", "ftrag-p0_k1_0shot_options.json",
        "ftrag-p0_s7_k1_0shot_options.json"}
    every = pd.read_csv(workdir / "results" / "tables" / "scores.csv")
    ft = every[(every["method"] == "ft")].set_index("seed")["accuracy"]
    assert sorted(ft.index) == sorted([config["seed"], 7])
    table = pd.read_csv(workdir / "results" / "tables" / "current_events_0shot.csv").iloc[0]
    assert table["FT"] == pytest.approx(ft.mean(), abs=1e-4) and table["FT n_seeds"] == 2
    compared = pd.read_csv(workdir / "results" / "tables" / "comparisons.csv").set_index("contrast")
    assert compared.loc["FT vs Base", "n_seeds"] == 2 and compared.loc["FT vs Base", "test"] == "two-level bootstrap"
    assert compared.loc["RAG vs Base", "n_seeds"] == 1
    assert "2 seeds" in (workdir / "results" / "tables" / "current_events_0shot.md").read_text()


def test_k_0_is_a_candidate_for_rag_and_ft_rag():
    """RAG at K = 1 worse than Base on every question: K = 0 (no retrieval, the Base cell) is chosen on both halves
    and the RAG column is Base's; FT+RAG's K = 0 is the same seed's FT cell."""
    records = _setting(seeds=(1234, 7))
    records.loc[records["method"] == "base", "correct"] = True
    records.loc[records["method"] == "rag", "correct"] = False
    ft = records[(records["method"] == "ft") & (records["paraphrase_set"] == 4)]
    records = pd.concat([records, ft.assign(method="ftrag", k=1, correct=False)],
                        ignore_index=True)
    rows, choices = reported(records, seed=0)
    rag = choices[choices["method"] == "rag"]
    assert set(rag["best_k"]) == {0}
    assert rows[rows["column"] == "RAG"]["correct"].all()
    # FT-par4+RAG at K = 1 wrong on every question: K = 0 on every half and seed, each seed's column its own
    # FT-par4 model's answers
    assert set(choices.loc[choices["method"] == "ftrag", "best_k"]) == {0}
    for seed in (1234, 7):
        mine = rows[(rows["column"] == "FT-par4+RAG") & (rows["seed"] == seed)].set_index("question_id")["correct"]
        own = ft[ft["seed"] == seed].set_index("question_id")["correct"]
        assert mine.sort_index().tolist() == own.sort_index().tolist()
