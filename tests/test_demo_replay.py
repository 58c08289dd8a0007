"""The demo cannot leave the machine: its LLM rules replay resources/demo/llm_cache (``llm.mode: replay``),
even with OPENAI_API_KEY set and an endpoint configured; a miss is one line; nothing under resources/ changes.
And the shipped cache is exactly what the offline author (kinject.demo.author) writes: no stale entry."""

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, copy_checkout, run_snakemake
from loopback import Handler, serve

from kinject.qa import prompts

pytestmark = pytest.mark.slow  # each runs the demo's LLM rules (or the cache build) in a fresh copy
CACHE = "resources/demo/llm_cache"
# the demo's four LLM rules: generate_questions, select_questions, paraphrase_chunks, validation_paraphrases
LLM_TARGETS = ["results/current_events/questions/selected.parquet",
               "results/current_events/paraphrases/generated.parquet",
               "results/atlas/validation/paraphrases.parquet",
               "results/current_events/validation/paraphrases.parquet"]  # the searches of demo-extended and the tests
# make demo has no search; the cache serves the extended demo's and the test config's (config/demo_author.yaml)
SEARCHES = {"tasks": {t: {"validation": {"chunks": 12, "paraphrases": 2}} for t in ("atlas", "current_events")}}


class CountingEndpoint(Handler):
    """Counts every HTTP request; refuses each with 400 (which the openai client does not retry)."""

    calls = []

    def do_POST(self):
        type(self).calls.append(self.path)
        self.respond(400, '{"error": {"message": "this endpoint must never be called"}}')

    do_GET = do_POST


@pytest.fixture
def endpoint():
    CountingEndpoint.calls = []
    with serve(CountingEndpoint) as url:
        yield f"{url}/v1"


def digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def run_llm_rules(workdir: Path, endpoint: str, targets=LLM_TARGETS, **llm):
    """The demo's LLM rules with a key set and llm.base_url on the counting endpoint (plus `llm` overrides)."""
    (workdir / "offline.yaml").write_text(yaml.safe_dump({"llm": {"base_url": endpoint, **llm}, **SEARCHES}))
    env = {**os.environ, "OPENAI_API_KEY": "sk-live-looking-key"}
    return run_snakemake(workdir, *targets, "--cores", "2", "--configfile", "config/demo.yaml", "offline.yaml",
                         env=env, timeout=900)


def test_demo_llm_rules_replay_with_a_key_set_and_call_nothing(tmp_path, endpoint):
    workdir = copy_checkout(tmp_path)
    before = digest(workdir / "resources")
    proc = run_llm_rules(workdir, endpoint)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert CountingEndpoint.calls == []
    assert digest(workdir / "resources") == before
    spend = [tuple(map(int, m)) for log in sorted((workdir / "logs").glob("*/*.log"))
             for m in re.findall(r"LLM spend: (\d+) calls, (\d+) cached replies", log.read_text())]
    assert len(spend) == 5 and sum(calls for calls, _ in spend) == 0
    # every request of the five jobs was a cached reply, and every cache entry was one of them, but synthetic CPT's
    # (its entity and relation calls: make demo-extended's, which the demo does not make)
    entries = [json.loads(path.read_text()) for path in (workdir / CACHE).rglob("*.json")]
    opening = os.path.commonprefix([prompts.ENTITIES, prompts.RELATION])  # both prompts' first words
    synthetic = [e for e in entries if e["request"]["messages"][-1]["content"].startswith(opening)]
    assert len(synthetic) == 35 + 350  # current events' chunks, and 10 entity pairs of each
    assert sum(cached for _, cached in spend) == len(entries) - len(synthetic)


def test_demo_cache_miss_is_one_line_and_calls_nothing(tmp_path, endpoint):
    workdir = copy_checkout(tmp_path)
    before = digest(workdir / "resources")
    proc = run_llm_rules(workdir, endpoint, LLM_TARGETS[:1], temperature=0.3)  # other keys: every request misses
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("kinject error:")]
    assert errors == [f"kinject error: {CACHE}: 35 of 35 LLM requests are not in the response cache and llm.mode "
                      "is replay, which never calls the LLM (model 'kinject-demo-author'); rebuild the cache, or "
                      "set llm.mode: live to ask the endpoint"]
    assert CountingEndpoint.calls == []
    assert digest(workdir / "resources") == before


def test_rebuilding_the_cache_reproduces_the_shipped_one(tmp_path):
    """python -m kinject.demo.build_cache (live mode, the offline author as backend) in a fresh copy writes
    byte for byte the committed cache: the same keys (none stale, none missing) and the same replies."""
    workdir = copy_checkout(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env["PYTHONPATH"] = str(workdir / "src")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run([sys.executable, "-m", "kinject.demo.build_cache"], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rebuilt, shipped = digest(workdir / CACHE), digest(REPO / CACHE)
    assert len(shipped) == 164 + 385  # the demo's replies and synthetic CPT's (make demo-extended's)
    assert rebuilt == shipped
