"""Training tokens/s of the demo model in fp32 and in bf16 autocast, on this host's CPU as it is and restricted to
AVX2 (a stand-in for a CPU without native bf16), side by side in one run. Issue #31.

    .venv/bin/python bench/precision.py [--model results/models/smollm2-135m/base] [--steps 3] [--out FILE]

Each measurement is a fresh Python process (the instruction-set limits are read when torch loads): one AdamW
step of SmolLM2-135M on 8 x 256 tokens with 2 torch threads, bf16 autocast over fp32 weights as the Trainer's
``bf16=True`` runs it, timed over ``--steps`` steps after one warm-up step. "AVX2-restricted" sets
ATEN_CPU_CAPABILITY=avx2 (torch's own kernels), ONEDNN_MAX_CPU_ISA=AVX2 (oneDNN, which runs bf16 matmuls) and
MKL_ENABLE_INSTRUCTIONS=AVX2 (MKL's fp32 GEMM): the same silicon with its AVX-512 and bf16 instructions unused,
not a real AVX2 CPU (whose clock, caches and memory differ). A measurement stopped at ``--step-timeout`` seconds
reports the steps it finished (the warm-up is a whole step), or, where the first step had not finished, more than
the seconds it ran after the model loaded. Prints a markdown table (and writes it to ``--out``) with the CPU's flags.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}

STEP = r"""
import json, sys, time
began = time.perf_counter()
import torch
from transformers import AutoModelForCausalLM
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
torch.manual_seed(0)
model = AutoModelForCausalLM.from_pretrained(args["model"], dtype=torch.float32)
print(json.dumps({"loaded_s": time.perf_counter() - began}), flush=True)
model.train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
ids = torch.randint(0, model.config.vocab_size, (args["batch"], args["block"]))
def step():
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args["precision"] == "bf16"):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    opt.step()
    opt.zero_grad()
    return float(loss)
start = time.perf_counter(); step(); warm = time.perf_counter() - start
print(json.dumps({"warmup_s": warm}), flush=True)
times = []
for _ in range(args["steps"]):
    start = time.perf_counter(); step(); times.append(time.perf_counter() - start)
    print(json.dumps({"step_s": times[-1]}), flush=True)
print(json.dumps({"capability": torch.backends.cpu.get_cpu_capability(), "times": times}), flush=True)
"""


def cpu_flags() -> str:
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    shown = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return f"{model}; flags: {' '.join(shown) or 'none of avx2/avx512f/avx512_bf16/amx'}"


def measure(model: str, precision: str, restricted: bool, steps: int, timeout: float) -> dict:
    """One fresh process: its step times (or how long it ran before ``timeout``)."""
    env = {**os.environ, **(AVX2 if restricted else {})}
    args = {"model": model, "precision": precision, "threads": 2, "batch": 8, "block": 256, "steps": steps}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", STEP, json.dumps(args)], env=env, stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        stopped = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, _ = proc.communicate()  # what it printed before it was stopped
        stopped = True
    ran = time.perf_counter() - started
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    if not stopped:
        final = lines[-1]
        return {"capability": final["capability"], "step_s": sorted(final["times"])[len(final["times"]) // 2]}
    done = {key: value for line in lines for key, value in line.items()}
    if "step_s" in done:  # the steps it finished (the last one printed)
        return {"step_s": done["step_s"], "partial": "steps unfinished"}
    if "warmup_s" in done:  # the warm-up is a whole step, timed
        return {"step_s": done["warmup_s"], "partial": "warm-up only"}
    # the first step had not finished: it ran for at least the time after the model loaded
    return {"unfinished_after_s": ran - done.get("loaded_s", 0.0)}

def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(ROOT / "results" / "models" / "smollm2-135m" / "base"))
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--step-timeout", type=float, default=300, help="seconds a whole measurement may take")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    tokens = 8 * 256
    rows = []
    for restricted in (False, True):
        for precision in ("fp32", "bf16"):
            r = measure(args.model, precision, restricted, args.steps, args.step_timeout)
            where = "AVX2-restricted" if restricted else "as it is"
            if "unfinished_after_s" in r:
                bound = r["unfinished_after_s"]
                rate, step = f"< {tokens / bound:.1f}", f"> {bound:.0f} (first step unfinished, stopped)"
            else:
                rate, step = f"{tokens / r['step_s']:.1f}", f"{r['step_s']:.1f}"
                step += f" ({r['partial']}, stopped)" if "partial" in r else ""
            rows.append((where, r.get("capability", ""), precision, step, rate))
            print(rows[-1], flush=True)
    write_table(f"CPU: {cpu_flags()}; 2 torch threads; SmolLM2-135M, one AdamW step on 8 x 256 tokens "
                f"(median of {args.steps} after a warm-up); load average at the end "
                f"{' / '.join(f'{v:.2f}' for v in os.getloadavg())}",
                ["CPU", "torch kernels", "precision", "s per step", "tokens/s"], rows, args.out)


def write_table(caption: str, columns: list[str], rows: list[tuple], out: Path | None) -> None:
    """``caption`` and a markdown table of ``rows``, printed, and written to ``out`` where given."""
    lines = [caption, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        out.write_text(text)


if __name__ == "__main__":
    main()
