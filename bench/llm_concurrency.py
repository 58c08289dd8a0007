"""The questions stage (generate_questions + select_questions) one request at a time vs llm.max_concurrency 8
and 32, against a loopback OpenAI-compatible endpoint that serves requests concurrently with a fixed latency.

What it models: an endpoint whose answer time does not grow with the requests in flight (a hosted API within
its rate limit, or vLLM / SGLang below saturation, which batch concurrent requests); the ratio is then the
client's: how much of the latency it overlaps. It does not model a server that answers one at a time (the
llama-cpp-python server: there concurrency only queues). Every fifth chunk's first question reply has no JSON
(re-asked with a new seed), so the retries go through the pool too. The outputs (candidates, selection,
quarantines) of every run are compared byte for byte with the sequential run's.

    PYTHONPATH=src .venv/bin/python bench/llm_concurrency.py [--chunks 48] [--latency 0.25]
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
from cleaning import compared

CONCURRENCY = (8, 32)


class Endpoint(BaseHTTPRequestHandler):
    latency = 0.25

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        time.sleep(self.latency)
        prompt, seed = body["messages"][-1]["content"], body["seed"]
        if prompt.startswith("Write "):
            n = int(re.match(r"Write (\d+) ", prompt)[1])
            chunk = int(re.search(r"chunk (\d+)", prompt)[1])
            content = "Sure, here you go." if chunk % 5 == 0 and seed < 1000 else json.dumps(
                {"questions": [{"question": f"Q{i} of chunk {chunk}?", "choices": ["w", "x", "y", "z"],
                                "answer": (i + chunk) % 4} for i in range(n)]})
        else:
            keep = int(re.search(r"Choose the (\d+) most specific", prompt)[1])
            content = json.dumps({"keep": list(range(keep))[::-1]})
        data = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": content}}],
                           "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def questions_stage(base_url: str, chunks: Path, work: Path, concurrency: int) -> tuple[float, list[bytes]]:
    """Wall seconds of generate_questions + select_questions (4 candidates, keep 2) with a fresh cache, and
    the bytes of their four outputs."""
    from kinject.qa.llm import LLMClient, ResponseCache
    from kinject.qa.sets import generate_questions, select_questions

    client = LLMClient(model="bench", cache=ResponseCache(work / "cache"), base_url=base_url,
                       api_key_env="KINJECT_BENCH_NO_KEY", max_concurrency=concurrency, progress_every=0)
    outputs = [work / "candidates.parquet", work / "candidates_quarantine.jsonl", work / "selected.parquet",
               work / "selected_quarantine.jsonl"]
    start = time.perf_counter()
    generate_questions(chunks, outputs[0], outputs[1], client, per_chunk=4, seed=1234)
    select_questions(outputs[0], outputs[2], outputs[3], client, keep=2, seed=1234)
    return time.perf_counter() - start, [p.read_bytes() for p in outputs]


def bench_llm_concurrency(tmp: Path, n_chunks: int = 48, latency: float = 0.25) -> list[dict]:
    chunks = tmp / "llm_chunks.parquet"
    pd.DataFrame({"chunk_id": [f"c{i}" for i in range(n_chunks)],
                  "text": [f"The text of chunk {i}." for i in range(n_chunks)]}).to_parquet(chunks)
    Endpoint.latency = latency
    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/v1"
    try:
        seq_s, reference = questions_stage(url, chunks, tmp / "llm_1", 1)
        rows = []
        for n in CONCURRENCY:
            wall, outputs = questions_stage(url, chunks, tmp / f"llm_{n}", n)
            same = outputs == reference
            rows.append(compared(f"llm questions stage, {n} in flight", f"{n_chunks} chunks, {latency:g} s/request",
                                 "one at a time", seq_s, f"max_concurrency {n}", wall, "s", note=(
                                     "outputs byte-identical to the sequential run's" if same else
                                     "OUTPUTS DIFFER from the sequential run's")))
            rows[-1]["ratio"] = seq_s / wall  # seconds: lower is better
            rows[-1]["verdict"] = "ok" if same and rows[-1]["ratio"] >= 0.5 else "FAILED" if not same else "SLOW"
    finally:
        server.shutdown()
        server.server_close()
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chunks", type=int, default=48)
    p.add_argument("--latency", type=float, default=0.25, help="seconds the endpoint takes per request")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kinject-bench-llm-") as scratch:
        for r in bench_llm_concurrency(Path(scratch), args.chunks, args.latency):
            print(f"{r['stage']:34s} {r['its value']:8.2f} s -> {r['kinject value']:6.2f} s  x{r['ratio']:5.1f}  "
                  f"{r['verdict']}  {r['note']}")


if __name__ == "__main__":
    main()
