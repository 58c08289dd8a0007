"""The embedded demo, end to end: result tables, targeted rebuilds and what a touched file re-runs."""

import pandas as pd
import pytest
from conftest import TINY_DEMO, copy_checkout, result_tables, run_snakemake, small_demo_config

from kinject.grid import cells, dry_run_jobs
from kinject.settings import load_config

pytestmark = pytest.mark.slow
DEMO = ["--configfile", TINY_DEMO]


def planned_jobs(workdir, *args) -> dict[str, int]:
    proc = run_snakemake(workdir, "-n", *args, *DEMO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return dry_run_jobs(proc.stdout)


def test_result_tables_hold_one_accuracy_per_cell(demo_run):
    config = load_config(demo_run / TINY_DEMO)
    scores = pd.read_csv(demo_run / "results" / "tables" / "scores.csv")
    assert len(scores) == len(cells(config)) == len(scores.drop_duplicates(
        ["model", "task", "format", "method", "paraphrase_set", "k", "shots"]))
    assert scores["accuracy"].between(0, 1).all() and scores["accuracy"].notna().all()
    for name in ("mmlu_0shot", "mmlu_5shot", "current_events_0shot"):
        for ext in ("csv", "parquet", "md"):
            assert (demo_run / "results" / "tables" / f"{name}.{ext}").stat().st_size > 0
    mmlu = pd.read_csv(demo_run / "results" / "tables" / "mmlu_0shot.csv")
    assert list(mmlu.columns[:7]) == ["task", "format", "model", "Base", "FT", "RAG", "FT+RAG"]
    assert mmlu[["Base", "FT", "RAG", "FT+RAG"]].stack().between(0, 1).all()
    news = pd.read_csv(demo_run / "results" / "tables" / "current_events_0shot.csv")
    assert {"Base", "FT", "FT-par10", "RAG", "FT+RAG", "FT-par10+RAG"} <= set(news.columns)
    for name in ("paraphrases_vs_accuracy", "train_loss", "accuracy_vs_k"):
        assert (demo_run / "results" / "figures" / f"{name}.png").stat().st_size > 1000
    sweep = pd.read_csv(demo_run / "results" / "figures" / "paraphrases_vs_accuracy.csv")
    assert sorted(sweep["paraphrase_set"]) == list(range(11))


def test_the_console_shows_job_lines_and_summaries_not_library_output(demo_run):
    console = (demo_run / "console.txt").read_text()
    assert "evaluate_base[model=tiny-llama, task=current_events, shots=0, format=options] done: accuracy base K=0" \
        in console
    for noise in ("warn", "Traceback", "it/s]", "truncat"):
        assert noise.lower() not in console.lower(), noise
    log = (demo_run / "logs" / "evaluate" / "tiny-llama_current_events_base_0shot_options.log").read_text()
    assert "job environment: threads=2, OMP_NUM_THREADS=2" in log and "device cpu, torch threads 2" in log


def test_scoring_formats_and_protected_checkpoints(demo_run):
    scores = pd.read_csv(demo_run / "results" / "tables" / "scores.csv")
    assert sorted(scores.loc[scores["task"] == "atlas", "format"].unique()) == ["letters", "options"]
    assert set(scores.loc[scores["task"] == "current_events", "format"]) == {"options"}
    model = demo_run / "results" / "models" / "tiny-llama" / "base" / "config.json"
    assert model.stat().st_mode & 0o222 == 0  # protect: true, Snakemake write-protected it
    assert not list((demo_run / "results" / "atlas" / "lmeval").rglob("*.jsonl"))  # temp(): removed once scored


def test_nothing_left_to_do_after_the_run(demo_run):
    assert planned_jobs(demo_run) == {}


def test_targeted_rebuild_of_one_table(demo_run):
    table = demo_run / "results" / "tables" / "mmlu_0shot.csv"
    before, mtime = table.read_text(), table.stat().st_mtime_ns
    assert planned_jobs(demo_run, "results/tables/mmlu_0shot.csv", "--forcerun", "tables") == {"tables": 1}
    run = run_snakemake(demo_run, "results/tables/mmlu_0shot.csv", "--forcerun", "tables", "--cores", "2", *DEMO)
    assert run.returncode == 0, run.stderr[-2000:]
    assert dry_run_jobs(run.stdout + run.stderr) == {"tables": 1}  # the scores were reused, nothing else ran
    assert table.stat().st_mtime_ns > mtime and table.read_text() == before


def test_dag_and_summary_are_quick_to_print(demo_run):
    dag = run_snakemake(demo_run, "--dag", *DEMO)
    assert dag.returncode == 0 and dag.stdout.lstrip().startswith("digraph") and "finetune" in dag.stdout
    summary = run_snakemake(demo_run, "--summary", *DEMO)
    assert summary.returncode == 0 and "results/tables/mmlu_0shot.csv" in summary.stdout


def test_snakemake_report_holds_tables_and_figures(demo_run):
    report = run_snakemake(demo_run, "--report", "report.html", *DEMO)
    assert report.returncode == 0, report.stderr[-2000:]
    html = (demo_run / "report.html").read_text()
    for name in ("mmlu_0shot.csv", "current_events_0shot.csv", "best_k.csv", "paraphrases_vs_accuracy.png",
                 "train_loss.png", "accuracy_vs_k.png"):
        assert name in html


def test_editing_one_paraphrase_set_reruns_only_its_downstream(demo_run):  # keep after the others: it edits the run
    target = demo_run / "results" / "current_events" / "paraphrases" / "paraphrases_k3.parquet"
    df = pd.read_parquet(target)
    df.loc[df.index[-1], "text"] += " (edited)"
    df.to_parquet(target, index=False)
    # set 3 feeds one fine-tuning run, which feeds one score (FT+RAG uses sets 0 and 10 only). A bare
    # `touch` re-runs nothing: Snakemake sees by checksum that a small file's content did not change.
    assert planned_jobs(demo_run) == {"finetune": 1, "evaluate_ft": 1, "tables": 1, "figures": 1, "all": 1}


def test_two_runs_give_identical_tables(small_demo_local, tmp_path):
    """Every random choice is seeded from the config: a second run from scratch reproduces every table."""
    first, config = small_demo_local
    second = copy_checkout(tmp_path)
    small_demo_config(second)
    proc = run_snakemake(second, "all", "--cores", "2", "--configfile", config)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert result_tables(second) == result_tables(first) != {}
