"""bench/run.py's Snakemake stage: the dry run's time on the demo and the full grid, and which jobs an edit makes
stale."""

from __future__ import annotations

import shutil
from pathlib import Path

import demo_evaluation  # bench/demo_evaluation.py: the demo's repository copied, its dry runs
import pandas as pd
from harness import Demo, record_value, timed

DRY_RUN_GOAL_S = 5.0


# 5. Snakemake --------------------------------------------------------------------------------------------

def edit_expectation(config: dict, task: str, p: int) -> dict[str, int]:
    """Jobs a dry run should list after an edit of results/{task}/paraphrases/paraphrases_k{p}.parquet: the
    fine-tunes that read it (a method's on set p, under every training seed; a control's matched to set p, which
    counts set p's steps, and every control's where p is 0, the set it trains on), the evaluation jobs of those
    models (kinject.grid.evaluation_jobs), the retrieval diagnostics where one of them retrieves, and the report:
    tables, figures and the manifest (rebuilt whenever a result changes)."""
    from kinject.grid import evaluation_jobs, method_runs, retriever_rule, task_methods, task_retrievers
    from kinject.paths import PARAPHRASE_SET
    from kinject.training.seeds import untag

    stale = {}  # method -> its runs (wildcard p) that read the file
    for m in task_methods(config, config["tasks"][task]):
        if m.train == PARAPHRASE_SET or m.matches:
            stale[m] = {run for run in method_runs(config, task, m) if untag(run)[0] == p or (m.matches and p == 0)}
    counts = {m.rule("finetune"): len(runs) * len(config["models"]) for m, runs in stale.items()}
    scored = {}  # each evaluation rule of a stale method (every retriever's FT+RAG too) -> the stale runs
    for m, runs in stale.items():
        rag = m.rule("evaluate_rag")
        for rule in (m.rule("evaluate"), rag, *(retriever_rule(rag, r.name)
                                                for r in task_retrievers(config, config["tasks"][task]))):
            scored[rule] = runs
    for rule, jobs in evaluation_jobs(config).items():
        counts[rule] = sum(1 for job in jobs if job["task"] == task and job.get("p") in scored.get(rule, ()))
    counts = {rule: n for rule, n in counts.items() if n}
    diagnostics = {"retrieval_tables": 1} if any("rag" in rule for rule in counts) else {}
    return {**counts, **diagnostics, "tables": 1, "figures": 1, "manifest": 1, "all": 1}


def demo_dry_run(repo: Path) -> dict[str, int]:
    from kinject.grid import dry_run_jobs

    proc = demo_evaluation.snakemake(repo, "-n", "--configfile", "config/demo.yaml")
    if proc.returncode:
        raise RuntimeError(f"snakemake -n failed in {repo}: {demo_evaluation.last_line(proc)}")
    return dry_run_jobs(proc.stdout)


def temporary_task_folders(demo: Demo) -> str:
    """A note when the run's lm-eval task folders are gone (code before they stopped being temp()): Snakemake then
    re-creates them for the re-run fine-tune's evaluation and re-runs every other job that reads them too."""
    from kinject.grid import cells
    from kinject.paths import LMEVAL_TASK_DIR

    folders = {LMEVAL_TASK_DIR.format(task=c.task, format=c.format, k=c.k) for c in cells(demo.config)}
    missing = [f for f in folders if not (demo.results / Path(f).relative_to("results")).is_dir()]
    return (f"; {len(missing)} of the run's {len(folders)} lm-eval task folders are gone (temporary in the code that "
            "ran it): re-made, their readers re-run") if missing else ""


def bench_snakemake(demo: Demo, tmp: Path, complete: bool) -> None:
    from kinject.planning.dag import dag_jobs
    from kinject.settings import load_config

    repo = tmp / "repo"
    demo_evaluation.copy_repo(demo.repo, repo)
    jobs = len(dag_jobs(load_config(demo.repo / "config.yaml"), demo.repo))
    t_dry, proc = timed(lambda: demo_evaluation.snakemake(repo, "-n", "-q"), 3)
    if proc.returncode:
        record_value("snakemake dry run, paper grid", f"{jobs} jobs", "snakemake -n -q", None, "s", "FAILED",
                     demo_evaluation.last_line(proc))
    else:
        record_value("snakemake dry run, paper grid", f"{jobs} jobs (config.yaml)", "snakemake -n -q", t_dry, "s",
                     "ok" if t_dry < DRY_RUN_GOAL_S else f"SLOW (goal < {DRY_RUN_GOAL_S:.0f} s)", "best of 3")
    if not complete:
        record_value("re-run after touching one paraphrase set", "demo", "snakemake -n", None, "jobs",
                     "not measured", f"no completed demo run in {demo.results} (run `make demo` first)")
        return
    shutil.copytree(demo.results, repo / "results", symlinks=True)  # copy2: modification times kept
    task, p = "current_events", max(demo.config["tasks"]["current_events"]["paraphrase_sets"])
    expected = edit_expectation(demo.config, task, p)
    before = demo_dry_run(repo)
    target = repo / "results" / task / "paraphrases" / f"paraphrases_k{p}.parquet"
    assert target.is_relative_to(tmp) and not target.is_relative_to(demo.results)
    target.touch()
    after = demo_dry_run(repo)
    listed = lambda jobs: ", ".join(f"{k} {v}" for k, v in jobs.items()) or "none"
    why = temporary_task_folders(demo)
    record_value("re-run after touching one paraphrase set", f"demo, {task} {target.name}",
                 "snakemake -n --configfile config/demo.yaml", sum(after.values()), "jobs",
                 "as expected" if after == expected else "UNEXPECTED",
                 f"{listed(after)}; expected {listed(expected)}; jobs before the touch: {listed(before)} "
                 f"(outputs older than a script or input edited since the demo run; no .snakemake metadata copied){why}")
    records = demo.repo / ".snakemake" / "metadata"
    if not records.is_dir():
        return
    # with the run's records Snakemake 9 compares an input's checksum before its modification time
    shutil.copytree(records, repo / ".snakemake" / "metadata", dirs_exist_ok=True)
    touched = demo_dry_run(repo)
    edited = pd.read_parquet(target)
    edited.loc[edited.index[-1], "text"] += " (edited)"
    edited.to_parquet(target, index=False)
    changed = demo_dry_run(repo)
    record_value("re-run after editing one paraphrase set", "demo, same file, with the run's .snakemake/metadata",
                 "snakemake -n --configfile config/demo.yaml", sum(changed.values()), "jobs",
                 "as expected" if changed == expected else "UNEXPECTED",
                 f"{listed(changed)}; expected {listed(expected)}; the bare touch alone "
                 + ("adds no job to the stale ones (same checksum)" if touched == before else "lists " + listed(touched))
                 + why)
