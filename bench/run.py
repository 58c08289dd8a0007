"""Benchmark: each heavy stage of kinject against the naive way of doing the same work, in one run.

    .venv/bin/python bench/run.py [--max-load 1 --wait 600]     (after `make demo`)

Prints a table of ratios and writes bench/results.md with the machine it ran on. It only reads a completed
demo run (``--repo``: its repository, by default this checkout; its results/, .snakemake/log and
.snakemake/metadata); everything it writes (indexes, task folders, checkpoints, copies of the repository and
the run) goes to a temporary directory. The stages are modules beside it (stage_*.py and the standalone ones);
harness.py has what they share.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
import traceback
from importlib import metadata
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import cleaning  # bench/cleaning.py: the knowledge-base stages on a synthetic dump
import demo_evaluation  # bench/demo_evaluation.py: the demo's evaluation jobs, stock scoring vs shared prefix
import dumps  # bench/dumps.py: a multistream dump through its index and in parallel, against today's pass
import evaluation  # bench/evaluation.py: stock lm-eval scoring vs shared-prefix scoring, SmolLM2
import llm_concurrency  # bench/llm_concurrency.py: the questions stage one request at a time vs 8 and 32 in flight
from harness import Demo, add_rows, record_value, rows
from stage_finetune import bench_finetune
from stage_lmeval import bench_evaluation_jobs, bench_lmeval
from stage_retrieval import bench_embedding, bench_faiss_demo, bench_faiss_synthetic
from stage_snakemake import bench_snakemake

ROOT = Path(__file__).resolve().parents[1]
SLOWER = 0.5  # the goal: no stage more than 2x slower than its best-practice configuration
DRY_RUN_GOAL_S = 5.0
STAGES = ("embedding", "retrieval", "evaluation", "shared-prefix", "finetune", "snakemake", "demo-evaluation",
          "cleaning", "dumps", "llm")


# the machine and the run ------------------------------------------------------------------------------

def wait_for_load(max_load: float, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while os.getloadavg()[0] > max_load and time.monotonic() < deadline:
        print(f"load average {os.getloadavg()[0]:.2f} > {max_load}; waiting", flush=True)
        time.sleep(15)


def machine(load_start: tuple, load_end: tuple, seconds: float) -> list[str]:
    from kinject.precision import cpu_bf16

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    cpu += f" ({cpu_bf16()[1]})"  # the kind of CPU: native bf16 (AVX512_BF16, AMX) or not
    mem_kib = int(next(line for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal")).split()[1])
    versions = ", ".join(f"{name} {metadata.version(dist)}" for name, dist in (
        ("torch", "torch"), ("transformers", "transformers"), ("lm_eval", "lm_eval"), ("faiss", "faiss-cpu"),
        ("sentence-transformers", "sentence-transformers"), ("snakemake", "snakemake"), ("numpy", "numpy")))
    fmt = lambda load: " / ".join(f"{v:.2f}" for v in load)
    return [f"- date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
            f"- CPU: {cpu}, {os.cpu_count()} cores; RAM {mem_kib / 2**20:.1f} GiB; {platform.platform()}",
            f"- Python {platform.python_version()}; {versions}",
            f"- load average (1 / 5 / 15 min): {fmt(load_start)} at the start, {fmt(load_end)} at the end",
            f"- benchmark wall time: {seconds / 60:.1f} min"]


def markdown_table(table: list[dict]) -> list[str]:
    if not table:
        return ["(no stage ran)"]
    def cell(v):
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:,.2f}" if abs(v) < 1e5 else f"{v:,.0f}"
        return str(v).replace("|", "/")

    lines = ["| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
    return lines + ["| " + " | ".join(cell(v) for v in row.values()) + " |" for row in table]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repo", type=Path, default=ROOT,
                   help="the repository of a completed `make demo` run: its config/demo.yaml, .snakemake/log and "
                        ".snakemake/metadata, tracked files copied for the Snakemake rows (default: this checkout; read only)")
    p.add_argument("--results", type=Path, help="that run's results (default: REPO/results; read only)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results.md")
    p.add_argument("--max-load", type=float, default=1.0, help="wait for the 1-minute load average to drop below")
    p.add_argument("--wait", type=float, default=0, help="seconds to wait at most for that (default: no wait)")
    p.add_argument("--only", nargs="+", choices=STAGES, default=list(STAGES), metavar="STAGE",
                   help=f"run only these stages (default: all of {', '.join(STAGES)})")
    p.add_argument("--demo-evaluation", action=argparse.BooleanOptionalAction, default=True,
                   help="re-run the demo's evaluation jobs with stock lm-eval scoring (the longest part: about 3x "
                        "the demo's own evaluation time)")
    p.add_argument("--demo-evaluation-after", choices=["log", "rerun"], default="log",
                   help="the shared-prefix side of that: the demo run's Snakemake log (default), or the same jobs "
                        "re-run right after the stock ones (then the wall times compare too; adds the demo's "
                        "evaluation time)")
    p.add_argument("--flat-size", type=int, default=200_000, help="synthetic vectors for exact search")
    p.add_argument("--queries", type=int, default=1000, help="synthetic queries (the paper has 910 questions)")
    p.add_argument("--exact-max", type=int, help="HNSW threshold to probe (default 100000, the former retrieval.exact_max)")
    p.add_argument("--lmeval-questions", type=int, default=16,
                   help="test questions per task in the lm-eval batch-size and evaluation-jobs rows")
    p.add_argument("--eval-limit", type=int, help="questions per task in the shared-prefix rows (default: all)")
    p.add_argument("--ft-texts", type=int, default=64,
                   help="texts of the largest current-events paraphrase set in the fine-tuning rows")
    p.add_argument("--cleaning-mb", type=float, default=1024, help="decompressed XML of the synthetic dump (bench/cleaning.py)")
    return p.parse_args(argv)



def run_stage(name: str, stage) -> None:
    """One stage; an exception becomes a FAILED row (its traceback printed) and the benchmark goes on."""
    print(f"-- {name}", flush=True)
    try:
        stage()
    except Exception as exc:  # noqa: BLE001 - a benchmark row, not error handling: report and go on
        traceback.print_exc()
        why = (str(exc).strip().splitlines() or [""])[0][:300]
        record_value(name, "", "", None, "", "FAILED", f"{type(exc).__name__}: {why}")


def smollm2(demo: Demo, tmp: Path) -> Path:
    """SmolLM2-135M for the shared-prefix rows: the demo's own conversion when the demo runs it, else converted."""
    if demo.config["models"][demo.model_name].get("gguf") == evaluation.SMOLLM2:
        return demo.base
    return evaluation.convert_gguf_model(tmp / "smollm2")


def load_demo(repo: Path, results: Path | None) -> Demo:
    from kinject.settings import load_config

    config = load_config(repo / "config" / "demo.yaml")
    if len(config["models"]) != 1 or not {"gguf", "build"} & set(next(iter(config["models"].values()))):
        sys.exit(f"{repo / 'config' / 'demo.yaml'}: the benchmark expects one model that the pipeline converts or "
                 "builds into results/models/<name>/base")
    demo = Demo(repo, (results or repo / "results").resolve(), config)
    needed = [demo.results / "embedder", demo.base, demo.results / "current_events" / "retrieval" / "retrieved.parquet"]
    if missing := [str(p) for p in needed if not p.exists()]:
        sys.exit(f"bench/run.py needs the demo's outputs ({', '.join(missing)} missing): run `make demo` first")
    return demo


def main(argv=None) -> None:
    from kinject.evaluation.retrieval import load_embedder

    args = parse_args(argv)
    demo = load_demo(args.repo.resolve(), args.results)
    config, only = demo.config, set(args.only) - (set() if args.demo_evaluation else {"demo-evaluation"})
    complete = (demo.results / "tables" / "scores.csv").exists()
    exact_max = args.exact_max or 100_000  # the former default: why exact search now goes to 10M
    retrieval_batch = config["retrieval"]["batch_size"]
    wait_for_load(args.max_load, args.wait)
    load_start, started = os.getloadavg(), time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kinject-bench-") as scratch:
        tmp = Path(scratch)
        stages = {
            "embedding": lambda: bench_embedding(demo, load_embedder(demo.results / "embedder"), retrieval_batch),
            "retrieval": lambda: (
                bench_faiss_demo(demo.results, load_embedder(demo.results / "embedder"), tmp, retrieval_batch,
                                 config["retrieval"]["exact_max"]),
                bench_faiss_synthetic(args.flat_size, exact_max + 1, args.queries, exact_max,
                                      config["retrieval"]["exact_max"])),
            "evaluation": lambda: (bench_lmeval(demo, tmp, args.lmeval_questions),
                                   bench_evaluation_jobs(demo, tmp, args.lmeval_questions)),
            "shared-prefix": lambda: add_rows(evaluation.bench_shared_prefix(
                demo.results, tmp, smollm2(demo, tmp), config, limit=args.eval_limit)),
            "finetune": lambda: bench_finetune(demo, tmp, args.ft_texts),
            "snakemake": lambda: bench_snakemake(demo, tmp, complete),
            "demo-evaluation": lambda: add_rows(demo_evaluation.bench_demo_evaluation(
                demo.repo, demo.results, tmp, rerun_after=args.demo_evaluation_after == "rerun")),
            "cleaning": lambda: add_rows(cleaning.bench_cleaning(args.cleaning_mb, tmp)),
            "dumps": lambda: add_rows(dumps.bench_dumps(args.cleaning_mb, tmp / "dumps")),
            "llm": lambda: add_rows(llm_concurrency.bench_llm_concurrency(tmp)),
        }
        for name, stage in stages.items():
            if name in only:
                run_stage(name, stage)
    lines = ["# kinject benchmark", "", "`.venv/bin/python bench/run.py` on", "",
             *machine(load_start, os.getloadavg(), time.monotonic() - started), "",
             f"Demo run read: {demo.results} ({demo.model_name}, precision {config['precision']}, here "
             f"{demo.precision}).", "",
             "ratio: how many times faster kinject's way is than the one it is compared with "
             "(< 0.5: more than 2x slower, SLOW).", "", *markdown_table(rows), ""]
    text = "\n".join(lines)
    args.out.write_text(text, encoding="utf-8")
    print("\n" + text)


if __name__ == "__main__":
    main()
