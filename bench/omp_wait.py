"""Training steps of the test suite's tiny Llama with 2 torch threads, alone and beside busy processes, with OpenMP's
default waiting (spin, then sleep) and with OMP_WAIT_POLICY=PASSIVE (sleep at once), side by side in one run. Why
`make test` and `make check` set PASSIVE: their pytest-xdist workers (three) share the two cores, and a thread that
spins at a barrier holds the core its straggling sibling needs. Issue #36.

    .venv/bin/python bench/omp_wait.py [--steps 20] [--out FILE]

Each measurement is a fresh Python process (libgomp reads the policy when torch loads): the tiny Llama of
.test/config/tiny_llama.yaml (hidden 128, 4 layers, vocabulary 4,096), one AdamW step on 16 x 128 tokens in bf16
autocast, the median of ``--steps`` steps after 3 warm-up steps. A busy process is a Python loop (one core).
Prints a markdown table (and writes it to ``--out``) with the CPU's flags.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from precision import cpu_flags, write_table  # noqa: E402

STEP = r"""
import json, sys, time
import torch
from transformers import LlamaConfig, LlamaForCausalLM
steps = int(sys.argv[1])
torch.set_num_threads(2)
torch.manual_seed(0)
model = LlamaForCausalLM(LlamaConfig(vocab_size=4096, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                                     intermediate_size=384))
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
ids = torch.randint(0, 4096, (16, 128))
def step():
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    opt.step()
    opt.zero_grad()
for _ in range(3):
    step()
times = []
for _ in range(steps):
    start = time.perf_counter(); step(); times.append(time.perf_counter() - start)
print(json.dumps(sorted(times)[len(times) // 2]))
"""


def measure(policy: str | None, busy: int, steps: int) -> float:
    """Seconds per step (median) of one fresh process under `policy` (None: OpenMP's default), beside `busy` busy
    processes."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    try:
        out = subprocess.run([sys.executable, "-c", STEP, str(steps)], env=env, capture_output=True, text=True,
                             check=True).stdout
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()
    return json.loads(out.splitlines()[-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    rows = []
    for busy in (0, 1, 2):
        for policy in (None, "PASSIVE"):
            rows.append((busy, policy or "default (spin, then sleep)", measure(policy, busy, args.steps)))
            print(rows[-1], flush=True)
    write_table(f"CPU: {cpu_flags()}; {os.cpu_count()} cores; tiny Llama, 2 torch threads, one AdamW step on 16 x 128 "
                f"tokens in bf16 autocast (median of {args.steps})",
                ["busy processes beside it", "OMP_WAIT_POLICY", "s per step"],
                [(busy, policy, f"{seconds:.3f}") for busy, policy, seconds in rows], args.out)


if __name__ == "__main__":
    main()
