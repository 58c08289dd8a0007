"""Benchmark: each heavy stage of kinject against the naive way of doing the same work, in one run.

    .venv/bin/python bench/run.py [--max-load 1 --wait 600]     (after `make demo`)

Prints a table of ratios and writes bench/results.md with the machine it ran on. It only reads the demo's
outputs in results/; everything it writes (indexes, task folders, checkpoints, a copy of the repository)
goes to a temporary directory.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from unittest import mock

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import cleaning  # bench/cleaning.py: the knowledge-base stages on a synthetic dump
import evaluation  # bench/evaluation.py: stock lm-eval scoring vs shared-prefix scoring, SmolLM2
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
SLOWER = 0.5  # the goal: no stage more than 2x slower than its best-practice configuration
DRY_RUN_GOAL_S = 5.0
rows: list[dict] = []


def timed(fn, repeat: int = 1):
    """(best wall seconds over ``repeat`` calls, the last call's result)."""
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def record(stage, size, naive, naive_value, ours, our_value, unit, note="", higher_is_better=True):
    """One table row; ratio > 1 means kinject's way is faster than the one it is compared with."""
    ratio = our_value / naive_value if higher_is_better else naive_value / our_value
    rows.append({"stage": stage, "size": size, "compared with": naive, "its value": naive_value, "kinject": ours,
                 "kinject value": our_value, "unit": unit, "ratio": ratio,
                 "verdict": "ok" if ratio >= SLOWER else "SLOW (> 2x slower)", "note": note})
    print(f"{stage:34s} {naive_value:12.2f} -> {our_value:12.2f} {unit:12s} x{ratio:6.2f}  {note}", flush=True)


def record_value(stage, size, ours, value, unit, verdict, note=""):
    """A row with no counterpart (a wall time, a job count, or a measurement that could not be made)."""
    rows.append({"stage": stage, "size": size, "compared with": "", "its value": None, "kinject": ours,
                 "kinject value": value, "unit": unit, "ratio": None, "verdict": verdict, "note": note})
    print(f"{stage:34s} {'':12s}    {value if value is not None else '-'!s:>12} {unit:12s} {verdict}  {note}",
          flush=True)


def top5_numpy(queries, vectors, k: int = 5, block: int = 256):
    """Exact top-k by inner product, a plain numpy scan (blocks of queries to bound memory)."""
    out = []
    for i in range(0, len(queries), block):
        scores = queries[i:i + block] @ vectors.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if scores.shape[1] > k else \
            np.tile(np.arange(scores.shape[1]), (len(scores), 1))
        order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable")
        out.append(np.take_along_axis(top, order, 1))
    return np.vstack(out)


def normalised(rng, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# 1. embedding ----------------------------------------------------------------------------------------

def embedding_texts(results: Path) -> list[str]:
    """Distinct demo texts of varied length: atlas chunks and current-events chunks with 10 paraphrases each."""
    texts = pd.concat([pd.read_parquet(results / "atlas" / "chunks.parquet")["text"],
                       pd.read_parquet(results / "current_events" / "paraphrases" / "paraphrases_k10.parquet")["text"]])
    return list(dict.fromkeys(texts.astype(str)))


def bench_embedding(results: Path, model, batch_size: int) -> None:
    from kinject.retrieval import embed

    texts = embedding_texts(results)
    embed(model, texts[:16], batch_size=batch_size)  # warm-up
    t_batch, batched = timed(lambda: embed(model, texts, batch_size=batch_size), 2)
    t_one, single = timed(lambda: np.vstack([embed(model, [t], batch_size=1) for t in texts]))
    diff = float(np.abs(batched - single).max())
    record("embedding (retrieval.embed)", f"{len(texts)} demo texts, all-MiniLM-L6-v2", "one text at a time",
           len(texts) / t_one, f"batched ({batch_size}, length-sorted)", len(texts) / t_batch, "chunks/s",
           f"same vectors: max abs diff {diff:.1e}")


# 2. FAISS ----------------------------------------------------------------------------------------------

def bench_faiss_demo(results: Path, model, tmp: Path, batch_size: int, exact_max: int) -> None:
    """retrieval.build_index + retrieve on the demo, checked against numpy; FAISS part timed alone."""
    from kinject.retrieval import build_index, embed, new_index, read_index, retrieve

    same, total, t_faiss, t_numpy, sizes = 0, 0, 0.0, 0.0, []
    for task in ("atlas", "current_events"):
        chunks = results / task / "chunks.parquet"
        questions = results / task / "questions.parquet"
        index_path, hits_path = tmp / f"{task}.index", tmp / f"{task}_hits.parquet"
        build_index(chunks, model, index_path, batch_size=batch_size, exact_max=exact_max)
        retrieve(index_path, chunks, questions, model, hits_path, k_max=5, batch_size=batch_size)
        index = read_index(index_path)
        vectors = np.ascontiguousarray(index.reconstruct_n(0, index.ntotal))
        question_rows = pd.read_parquet(questions, columns=["id", "question"])
        queries = embed(model, question_rows["question"].tolist(), batch_size=batch_size)
        ids = pd.read_parquet(chunks)["chunk_id"].to_numpy()
        expected = ids[top5_numpy(queries, vectors)]
        hits = pd.read_parquet(hits_path).sort_values(["question_id", "rank"])
        qids = question_rows["id"].tolist()
        got = hits.groupby("question_id", sort=False)["chunk_id"].apply(list).reindex(qids)
        same += sum(list(g) == list(e) for g, e in zip(got, expected))
        total += len(qids)
        sizes.append(f"{len(ids)} chunks x {len(qids)} questions")

        def faiss_way(vectors=vectors, queries=queries):
            index = new_index(vectors.shape[1], len(vectors), exact_max=exact_max)
            index.add(vectors)
            return index.search(queries, 5)

        t_faiss += timed(faiss_way, 200)[0]
        t_numpy += timed(lambda v=vectors, q=queries: top5_numpy(q, v), 200)[0]
    record("retrieval, demo (FAISS)", " + ".join(sizes), "numpy brute-force scan", 1 / t_numpy,
           "IndexFlatIP build + top-5", 1 / t_faiss, "runs/s",
           f"retrieve() top-5 == numpy top-5 for {same}/{total} questions; {t_faiss * 1e3:.2f} vs "
           f"{t_numpy * 1e3:.2f} ms per run (embedding excluded)")


def bench_faiss_synthetic(n_flat: int, n_hnsw: int, n_queries: int, exact_max: int, default_exact_max: int) -> None:
    """Exact search vs numpy at ``n_flat``; exact vs the HNSW index new_index picks just above ``exact_max``."""
    from kinject.retrieval import new_index

    d = 384
    rng = np.random.default_rng(0)
    x = normalised(rng, n_flat, d)
    # a question is near its chunk: cosine about 0.7, like a paraphrased question and its source text
    source = rng.choice(n_hnsw, n_queries, replace=False)
    queries = x[source] + 0.05 * rng.standard_normal((n_queries, d), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)

    def flat(n):
        index = new_index(d, n, exact_max=n)
        index.add(x[:n])
        return index.search(queries, 5)[1]

    t_np, ref = timed(lambda: top5_numpy(queries, x))
    t_flat, got = timed(lambda: flat(n_flat), 2)
    same = float((got == ref).all(axis=1).mean())
    record("retrieval, synthetic exact", f"{n_flat:,} x {d} random unit vectors, {n_queries} queries",
           "numpy brute-force scan", n_queries / t_np, "IndexFlatIP build + top-5", n_queries / t_flat,
           "queries/s", f"identical top-5 for {same:.1%} of queries")

    hnsw = new_index(d, n_hnsw, exact_max=exact_max)
    t_build, _ = timed(lambda: hnsw.add(x[:n_hnsw]))
    t_search, approx = timed(lambda: hnsw.search(queries, 5)[1])
    flat_index = new_index(d, n_hnsw, exact_max=n_hnsw)  # one exact index: its add and search timed apart
    t_flat_add, _ = timed(lambda: flat_index.add(x[:n_hnsw]))
    t_flat_search, exact = timed(lambda: flat_index.search(queries, 5)[1], 2)
    t_exact = t_flat_add + t_flat_search
    recall = float(np.mean([len(set(a) & set(e)) / 5 for a, e in zip(approx, exact)]))
    gain = t_flat_search / n_queries - t_search / n_queries
    break_even = f"after {t_build / gain:,.0f} queries" if gain > 0 else "never (its search is not faster here)"
    record("retrieval, exact vs approximate", f"{n_hnsw:,} x {d} (just above exact_max {exact_max:,}), "
           f"{n_queries} queries", f"IndexHNSWFlat (what exact_max {exact_max:,} picks)",
           n_queries / (t_build + t_search), f"IndexFlatIP (default: exact up to exact_max {default_exact_max:,})",
           n_queries / t_exact, "queries/s",
           f"build + search; HNSW build {t_build:.1f} s, search {t_search * 1e3 / n_queries:.2f} ms/query vs exact "
           f"{t_flat_search * 1e3 / n_queries:.2f}; HNSW recall@5 {recall:.3f} (random vectors: its worst case); "
           f"HNSW pays off {break_even}")


# 3. evaluation -------------------------------------------------------------------------------------------

class LoglikelihoodTimer:
    """Wraps lm-eval's HFLM.loglikelihood: seconds and requests of the scoring itself."""

    def __init__(self):
        from lm_eval.models.huggingface import HFLM

        self.original, self.seconds, self.requests = HFLM.loglikelihood, 0.0, 0

    def __call__(self, lm, requests, *args, **kwargs):
        start = time.perf_counter()
        out = self.original(lm, requests, *args, **kwargs)
        self.seconds += time.perf_counter() - start
        self.requests += len(requests)
        return out


def bench_lmeval(results: Path, tmp: Path, batch_size: int, seed: int) -> float:
    """Requests/s of lm-eval scoring at the configured batch size vs 1; returns seconds of one whole cell."""
    from lm_eval.models.huggingface import HFLM

    from kinject.evaluate import Run, run_lmeval, write_lmeval_task

    model = results / "models" / "tiny-llama" / "base"
    cell_seconds = []
    for task, k, shots in (("current_events", 3, 0), ("atlas", 3, 5)):
        name = f"kinject_{task}_k{k}"
        task_dir = write_lmeval_task(results / task / "questions.parquet", tmp / name, name, k=k,
                                     retrieved_parquet=results / task / "retrieval" / "retrieved.parquet",
                                     chunks_parquet=results / task / "chunks.parquet")
        measured = {}
        for bs in (batch_size, 1):  # the configured size first: it pays any one-time start-up cost
            timer = LoglikelihoodTimer()
            with mock.patch.object(HFLM, "loglikelihood", lambda lm, reqs, *a, **kw: timer(lm, reqs, *a, **kw)):
                wall, [scores] = timed(lambda: run_lmeval(model, [Run(task_dir, name, tmp / f"{name}_bs{bs}.json")],
                                                          shots=shots, batch_size=bs, seed=seed))
            measured[bs] = (timer.requests / timer.seconds, wall, timer.requests, scores["accuracy"])
        (rate, wall, n, acc), (rate1, wall1, _, acc1) = measured[batch_size], measured[1]
        cell_seconds.append(wall)
        record(f"evaluation, lm-eval ({shots}-shot)", f"{task} K={k}, {n} requests, tiny Llama", "batch size 1",
               rate1, f"batch size {batch_size} (config)", rate, "requests/s",
               f"scoring only; whole run_lmeval {wall1:.1f} s vs {wall:.1f} s; accuracy {acc1:.3f} vs {acc:.3f}")
    return float(np.mean(cell_seconds))


EVAL_PROCESS = """
import json, sys
from kinject.evaluate import Run, run_lmeval
args = json.loads(sys.argv[1])
run_lmeval(args["model"], [Run(*run) for run in args["runs"]], shots=args["shots"], batch_size=args["batch_size"],
           seed=args["seed"])
"""


def evaluate_in_processes(model: Path, groups: list[list[tuple]], shots: int, batch_size: int, seed: int) -> float:
    """Seconds to score each group of runs (task dir, task name, out json) in a fresh Python process, one
    after the other: what a Snakemake job pays (interpreter, imports, model load, lm-eval task build, scoring)."""
    import json

    start = time.perf_counter()
    for runs in groups:
        arg = json.dumps({"model": str(model), "runs": [[str(x) for x in run] for run in runs], "shots": shots,
                          "batch_size": batch_size, "seed": seed})
        subprocess.run([sys.executable, "-c", EVAL_PROCESS, arg], check=True, capture_output=True)
    return time.perf_counter() - start


def bench_evaluation_jobs(results: Path, tmp: Path, batch_size: int, seed: int) -> None:
    """One process per cell vs one per checkpoint (rule evaluate_base): the base model's current-events cells."""
    from kinject.evaluate import write_lmeval_task
    from kinject.grid import evaluation_cells
    from kinject.settings import load_config

    task = "current_events"
    cells = evaluation_cells(load_config(ROOT / "config" / "demo.yaml"))["evaluate_base"]
    runs = {}
    for method, k in cells:
        name = f"kinject_{task}_k{k}"
        task_dir = write_lmeval_task(results / task / "questions.parquet", tmp / "jobs" / name, name, k=k,
                                     retrieved_parquet=results / task / "retrieval" / "retrieved.parquet",
                                     chunks_parquet=results / task / "chunks.parquet")
        runs[(method, k)] = (task_dir, name)
    model = results / "models" / "tiny-llama" / "base"
    out = {mode: tmp / "jobs" / mode for mode in ("cell", "checkpoint")}
    per_cell = [[(d, n, out["cell"] / f"{n}.json")] for d, n in runs.values()]
    t_cell = evaluate_in_processes(model, per_cell, 0, batch_size, seed)
    t_ckpt = evaluate_in_processes(model, [[(d, n, out["checkpoint"] / f"{n}.json") for d, n in runs.values()]],
                                   0, batch_size, seed)
    same = all(pd.read_json(out["cell"] / f"{n}.json", typ="series")["accuracy"]
               == pd.read_json(out["checkpoint"] / f"{n}.json", typ="series")["accuracy"] for _, n in runs.values())
    record("evaluation, jobs", f"{task}: base + RAG K={','.join(str(k) for _, k in cells[1:])}, "
           f"{len(cells)} cells, 0-shot", "one process per cell", t_cell, "one per checkpoint (evaluate_base)",
           t_ckpt, "s", f"fresh Python processes, run one after the other; {'same' if same else 'DIFFERENT'} "
           f"accuracies; {t_cell / len(cells):.1f} vs {t_ckpt / len(cells):.1f} s per cell", higher_is_better=False)


EVALUATION_RULES = ("evaluate_base", "evaluate_ft", "evaluate_ftrag")


def evaluate_log_times(log_dir: Path, n_jobs: int) -> tuple[Path, dict[str, list[float]], float] | None:
    """(log, per-job seconds by rule, wall span) of the evaluation jobs of the newest Snakemake log that ran
    them all."""
    stamp = r"\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]\n"
    rule = "(" + "|".join(EVALUATION_RULES) + ")"
    for log in sorted(log_dir.glob("*.snakemake.log"), reverse=True):
        text = log.read_text(errors="replace")
        parse = lambda s: datetime.datetime.strptime(" ".join(s.split()), "%a %b %d %H:%M:%S %Y")
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


def bench_grid_evaluation(cell_seconds: float) -> None:
    from kinject.grid import cells, evaluation_jobs
    from kinject.settings import load_config

    config = load_config(ROOT / "config" / "demo.yaml")
    n_cells = len(cells(config))
    n_jobs = sum(len(jobs) for jobs in evaluation_jobs(config).values())
    found = evaluate_log_times(ROOT / ".snakemake" / "log", n_jobs)
    if found:
        log, seconds, span = found
        per_rule = "; ".join(f"{rule} {len(v)} x {np.mean(v):.1f} s" for rule, v in sorted(seconds.items()))
        record_value("evaluation, demo grid total", f"{n_cells} cells in {n_jobs} jobs (one per checkpoint and "
                     "shot count)", "snakemake --cores 2", sum(map(sum, seconds.values())), "job-s", "measured",
                     f"from {log.name}: {per_rule} (process start, imports, model load, scoring); wall span of "
                     f"the evaluation jobs {span:.0f} s with 2 jobs at a time")
    else:
        record_value("evaluation, demo grid total", f"{n_cells} cells", "n cells x per-cell time",
                     n_cells * cell_seconds, "job-s", "estimate",
                     f"no Snakemake log of a full demo run: {n_cells} x {cell_seconds:.1f} s (run_lmeval above, "
                     "without process start)")


# 4. fine-tuning ----------------------------------------------------------------------------------------

class PaddedDataset:
    """One wrapped chunk per row, unpadded; the collator pads each batch."""

    def __init__(self, docs):
        self.docs = docs

    def __len__(self):
        return len(self.docs)

    def __getitem__(self, i):
        return {"input_ids": self.docs[i]}


def pad_collator(pad_id: int, width: int | None):
    """Pad a batch to its longest row (``width`` None) or to ``width``; pad positions get label -100."""
    import torch

    def collate(batch):
        size = width or max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), size), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), size), dtype=torch.long)
        for row, b in enumerate(batch):
            ids[row, :len(b["input_ids"])] = torch.tensor(b["input_ids"])
            mask[row, :len(b["input_ids"])] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}

    return collate


def train_seconds(base, dataset, collator, work_dir: Path, *, lr: float, batch: int, seed: int) -> float:
    """One epoch with transformers' Trainer, set up as kinject.finetune.train_causal_lm sets it up on CPU."""
    import torch
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    args = TrainingArguments(
        output_dir=str(work_dir), num_train_epochs=1, learning_rate=lr, per_device_train_batch_size=batch,
        gradient_accumulation_steps=1, seed=seed, data_seed=seed, use_cpu=True, logging_strategy="steps",
        logging_steps=1, save_strategy="no", report_to=[], disable_tqdm=True, dataloader_num_workers=0,
        dataloader_pin_memory=False)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator)
    return timed(trainer.train)[0]


def bench_finetune(results: Path, tmp: Path, ft: dict, seed: int) -> None:
    from transformers import default_data_collator

    from kinject.finetune import BlockDataset, load_tokenizer, tokenize_blocks, train_causal_lm, training_texts

    base = results / "models" / "tiny-llama" / "base"
    train_file = results / "current_events" / "paraphrases" / "paraphrases_k10.parquet"
    texts = training_texts(train_file)
    tok = load_tokenizer(base)
    block, batch, lr = ft["block_size"], ft["per_device_batch_size"], ft["lr"]
    blocks = tokenize_blocks(tok, texts, block)
    bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    # the same wrapped chunks pack_blocks concatenates, one per row (cut at the block size)
    docs = [([bos] + ids if ids[:1] != [bos] else ids) for ids in tok(texts)["input_ids"]]
    docs = [(d + [tok.eos_token_id] if d[-1] != tok.eos_token_id else d)[:block] for d in docs]
    size = f"{train_file.name}: {len(texts)} texts, {sum(map(len, docs)):,} tokens, batch {batch}"

    packed_tokens = len(blocks) * block
    t_packed = train_seconds(base, BlockDataset(blocks), default_data_collator, tmp / "ft_packed",
                             lr=lr, batch=batch, seed=seed)
    packed_rate = packed_tokens / t_packed
    for label, width in (("padded to the longest in the batch", None), (f"padded to {block}", block)):
        t = train_seconds(base, PaddedDataset(docs), pad_collator(tok.pad_token_id, width), tmp / "ft_padded",
                          lr=lr, batch=batch, seed=seed)
        record("fine-tuning, Trainer", size, f"one chunk per row, {label}", sum(map(len, docs)) / t,
               f"packed {block}-token blocks", packed_rate, "real tokens/s",
               f"one epoch; {len(blocks)} blocks vs {len(docs)} rows")
    t_stage, summary = timed(lambda: train_causal_lm(
        base, texts, tmp / "ft_stage" / "out", tmp / "ft_stage" / "loss.csv", block_size=block, lr=lr, epochs=1,
        batch_size=ft["batch_size"], per_device_batch_size=batch, seed=seed, work_dir=tmp / "ft_stage" / "work"))
    record("fine-tuning, the stage", size, "bare Trainer, packed", packed_rate, "finetune.train_causal_lm",
           summary["tokens"] / t_stage, "real tokens/s",
           f"end to end: tokenize, model load, epoch checkpoint, save ({t_stage:.1f} s vs {t_packed:.1f} s of training)")


# 5. Snakemake --------------------------------------------------------------------------------------------

def copy_repo(dest: Path) -> None:
    """The files `git ls-files` names, with their modification times (symlinks kept as links)."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.decode()
    for name in filter(None, names.split("\0")):
        src = ROOT / name
        if src.exists() or src.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name, follow_symlinks=False)


def dry_run(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SNAKEMAKE, "-n", *args], cwd=repo, capture_output=True, text=True)


def bench_snakemake(results: Path, tmp: Path, complete: bool) -> None:
    from kinject.grid import dry_run_jobs, expected_job_counts
    from kinject.settings import load_config

    repo = tmp / "repo"
    copy_repo(repo)
    jobs = sum(expected_job_counts(load_config(ROOT / "config.yaml")).values())
    t_dry, proc = timed(lambda: dry_run(repo, "-q"), 3)
    if proc.returncode:
        record_value("snakemake dry run, paper grid", f"{jobs} jobs", "snakemake -n -q", None, "s", "FAILED",
                     proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}")
    else:
        record_value("snakemake dry run, paper grid", f"{jobs} jobs (config.yaml)", "snakemake -n -q", t_dry, "s",
                     "ok" if t_dry < DRY_RUN_GOAL_S else f"SLOW (goal < {DRY_RUN_GOAL_S:.0f} s)", "best of 3")
    if not complete:
        record_value("re-run after touching one paraphrase set", "demo", "snakemake -n", None, "jobs",
                     "not measured", "no completed demo run in results/ (run `make demo` first)")
        return
    shutil.copytree(results, repo / "results", symlinks=True)  # copy2: modification times kept
    before = dry_run_jobs(dry_run(repo, "--configfile", "config/demo.yaml").stdout)
    target = repo / "results" / "current_events" / "paraphrases" / "paraphrases_k3.parquet"
    assert target.is_relative_to(tmp) and not target.is_relative_to(ROOT)
    target.touch()
    after = dry_run_jobs(dry_run(repo, "--configfile", "config/demo.yaml").stdout)
    expected = {"finetune": 1, "evaluate_ft": 1, "tables": 1, "figures": 1, "all": 1}
    stale = ", ".join(f"{k} {v}" for k, v in before.items()) or "none"
    record_value("re-run after touching one paraphrase set", "demo, current_events paraphrases_k3.parquet",
                 "snakemake -n --configfile config/demo.yaml", sum(after.values()), "jobs",
                 "as expected" if after == expected else "UNEXPECTED",
                 ", ".join(f"{k} {v}" for k, v in after.items()) + f"; jobs before the touch: {stale} "
                 "(outputs older than a script or input edited since the demo run; no .snakemake metadata copied)")
    records = ROOT / ".snakemake" / "metadata"
    if not records.is_dir():
        return
    # with the run's records Snakemake 9 compares an input's checksum before its modification time
    shutil.copytree(records, repo / ".snakemake" / "metadata", dirs_exist_ok=True)
    touched = dry_run_jobs(dry_run(repo, "--configfile", "config/demo.yaml").stdout)
    edited = pd.read_parquet(target)
    edited.loc[edited.index[-1], "text"] += " (edited)"
    edited.to_parquet(target, index=False)
    changed = dry_run_jobs(dry_run(repo, "--configfile", "config/demo.yaml").stdout)
    record_value("re-run after editing one paraphrase set", "demo, same file, with the run's .snakemake/metadata",
                 "snakemake -n --configfile config/demo.yaml", sum(changed.values()), "jobs",
                 "as expected" if changed == expected else "UNEXPECTED",
                 ", ".join(f"{k} {v}" for k, v in changed.items()) + "; the bare touch alone "
                 + ("adds no job to the stale ones (same checksum)" if touched == before else
                    "lists " + (", ".join(f"{k} {v}" for k, v in touched.items()) or "none")))


# the machine and the run ------------------------------------------------------------------------------

def wait_for_load(max_load: float, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while os.getloadavg()[0] > max_load and time.monotonic() < deadline:
        print(f"load average {os.getloadavg()[0]:.2f} > {max_load}; waiting", flush=True)
        time.sleep(15)


def machine(load_start: tuple, load_end: tuple, seconds: float) -> list[str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
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
    p.add_argument("--results", type=Path, default=ROOT / "results", help="a completed demo run (read only)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results.md")
    p.add_argument("--max-load", type=float, default=1.0, help="wait for the 1-minute load average to drop below")
    p.add_argument("--wait", type=float, default=0, help="seconds to wait at most for that (default: no wait)")
    p.add_argument("--flat-size", type=int, default=200_000, help="synthetic vectors for exact search")
    p.add_argument("--queries", type=int, default=1000, help="synthetic queries (the paper has 910 questions)")
    p.add_argument("--eval-limit", type=int, help="questions per task in the shared-prefix rows (default: all)")
    p.add_argument("--exact-max", type=int, help="HNSW threshold to probe (default 100000, the former retrieval.exact_max)")
    p.add_argument("--cleaning-mb", type=float, default=1024, help="decompressed XML of the synthetic dump (bench/cleaning.py)")
    return p.parse_args(argv)


def main(argv=None) -> None:
    from kinject.retrieval import load_embedder
    from kinject.settings import load_config

    args = parse_args(argv)
    results = args.results.resolve()
    needed = [results / "embedder", results / "models" / "tiny-llama" / "base",
              results / "current_events" / "retrieval" / "retrieved.parquet"]
    if missing := [str(p) for p in needed if not p.exists()]:
        sys.exit(f"bench/run.py needs the demo's outputs ({', '.join(missing)} missing): run `make demo` first")
    complete = (results / "tables" / "scores.csv").exists()
    config = load_config(ROOT / "config" / "demo.yaml")
    exact_max = args.exact_max or 100_000  # the former default: why exact search now goes to 10M
    wait_for_load(args.max_load, args.wait)
    load_start, started = os.getloadavg(), time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kinject-bench-") as scratch:
        tmp = Path(scratch)
        embedder = load_embedder(results / "embedder")
        retrieval_batch = config["retrieval"].get("batch_size", 64)
        bench_embedding(results, embedder, retrieval_batch)
        bench_faiss_demo(results, embedder, tmp, retrieval_batch, config["retrieval"]["exact_max"])
        bench_faiss_synthetic(args.flat_size, exact_max + 1, args.queries, exact_max, config["retrieval"]["exact_max"])
        cell = bench_lmeval(results, tmp, config["evaluation"].get("batch_size", 8), config["seed"])
        bench_evaluation_jobs(results, tmp, config["evaluation"].get("batch_size", 8), config["seed"])
        bench_grid_evaluation(cell)
        smollm2 = evaluation.convert_gguf_model(tmp / "smollm2")
        for row in evaluation.bench_shared_prefix(results, tmp, smollm2, batch_size=config["evaluation"]["batch_size"],
                                                  seed=config["seed"], limit=args.eval_limit):
            rows.append(row)
            print(f"{row['stage']:34s} {row['its value']:12.2f} -> {row['kinject value']:12.2f} {row['unit']:12s} "
                  f"x{row['ratio']:6.2f}  {row['note']}", flush=True)
        bench_finetune(results, tmp, config["finetune"], config["seed"])
        bench_snakemake(results, tmp, complete)
        for row in cleaning.bench_cleaning(args.cleaning_mb, tmp):
            rows.append(row)
            print(f"{row['stage']:34s} {row['kinject value']:12.2f} {row['unit']:12s} {row['verdict']}  {row['note']}")
    lines = ["# kinject benchmark", "", "`.venv/bin/python bench/run.py` on", "",
             *machine(load_start, os.getloadavg(), time.monotonic() - started), "",
             "ratio: how many times faster kinject's way is than the one it is compared with "
             "(< 0.5: more than 2x slower, SLOW).", "", *markdown_table(rows), ""]
    text = "\n".join(lines)
    args.out.write_text(text, encoding="utf-8")
    print("\n" + text)


if __name__ == "__main__":
    main()
