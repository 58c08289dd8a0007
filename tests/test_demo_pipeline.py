"""The embedded demo, end to end: result tables, targeted rebuilds and what a touched file re-runs."""

from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
import yaml
from conftest import TINY_DEMO, run_snakemake

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
    assert sorted(sweep["paraphrase_set"]) == config["tasks"]["current_events"]["paraphrase_sets"] == [0, 1, 10]


def test_every_cell_has_records_an_interval_and_its_comparisons(demo_run):
    """The statistics of issue 20 after a demo run: per-question records beside every score file, a Wilson
    interval in every table cell, K chosen on a held-out half, paired comparisons, the paraphrase trend."""
    config = load_config(demo_run / TINY_DEMO)
    tables = demo_run / "results" / "tables"
    scores = pd.read_csv(tables / "scores.csv")
    for cell in cells(config):
        records = pd.read_parquet(demo_run / cell.records)
        assert len(records) == records["question_id"].nunique() > 0, cell.records
    assert (scores["ci_low"] <= scores["accuracy"]).all() and (scores["accuracy"] <= scores["ci_high"]).all()
    md = (tables / "current_events_0shot.md").read_text()
    assert " [0." in md.split("\n")[6] and "Oracle K" in md
    best = pd.read_csv(tables / "best_k.csv")
    assert set(best["selection"]) == {"cross-fit", "oracle"}
    cross = best[best["selection"] == "cross-fit"]
    assert set(zip(cross["chosen_on"], cross["reported_on"])) == {("half A", "half B"), ("half B", "half A")}
    comparisons = pd.read_csv(tables / "comparisons.csv")
    assert {"RAG vs Base", "FT vs Base", "RAG vs FT", "FT-par10 vs FT"} <= set(comparisons["contrast"])
    assert comparisons[["delta_low", "delta_high", "p_mcnemar", "p_bh"]].notna().all().all()
    trend = pd.read_csv(tables / "paraphrase_trend.csv")
    news = trend[trend["task"] == "current_events"].iloc[0]
    assert news["sets"].split()[-1] == str(max(config["tasks"]["current_events"]["paraphrase_sets"]))


def test_the_console_shows_job_lines_and_summaries_not_library_output(demo_run):
    console = (demo_run / "console.txt").read_text()
    assert "evaluate_base[model=tiny-llama, task=current_events, shots=0, format=options] done: accuracy base K=0" \
        in console
    for noise in ("warn", "Traceback", "it/s]", "truncat"):
        assert noise.lower() not in console.lower(), noise
    # Each job got the threads its resources name (2 for evaluation and the other GPU rules in the tiny
    # demo: more than the 1 Snakemake gives a job that declares none) and torch uses them.
    resources = yaml.safe_load((demo_run / TINY_DEMO).read_text())["resources"]
    assert resources["evaluate"]["cpus_per_task"] > 1 and resources["gpu_rules"]["cpus_per_task"] > 1
    for log_name, threads in [
            ("evaluate/tiny-llama_current_events_base_0shot_options.log", resources["evaluate"]["cpus_per_task"]),
            ("finetune/tiny-llama_current_events_k1.log", resources["gpu_rules"]["cpus_per_task"])]:
        log = (demo_run / "logs" / log_name).read_text()
        assert f"job environment: threads={threads}, OMP_NUM_THREADS={threads}," in log, log_name
        assert f"device cpu, torch threads {threads}" in log, log_name  # gpu: 0 in the demo: CPU on any host


def test_both_scoring_formats_for_atlas(demo_run):
    scores = pd.read_csv(demo_run / "results" / "tables" / "scores.csv")
    assert sorted(scores.loc[scores["task"] == "atlas", "format"].unique()) == ["letters", "options"]
    assert set(scores.loc[scores["task"] == "current_events", "format"]) == {"options"}
    table = pd.read_csv(demo_run / "results" / "tables" / "mmlu_5shot.csv")
    assert sorted(table["format"]) == ["letters", "options"]


def test_the_steps_matched_control_ran_through_the_pipeline(demo_run):
    """The tiny demo's control of set 1 (finetune.steps_matched [1]): trained on set 0's chunks for set 1's
    steps (its loss file as long as set 1's, its training.json saying what it matched), scored, compared."""
    import json

    workdir = demo_run
    runs = workdir / "results" / "finetune" / "tiny-llama" / "current_events"
    control, par = pd.read_csv(runs / "steps" / "k1" / "train_loss.csv"), pd.read_csv(runs / "k1" / "train_loss.csv")
    assert control["step"].tolist() == par["step"].tolist()
    matched = json.loads((runs / "steps" / "k1" / "checkpoint" / "training.json").read_text())["matched"]
    assert matched["steps"] == len(par)
    comparisons = pd.read_csv(workdir / "results" / "tables" / "comparisons.csv")
    assert {"FT-par1 vs FT-steps1", "FT-steps1 vs FT"} <= set(comparisons["contrast"])


def test_fetch_records_every_revision_it_kept(demo_run):
    """results/{task}/raw/revisions.json: a dump's every kept page, by title, with its page and revision ids."""
    import json

    from kinject.knowledge.wikidump import DumpReader

    for task in ("atlas", "current_events"):
        raw = demo_run / "results" / task / "raw"
        record = json.loads((raw / "revisions.json").read_text())
        kept = sorted((p.title, int(p.id), int(p.revid), p.timestamp) for p in DumpReader(raw / "pages.xml"))
        assert [tuple(p.values()) for p in record["pages"]] == kept and record["missing"] == []
        assert record["source"] == "dump" and record["as_of"] is None


def test_nothing_left_to_do_after_the_run(demo_run):
    assert planned_jobs(demo_run) == {}


def test_targeted_rebuild_of_one_table(demo_copy):
    table = demo_copy / "results" / "tables" / "mmlu_0shot.csv"
    before, mtime = table.read_text(), table.stat().st_mtime_ns
    assert planned_jobs(demo_copy, "results/tables/mmlu_0shot.csv", "--forcerun", "tables") == {"tables": 1}
    run = run_snakemake(demo_copy, "results/tables/mmlu_0shot.csv", "--forcerun", "tables", "--cores", "2", *DEMO)
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
                 "train_loss.png", "accuracy_vs_k.png", "manifest.json"):
        assert name in html


# One edit of every top-level config key, and what reads the edited value: the rules (or the output files of
# the jobs) that must re-run, everything downstream of them following. [] = nothing may re-run: the value only
# says how fast, how politely, where, or whether a job may run, and every finished job stays valid.
CE_SETS = (0, 1, 10)  # the tiny demo's current-events paraphrase sets
CONFIG_EDITS = [
    ("seed", 4321, ["build_base_model", "generate_questions", "select_questions", "paraphrase_chunks",
                    "validation_paraphrases", "hparam_trial", "finetune", "tables"]),  # tables: the bootstrap
    # one key: the accelerate file has no mixed_precision to keep in step (auto -> fp32 re-runs what computes)
    ("precision", "fp32", ["hparam_trial", "finetune", "evaluate_base", "evaluate_ft", "evaluate_ftrag"]),
    ("protect", True, []),  # the tiny demo's is false
    ("models.tiny-llama.build.pretrain_epochs", 2, ["build_base_model"]),  # the tiny demo's is 1
    ("embedder.query_prefix", "query: ", ["retrieve"]),
    ("tasks.atlas.validation.chunks", 11, ["results/atlas/validation/paraphrases.parquet"]),  # atlas's alone
    ("tasks.current_events.questions.keep", 1, ["select_questions"]),
    ("tasks.atlas.questions.per_chunk", 3, []),  # filled in by the schema, read only for generated questions
    ("chunking.max_words", 119, ["make_chunks"]),
    ("tasks.atlas.knowledge_base.as_of", "2031-06-01T00:00:00Z", ["results/atlas/raw/pages.xml"]),  # atlas's alone
    ("llm.temperature", 0.5, ["generate_questions", "select_questions", "paraphrase_chunks",
                              "validation_paraphrases"]),
    ("llm.mode", "live", []),
    ("llm.max_quarantined_fraction", 0.5, []),  # when a stage stops, not what it writes
    ("paraphrases.per_call", 2, ["paraphrase_chunks"]),
    ("synthetic.pairs_per_chunk", 3, []),  # read only where a task trains synthetic CPT; the tiny demo has none
    ("paraphrases.allow_incomplete", True,
     [f"results/current_events/paraphrases/paraphrases_k{k}.parquet" for k in CE_SETS if k]),
    ("finetune.search.max_epochs", 2, ["hparam_trial"]),
    ("finetune.lr", 5e-4, []),  # every demo task has a search: lr and epochs come from its chosen.json
    ("tasks.current_events.questions.keep_unreviewed", False, ["review_questions"]),
    ("retrieval.batch_size", 32, []),
    ("evaluation.batch_size", 4, []),
    ("evaluation.max_truncated_fraction", 0.5, []),
    ("evaluation.fewshot_context", "every_example",  # only where it changes a prompt: K > 0 and few-shot
     [f"results/atlas/lmeval/{fmt}/k{k}" for fmt in ("options", "letters") for k in (1, 2, 3)]),
    ("resources.gpu_rules.cpus_per_task", 1, []),
    ("mediawiki.requests_per_second", 2.0, []),  # the schema fills it in; the demo's dumps never call the API
    ("plan.gpu_memory_gb", 40, []),
]


def edited(config: dict, key: str, value) -> dict:
    import copy

    config = copy.deepcopy(config)
    *parents, leaf = key.split(".")
    node = config
    for name in parents:
        node = node.setdefault(name, {})
    node[leaf] = value
    return config


def test_every_top_level_config_key_has_an_edit(demo_run):
    config = yaml.safe_load((demo_run / TINY_DEMO).read_text())
    assert {key.split(".")[0] for key, _, _ in CONFIG_EDITS} >= set(config)


@pytest.mark.parametrize("key, value, readers", CONFIG_EDITS, ids=[key for key, _, _ in CONFIG_EDITS])
def test_editing_a_config_key_reruns_only_the_rules_that_read_it(demo_run, tmp_path, key, value, readers):
    """Dry runs only, with the edited config outside the run's folder: the run is left as it was."""
    changed = edited(yaml.safe_load((demo_run / TINY_DEMO).read_text()), key, value)
    # safe_dump sorts the keys: the run's config had them in another order, which must re-run nothing
    (tmp_path / "edited.yaml").write_text(yaml.safe_dump(changed))
    with ThreadPoolExecutor(2) as pool:  # the two dry runs side by side, one a core
        after_edit = pool.submit(run_snakemake, demo_run, "-n", "--configfile", str(tmp_path / "edited.yaml"))
        # the manifest records the config files (edited.yaml now), so it is rebuilt after every edit
        expected = pool.submit(planned_jobs, demo_run, "--forcerun", *readers) if readers else None
        after_edit, expected = after_edit.result(), expected.result() if expected else {"manifest": 1, "all": 1}
    assert after_edit.returncode == 0, after_edit.stderr[-2000:]
    assert dry_run_jobs(after_edit.stdout) == expected


def test_editing_an_mmlu_csv_reruns_its_loader(demo_copy):  # dry runs, in a copy of the run
    csv = demo_copy / "resources" / "demo" / "mmlu" / "data" / "dev" / "atlas_dev.csv"
    original = csv.read_bytes()
    try:
        csv.write_bytes(original.replace(b"?", b" ?", 1))
        assert planned_jobs(demo_copy) == planned_jobs(demo_copy, "--forcerun", "load_mmlu_questions") != {}
    finally:
        csv.write_bytes(original)
    assert planned_jobs(demo_copy) == {}  # the same content again: nothing re-runs


def test_a_deleted_checkpoint_is_not_retrained_while_its_scores_stand(demo_copy):
    """Freeing disk (README): a fine-tuned checkpoint whose scores are written may be deleted (in a copy of the
    run)."""
    import shutil

    shutil.rmtree(demo_copy / "results" / "finetune" / "tiny-llama" / "current_events" / "k1" / "checkpoint")
    assert planned_jobs(demo_copy) == {}
    # a job that reads it and must run again brings it back
    forced = planned_jobs(demo_copy, "--forcerun",
                          "results/scores/tiny-llama/current_events/ft-p1_k0_0shot_options.json")
    assert forced["finetune"] == 1 and forced["evaluate_ft"] == 1


def test_editing_one_paraphrase_set_reruns_only_its_downstream(demo_copy):  # dry runs, in a copy
    target = demo_copy / "results" / "current_events" / "paraphrases" / "paraphrases_k1.parquet"
    original = target.read_bytes()
    try:
        df = pd.read_parquet(target)
        df.loc[df.index[-1], "text"] += " (edited)"
        df.to_parquet(target, index=False)
        # set 1 feeds one fine-tuning run, which feeds one score (FT+RAG uses sets 0 and 10 only), and the
        # steps-matched control of set 1, whose steps are counted from it, with its score; the run's record, the
        # manifest, is rebuilt after them. A bare `touch` re-runs nothing: Snakemake sees by checksum that a small
        # file's content did not change.
        assert planned_jobs(demo_copy) == {"finetune": 1, "evaluate_ft": 1, "finetune_steps": 1, "evaluate_steps": 1,
                                           "tables": 1, "figures": 1, "manifest": 1, "all": 1}
    finally:
        target.write_bytes(original)
    assert planned_jobs(demo_copy) == {}
