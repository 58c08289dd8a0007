"""Benchmark: the demo's whole evaluation stage, stock lm-eval scoring (before) against the shared prefix (after).

    .venv/bin/python bench/demo_evaluation.py [--repo DIR]     (standalone, after `make demo`; bench/run.py
                                                               calls bench_demo_evaluation)

After: the evaluation jobs (rules evaluate_base, evaluate_ft, evaluate_ftrag) of the completed demo run, as
its newest Snakemake log in .snakemake/log that ran them all timed them (shared-prefix scoring, the default).
Before: the same jobs re-run by Snakemake in a copy of the repository (its `git ls-files`) and of the run's
results/ (score files left out, lm-eval task folders pointed at the copy) with the run's .snakemake/metadata,
on config/demo.yaml plus an overlay ``evaluation: {shared_prefix: false}`` (lm-eval's own HF model, what the
pipeline did before), same threads per job, ``--cores 2``; the copy runs its own ``kinject`` (its src/ first
on PYTHONPATH). Measured: the wall time of that Snakemake run, and from each run's log the job seconds per
rule and the wall span of its evaluation jobs; the accuracies of the two runs are compared cell by cell.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
EVALUATION_RULES = ("evaluate_base", "evaluate_ft", "evaluate_ftrag")
STOCK_OVERLAY = "evaluation:\n  shared_prefix: false\n"
SAME_ACCURACY = 1e-9


# copies of a repository and its run ------------------------------------------------------------------------

def copy_repo(repo: Path, dest: Path) -> None:
    """The files `git ls-files` names in ``repo``, with their modification times (symlinks kept as links)."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=repo, capture_output=True, check=True).stdout.decode()
    for name in filter(None, names.split("\0")):
        src = repo / name
        if src.exists() or src.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name, follow_symlinks=False)


def relocate_lmeval_tasks(results: Path) -> int:
    """Point the lm-eval task YAMLs under ``results`` (a copy) at their own data files: write_lmeval_task names
    them by absolute path, i.e. in the original run. File modification times are kept. Returns the count."""
    import yaml

    moved = 0
    for task_yaml in results.glob("*/lmeval/**/*.yaml"):
        stat = task_yaml.stat()
        text = task_yaml.read_text(encoding="utf-8")
        for path in yaml.safe_load(text)["dataset_kwargs"]["data_files"].values():
            text = text.replace(path, str(task_yaml.parent / Path(path).name))
        task_yaml.write_text(text, encoding="utf-8")
        os.utime(task_yaml, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        moved += 1
    return moved


def copy_run(repo: Path, results: Path, dest: Path, *, scores: bool = True, metadata: bool = True) -> None:
    """``dest``: a copy of ``repo``'s tracked files and of ``results`` (modification times kept, without
    results/scores unless ``scores``), with the run's .snakemake/metadata when ``metadata`` (what Snakemake 9
    compares besides modification times: checksums, params, code)."""
    copy_repo(repo, dest)
    skip = (lambda folder, names: ["scores"] if Path(folder) == results else []) if not scores else None
    shutil.copytree(results, dest / "results", symlinks=True, ignore=skip)
    relocate_lmeval_tasks(dest / "results")
    if metadata and (repo / ".snakemake" / "metadata").is_dir():
        shutil.copytree(repo / ".snakemake" / "metadata", dest / ".snakemake" / "metadata", dirs_exist_ok=True)


def snakemake(copy: Path, *args: str, log: Path | None = None) -> subprocess.CompletedProcess:
    """Snakemake in ``copy`` with the copy's own kinject package (its src/ first on PYTHONPATH)."""
    env = {**os.environ, "PYTHONPATH": str(copy / "src"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    if log is None:
        return subprocess.run([SNAKEMAKE, *args], cwd=copy, env=env, capture_output=True, text=True)
    with open(log, "w", encoding="utf-8") as out:
        done = subprocess.run([SNAKEMAKE, *args], cwd=copy, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    done.stdout = log.read_text(errors="replace")
    return done


def last_line(proc: subprocess.CompletedProcess) -> str:
    text = ((proc.stderr or "") + (proc.stdout or "")).strip()
    errors = [line for line in text.splitlines() if "error" in line.lower()]
    return (errors or text.splitlines() or [f"exit {proc.returncode}"])[-1][:300]


# Snakemake logs ---------------------------------------------------------------------------------------------

def evaluate_log_times(log_dir: Path, n_jobs: int) -> tuple[Path, dict[str, list[float]], float] | None:
    """(log, per-job seconds by rule, wall span) of the evaluation jobs of the newest Snakemake log in
    ``log_dir`` that ran ``n_jobs`` of them to the end (100% done)."""
    stamp = r"\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]\n"
    rule = "(" + "|".join(EVALUATION_RULES) + ")"
    parse = lambda s: datetime.datetime.strptime(" ".join(s.split()), "%a %b %d %H:%M:%S %Y")
    for log in sorted(log_dir.glob("*.snakemake.log"), reverse=True):
        text = log.read_text(errors="replace")
        starts = {m[3]: (m[2], parse(m[1])) for m in
                  re.finditer(stamp + r"(?:local)?rule " + rule + r":\n(?:    .*\n)*?    jobid: (\d+)", text)}
        ends = {m[2]: parse(m[1]) for m in re.finditer(stamp + r"Finished jobid: (\d+) \(Rule: " + rule + r"\)", text)}
        done = [j for j in starts if j in ends]
        if len(done) == n_jobs and "(100%) done" in text:
            seconds: dict[str, list[float]] = {}
            for j in done:
                seconds.setdefault(starts[j][0], []).append((ends[j] - starts[j][1]).total_seconds())
            span = (max(ends[j] for j in done) - min(starts[j][1] for j in done)).total_seconds()
            return log, seconds, span
    return None


def per_rule(seconds: dict[str, list[float]]) -> str:
    return "; ".join(f"{rule} {len(v)} x {sum(v) / len(v):.1f} s" for rule, v in sorted(seconds.items()))


# the stage, before and after ----------------------------------------------------------------------------------

def compare_accuracies(config: dict, after: Path, before: Path) -> str:
    """Accuracy of every grid cell in the two runs' score files (results folders ``after`` and ``before``)."""
    from kinject.grid import cells

    read = lambda results, cell: json.loads((results / Path(cell.path).relative_to("results")).read_text())
    diffs = {}
    for cell in cells(config):
        a, b = read(after, cell), read(before, cell)
        diffs[cell] = (abs(a["accuracy"] - b["accuracy"]), a["scorer"], b["scorer"])
    differ = {c: d for c, d in diffs.items() if d[0] > SAME_ACCURACY}
    scorers = sorted({f"{d[2]} vs {d[1]}" for d in diffs.values()})
    text = f"accuracies ({', '.join(scorers)}): {len(diffs) - len(differ)}/{len(diffs)} cells equal within " \
           f"{SAME_ACCURACY:g}"
    if differ:
        text += "; differ: " + ", ".join(f"{c.task} {c.method} K={c.k} {c.shots}-shot {c.format} by {d[0]:.4f}"
                                         for c, d in differ.items())
    return text


def row(stage, size, before, after, unit, note) -> dict:
    """A row in bench/run.py's format, lower is better (seconds): ratio = before / after."""
    ratio = before / after
    return {"stage": stage, "size": size, "compared with": "stock lm-eval (shared_prefix: false), re-run",
            "its value": before, "kinject": "shared prefix (kinject-hf), the demo run", "kinject value": after,
            "unit": unit, "ratio": ratio, "verdict": "ok" if ratio >= 0.5 else "SLOW (> 2x slower)", "note": note}


def not_measured(size: str, why: str, verdict: str = "not measured") -> list[dict]:
    return [{"stage": "evaluation, demo stage", "size": size, "compared with": "stock lm-eval (shared_prefix: false)",
             "its value": None, "kinject": "shared prefix (kinject-hf)", "kinject value": None, "unit": "job-s",
             "ratio": None, "verdict": verdict, "note": why}]


def bench_demo_evaluation(repo: Path, results: Path, tmp: Path) -> list[dict]:
    """Rows: the demo's evaluation jobs, job seconds and wall time, stock scoring re-run vs the demo's log."""
    from kinject.grid import cells, dry_run_jobs, evaluation_jobs
    from kinject.settings import load_config

    config = load_config(repo / "config" / "demo.yaml")
    jobs = {rule: len(j) for rule, j in evaluation_jobs(config).items() if j}
    n_jobs, n_cells = sum(jobs.values()), len(cells(config))
    size = f"{n_cells} cells in {n_jobs} jobs ({', '.join(f'{r} {n}' for r, n in jobs.items())}), --cores 2"
    found = evaluate_log_times(repo / ".snakemake" / "log", n_jobs)
    if not found:
        return not_measured(size, f"no Snakemake log in {repo / '.snakemake' / 'log'} ran all {n_jobs} evaluation "
                                   "jobs to the end (run `make demo` first)")
    log_after, after, span_after = found
    copy = tmp / "stock_scoring"
    copy_run(repo, results, copy, scores=False)
    overlay = copy / "config" / "bench_stock_scoring.yaml"
    overlay.write_text(STOCK_OVERLAY, encoding="utf-8")
    args = [*(cell.path for cell in cells(config)), "--cores", "2", "--configfile", "config/demo.yaml",
            str(overlay.relative_to(copy))]
    planned = dry_run_jobs(snakemake(copy, "-n", *args).stdout)
    others = {rule: n for rule, n in planned.items() if rule not in jobs and rule != "lmeval_task"}
    if {rule: planned.get(rule, 0) for rule in jobs} != jobs or others:
        return not_measured(size, f"the dry run in the copy plans {planned or 'nothing'}, not the evaluation jobs "
                                  f"{jobs} (+ lmeval_task where the run's task folders were temporary)", "UNEXPECTED")
    print(f"re-running the demo's {n_jobs} evaluation jobs with stock lm-eval scoring in {copy} "
          f"(planned: {planned})", flush=True)
    start = time.perf_counter()
    proc = snakemake(copy, *args, log=tmp / "stock_scoring.out")
    wall = time.perf_counter() - start
    if proc.returncode:
        return not_measured(size, f"snakemake failed in the copy: {last_line(proc)}", "FAILED")
    found = evaluate_log_times(copy / ".snakemake" / "log", n_jobs)
    if not found:
        return not_measured(size, "the copy's Snakemake log does not show every evaluation job finished", "FAILED")
    _, before, span_before = found
    accuracies = compare_accuracies(config, results, copy / "results")
    total_before, total_after = sum(map(sum, before.values())), sum(map(sum, after.values()))
    return [
        row("evaluation, demo stage: job time", size, total_before, total_after, "job-s",
            f"sum of the evaluation jobs' times (process start, imports, model load, scoring); before: {per_rule(before)}; "
            f"after ({log_after.name}): {per_rule(after)}; {accuracies}"),
        row("evaluation, demo stage: wall time", size, span_before, span_after, "s",
            f"first evaluation job's start to last one's end, 2 one-thread jobs at a time; the re-run's whole "
            f"snakemake command {wall:.0f} s (DAG, {planned.get('lmeval_task', 0)} lmeval_task jobs); the demo's "
            "evaluation jobs shared the 2 cores with its other jobs (fine-tunes, retrieval) where they overlapped"),
    ]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repo", type=Path, default=ROOT, help="the repository of a completed demo run (read only)")
    p.add_argument("--results", type=Path, help="its results (default: REPO/results; read only)")
    args = p.parse_args(argv)
    repo = args.repo.resolve()
    with tempfile.TemporaryDirectory(prefix="kinject-bench-stage-") as scratch:
        for r in bench_demo_evaluation(repo, (args.results or repo / "results").resolve(), Path(scratch)):
            print(f"{r['stage']:36s} {r['its value'] or 0:10,.1f} -> {r['kinject value'] or 0:10,.1f} {r['unit']:6s} "
                  f"{r['verdict']}  {r['size']}; {r['note']}", flush=True)


if __name__ == "__main__":
    main()
