"""The GPU check's results file (gpu_check.md from gpu_check.json's figures) and its wheels' size check: the
parts of bench/gpu_check.py that read no GPU."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEAK_BF16_TFLOPS = 790.0  # dense bf16 matrix product measured on the lent H200 (device tool's KINDS.md)


TRAVEL_LIMIT = 64 * 2**20  # the device tool sends the working tree and the carried paths, 64 MiB in all


def tree_bytes(root: Path = ROOT) -> int:
    """Bytes of the working tree that travels: tracked files and untracked ones git does not ignore."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                           capture_output=True, check=True).stdout.decode().split("\0")
    return sum((root / n).stat().st_size for n in names if n and (root / n).is_file() and not (root / n).is_symlink())


def check_wheels(folder: Path, tree: int | None = None) -> int:
    """List the wheels in ``folder`` with their sizes; 1 (and why) when they and the tree exceed 64 MiB."""
    wheels = sorted(folder.glob("*.whl"))
    if not wheels:
        print(f"gpu-wheels: no wheels in {folder}")
        return 1
    names = [w.name.split("-")[0].lower().replace("_", "-") for w in wheels]
    twice = sorted({n for n in names if names.count(n) > 1})
    for w in wheels:
        print(f"{w.stat().st_size / 2**20:8.2f} MiB  {w.name}")
    total = sum(w.stat().st_size for w in wheels)
    tree = tree_bytes() if tree is None else tree
    print(f"{total / 2**20:8.2f} MiB  {len(wheels)} wheels; with the working tree ({tree / 2**20:.2f} MiB): "
          f"{(total + tree) / 2**20:.2f} MiB of the {TRAVEL_LIMIT / 2**20:.0f} MiB that travel")
    if twice:
        print(f"gpu-wheels: two versions of {', '.join(twice)} in {folder}: pip would refuse the install")
        return 1
    if total + tree > TRAVEL_LIMIT:
        over = (total + tree - TRAVEL_LIMIT) / 2**20
        print(f"gpu-wheels: over the {TRAVEL_LIMIT / 2**20:.0f} MiB limit by {over:.2f} MiB")
        return 1
    return 0



def fmt(value, spec=".2f") -> str:
    return "-" if value is None else format(value, spec) if isinstance(value, (int, float)) else str(value)


def markdown(report: dict) -> str:
    """The readable report: environment, one line per step, then each step's figures."""
    env = report["environment"]
    lines = ["# GPU check", "", f"{env['time_utc']} UTC, {report['mode']} mode, {report['seconds']:.0f} s in all "
             f"(bench/gpu_check.py; how to read it: docs/gpu-check.md)", "",
             "| | |", "|---|---|"]
    for key in ("gpu", "gpu_memory_gb", "capability", "driver", "torch_cuda", "torch", "transformers", "accelerate",
                "lm_eval", "datasets", "python", "cpus"):
        if key in env:
            lines.append(f"| {key} | {fmt(env[key], '.1f')} |")
    lines += ["", "| step | status | seconds | one line |", "|---|---|---|---|"]
    for name, r in report["steps"].items():
        lines.append(f"| {name} | {r['status']} | {fmt(r.get('seconds'), '.0f')} | {r.get('reason', '')} |")
    tests = report["steps"].get("device_tests", {})
    if "passed" in tests:
        lines += ["", f"## Device-choice tests: {tests['passed']} passed, {len(tests['failed'])} failed, "
                      f"{len(tests['skipped'])} skipped", ""]
        lines += [f"- FAILED {n}: {m}" for n, m in tests["failed"].items()]
        lines += [f"- skipped {n}: {m}" for n, m in tests["skipped"].items()]
    for precision in ("fp32", "bf16"):
        r = report["steps"].get(f"scoring_{precision}", {})
        if "rows" not in r:
            continue
        lines += ["", f"## Scoring, {precision} on {r['device']}: kinject-hf vs stock lm-eval "
                      f"({r['model_parameters']:,}-parameter random-init Llama, atlas)", "",
                  "| format | K | shots | questions | choices differ | max log-lik. diff | stock s | shared s | "
                  "speed-up | acc stock | acc shared |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for row in r["rows"]:
            lines.append(f"| {row['format']} | {row['k']} | {row['shots']} | {row['questions']} | "
                         f"{row['choices_differ']} | {row['max_ll_difference']:.1e} | {row['stock_s']:.2f} | "
                         f"{row['shared_s']:.2f} | {row['stock_s'] / row['shared_s']:.1f}x | {row['acc_stock']:.3f} | "
                         f"{row['acc_shared']:.3f} |")
    for name, r in report["steps"].items():
        if not name.startswith("finetune_") or "parameters" not in r:
            continue
        lines += ["", f"## Fine-tuning {r['model']}: {r['parameters']:,} parameters, {r['processes']} process(es), "
                      f"{r['distributed_type']}", "", f"`{r['launch']}`", "",
                  f"- settings: {r['settings']}; {r['steps']} optimizer steps of {r['tokens_per_step']:,} tokens"
                  + ("; stopped after the last step, before the Trainer's checkpoint" if r["stopped_before_checkpoint"]
                     else ""),
                  f"- model built in {fmt(r['build_s'], '.0f')} s; launch to first step "
                  f"{fmt(r['startup_s'], '.0f')} s; "
                  f"whole job {fmt(r['wall_s'], '.0f')} s; peak host RSS {fmt(r['max_rss_gb'], '.1f')} GB",
                  f"- {fmt(r.get('tokens_per_s'), ',.0f')} tokens/s ({fmt(r.get('step_s'), '.2f')} s per step), "
                  f"{fmt(r.get('model_tflops'), '.1f')} TFLOP/s of model FLOPs (6 x parameters x tokens)"
                  + (f" = {r['fraction_of_bf16_peak']:.1%} of the {PEAK_BF16_TFLOPS:.0f} TFLOP/s bf16 peak"
                     if "fraction_of_bf16_peak" in r else "")
                  + (f" ({r['fraction_of_bf16_peak_with_recompute']:.1%} counting the recomputed forward)"
                     if "fraction_of_bf16_peak_with_recompute" in r else "")]
        if isinstance(r.get("plan"), dict):
            lines += ["", "| figure | measured | kinject plan | measured / plan | verdict |", "|---|---|---|---|---|"]
            for what, c in r["comparison"].items():
                lines.append(f"| {what} | {c['measured']:,.1f} | {c['plan']:,.1f} | {c['ratio']:.2f} | "
                             f"{c['verdict']} |")
            lines.append("")
            lines.append("plan by part (GB): " + ", ".join(f"{k} {v:.2f}" for k, v in r["plan"]["memory_gb"].items())
                         + f"; at plan.achievable_tflops {r['plan']['achievable_tflops']}")
        else:
            lines.append(f"- plan comparison {r.get('plan')}")
    return "\n".join(lines) + "\n"


def write_report(out: Path, report: dict) -> None:
    texts = {"gpu_check.json": json.dumps(report, indent=2, default=str), "gpu_check.md": markdown(report)}
    for name, text in texts.items():
        tmp = out / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out / name)
