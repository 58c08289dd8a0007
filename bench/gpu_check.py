"""Ready for the first GPU: one prepared check that measures what `kinject plan` only estimates (issue #25).

    python bench/gpu_check.py [--quick] [--out DIR]        (make gpu-check; on a lent GPU: docs/gpu-check.md)

Each step runs in a process of its own under a time limit, and the results file is rewritten after every
step, so a step that fails, hangs or runs out of memory costs only itself:

- ``device_tests``: the suite's device-choice tests (pytest -k "cuda or gpu or device or bf16"), with CUDA as
  this host has it;
- ``scoring_fp32`` / ``scoring_bf16``: lm-eval model ``kinject-hf`` (kinject.evaluation.shared_prefix) against stock lm-eval
  (``hf``) on the demo's atlas questions (shipped in resources/demo/mmlu), 0- and 5-shot, K = 0 and K = 2, with
  a small random-init Llama: same choices, the largest log-likelihood difference, the time of each;
- ``finetune_<model>``: rule finetune's own entry point, launched as the rule launches it
  (kinject.training.launch.launch: ``accelerate launch --config_file`` of config.yaml's accelerate config, FSDP2,
  bf16, gradient checkpointing as configured, one process for one GPU) on a random-init model of the real
  shape (SmolLM2-135M; Llama-2-7B from config.yaml's models.llama2-7b.shape): peak memory
  (torch.cuda.max_memory_allocated and reserved, read inside the trainer by bench/gpu_check_hook), tokens/s,
  the fraction of the GPU's bf16 peak, beside kinject.planning.plan's estimate for exactly that job (1 GPU, the same
  batch and block size) and the ratio; more than 15% off is flagged.

On a host without CUDA the CUDA-only steps are skipped by name and a tiny shape is fine-tuned on the CPU with
config/demo.yaml's settings. Results: gpu_check.md and gpu_check.json (GPU, driver, CUDA, torch, each step's
figures, each failed step's one-line reason) and gpu_check.log (every step's output) under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gpu_check_finetune import run_finetune
from gpu_check_report import check_wheels, write_report

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:  # runs from a bare checkout (the device machine installs nothing of ours)
    sys.path.insert(0, str(ROOT / "src"))

FP32_TOLERANCE = 1e-4  # log-likelihoods, shared prefix vs stock, as tests/test_shared_prefix.py
DEVICE_TESTS = ("tests/test_device.py", "tests/test_jobs.py", "tests/test_finetune.py")
DEVICE_TEST_SELECTION = "cuda or gpu or device or bf16"
SCORING_MODEL = {"cuda": {"hidden_size": 512, "num_layers": 8, "num_heads": 8, "intermediate_size": 1376},
                 "cpu": {"hidden_size": 128, "num_layers": 4, "num_heads": 4, "intermediate_size": 384}}


# ---- the steps (each runs in its own process: python bench/gpu_check.py --step NAME) ---------------------

def step_plan(cuda: bool, quick: bool) -> list[tuple[str, int, str | None]]:
    """(step, time limit in s, None or why it is skipped). The limits add up to under 8 minutes (3 quick)."""
    if not cuda:
        cuda_only = "needs CUDA (a real shape; this host has none)"
        return [("device_tests", 240, None), ("scoring_fp32", 240, None), ("scoring_bf16", 240, None),
                ("finetune_tiny", 300, None), ("finetune_smollm2-135m", 0, cuda_only),
                ("finetune_llama2-7b", 0, cuda_only)]
    if quick:
        return [("device_tests", 50, None), ("scoring_fp32", 40, None), ("scoring_bf16", 30, None),
                ("finetune_smollm2-135m", 50, None),
                ("finetune_llama2-7b", 0, "--quick (the 7B shape builds, loads and trains in ~3 minutes)")]
    return [("device_tests", 90, None), ("scoring_fp32", 45, None), ("scoring_bf16", 45, None),
            ("finetune_smollm2-135m", 90, None), ("finetune_llama2-7b", 210, None)]


def run_device_tests(scratch: Path, quick: bool) -> dict:
    """pytest over the device-choice tests; passed, failed (name: first line of the message), skipped."""
    import xml.etree.ElementTree as ET

    files = [f for f in DEVICE_TESTS if (ROOT / f).exists()]
    selection = os.environ.get("KINJECT_GPU_CHECK_TESTS", DEVICE_TEST_SELECTION)
    xml = scratch / "device_tests.xml"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "pytest", *files, "-k", selection, "-q", "-p", "no:cacheprovider",
                           f"--junitxml={xml}"], cwd=ROOT, env=env)
    if not xml.exists():
        raise RuntimeError(f"pytest exited with status {done.returncode} and wrote no report")
    passed, failed, skipped = [], {}, {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        if bad is not None:
            failed[name] = (bad.get("message") or bad.text or "").strip().splitlines()[0][:200] if (
                bad.get("message") or bad.text) else "failed"
        elif case.find("skipped") is not None:
            skipped[name] = case.find("skipped").get("message", "")
        else:
            passed.append(name)
    out = {"files": files, "selection": selection, "passed": len(passed), "failed": failed, "skipped": skipped,
           "passed_tests": passed}
    if failed or not passed:
        out["reason"] = f"{len(failed)} of {len(passed) + len(failed)} device-choice test(s) failed" if failed else \
            "no device-choice test ran"
    return out


def _scoring_task_files(scratch: Path) -> Path:
    """The atlas questions (resources/demo/mmlu) as questions.parquet, plus stand-in chunks and a retrieval
    (each question's next two questions, with their answers, as its K = 2 context): long shared prompts."""
    import pandas as pd

    from kinject.io import write_parquet
    from kinject.qa.sets import mmlu_from_csv, write_questions

    questions = mmlu_from_csv(ROOT / "resources" / "demo" / "mmlu", "atlas")
    write_questions(scratch / "questions.parquet", questions)
    facts = [f"{q.question} {q.choices[q.answer]}." for q in questions.itertuples()]
    write_parquet(scratch / "chunks.parquet", pd.DataFrame({"chunk_id": [f"c{i}" for i in range(len(facts))],
                                                            "text": facts}))
    hits = [{"question_id": qid, "rank": r, "chunk_id": f"c{(i + 1 + r) % len(facts)}"}
            for i, qid in enumerate(questions["id"]) for r in range(2)]
    write_parquet(scratch / "retrieved.parquet", pd.DataFrame(hits))
    return scratch


def run_scoring(scratch: Path, quick: bool, precision: str) -> dict:
    """kinject-hf vs stock lm-eval on atlas (options 0- and 5-shot at K = 0 and 2, letters 0-shot), a small
    random-init Llama in ``precision``: per configuration the questions, the choices that differ, the largest
    |log-likelihood difference| and both scorers' seconds. fp32 must agree (same choices, within 1e-4)."""
    import numpy as np
    import torch

    from kinject.evaluation.evaluate import lmeval_environment, load_lm, score_tasks, write_lmeval_task
    from kinject.qa.sets import read_questions
    from kinject.training.models import build_tiny_model

    device = "cuda" if torch.cuda.is_available() else "cpu"
    data = _scoring_task_files(scratch)
    texts = [" ".join([q.question, *q.choices]) for q in read_questions(data / "questions.parquet").itertuples()]
    model = scratch / f"scoring-model-{device}"
    if not model.exists():
        build_tiny_model(texts, model, vocab_size=2048, seed=0, **SCORING_MODEL[device])
    configs = [("options", 0, 0), ("options", 2, 0), ("options", 0, 5), ("options", 2, 5), ("letters", 0, 0)]
    limit = 12 if quick else None
    rows, worst = [], 0.0
    with lmeval_environment(model):
        lms = {shared: load_lm(model, precision=precision, batch_size=8, device=device, shared_prefix=shared,
                               max_truncated_fraction=1.0) for shared in (False, True)}
        for fmt, k, shots in configs:
            name = f"kinject_atlas_{fmt}_k{k}"
            task_dir = scratch / "lmeval" / name
            if not task_dir.exists():
                write_lmeval_task(data / "questions.parquet", task_dir, name, k=k, fmt=fmt, subject="atlas",
                                  retrieved_parquet=data / "retrieved.parquet", chunks_parquet=data / "chunks.parquet")
            out, seconds = {}, {}
            for shared, lm in lms.items():
                if device == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                out[shared] = score_tasks(lm, [task_dir], [name], shots=shots, seed=1234, limit=limit,
                                          log_samples=True)
                if device == "cuda":
                    torch.cuda.synchronize()
                seconds[shared] = time.perf_counter() - start
            pairs = list(zip(out[False]["samples"][name], out[True]["samples"][name], strict=True))
            differ, largest = 0, 0.0
            for a, b in pairs:
                ll_a = np.array([r[0] for r in a["filtered_resps"]], dtype=float)
                ll_b = np.array([r[0] for r in b["filtered_resps"]], dtype=float)
                differ += int(np.argmax(ll_a) != np.argmax(ll_b))
                largest = max(largest, float(np.abs(ll_a - ll_b).max()))
            worst = max(worst, largest)
            rows.append({"format": fmt, "k": k, "shots": shots, "questions": len(pairs), "choices_differ": differ,
                         "max_ll_difference": largest, "stock_s": seconds[False], "shared_s": seconds[True],
                         "acc_stock": out[False]["results"][name]["acc,none"],
                         "acc_shared": out[True]["results"][name]["acc,none"]})
    params = sum(p.numel() for p in lms[True].model.parameters())
    result = {"device": device, "precision": precision, "model_parameters": params, "rows": rows,
              "max_ll_difference": worst, "choices_differ": sum(r["choices_differ"] for r in rows)}
    if precision == "fp32" and (result["choices_differ"] or worst >= FP32_TOLERANCE):
        result["reason"] = (f"fp32 scorers disagree: {result['choices_differ']} choice(s) differ, largest "
                            f"log-likelihood difference {worst:.1e} (tolerance {FP32_TOLERANCE:g})")
    return result


STEPS = {"device_tests": run_device_tests,
         "scoring_fp32": lambda scratch, quick: run_scoring(scratch, quick, "fp32"),
         "scoring_bf16": lambda scratch, quick: run_scoring(scratch, quick, "bf16")}


def run_one(name: str, scratch: Path, quick: bool) -> None:
    """The child side: run one step, write scratch/<name>.json (status ok/failed, figures, reason)."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    fn = STEPS.get(name) or (lambda s, q: run_finetune(s, q, name.removeprefix("finetune_")))
    try:
        result = fn(scratch, quick)
        result["status"] = "failed" if result.get("reason") else "ok"
    except Exception as exc:  # the step's one line; its traceback is in the log
        import traceback

        traceback.print_exc()
        result = {"status": "failed", "reason": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
    (scratch / f"{name}.json").write_text(json.dumps(result, indent=2, default=str))


# ---- the parent: environment, steps under time limits, the results file --------------------------------

def environment() -> dict:
    import importlib.metadata as md

    env = {"python": platform.python_version(), "host": platform.node(), "cpus": os.cpu_count(),
           "time_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}
    for pkg in ("torch", "transformers", "accelerate", "lm_eval", "datasets", "peft", "snakemake"):
        try:
            env[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            env[pkg] = None
    import torch

    env["cuda_available"] = torch.cuda.is_available()
    env["torch_cuda"] = torch.version.cuda
    if env["cuda_available"]:
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=props.name, gpu_memory_gb=props.total_memory / 1e9, gpus=torch.cuda.device_count(),
                   bf16_supported=torch.cuda.is_bf16_supported(), capability=f"{props.major}.{props.minor}")
        try:
            env["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                           capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired) as exc:
            env["driver"] = f"unknown ({exc})"
    return env


def last_error(log_text: str) -> str:
    lines = [line for line in log_text.splitlines() if line.strip()]
    for marker in ("kinject error: ", "Error: ", "Error:"):
        hits = [line for line in lines if marker in line]
        if hits:
            return hits[-1].strip()[:300]
    return lines[-1][:300] if lines else "no output"


def run_step(name: str, limit: int, scratch: Path, quick: bool, log) -> dict:
    """One step in its own process group, killed whole at ``limit`` seconds."""
    step_log = scratch / f"{name}.log"
    start = time.perf_counter()
    with open(step_log, "w", encoding="utf-8") as fh:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--step", name, "--scratch",
                                 str(scratch), *(["--quick"] if quick else [])], stdout=fh, stderr=subprocess.STDOUT,
                                cwd=ROOT, start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            proc.wait(timeout=limit)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            timed_out = True
    seconds = time.perf_counter() - start
    text = step_log.read_text(errors="replace")
    log.write(f"\n===== {name} ({seconds:.0f} s, limit {limit} s) =====\n{text}")
    log.flush()
    out = scratch / f"{name}.json"
    if timed_out:
        result = {"status": "failed", "reason": f"ran past its {limit} s limit (killed); last line: {last_error(text)}"}
    elif out.exists():
        result = json.loads(out.read_text())
    else:
        result = {"status": "failed", "reason": f"exited with status {proc.returncode}: {last_error(text)}"}
    result["seconds"] = seconds
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="under 3 minutes on an H200: no 7B shape, fewer questions")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or ROOT / "results" / "gpu_check"),
                   help="results folder (default: $OUT on the device machine, else results/gpu_check)")
    p.add_argument("--only", help="comma-separated steps to run (the others are listed as not asked for)")
    p.add_argument("--check-wheels", type=Path, metavar="DIR",
                   help="list the wheels in DIR and check that they travel (make gpu-wheels), then exit")
    p.add_argument("--step", help=argparse.SUPPRESS)
    p.add_argument("--scratch", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.check_wheels:
        return check_wheels(args.check_wheels)
    if args.step:
        run_one(args.step, args.scratch, args.quick)
        return 0
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"mode": "quick" if args.quick else "full", "environment": environment(), "steps": {}, "seconds": 0.0}
    only = set(args.only.split(",")) if args.only else None
    plan = step_plan(report["environment"]["cuda_available"], args.quick)
    for name, _, skip in plan:
        report["steps"][name] = {"status": "pending"}
    with tempfile.TemporaryDirectory(prefix="kinject-gpu-check-") as scratch, \
            open(args.out / "gpu_check.log", "w", encoding="utf-8") as log:
        for name, limit, skip in plan:
            if only is not None and name not in only:
                skip = "not asked for (--only)"
            if skip:
                report["steps"][name] = {"status": "skipped", "reason": skip}
            else:
                print(f"gpu_check: {name} (limit {limit} s) ...", flush=True)
                report["steps"][name] = run_step(name, limit, Path(scratch), args.quick, log)
                print(f"gpu_check: {name}: {report['steps'][name]['status']} "
                      f"{report['steps'][name].get('reason', '')}", flush=True)
            report["seconds"] = time.perf_counter() - started
            write_report(args.out, report)
    print(f"gpu_check: results in {args.out / 'gpu_check.md'} and gpu_check.json", flush=True)
    return 1 if any(r["status"] == "failed" for r in report["steps"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
