"""Benchmark: the demo's whole evaluation stage, stock lm-eval scoring (before) against the shared prefix (after).

    .venv/bin/python bench/demo_evaluation.py [--repo DIR] [--task T] [--after rerun]     (standalone, after
                                                    `make demo`; bench/run.py calls bench_demo_evaluation)

Before: the demo's evaluation jobs (rules evaluate_base, evaluate_ft, evaluate_ftrag) re-run by Snakemake in a
copy of the repository (its `git ls-files`) and of the run's results/ (score files left out, lm-eval task
folders pointed at the copy) with the run's .snakemake/metadata, on config/demo.yaml plus an overlay
``evaluation: {shared_prefix: false}`` (lm-eval's own HF model, what the pipeline did before), same threads per
job, ``--cores 2``; the copy runs its own ``kinject`` (its src/ first on PYTHONPATH). A dry run first checks
that nothing else would run. After: the same jobs as the newest Snakemake log in the run's .snakemake/log that
ran them all timed them (shared-prefix scoring, the default), or with ``--after rerun`` re-run in the same copy
on config/demo.yaml alone right after (their params change back, so Snakemake re-runs them). Measured: from the
logs, the job seconds per rule and the wall span of the evaluation jobs (comparable only with a re-run: in the
demo run they were interleaved with its other jobs), and the wall time of each Snakemake command; the
accuracies of the two sides are compared cell by cell.
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
from dataclasses import dataclass
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

@dataclass(frozen=True)
class Job:
    """One evaluation job of a Snakemake log: its rule, wildcards, start and end."""

    rule: str
    wildcards: tuple
    start: datetime.datetime
    end: datetime.datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def evaluation_log(log_dir: Path, expected: set[tuple]) -> tuple[Path, list[Job]] | None:
    """(log, its evaluation jobs) of the newest Snakemake log in ``log_dir`` that ran to the end (100% done)
    and finished every job in ``expected``, a set of (rule, wildcards) as :func:`job_key` makes them."""
    stamp = r"\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]\n"
    rules = "(" + "|".join(EVALUATION_RULES) + ")"
    parse = lambda s: datetime.datetime.strptime(" ".join(s.split()), "%a %b %d %H:%M:%S %Y")
    for log in sorted(log_dir.glob("*.snakemake.log"), reverse=True):
        text = log.read_text(errors="replace")
        if "(100%) done" not in text:
            continue
        starts = {}
        for m in re.finditer(stamp + r"(?:local)?rule " + rules + r":\n((?:    .*\n)+)", text):
            fields = dict(re.findall(r"^    (\w+): (.*)$", m[3], re.M))
            wildcards = dict(pair.split("=", 1) for pair in fields.get("wildcards", "").split(", ") if pair)
            starts[fields["jobid"]] = (job_key(m[2], wildcards), parse(m[1]))
        ends = {m[2]: parse(m[1]) for m in re.finditer(stamp + r"Finished jobid: (\d+) \(Rule: " + rules + r"\)", text)}
        jobs = [Job(*starts[j][0], starts[j][1], ends[j]) for j in starts if j in ends]
        if expected <= {(job.rule, job.wildcards) for job in jobs}:
            return log, [job for job in jobs if (job.rule, job.wildcards) in expected]
    return None


def job_key(rule: str, wildcards: dict) -> tuple:
    return rule, tuple(sorted((k, str(v)) for k, v in wildcards.items()))


def per_rule(jobs: list[Job]) -> str:
    seconds: dict[str, list[float]] = {}
    for job in jobs:
        seconds.setdefault(job.rule, []).append(job.seconds)
    return "; ".join(f"{rule} {len(v)} x {sum(v) / len(v):.1f} s" for rule, v in sorted(seconds.items()))


def span(jobs: list[Job]) -> float:
    return (max(job.end for job in jobs) - min(job.start for job in jobs)).total_seconds()


# the stage, before and after ----------------------------------------------------------------------------------

def evaluation_outputs(config: dict) -> dict[tuple, list]:
    """Every evaluation job of the demo's grid, (rule, wildcards) -> the cells (kinject.grid.Cell) it scores."""
    from kinject.grid import Cell, evaluation_cells, evaluation_jobs

    out = {}
    for rule, jobs in evaluation_jobs(config).items():
        for wildcards in jobs:
            at = {key: wildcards[key] for key in ("model", "task", "shots", "format")}
            out[job_key(rule, wildcards)] = [Cell(method=method.format(**wildcards), k=k, **at)
                                             for method, k in evaluation_cells(config)[rule]]
    return out


def compare_accuracies(cells: list, after: Path, before: Path) -> str:
    """Accuracy of each cell in the two runs' score files (results folders ``after`` and ``before``)."""
    read = lambda results, cell: json.loads((results / Path(cell.path).relative_to("results")).read_text())
    diffs = {}
    for cell in cells:
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


def row(stage, size, before, after, unit, after_how, note) -> dict:
    """A row in bench/run.py's format, lower is better (seconds): ratio = before / after."""
    ratio = before / after
    return {"stage": stage, "size": size, "compared with": "stock lm-eval (shared_prefix: false), re-run",
            "its value": before, "kinject": f"shared prefix (kinject-hf), {after_how}", "kinject value": after,
            "unit": unit, "ratio": ratio, "verdict": "ok" if ratio >= 0.5 else "SLOW (> 2x slower)", "note": note}


def not_measured(size: str, why: str, verdict: str = "not measured") -> list[dict]:
    return [{"stage": "evaluation, demo stage", "size": size, "compared with": "stock lm-eval (shared_prefix: false)",
             "its value": None, "kinject": "shared prefix (kinject-hf)", "kinject value": None, "unit": "job-s",
             "ratio": None, "verdict": verdict, "note": why}]


class RerunError(Exception):
    """A re-run in the copy that did not go as planned: the row says why."""


def rerun(copy: Path, targets: list[str], config_args: list[str], jobs: dict[str, int], expected: set[tuple],
          out: Path) -> tuple[dict, float, list[Job]]:
    """Snakemake on ``targets`` in ``copy``, after a dry run checks it plans the evaluation ``jobs`` and nothing
    else (but lmeval_task where the run's task folders were temporary): (planned, wall seconds, the jobs as its
    log timed them)."""
    from kinject.grid import dry_run_jobs

    args = [*targets, "--cores", "2", *config_args]
    planned = dry_run_jobs(snakemake(copy, "-n", *args).stdout)
    others = {rule: n for rule, n in planned.items() if rule not in jobs and rule != "lmeval_task"}
    if {rule: planned.get(rule, 0) for rule in jobs} != jobs or others:
        raise RerunError(f"the dry run in the copy plans {planned or 'nothing'}, not the evaluation jobs {jobs} "
                         "(+ lmeval_task where the run's task folders were temporary)")
    print(f"snakemake {' '.join(config_args)} in {copy}: {planned}", flush=True)
    start = time.perf_counter()
    proc = snakemake(copy, *args, log=out)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise RerunError(f"snakemake failed in the copy: {last_line(proc)} (output: {out})")
    found = evaluation_log(copy / ".snakemake" / "log", expected)
    if not found:
        raise RerunError("the copy's Snakemake log does not show every evaluation job finished")
    return planned, wall, found[1]


def bench_demo_evaluation(repo: Path, results: Path, tmp: Path, keep=lambda rule, wildcards: True,
                          rerun_after: bool = False) -> list[dict]:
    """Rows: the demo's evaluation jobs (those ``keep(rule, wildcards)`` accepts), job seconds and wall time,
    stock scoring re-run in a copy vs the demo run's log (or, with ``rerun_after``, vs shared-prefix scoring
    re-run in the same copy right after)."""
    from kinject.settings import load_config

    config = load_config(repo / "config" / "demo.yaml")
    outputs = {key: cells for key, cells in evaluation_outputs(config).items() if keep(key[0], dict(key[1]))}
    cells = [cell for job_cells in outputs.values() for cell in job_cells]
    targets = [cell.path for cell in cells]
    jobs = {rule: sum(1 for key in outputs if key[0] == rule) for rule in EVALUATION_RULES}
    jobs = {rule: n for rule, n in jobs.items() if n}
    size = f"{len(cells)} cells in {len(outputs)} jobs ({', '.join(f'{r} {n}' for r, n in jobs.items())}), --cores 2"
    found = evaluation_log(repo / ".snakemake" / "log", set(outputs))
    if not found and not rerun_after:
        return not_measured(size, f"no Snakemake log in {repo / '.snakemake' / 'log'} ran these {len(outputs)} "
                                  "evaluation jobs to the end (run `make demo` first)")
    copy = tmp / "stock_scoring"
    copy_run(repo, results, copy, scores=False)
    overlay = copy / "config" / "bench_stock_scoring.yaml"
    overlay.write_text(STOCK_OVERLAY, encoding="utf-8")
    try:
        planned, wall, before = rerun(copy, targets, ["--configfile", "config/demo.yaml",
                                                      str(overlay.relative_to(copy))], jobs, set(outputs),
                                      tmp / "stock_scoring.out")
        stock_scores = tmp / "stock_results" / "scores"
        shutil.copytree(copy / "results" / "scores", stock_scores)
        if rerun_after:  # the shared prefix again, in the same copy: its params changed back, so the jobs re-run
            _, wall_after, after = rerun(copy, targets, ["--configfile", "config/demo.yaml"], jobs, set(outputs),
                                         tmp / "shared_scoring.out")
            after_how, after_results = "re-run", copy / "results"
        else:
            (log_after, after), wall_after = found, None
            after_how, after_results = f"the demo run ({log_after.name})", results
    except RerunError as err:
        return not_measured(size, str(err), "FAILED")
    accuracies = compare_accuracies(cells, after_results, stock_scores.parent)
    rows = [row("evaluation, demo stage: job time", size, sum(j.seconds for j in before),
                sum(j.seconds for j in after), "job-s", after_how,
                f"sum of the evaluation jobs' times (process start, imports, model load, scoring); before: "
                f"{per_rule(before)}; after: {per_rule(after)}; {accuracies}")]
    whole = f"the whole snakemake command {wall:.0f} s (DAG, {planned.get('lmeval_task', 0)} lmeval_task jobs)"
    if rerun_after:
        rows.append(row("evaluation, demo stage: wall time", size, span(before), span(after), "s", after_how,
                        f"first evaluation job's start to the last one's end, one-thread jobs 2 at a time; {whole} "
                        f"vs {wall_after:.0f} s"))
    else:
        rows.append({**row("evaluation, demo stage: wall time", size, span(before), span(after), "s", after_how, ""),
                     "kinject value": None, "ratio": None, "verdict": "not comparable",
                     "note": f"first evaluation job's start to the last one's end; before: the re-run, one-thread jobs "
                             f"2 at a time, {whole}; after: {span(after):.0f} s in the demo run, where the evaluation "
                             "jobs were interleaved with its other jobs (fine-tunes, retrieval), so no measure of "
                             "them: see job time, or --demo-evaluation-after rerun"})
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repo", type=Path, default=ROOT, help="the repository of a completed demo run (read only)")
    p.add_argument("--results", type=Path, help="its results (default: REPO/results; read only)")
    p.add_argument("--task", action="append", help="only this task's evaluation jobs (repeatable; default: all)")
    p.add_argument("--after", choices=["log", "rerun"], default="log",
                   help="the shared-prefix side: the demo run's own log (default) or a re-run in the same copy")
    args = p.parse_args(argv)
    repo = args.repo.resolve()
    keep = (lambda rule, wildcards: wildcards["task"] in args.task) if args.task else (lambda rule, wildcards: True)
    with tempfile.TemporaryDirectory(prefix="kinject-bench-stage-") as scratch:
        for r in bench_demo_evaluation(repo, (args.results or repo / "results").resolve(), Path(scratch), keep,
                                       rerun_after=args.after == "rerun"):
            print(f"{r['stage']:36s} {r['its value'] or 0:10,.1f} -> {r['kinject value'] or 0:10,.1f} {r['unit']:6s} "
                  f"{r['verdict']}  {r['size']}; {r['note']}", flush=True)


if __name__ == "__main__":
    main()
