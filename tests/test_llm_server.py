"""The LLM rules against a real serving engine: llama.cpp's OpenAI-compatible server (PyPI
llama-cpp-python[server], installed by ``make llama-server``) on loopback, serving the demo's SmolLM2 GGUF
with JSON mode on; generate_questions, select_questions and paraphrase_chunks run through Snakemake on one
page of the demo's current events. Every answered request is cached; a reply cut at max_tokens is never
parsed, it is counted and quarantined with the server's raw text; a re-run asks the server nothing.

SmolLM2-135M writes mostly invalid JSON (on the demo page every one of its question and paraphrase replies
was invalid, so those rules fail, as they must, with one line), so the bounds are small (its replies are cut
often) and the test asserts on what the client did with each reply, not on the questions: the three rules
ask the live server (the selection on written candidates when SmolLM2 wrote none), every answered request
is cached and counted, every cut reply counted as invalid, a quarantined reply is the server's raw text."""

import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import process_tree
import pytest
import yaml
from conftest import REPO, copy_checkout, run_snakemake

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]  # Snakemake's runs are given 2,400 + 1,200 s

TASK = "live"
TARGETS = [f"results/{TASK}/questions/selected.parquet", f"results/{TASK}/paraphrases/generated.parquet"]
QUARANTINES = {"generate_questions": f"results/{TASK}/questions/candidates_quarantine.jsonl",
               "select_questions": f"results/{TASK}/questions/selected_quarantine.jsonl",
               "paraphrase_chunks": f"results/{TASK}/paraphrases/generated_quarantine.jsonl"}


def require_llama_server() -> None:
    """The server is a make target of its own (it builds llama.cpp): without it this test fails, naming it."""
    if any(importlib.util.find_spec(m) is None for m in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette")):
        pytest.fail("llama-cpp-python[server] is not installed in this venv: run `make llama-server`", pytrace=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


READY_S = 300  # it loads a 135M GGUF in seconds; minutes leave room for a loaded 2-core machine
BIND_TRIES = 3


def start_llama_server(gguf: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """llama.cpp's server on a free port, answering /v1/models: (the process, its base URL). The server binds the
    port itself (uvicorn takes no socket), so another process may take the port first: it is tried again on a
    new port when the server exits saying so; any other exit, or no answer within READY_S, fails the test."""
    for _ in range(BIND_TRIES):
        port = free_port()
        with open(log, "w") as out:
            server = process_tree.popen([sys.executable, str(REPO / "tests" / "llama_server.py"), "--model",
                                         str(gguf), "--model_alias", "smollm2", "--host", "127.0.0.1", "--port",
                                         str(port), "--n_ctx", "4096"], stdout=out, stderr=subprocess.STDOUT)
        url, deadline = f"http://127.0.0.1:{port}/v1", time.monotonic() + READY_S
        try:
            while server.poll() is None and time.monotonic() < deadline:
                try:
                    urllib.request.urlopen(f"{url}/models", timeout=2)
                    return server, url
                except OSError:
                    time.sleep(0.5)
        except BaseException:
            process_tree.kill_tree(server)
            raise
        exited = server.poll() is not None
        process_tree.kill_tree(server)
        text = log.read_text(errors="replace")
        if not exited or "address already in use" not in text.lower():
            break
    if not exited:
        pytest.fail(f"llama.cpp's server did not answer {url}/models within {READY_S} s: {log}: "
                    f"{text[-2000:]}", pytrace=False)
    pytest.fail(f"llama.cpp's server exited ({server.returncode}): {log}: {text[-2000:]}", pytrace=False)


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    require_llama_server()
    from kinject.training.models import gguf_path

    demo = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    gguf = gguf_path(next(iter(demo["models"].values()))["gguf"])
    log = tmp_path_factory.mktemp("llama") / "server.log"
    server, url = start_llama_server(gguf, log)
    try:
        yield url, log
    finally:
        process_tree.kill_tree(server, grace_s=30)


def one_page_dump(src: Path, dest: Path) -> None:
    """The demo's current-events dump cut to its siteinfo and first page."""
    text = src.read_text(encoding="utf-8")
    head, first = text.split("<page>", 1)[0], text.split("<page>", 2)[1]
    dest.write_text(f"{head}<page>{first.split('</page>', 1)[0]}</page>\n</mediawiki>\n", encoding="utf-8")


def live_config(workdir: Path, url: str) -> Path:
    config = yaml.safe_load((workdir / "config" / "demo.yaml").read_text())
    one_page_dump(workdir / "resources" / "demo" / "current_events.xml", workdir / "live.xml")
    config["tasks"] = {TASK: {"group": "current_events", "knowledge_base": {"source": "dump", "path": "live.xml"},
                              "questions": {"source": "generated", "per_chunk": 2, "keep": 1, "review": "skip"},
                              "shots": [0], "paraphrase_sets": [0, 1]}}
    config.pop("ft_rag_paraphrase_sets", None)
    config["finetune"]["steps_matched"] = []  # the demo's control matches current events' set 4
    # llama-cpp-python's server answers one request at a time: one in flight, and a timeout above its slowest
    config["llm"] = {"backend": "openai", "mode": "live", "model": "smollm2", "base_url": url, "json_mode": True,
                     "cache": "llm_cache", "temperature": 0.7, "max_concurrency": 1, "timeout_s": 900,
                     "invalid_retries": 1, "max_tokens": {"question": 70, "selection": 20, "overhead": 20,
                                                          "paraphrase": 1.2, "chars_per_token": 4.0}}
    config["paraphrases"] = {"count": 1, "per_call": 1}
    path = workdir / "live.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


CANDIDATES = f"results/{TASK}/questions/candidates.parquet"


def write_candidates(workdir: Path) -> None:
    """Two well-formed candidate questions for every chunk, as generate_questions writes them."""
    import pandas as pd

    chunks = pd.read_parquet(workdir / "results" / TASK / "chunks.parquet", columns=["chunk_id"])
    rows = [{"chunk_id": c, "candidate": i, "question": f"Which year does chunk {c} name ({i})?",
             "choices": ["2029", "2030", "2031", "2032"], "answer": 2} for c in chunks["chunk_id"] for i in range(2)]
    (workdir / CANDIDATES).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(workdir / CANDIDATES)


def cache_entries(workdir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((workdir / "llm_cache").rglob("*.json"))]


def answered(log: Path) -> int:
    return len(re.findall(r'"POST /v1/chat/completions HTTP/1.1" 200', log.read_text()))


def test_llm_rules_through_snakemake_against_llama_cpp_server(tmp_path, llama_server):
    url, log = llama_server
    workdir = copy_checkout(tmp_path)
    config = live_config(workdir, url)
    before = answered(log)
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    proc = run_snakemake(workdir, *TARGETS, "--cores", "1", "--keep-going", "--configfile", str(config), env=env,
                         timeout=2400)
    entries = cache_entries(workdir)
    # every request the server answered is in the cache, each carrying the rule's max_tokens bound
    assert entries and len(entries) == answered(log) - before, proc.stderr[-3000:]
    cut = [e for e in entries if e.get("finish_reason") == "length"]
    assert all(e["usage"]["completion_tokens"] == e["max_tokens"] for e in cut)  # the server stopped at the bound
    logs = {rule: (workdir / "logs" / rule / f"{TASK}.log") for rule in QUARANTINES}
    logs = {rule: path.read_text() for rule, path in logs.items() if path.exists()}
    spent = {rule: re.search(r"LLM spend: (\d+) calls, (\d+) cached replies, (\d+) invalid \((\d+) cut", text)
             for rule, text in logs.items()}
    ran = {rule: m for rule, m in spent.items() if m}
    assert "generate_questions" in ran and "paraphrase_chunks" in ran, proc.stderr[-3000:]
    # the spend lines count every answered request, and every cut reply as invalid
    assert sum(int(m[1]) for m in ran.values()) == len(entries)
    assert sum(int(m[4]) for m in ran.values()) == len(cut)
    for rule, m in ran.items():
        quarantine = workdir / QUARANTINES[rule]
        if not quarantine.exists():  # the rule failed: nothing valid at all, said in one line
            assert "see the quarantine file" in logs[rule] + proc.stderr
            continue
        records = [json.loads(line) for line in quarantine.read_text().splitlines()]
        raw = {e["reply"] for e in entries}
        # a quarantined reply is the server's raw text, as cached; a cut one says so
        assert all(r["reply"] in raw for rec in records for r in rec["replies"])
        assert all("cut at max_tokens" in r["error"] for rec in records for r in rec["replies"]
                   if r.get("finish_reason") == "length")
    replayed = list(ran)
    if not (workdir / CANDIDATES).exists():
        # SmolLM2 wrote no valid question for any chunk (its rule failed, as it must): the selection then
        # meets the live server on written candidates, so that all three rules have asked it
        write_candidates(workdir)
        select = run_snakemake(workdir, TARGETS[0], "--cores", "1", "--configfile", str(config), env=env,
                               timeout=1200)
        text = (workdir / "logs" / "select_questions" / f"{TASK}.log").read_text()
        m = re.search(r"LLM spend: (\d+) calls, (\d+) cached replies", text)
        assert m and int(m[1]) > 0, select.stderr[-3000:]
        assert len(cache_entries(workdir)) == answered(log) - before
        replayed.append("select_questions")
    # the rules forced to run again replay the cache (those that failed fail again the same way): the server
    # is asked nothing
    calls_before, cached = answered(log), len(cache_entries(workdir))
    again = run_snakemake(workdir, *TARGETS, "--cores", "1", "--keep-going", "--configfile", str(config),
                          "--forcerun", *replayed, env=env, timeout=600)
    assert answered(log) == calls_before, again.stderr[-3000:]
    assert len(cache_entries(workdir)) == cached
