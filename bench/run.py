"""Benchmark: each heavy stage of kinject against the naive way of doing the same work, in one run.

    .venv/bin/python bench/run.py [--max-load 1 --wait 600]     (after `make demo`)

Prints a table of ratios and writes bench/results.md with the machine it ran on. It only reads a completed
demo run (``--repo``: its repository, by default this checkout; its results/, .snakemake/log and
.snakemake/metadata); everything it writes (indexes, task folders, checkpoints, copies of the repository and
the run) goes to a temporary directory.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from unittest import mock

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import cleaning  # bench/cleaning.py: the knowledge-base stages on a synthetic dump
import demo_evaluation  # bench/demo_evaluation.py: the demo's evaluation jobs, stock scoring vs shared prefix
import dumps  # bench/dumps.py: a multistream dump through its index and in parallel, against today's pass
import evaluation  # bench/evaluation.py: stock lm-eval scoring vs shared-prefix scoring, SmolLM2
import llm_concurrency  # bench/llm_concurrency.py: the questions stage one request at a time vs 8 and 32 in flight
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SLOWER = 0.5  # the goal: no stage more than 2x slower than its best-practice configuration
DRY_RUN_GOAL_S = 5.0
STAGES = ("embedding", "retrieval", "evaluation", "shared-prefix", "finetune", "snakemake", "demo-evaluation",
          "cleaning", "dumps", "llm")
rows: list[dict] = []


@dataclass
class Demo:
    """The completed demo run the benchmark reads: its repository, results folder and config (the repository's
    config/demo.yaml, with the schema's defaults)."""

    repo: Path
    results: Path
    config: dict

    @property
    def model_name(self) -> str:
        return next(iter(self.config["models"]))

    @property
    def precision(self) -> str:
        """The demo's precision as its CPU jobs resolve it on this host (auto: bf16 where native, else fp32)."""
        from kinject.precision import resolve

        return resolve(self.config["precision"], "cpu").name

    @property
    def base(self) -> Path:
        """The demo model as the pipeline built or converted it: results/models/<name>/base."""
        return self.results / "models" / self.model_name / "base"

    def threads(self, rule: str) -> int:
        """A compute rule's threads in the demo (resources.<rule>.cpus_per_task over resources.gpu_rules)."""
        from kinject.settings import job_resources

        return int(job_resources(self.config, rule)["cpus_per_task"])


@contextlib.contextmanager
def torch_threads(n: int):
    """torch's intra-op threads set to ``n`` (a job's threads) while inside."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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

def embedding_texts(demo: Demo) -> list[str]:
    """Distinct demo texts of varied length: atlas chunks and the largest current-events paraphrase set."""
    largest = max(demo.config["tasks"]["current_events"]["paraphrase_sets"])
    paraphrases = demo.results / "current_events" / "paraphrases" / f"paraphrases_k{largest}.parquet"
    texts = pd.concat([pd.read_parquet(demo.results / "atlas" / "chunks.parquet")["text"],
                       pd.read_parquet(paraphrases)["text"]])
    return list(dict.fromkeys(texts.astype(str)))


def bench_embedding(demo: Demo, model, batch_size: int) -> None:
    from kinject.evaluation.retrieval import embed

    texts = embedding_texts(demo)
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
    from kinject.evaluation.retrieval import build_index, embed, new_index, read_index, retrieve

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
    from kinject.evaluation.retrieval import new_index

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


class MethodTimer:
    """Replaces a method of a class while patched: seconds spent in it, and the items of its first argument
    (the requests of lm-eval's loglikelihood)."""

    def __init__(self, cls, name: str):
        self.cls, self.name, self.original = cls, name, getattr(cls, name)
        self.seconds, self.items = 0.0, 0

    def __call__(self, obj, *args, **kwargs):
        start = time.perf_counter()
        out = self.original(obj, *args, **kwargs)
        self.seconds += time.perf_counter() - start
        self.items += len(args[0]) if args and hasattr(args[0], "__len__") else 0
        return out

    def patched(self):
        return mock.patch.object(self.cls, self.name, lambda obj, *a, **kw: self(obj, *a, **kw))


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


def train_seconds(base, dataset, collator, work_dir: Path, *, lr: float, batch: int, seed: int, precision: str,
                  threads: int) -> float:
    """One epoch with transformers' Trainer, set up as kinject.training.finetune.train_causal_lm sets it up on CPU."""
    import torch
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    args = TrainingArguments(
        output_dir=str(work_dir), num_train_epochs=1, learning_rate=lr, per_device_train_batch_size=batch,
        gradient_accumulation_steps=1, seed=seed, data_seed=seed, use_cpu=True, bf16=precision == "bf16",
        logging_strategy="steps", logging_steps=1, save_strategy="no", report_to=[], disable_tqdm=True,
        dataloader_num_workers=0, dataloader_pin_memory=False)
    with torch_threads(threads):
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator)
        return timed(trainer.train)[0]


def training_set(demo: Demo, tmp: Path, n_texts: int) -> tuple[Path, list[str]]:
    """The first ``n_texts`` texts of the demo's largest current-events paraphrase set, as a parquet of its own."""
    from kinject.training.blocks import training_texts

    largest = max(demo.config["tasks"]["current_events"]["paraphrase_sets"])
    source = demo.results / "current_events" / "paraphrases" / f"paraphrases_k{largest}.parquet"
    subset = tmp / f"{source.stem}_first{n_texts}.parquet"
    pd.read_parquet(source).head(n_texts).to_parquet(subset, index=False)
    return subset, training_texts(subset)


def bench_finetune(demo: Demo, tmp: Path, n_texts: int) -> None:
    from transformers import Trainer, default_data_collator

    from kinject.precision import save_dtype
    from kinject.training.blocks import BlockDataset, load_tokenizer, tokenize_blocks
    from kinject.training.finetune import train_causal_lm

    ft, seed, precision = demo.config["finetune"], demo.config["seed"], demo.precision
    threads = demo.threads("finetune")
    train_file, texts = training_set(demo, tmp, n_texts)
    tok = load_tokenizer(demo.base)
    block, batch, lr = ft["block_size"], ft["per_device_batch_size"], ft["lr"]
    blocks = tokenize_blocks(tok, texts, block)
    bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    # the same wrapped chunks pack_blocks concatenates, one per row (cut at the block size)
    docs = [([bos] + ids if ids[:1] != [bos] else ids) for ids in tok(texts)["input_ids"]]
    docs = [(d + [tok.eos_token_id] if d[-1] != tok.eos_token_id else d)[:block] for d in docs]
    size = (f"{train_file.name}: {len(texts)} texts, {sum(map(len, docs)):,} tokens, batch {batch}, "
            f"{demo.model_name}, {threads} threads")
    setup = {"lr": lr, "batch": batch, "seed": seed, "threads": threads}

    packed_tokens = len(blocks) * block
    t_packed = train_seconds(demo.base, BlockDataset(blocks), default_data_collator, tmp / "ft_packed",
                             precision=precision, **setup)
    packed_rate = packed_tokens / t_packed
    for label, width in (("padded to the longest in the batch", None), (f"padded to {block}", block)):
        t = train_seconds(demo.base, PaddedDataset(docs), pad_collator(tok.pad_token_id, width), tmp / "ft_padded",
                          precision=precision, **setup)
        record("fine-tuning, Trainer", f"{size}, {precision}", f"one chunk per row, {label}", sum(map(len, docs)) / t,
               f"packed {block}-token blocks", packed_rate, "real tokens/s",
               f"one epoch; {len(blocks)} blocks vs {len(docs)} rows")

    rates = {}
    for p in ("fp32", "bf16"):
        timer = MethodTimer(Trainer, "train")  # the training loop itself (KinjectTrainer inherits it)
        with timer.patched():
            summary = train_causal_lm(demo.base, texts, None, tmp / f"ft_{p}" / "loss.csv", block_size=block, lr=lr,
                                      epochs=1, batch_size=ft["batch_size"], per_device_batch_size=batch, seed=seed,
                                      work_dir=tmp / f"ft_{p}" / "work", save_steps=10**6, precision=p,
                                      threads=threads)
        rates[p] = (summary["tokens"] / timer.seconds, summary["final_loss"])
    record("fine-tuning, precision", size, "fp32", rates["fp32"][0], "bf16 (autocast over fp32 weights)",
           rates["bf16"][0], "real tokens/s",
           f"finetune.train_causal_lm, one epoch, the training loop timed (no checkpoint); final loss "
           f"{rates['fp32'][1]:.3f} vs {rates['bf16'][1]:.3f}; bare Trainer, packed, {precision}: {packed_rate:,.0f}")

    t_job = launch_finetune(demo, tmp / "ft_launch", train_file, threads)
    record("fine-tuning, the stage", f"{size}, {precision}", f"bare Trainer, packed, {precision}", packed_rate,
           "rule finetune's accelerate launch", packed_tokens / t_job, "real tokens/s",
           f"end to end: process start, imports, model load, {launched_how(demo)}, epoch checkpoint, save in "
           f"{save_dtype(ft.get('save_dtype'), precision)} ({t_job:.1f} s vs {t_packed:.1f} s of training)")


def launched_how(demo: Demo) -> str:
    from kinject.training.launch import job_resources, process_count, read_accelerate_config

    launch = read_accelerate_config(demo.repo / demo.config["finetune"]["accelerate_config"])
    return f"{launch['distributed_type']} on {process_count(job_resources(demo.config, 'finetune'))} process(es)"


def launch_finetune(demo: Demo, work: Path, train_file: Path, threads: int) -> float:
    """Seconds of the command rule finetune runs (kinject.training.launch.launch_command) on ``train_file``."""
    from kinject.training.launch import job_resources, launch_command, resolved, rule_settings

    settings = rule_settings(demo.config, "finetune", demo.config["tasks"]["current_events"])
    settings["accelerate_config"] = str(demo.repo / settings["accelerate_config"])
    settings = resolved(settings, "cpu")
    files = {"base": str(demo.base), "train": str(train_file), "hparams": None, "out": str(work / "checkpoint"),
             "loss_csv": str(work / "train_loss.csv"), "work_dir": str(work / "work")}
    argv = launch_command(settings, "finetune", files, job_resources(demo.config, "finetune"), threads)
    env = {**os.environ, **dict.fromkeys(("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"), str(threads))}
    work.mkdir(parents=True)
    with open(work / "launch.log", "w") as log:
        start = time.perf_counter()
        done = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        seconds = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{(work / 'launch.log').read_text()[-3000:]}")
    return seconds


# 5. Snakemake --------------------------------------------------------------------------------------------

def edit_expectation(config: dict, task: str, p: int) -> dict[str, int]:
    """Jobs a dry run should list after an edit of results/{task}/paraphrases/paraphrases_k{p}.parquet: its
    fine-tune per model, the evaluation jobs of that checkpoint (kinject.grid.evaluation_jobs), the report."""
    from kinject.grid import evaluation_jobs

    counts = {"finetune": len(config["models"])}
    for rule, jobs in evaluation_jobs(config).items():
        if rule != "evaluate_base":
            counts[rule] = sum(1 for job in jobs if job["task"] == task and job["p"] == p)
    return {**{rule: n for rule, n in counts.items() if n}, "tables": 1, "figures": 1, "all": 1}


def demo_dry_run(repo: Path) -> dict[str, int]:
    from kinject.grid import dry_run_jobs

    proc = demo_evaluation.snakemake(repo, "-n", "--configfile", "config/demo.yaml")
    if proc.returncode:
        raise RuntimeError(f"snakemake -n failed in {repo}: {demo_evaluation.last_line(proc)}")
    return dry_run_jobs(proc.stdout)


def temporary_task_folders(demo: Demo) -> str:
    """A note when the run's lm-eval task folders are gone (code before they stopped being temp()): Snakemake then
    re-creates them for the re-run fine-tune's evaluation and re-runs every other job that reads them too."""
    from kinject.grid import cells
    from kinject.paths import LMEVAL_TASK_DIR

    folders = {LMEVAL_TASK_DIR.format(task=c.task, format=c.format, k=c.k) for c in cells(demo.config)}
    missing = [f for f in folders if not (demo.results / Path(f).relative_to("results")).is_dir()]
    return (f"; {len(missing)} of the run's {len(folders)} lm-eval task folders are gone (temporary in the code that "
            "ran it): re-made, their readers re-run") if missing else ""


def bench_snakemake(demo: Demo, tmp: Path, complete: bool) -> None:
    from kinject.planning.dag import dag_jobs
    from kinject.settings import load_config

    repo = tmp / "repo"
    demo_evaluation.copy_repo(demo.repo, repo)
    jobs = len(dag_jobs(load_config(demo.repo / "config.yaml"), demo.repo))
    t_dry, proc = timed(lambda: demo_evaluation.snakemake(repo, "-n", "-q"), 3)
    if proc.returncode:
        record_value("snakemake dry run, paper grid", f"{jobs} jobs", "snakemake -n -q", None, "s", "FAILED",
                     demo_evaluation.last_line(proc))
    else:
        record_value("snakemake dry run, paper grid", f"{jobs} jobs (config.yaml)", "snakemake -n -q", t_dry, "s",
                     "ok" if t_dry < DRY_RUN_GOAL_S else f"SLOW (goal < {DRY_RUN_GOAL_S:.0f} s)", "best of 3")
    if not complete:
        record_value("re-run after touching one paraphrase set", "demo", "snakemake -n", None, "jobs",
                     "not measured", f"no completed demo run in {demo.results} (run `make demo` first)")
        return
    shutil.copytree(demo.results, repo / "results", symlinks=True)  # copy2: modification times kept
    task, p = "current_events", max(demo.config["tasks"]["current_events"]["paraphrase_sets"])
    expected = edit_expectation(demo.config, task, p)
    before = demo_dry_run(repo)
    target = repo / "results" / task / "paraphrases" / f"paraphrases_k{p}.parquet"
    assert target.is_relative_to(tmp) and not target.is_relative_to(demo.results)
    target.touch()
    after = demo_dry_run(repo)
    listed = lambda jobs: ", ".join(f"{k} {v}" for k, v in jobs.items()) or "none"
    why = temporary_task_folders(demo)
    record_value("re-run after touching one paraphrase set", f"demo, {task} {target.name}",
                 "snakemake -n --configfile config/demo.yaml", sum(after.values()), "jobs",
                 "as expected" if after == expected else "UNEXPECTED",
                 f"{listed(after)}; expected {listed(expected)}; jobs before the touch: {listed(before)} "
                 f"(outputs older than a script or input edited since the demo run; no .snakemake metadata copied){why}")
    records = demo.repo / ".snakemake" / "metadata"
    if not records.is_dir():
        return
    # with the run's records Snakemake 9 compares an input's checksum before its modification time
    shutil.copytree(records, repo / ".snakemake" / "metadata", dirs_exist_ok=True)
    touched = demo_dry_run(repo)
    edited = pd.read_parquet(target)
    edited.loc[edited.index[-1], "text"] += " (edited)"
    edited.to_parquet(target, index=False)
    changed = demo_dry_run(repo)
    record_value("re-run after editing one paraphrase set", "demo, same file, with the run's .snakemake/metadata",
                 "snakemake -n --configfile config/demo.yaml", sum(changed.values()), "jobs",
                 "as expected" if changed == expected else "UNEXPECTED",
                 f"{listed(changed)}; expected {listed(expected)}; the bare touch alone "
                 + ("adds no job to the stale ones (same checksum)" if touched == before else "lists " + listed(touched))
                 + why)


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


def add_rows(new_rows: list[dict]) -> None:
    """Rows made by the other bench modules (cleaning, evaluation, demo_evaluation), printed as they come."""
    fmt = lambda v: f"{v:12.2f}" if isinstance(v, (int, float)) else f"{'-':>12}"
    for row in new_rows:
        rows.append(row)
        print(f"{row['stage']:34s} {fmt(row['its value'])} -> {fmt(row['kinject value'])} {row['unit']:12s} "
              f"{row['verdict']}  {row['note']}", flush=True)


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
