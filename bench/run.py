"""Benchmark: each heavy stage of kinject against the naive way of doing the same work.

    .venv/bin/python bench/run.py            (needs a completed demo run: make demo)

Prints a table of ratios and writes bench/results.md with the machine it ran on.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
rows: list[dict] = []


def timed(fn, repeat: int = 1):
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def record(stage, naive, best, unit, naive_rate, best_rate, note=""):
    rows.append({"stage": stage, "naive": naive, "kinject": best, "unit": unit, "naive_rate": naive_rate,
                 "best_rate": best_rate, "speed-up": best_rate / naive_rate if naive_rate else float("nan"),
                 "note": note})
    print(f"{stage:28s} {naive_rate:10.1f} -> {best_rate:10.1f} {unit:12s} x{best_rate / naive_rate:6.1f}  {note}")


def bench_embedding():
    from kinject.retrieval import embed, load_embedder

    model = load_embedder(RESULTS / "embedder")
    texts = pd.concat([pd.read_parquet(p)["text"] for p in RESULTS.glob("*/chunks.parquet")]).tolist() * 3
    embed(model, texts[:8])  # warm-up
    t_batch, batched = timed(lambda: embed(model, texts, batch_size=64), 2)
    t_one, single = timed(lambda: np.vstack([embed(model, [t], batch_size=1) for t in texts]))
    assert np.allclose(batched, single, atol=1e-4)
    record("embedding", "one at a time", "batched (64, length-sorted)", "chunks/s", len(texts) / t_one,
           len(texts) / t_batch, f"{len(texts)} demo chunks, all-MiniLM-L6-v2")


def bench_faiss():
    import faiss

    from kinject.retrieval import new_index

    rng = np.random.default_rng(0)
    n, q, d = 100_000, 1_000, 384
    x = rng.standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    queries = x[rng.choice(n, q, replace=False)] + 0.05 * rng.standard_normal((q, d), dtype=np.float32)

    def numpy_scan():
        scores = queries @ x.T
        top = np.argpartition(-scores, 5, axis=1)[:, :5]
        return np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), 1), 1)

    def flat():
        index = new_index(d, n, exact_max=n)
        index.add(x)
        return index.search(queries, 5)[1]

    faiss.omp_set_num_threads(os.cpu_count())
    t_np, ref = timed(numpy_scan)
    t_flat, got = timed(flat)
    assert (got[:, 0] == ref[:, 0]).mean() > 0.99
    record("faiss exact search", "numpy brute-force scan", "IndexFlatIP", "queries/s", q / t_np, q / t_flat,
           f"{n} x {d} vectors, build + top-5 for {q} queries")
    index = new_index(d, n, exact_max=n - 1)
    t_build, _ = timed(lambda: index.add(x))
    t_search, approx = timed(lambda: index.search(queries, 5)[1])
    recall = np.mean([len(set(a) & set(r)) / 5 for a, r in zip(approx, got)])
    flat_index = new_index(d, n, exact_max=n)
    flat_index.add(x)
    t_flat_search, _ = timed(lambda: flat_index.search(queries, 5))
    record("faiss approximate (HNSW)", "IndexFlatIP search", "IndexHNSWFlat search", "queries/s",
           q / t_flat_search, q / t_search, f"recall@5 {recall:.3f}; HNSW build {t_build:.1f} s (exact_max decides)")


def bench_lmeval():
    from kinject.evaluate import read_task, run_lmeval

    task_dir = RESULTS / "current_events" / "lmeval" / "k3"
    model = RESULTS / "models" / "tiny-llama" / "base"
    task = read_task(next(task_dir.glob("*.yaml")))
    n_requests = sum(len(__import__("json").loads(line)["choices"]) for line in (task_dir / "test.jsonl").open())
    with tempfile.TemporaryDirectory() as tmp:
        run = lambda bs: run_lmeval(model, task_dir, task["task"], Path(tmp) / f"bs{bs}.json", batch_size=bs)
        run(16)  # warm-up: imports, model load
        t16, a = timed(lambda: run(16), 2)
        t1, b = timed(lambda: run(1), 2)
    assert a["accuracy"] == b["accuracy"]
    record("lm-eval log-likelihood", "batch size 1", "batch size 16 (config)", "requests/s", n_requests / t1,
           n_requests / t16, f"{n_requests} requests, K=3 contexts, tiny Llama, whole simple_evaluate")


def bench_finetune():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kinject.finetune import tokenize_blocks

    base = RESULTS / "models" / "tiny-llama" / "base"
    tok = AutoTokenizer.from_pretrained(base)
    texts = pd.read_parquet(RESULTS / "current_events" / "paraphrases" / "paraphrases_k3.parquet")["text"].tolist()
    packed = torch.tensor(tokenize_blocks(tok, texts, 256))
    docs = [tok(t)["input_ids"] + [tok.eos_token_id] for t in texts]

    def train(batches, real_tokens):
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        start = time.perf_counter()
        for ids, mask in batches:
            labels = ids.masked_fill(mask == 0, -100)
            model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
            opt.step()
            opt.zero_grad()
        return real_tokens / (time.perf_counter() - start)

    bs = 8
    packed_batches = [(packed[i:i + bs], torch.ones_like(packed[i:i + bs])) for i in range(0, len(packed), bs)]
    padded_batches = []
    for i in range(0, len(docs), bs):
        chunk = docs[i:i + bs]
        width = max(map(len, chunk))
        ids = torch.tensor([d + [tok.pad_token_id] * (width - len(d)) for d in chunk])
        mask = torch.tensor([[1] * len(d) + [0] * (width - len(d)) for d in chunk])
        padded_batches.append((ids, mask))
    packed_rate = train(packed_batches, packed.numel())
    padded_rate = train(padded_batches, sum(map(len, docs)))
    record("fine-tuning", "one chunk per row, padded", "packed 256-token blocks", "tokens/s", padded_rate,
           packed_rate, f"{len(texts)} texts (paraphrase set 3), batch {bs}, real tokens only")


def bench_snakemake():
    with tempfile.TemporaryDirectory() as tmp:
        files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        for name in filter(None, files.decode().split("\0")):
            (Path(tmp) / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, Path(tmp) / name, follow_symlinks=False)
        t_dry, proc = timed(lambda: subprocess.run([SNAKEMAKE, "-n", "-q"], cwd=tmp, capture_output=True, text=True), 3)
        from kinject.grid import expected_job_counts
        from kinject.settings import load_config

        jobs = sum(expected_job_counts(load_config(ROOT / "config.yaml")).values())
        rows.append({"stage": "snakemake dry run", "naive": "", "kinject": "paper grid (config.yaml)",
                     "unit": "s", "naive_rate": float("nan"), "best_rate": t_dry, "speed-up": float("nan"),
                     "note": f"{jobs} jobs, best of 3 (goal < 5 s)"})
        print(f"snakemake dry run: {t_dry:.2f} s")
        shutil.copytree(RESULTS, Path(tmp) / "results", symlinks=True)
        shutil.copytree(ROOT / ".snakemake" / "metadata", Path(tmp) / ".snakemake" / "metadata", dirs_exist_ok=True)
        target = Path(tmp) / "results" / "current_events" / "paraphrases" / "paraphrases_k3.parquet"
        df = pd.read_parquet(target)
        df.loc[df.index[-1], "text"] += " (edited)"
        df.to_parquet(target, index=False)
        out = subprocess.run([SNAKEMAKE, "-n", "--rerun-triggers", "mtime", "--configfile", "config/demo.yaml"],
                             cwd=tmp, capture_output=True, text=True).stdout
        stats = out.split("Job stats:")[1].split("Reasons:")[0] if "Job stats:" in out else ""
        counts = {m[1]: m[2] for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M) if m[1] != "total"}
        rows.append({"stage": "re-run after editing one paraphrase set", "naive": "", "kinject": "demo",
                     "unit": "jobs", "naive_rate": float("nan"), "best_rate": sum(map(int, counts.values())),
                     "speed-up": float("nan"), "note": ", ".join(f"{k} {v}" for k, v in counts.items())})
        print("re-run after editing paraphrases_k3:", counts)


def machine() -> str:
    import faiss
    import lm_eval
    import torch
    import transformers

    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    mem = int(next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")).split()[1])
    return (f"{datetime.date.today()} · {cpu} · {os.cpu_count()} cores · {mem / 2**20:.0f} GiB · load average "
            f"{os.getloadavg()[0]:.2f} · Python {platform.python_version()} · torch {torch.__version__} · "
            f"transformers {transformers.__version__} · lm_eval {lm_eval.__version__} · faiss {faiss.__version__}")


def main():
    if not (RESULTS / "tables" / "scores.csv").exists():
        sys.exit("bench/run.py needs a completed demo run: run `make demo` first")
    for bench in (bench_embedding, bench_faiss, bench_lmeval, bench_finetune, bench_snakemake):
        bench()
    table = pd.DataFrame(rows)
    fmt = lambda v: "" if isinstance(v, float) and np.isnan(v) else (f"{v:.2f}" if isinstance(v, float) else str(v))
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in table.itertuples(index=False)]
    text = "# kinject benchmark\n\n" + machine() + "\n\n" + "\n".join(lines) + "\n"
    (ROOT / "bench" / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
