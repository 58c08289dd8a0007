"""bench/run.py's evaluation stage: lm-eval's batch sizes on the demo's tasks, and the evaluation jobs' scoring of
several cells in one process against one process per checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from harness import Demo, MethodTimer, record, timed, torch_threads

# 3. evaluation -------------------------------------------------------------------------------------------

def lmeval_task(demo: Demo, out: Path, task: str, k: int, fmt: str = "options",
                questions: int | None = None) -> tuple[Path, str]:
    """An lm-eval task as rule lmeval_task writes it (folder and name after kinject.paths.LMEVAL_TASK_DIR, under
    ``out``), on the first ``questions`` test questions of the demo's task (all of them when None) and all its
    dev questions (the few-shot examples)."""
    from kinject.evaluation.evaluate import write_lmeval_task
    from kinject.paths import LMEVAL_TASK_DIR
    from kinject.qa.sets import read_questions, write_questions

    source = demo.results / task / "questions.parquet"
    if questions:
        subset = out / f"{task}_questions_{questions}.parquet"
        if not subset.exists():
            q = read_questions(source)
            write_questions(subset, pd.concat([q[q["split"] == "test"].head(questions), q[q["split"] != "test"]]))
        source = subset
    name = f"kinject_{task}_{fmt}_k{k}"
    task_dir = out / Path(LMEVAL_TASK_DIR.format(task=task, format=fmt, k=k)).relative_to("results")
    if not task_dir.exists():
        write_lmeval_task(source, task_dir, name, k=k, retrieved_parquet=demo.results / task / "retrieval" /
                          "retrieved.parquet", chunks_parquet=demo.results / task / "chunks.parquet", fmt=fmt,
                          subject=demo.config["tasks"][task]["questions"].get("subject", task),
                          fewshot_context=demo.config["evaluation"]["fewshot_context"])
    return task_dir, name


def n_test(task_dir: Path) -> int:
    return sum(1 for _ in open(task_dir / "test.jsonl", encoding="utf-8"))


def bench_lmeval(demo: Demo, tmp: Path, questions: int) -> None:
    """Requests/s of lm-eval scoring at the configured batch size vs 1, as an evaluation job runs it."""
    from kinject.evaluation.evaluate import Run, run_lmeval
    from kinject.evaluation.shared_prefix import SharedPrefixHFLM
    from kinject.grid import rag_ks

    ev, k = demo.config["evaluation"], max(rag_ks(demo.config))
    for task in ("current_events", "atlas"):
        shots = max(demo.config["tasks"][task]["shots"])
        task_dir, name = lmeval_task(demo, tmp / "lmeval", task, k, questions=questions)
        measured = {}
        for bs in (ev["batch_size"], 1):  # the configured size first: it pays any one-time start-up cost
            timer = MethodTimer(SharedPrefixHFLM, "loglikelihood")  # the pipeline's lm-eval model
            with timer.patched(), torch_threads(demo.threads("evaluate")):
                wall, [scores] = timed(lambda: run_lmeval(
                    demo.base, [Run(task_dir, name, tmp / f"{name}_{shots}shot_bs{bs}.json")], shots=shots,
                    batch_size=bs, seed=demo.config["seed"], precision=demo.precision,
                    shared_prefix=ev["shared_prefix"], max_truncated_fraction=ev["max_truncated_fraction"]))
            measured[bs] = (timer.items / timer.seconds, wall, timer.items, scores)
        (rate, wall, n, scores), (rate1, wall1, _, scores1) = measured[ev["batch_size"]], measured[1]
        record(f"evaluation, lm-eval ({shots}-shot)", f"{task} K={k} options, first {n_test(task_dir)} test questions, "
               f"{n} requests, {demo.model_name} {demo.precision}, {demo.threads('evaluate')} thread(s)",
               "batch size 1", rate1, f"batch size {ev['batch_size']} (config)", rate, "requests/s",
               f"scoring only ({scores['scorer']}); whole run_lmeval {wall1:.1f} s vs {wall:.1f} s; accuracy "
               f"{scores1['accuracy']:.3f} vs {scores['accuracy']:.3f}")


EVAL_PROCESS = """
import json, sys
from kinject.device import use_threads
from kinject.evaluation.evaluate import Run, run_lmeval
args = json.loads(sys.argv[1])
use_threads(args.pop("threads"))
run_lmeval(args.pop("model"), [Run(*run) for run in args.pop("runs")], **args)
"""


def evaluate_in_processes(model: Path, groups: list[list[tuple]], threads: int, **options) -> float:
    """Seconds to score each group of runs (task dir, task name, out json) in a fresh Python process, one
    after the other: what a Snakemake job pays (interpreter, imports, model load, lm-eval task build, scoring).
    Each gets ``threads`` threads, as Snakemake gives a job (OMP_NUM_THREADS) and rule_main gives torch."""
    env = {**os.environ, **dict.fromkeys(("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"), str(threads))}
    start = time.perf_counter()
    for runs in groups:
        arg = json.dumps({"model": str(model), "runs": [[str(x) for x in run] for run in runs], "threads": threads,
                          **options})
        subprocess.run([sys.executable, "-c", EVAL_PROCESS, arg], check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def bench_evaluation_jobs(demo: Demo, tmp: Path, questions: int) -> None:
    """One process per cell vs one per checkpoint (rule evaluate_base): the base model's current-events cells."""
    from kinject.grid import evaluation_cells

    task, ev = "current_events", demo.config["evaluation"]
    cells = evaluation_cells(demo.config)["evaluate_base"]
    runs = [lmeval_task(demo, tmp / "jobs", task, k, questions=questions) for _, k in cells]
    out = {mode: tmp / "jobs" / mode for mode in ("cell", "checkpoint")}
    options = {"shots": 0, "batch_size": ev["batch_size"], "seed": demo.config["seed"],
               "precision": demo.precision, "shared_prefix": ev["shared_prefix"],
               "max_truncated_fraction": ev["max_truncated_fraction"]}
    threads = demo.threads("evaluate")
    t_cell = evaluate_in_processes(demo.base, [[(d, n, out["cell"] / f"{n}.json")] for d, n in runs], threads,
                                   **options)
    t_ckpt = evaluate_in_processes(demo.base, [[(d, n, out["checkpoint"] / f"{n}.json") for d, n in runs]], threads,
                                   **options)
    same = all(pd.read_json(out["cell"] / f"{n}.json", typ="series")["accuracy"]
               == pd.read_json(out["checkpoint"] / f"{n}.json", typ="series")["accuracy"] for _, n in runs)
    record("evaluation, jobs", f"{task}: base + RAG K={','.join(str(k) for _, k in cells[1:])}, {len(cells)} cells, "
           f"0-shot, first {n_test(runs[0][0])} test questions, {demo.model_name} {demo.precision}, "
           f"{threads} thread(s)", "one process per cell", t_cell, "one per checkpoint (evaluate_base)",
           t_ckpt, "s", f"fresh Python processes, run one after the other; {'same' if same else 'DIFFERENT'} "
           f"accuracies; {t_cell / len(cells):.1f} vs {t_ckpt / len(cells):.1f} s per cell", higher_is_better=False)
