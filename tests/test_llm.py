"""The LLM client: cache replay, replay mode, the no-key error before any spend, JSON mode and JSON parsed from
prose, retries, quarantine, a live endpoint; max_tokens and cut replies; requests in flight (same outputs as one
at a time, 429 holding the pool, timeouts not re-sent, an interrupted stage re-run paying for nothing twice)."""

import json
import logging
import re
import threading
import time

import pandas as pd
import pytest
from llm_helpers import FakeEndpoint, completion
from loopback import Handler, serve

from kinject.errors import KinjectError
from kinject.qa import llm_pool
from kinject.qa.llm import (
    Call,
    LLMClient,
    ResponseCache,
    paraphrase_max_tokens,
    questions_max_tokens,
    reply_settings,
)
from kinject.qa.replies import parse_json_reply, request_key
from kinject.qa.sets import generate_questions

MESSAGES = [{"role": "user", "content": "Return JSON."}]


def ok(reply):
    if "value" not in reply:
        raise ValueError("no value")
    return reply["value"]


def client(tmp_path, **kw):
    return LLMClient(model="gpt-4", cache=ResponseCache(tmp_path / "cache"), api_key_env="KINJECT_TEST_KEY", **kw)


def test_cache_hit_needs_no_key(tmp_path, monkeypatch):
    monkeypatch.delenv("KINJECT_TEST_KEY", raising=False)
    c = client(tmp_path)
    c.cache.put(c.request(MESSAGES, seed=7), json.dumps({"value": 42}))
    assert c.chat_json(MESSAGES, 7, ok) == 42
    assert c.spend.calls == 0 and c.spend.cached == 1


def test_cache_key_depends_on_every_request_field(tmp_path):
    c = client(tmp_path)
    keys = {request_key(c.request(MESSAGES, seed=s)) for s in (1, 2)}
    keys.add(request_key(c.request([{"role": "user", "content": "other"}], seed=1)))
    assert len(keys) == 3


def test_json_mode_is_sent_only_when_switched_on(tmp_path):
    assert "response_format" not in client(tmp_path).request(MESSAGES, seed=1)
    on = client(tmp_path, json_mode=True).request(MESSAGES, seed=1)
    assert on["response_format"] == {"type": "json_object"}
    assert request_key(on) != request_key(client(tmp_path).request(MESSAGES, seed=1))


@pytest.mark.parametrize("reply", [
    '{"value": 3}',
    '```json\n{"value": 3}\n```',
    'Here are the questions:\n\n```json\n{"value": 3}\n```\nLet me know if you need more.',
    '```\n{"value": 3}\n```',
    'Sure! {"value": 3} is the answer.',
    'Note {this is not JSON} and [1, 2]; then {"value": 3}',
])
def test_json_object_parsed_from_plain_fenced_or_prose_replies(reply):
    assert parse_json_reply(reply) == {"value": 3}


@pytest.mark.parametrize("reply", ["", "no json here", "[1, 2, 3]", '```json\n{"value": \n```'])
def test_reply_without_a_json_object_is_invalid(reply):
    with pytest.raises(ValueError, match="no JSON object in the reply"):
        parse_json_reply(reply)


def test_prose_reply_counts_as_valid_and_is_not_asked_again(tmp_path):
    replies = iter(['I picked these.\n```json\n{"value": 8}\n```'])
    c = client(tmp_path, backend=lambda req: (next(replies), None))
    assert c.chat_json(MESSAGES, 3, ok) == 8
    assert (c.spend.calls, c.spend.invalid) == (1, 0)


def cache_files(c):
    return sorted(c.cache.dir.rglob("*")) if c.cache.dir.exists() else []


@pytest.fixture
def no_openai_client(monkeypatch):
    """Constructing an openai client fails the test (replay must never build one)."""
    import openai

    monkeypatch.setattr(openai, "OpenAI", lambda *a, **k: pytest.fail("replay constructed an openai client"))
    monkeypatch.setenv("KINJECT_TEST_KEY", "sk-test")  # a key is set: replay must not use it


def test_replay_miss_is_one_line_error_even_with_a_key(tmp_path, no_openai_client):
    live = client(tmp_path)
    live.cache.put(live.request(MESSAGES, seed=1), json.dumps({"value": 1}))
    before = cache_files(live)
    c = client(tmp_path, mode="replay", base_url="http://127.0.0.1:9/v1",
               backend=lambda req: pytest.fail("replay called the backend"))
    reqs = [c.request(MESSAGES, seed=1), c.request(MESSAGES, seed=2)]
    with pytest.raises(KinjectError, match=r"cache: 1 of 2 LLM requests are not in the response cache and llm.mode "
                                           r"is replay, which never calls the LLM \(model 'gpt-4'\)") as err:
        c.ensure_can_call(reqs)
    assert "\n" not in str(err.value)
    with pytest.raises(KinjectError, match="is not in the response cache and llm.mode is replay"):
        c.chat_json(MESSAGES, 2, ok)
    assert c.chat_json(MESSAGES, 1, ok) == 1  # a hit replays
    assert (c.spend.calls, c.spend.cached) == (0, 1)
    assert cache_files(c) == before


def test_replay_reask_after_an_invalid_cached_reply_is_a_miss(tmp_path, no_openai_client):
    """The re-ask after an invalid reply is a new request: in replay it is an error, not a call."""
    live = client(tmp_path)
    live.cache.put(live.request(MESSAGES, seed=4), "no json")
    before = cache_files(live)
    c = client(tmp_path, mode="replay")
    with pytest.raises(KinjectError, match="is not in the response cache and llm.mode is replay"):
        c.chat_json(MESSAGES, 4, ok)
    assert cache_files(c) == before


def test_replay_cache_refuses_writes(tmp_path):
    c = client(tmp_path, mode="replay")
    with pytest.raises(KinjectError, match="read-only here"):
        c.cache.put(c.request(MESSAGES, seed=1), "{}")
    assert not (tmp_path / "cache").exists()


def test_miss_without_key_fails_before_any_call(tmp_path, monkeypatch):
    monkeypatch.delenv("KINJECT_TEST_KEY", raising=False)
    c = client(tmp_path)
    c.cache.put(c.request(MESSAGES, seed=1), json.dumps({"value": 1}))
    reqs = [c.request(MESSAGES, seed=1), c.request(MESSAGES, seed=2)]
    with pytest.raises(KinjectError, match=r"1 of 2 LLM requests are not in the response cache .*KINJECT_TEST_KEY"):
        c.ensure_can_call(reqs)


def test_invalid_reply_retried_then_quarantined(tmp_path):
    replies = iter(["not json", json.dumps({"wrong": 1}), json.dumps({"still": "wrong"})])
    c = client(tmp_path, backend=lambda req: (next(replies), None), invalid_retries=2)
    assert c.chat_json(MESSAGES, 3, ok) is None
    assert c.spend.invalid == 3 and c.spend.calls == 3
    out = tmp_path / "quarantine.jsonl"
    c.write_quarantine(out)
    record = json.loads(out.read_text())
    assert [r["reply"] for r in record["replies"]][0] == "not json" and len(record["replies"]) == 3


def test_valid_retry_after_invalid(tmp_path):
    replies = iter(["{}", json.dumps({"value": 5})])
    c = client(tmp_path, backend=lambda req: (next(replies), None))
    assert c.chat_json(MESSAGES, 3, ok) == 5
    # both replies are cached: a re-run replays them without calling again
    again = client(tmp_path, backend=lambda req: pytest.fail("called the backend on a cached request"))
    assert again.chat_json(MESSAGES, 3, ok) == 5


class FakeOpenAI(Handler):
    """An OpenAI-compatible endpoint on loopback: a 429 and a 503 first, then a real completion."""

    failures = [429, 503]
    requests = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        if self.failures:
            return self.respond(self.failures.pop(0), '{"error": {"message": "slow down"}}', retry_after_ms="10")
        reply = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                 "choices": [{"index": 0, "finish_reason": "stop",
                              "message": {"role": "assistant", "content": json.dumps({"value": body["seed"]})}}],
                 "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}}
        self.respond(200, json.dumps(reply))


@pytest.fixture
def endpoint():
    with serve(FakeOpenAI) as url:
        yield f"{url}/v1"


def test_live_endpoint_with_429_and_5xx_retries(tmp_path, endpoint, monkeypatch):
    monkeypatch.setenv("KINJECT_TEST_KEY", "sk-test")
    FakeOpenAI.failures, FakeOpenAI.requests = [429, 503], []
    c = client(tmp_path, base_url=endpoint, max_retries=3)
    assert c.chat_json(MESSAGES, 9, ok) == 9
    assert len(FakeOpenAI.requests) == 3  # two refused, one answered, by the client's retries
    assert "response_format" not in FakeOpenAI.requests[-1]  # json_mode is off unless configured
    assert (c.spend.calls, c.spend.prompt_tokens, c.spend.completion_tokens) == (1, 11, 5)
    cached = json.loads(c.cache.path(request_key(c.request(MESSAGES, 9))).read_text())
    assert cached["usage"]["prompt_tokens"] == 11


def test_live_endpoint_gives_up_after_bounded_retries(tmp_path, endpoint, monkeypatch):
    monkeypatch.setenv("KINJECT_TEST_KEY", "sk-test")
    FakeOpenAI.failures, FakeOpenAI.requests = [503] * 10, []
    c = client(tmp_path, base_url=endpoint, max_retries=2)
    with pytest.raises(KinjectError, match="LLM call failed after 2 retries"):
        c.chat_json(MESSAGES, 1, ok)
    assert len(FakeOpenAI.requests) == 3
    assert not list((tmp_path / "cache").rglob("*.json"))


def test_live_endpoint_refusal_is_not_retried(tmp_path, endpoint, monkeypatch):
    """A status the openai client does not retry (here 401) stops at once with one line, not 'after N retries'."""
    monkeypatch.setenv("KINJECT_TEST_KEY", "sk-test")
    FakeOpenAI.failures, FakeOpenAI.requests = [401], []
    c = client(tmp_path, base_url=endpoint, max_retries=3)
    with pytest.raises(KinjectError, match=r"LLM request for model 'gpt-4' refused \(HTTP 401\)"):
        c.chat_json(MESSAGES, 1, ok)
    assert len(FakeOpenAI.requests) == 1


# ---- max_tokens: every request carries one; a reply cut there is invalid ----

def test_every_request_carries_max_tokens_outside_the_cache_key(tmp_path):
    c = client(tmp_path)
    assert c.request(MESSAGES, seed=1)["max_tokens"] == 1024  # llm.max_tokens.default
    assert c.request(MESSAGES, seed=1, max_tokens=300)["max_tokens"] == 300
    assert request_key(c.request(MESSAGES, 1, max_tokens=300)) == request_key(c.request(MESSAGES, 1, max_tokens=90))


def test_bounds_follow_what_the_prompt_asks_for():
    bound = {"question": 160, "overhead": 120, "paraphrase": 2.0, "chars_per_token": 3.0}
    assert questions_max_tokens(bound, 4) == 4 * 160 + 120
    assert paraphrase_max_tokens(bound, 900, 5) == 5 * 300 * 2 + 120  # 900 characters: 300 tokens at 3 per token


def test_entry_cached_without_finish_reason_replays(tmp_path):
    """Cache entries written before max_tokens was sent (the shipped demo cache) are whole replies."""
    c = client(tmp_path, backend=lambda req: pytest.fail("called on a cached request"))
    req = c.request(MESSAGES, seed=3)
    path = c.cache.path(request_key(req))
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"request": {k: v for k, v in req.items() if k != "max_tokens"},
                                "reply": json.dumps({"value": 4}), "usage": {}}))
    assert c.chat_json(MESSAGES, 3, ok, max_tokens=50) == 4


def test_reply_cut_at_max_tokens_is_invalid_retried_then_quarantined(tmp_path):
    """finish_reason length: never parsed (the cut text here is valid JSON), asked again with a new seed."""
    sent = []

    def backend(req):
        sent.append(req)
        return json.dumps({"value": req["seed"]}), {"completion_tokens": 40}, "length"

    c = client(tmp_path, backend=backend, invalid_retries=1)
    assert c.chat_json(MESSAGES, 5, ok, max_tokens=40) is None
    assert [r["max_tokens"] for r in sent] == [40, 40] and sent[0]["seed"] != sent[1]["seed"]
    assert (c.spend.invalid, c.spend.cut) == (2, 2)
    record = c.quarantined[0]["replies"][0]
    assert record["finish_reason"] == "length" and "cut at max_tokens 40" in record["error"]
    # replayed under the same bound: still cut, nothing asked; under a larger one: asked again
    again = client(tmp_path, backend=lambda req: (json.dumps({"value": 1}), {}, "stop"), invalid_retries=1)
    assert again.chat_json(MESSAGES, 5, ok, max_tokens=40) is None and again.spend.calls == 0
    assert again.chat_json(MESSAGES, 5, ok, max_tokens=80) == 1 and again.spend.calls == 1


def test_cached_reply_longer_than_a_smaller_bound_is_cut(tmp_path):
    c = client(tmp_path, backend=lambda req: (json.dumps({"value": 2}), {"completion_tokens": 70}, "stop"))
    assert c.chat_json(MESSAGES, 1, ok, max_tokens=100) == 2
    tight = client(tmp_path, mode="replay", invalid_retries=0)
    assert tight.chat_json(MESSAGES, 1, ok, max_tokens=60) is None
    assert "70 tokens, more than max_tokens 60" in tight.quarantined[0]["replies"][0]["error"]


def test_reply_settings_of_a_rule_hold_only_its_own_bounds():
    llm = {"model": "m", "mode": "live", "max_concurrency": 8,
           "max_tokens": {"question": 1, "selection": 2, "paraphrase": 3, "chars_per_token": 4, "overhead": 5}}
    assert reply_settings(llm, "questions")["max_tokens"] == {"question": 1, "overhead": 5}
    assert reply_settings(llm, "paraphrases")["max_tokens"] == {"paraphrase": 3, "chars_per_token": 4, "overhead": 5}
    assert "max_concurrency" not in reply_settings(llm) and "mode" not in reply_settings(llm)


# ---- requests in flight against a concurrent loopback endpoint ----

@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setenv("KINJECT_TEST_KEY", "sk-test")
    FakeEndpoint.reset()
    with serve(FakeEndpoint) as url:
        yield f"{url}/v1"


def write_chunks(tmp_path, n):
    path = tmp_path / "chunks.parquet"
    pd.DataFrame({"chunk_id": [f"c{i}" for i in range(n)], "text": [f"text of chunk {i}" for i in range(n)]}
                 ).to_parquet(path)
    return path


def never_json_for_every_4th_chunk(body, n):
    """Chunks 0, 4, 8, ... always get a reply with no JSON (quarantined after the re-asks); replies come back
    out of order."""
    time.sleep(0.02 * ((n * 7) % 5))
    if int(re.search(r"text of chunk (\d+)", body["messages"][-1]["content"])[1]) % 4 == 0:
        return 200, completion(body, "Sure! Here are the questions: 1. ..."), {}
    return None


def run_questions(tmp_path, base_url, name, chunks, **kw):
    c = client(tmp_path / name, base_url=base_url, **kw)
    out, quarantine = tmp_path / name / "cand.parquet", tmp_path / name / "q.jsonl"
    generate_questions(chunks, out, quarantine, c, per_chunk=2, seed=0)
    return c, out.read_bytes(), quarantine.read_bytes()


def test_concurrent_stage_matches_the_sequential_one_byte_for_byte(tmp_path, fake):
    chunks = write_chunks(tmp_path, 12)
    FakeEndpoint.reset(script=never_json_for_every_4th_chunk)
    one, *sequential = run_questions(tmp_path, fake, "one", chunks, max_concurrency=1)
    assert FakeEndpoint.most_in_flight == 1
    sequential_keys = [k for _, k, _ in FakeEndpoint.requests]
    overlapped = threading.Event()

    def overlapping(body, n):
        """Request 1 is answered once another request has come while it is in flight: the pool, not the
        machine's speed, decides whether requests overlap."""
        if FakeEndpoint.in_flight > 1:
            overlapped.set()
        if n == 1:
            overlapped.wait(timeout=60)
        return never_json_for_every_4th_chunk(body, n)

    FakeEndpoint.reset(script=overlapping)
    many, *concurrent = run_questions(tmp_path, fake, "many", chunks, max_concurrency=8)
    assert overlapped.is_set() and FakeEndpoint.most_in_flight > 1
    assert concurrent == sequential and sequential[1].count(b"\n") == 3  # chunks 0, 4, 8 quarantined
    assert (many.spend.calls, many.spend.invalid) == (one.spend.calls, one.spend.invalid) == (18, 9)
    assert sorted(k for _, k, _ in FakeEndpoint.requests) == sorted(sequential_keys)  # the same requests


def one_keys(directory):
    return [p.stem for p in (directory / "cache").rglob("*.json")]


def test_429_retry_after_holds_every_worker(tmp_path, fake, monkeypatch):
    """The 5th request gets a 429 asking for 1.5 s while the 7 other workers' requests are in flight (each held at
    the endpoint until the client has taken the hold, so none is between the gate and sending then): every
    request sent after it, by any worker, leaves the pool's gate only once the 1.5 s are over. Told by the gate's
    own clock (injected: only waiting advances it), so a loaded machine cannot change the outcome; without the
    pool-wide hold the other workers would send their next requests at once."""
    lock, now, log = threading.Lock(), [0.0], []  # log: ("hold", until) and ("sent", gate clock), in order
    all_in, held = threading.Event(), threading.Event()

    def sleep(seconds):
        with lock:
            now[0] += seconds

    class WatchedGate(llm_pool.Gate):
        def __init__(self):
            super().__init__(clock=lambda: now[0], sleep=sleep)

        def hold(self, seconds):
            super().hold(seconds)
            with lock:
                log.append(("hold", now[0] + seconds))
            held.set()

        def wait(self):  # what comes after it in Pool._send is the request
            super().wait()
            with lock:
                log.append(("sent", now[0]))

    def script(body, n):
        if n == 8:  # requests 1..8: each of the 8 workers' first after the probe (request 0)
            all_in.set()
        if n == 4:
            all_in.wait(timeout=60)
            return 429, '{"error": {"message": "rate limit"}}', {"retry_after": "1.5"}
        if 1 <= n <= 8:
            held.wait(timeout=60)
        return None

    monkeypatch.setattr(llm_pool, "Gate", WatchedGate)
    FakeEndpoint.reset(script=script)
    chunks = write_chunks(tmp_path, 16)
    c, *_ = run_questions(tmp_path, fake, "rl", chunks, max_concurrency=8)
    assert len(FakeEndpoint.requests) == 17 and c.spend.calls == 16
    assert [entry for entry in log if entry[0] == "hold"] == [("hold", 1.5)]
    after = log[log.index(("hold", 1.5)) + 1:]
    assert len(after) == 8 and all(entry == ("sent", 1.5) for entry in after), log  # the retry and 7 calls left
    assert len(log) - 1 == len(FakeEndpoint.requests)  # every request went through the gate


def test_timeout_is_not_resent_and_the_stage_stops(tmp_path, fake):
    """A request that times out is sent once: the stage fails naming llm.timeout_s; the others are cached. The
    slow request is answered only after the stage has stopped (so it times out whatever the machine's load), the
    others at once (3 s is far above their replies' time on a loaded machine)."""
    slow_one, stopped = {}, threading.Event()

    def script(body, n):
        if "chunk 5" in body["messages"][-1]["content"]:
            slow_one.setdefault("key", request_key(body))
            stopped.wait(timeout=120)
        return None

    FakeEndpoint.reset(script=script)
    chunks = write_chunks(tmp_path, 8)
    try:
        with pytest.raises(KinjectError, match=r"timed out after 3 s \(llm.timeout_s\) and is not re-sent") as err:
            run_questions(tmp_path, fake, "to", chunks, max_concurrency=4, timeout_s=3, max_retries=3)
    finally:
        stopped.set()
    assert "\n" not in str(err.value)
    sent = [k for _, k, _ in FakeEndpoint.requests]
    assert sent.count(slow_one["key"]) == 1
    assert set(one_keys(tmp_path / "to")) == set(FakeEndpoint.answered) - {slow_one["key"]}


def test_first_request_goes_alone_so_a_refusal_costs_one(tmp_path, fake):
    FakeEndpoint.reset(script=lambda body, n: (401, '{"error": {"message": "bad key"}}', {}))
    chunks = write_chunks(tmp_path, 10)
    with pytest.raises(KinjectError, match=r"refused \(HTTP 401\)"):
        run_questions(tmp_path, fake, "401", chunks, max_concurrency=8)
    assert len(FakeEndpoint.requests) == 1


def test_interrupted_concurrent_stage_rerun_pays_for_nothing_twice(tmp_path, fake):
    """The first run stops at a refused request (the 10th); its answered replies are cached as they came, so
    the re-run asks only what the first run never got, and writes what an uninterrupted run writes."""
    chunks = write_chunks(tmp_path, 24)
    def script(body, n):
        if n == 9:
            return 400, '{"error": {"message": "no"}}', {}
        time.sleep(0.03 * (n % 3))
        return None

    FakeEndpoint.reset(script=script)
    with pytest.raises(KinjectError, match=r"refused \(HTTP 400\)"):
        run_questions(tmp_path, fake, "run", chunks, max_concurrency=8)
    first = set(FakeEndpoint.answered)
    assert 0 < len(first) < 24
    FakeEndpoint.reset()
    again, cands, _ = run_questions(tmp_path, fake, "run", chunks, max_concurrency=8)
    asked = [k for _, k, _ in FakeEndpoint.requests]
    assert not first & set(asked) and len(asked) == 24 - len(first)
    assert again.spend.cached == len(first)
    FakeEndpoint.reset()
    _, clean, _ = run_questions(tmp_path, fake, "clean", chunks, max_concurrency=8)
    assert cands == clean


def test_progress_line_every_n_prompts(tmp_path, fake, caplog):
    chunks = write_chunks(tmp_path, 7)
    with caplog.at_level(logging.INFO, logger="kinject.qa.llm_pool"):
        run_questions(tmp_path, fake, "p", chunks, max_concurrency=1, progress_every=3,
                      price={"input": 1e6, "output": 0})
    lines = [r.getMessage() for r in caplog.records if "prompts done" in r.getMessage()]
    assert [line.split(": ")[1].split(" prompts")[0] for line in lines] == ["3/7", "6/7"]
    assert "3 calls" in lines[0] and "USD 33.00" in lines[0]  # 11 prompt tokens a call at USD 1 a token


def test_map_json_keeps_the_order_of_the_calls_and_asks_a_repeated_prompt_once(tmp_path):
    sent = []

    def backend(req):  # later seeds answer sooner: the replies come back in reverse
        sent.append(req["seed"])
        time.sleep(0.01 * (16 - req["seed"] % 16))
        return json.dumps({"value": req["seed"]}), {}

    c = client(tmp_path, backend=backend, max_concurrency=8)
    calls = [Call(MESSAGES, s, ok, 50) for s in [*range(16), 3]]
    assert c.map_json(calls) == [*range(16), 3]
    assert sorted(sent) == list(range(16)) and (c.spend.calls, c.spend.cached) == (16, 1)


# ---- which jobs a bound change re-runs (the demo's four LLM rules, replayed from the shipped cache) ----

DEMO_LLM_TARGETS = ["results/current_events/questions/selected.parquet",
                    "results/current_events/paraphrases/generated.parquet",
                    "results/atlas/validation/paraphrases.parquet"]
# make demo has no search; atlas's validation set (make demo-extended's, replayed from the same cache) over it
SEARCH = {"tasks": {"atlas": {"validation": {"chunks": 12, "paraphrases": 2}}}}


def planned_rules(workdir, *configs) -> set[str]:
    from conftest import run_snakemake

    from kinject.grid import dry_run_jobs

    proc = run_snakemake(workdir, "-n", *DEMO_LLM_TARGETS, "--configfile", *configs, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
    return set(dry_run_jobs(proc.stdout))


@pytest.mark.slow  # runs Snakemake
def test_a_bound_reruns_only_the_rules_it_bounds(tmp_path):
    """A rule's params hold only its own llm.max_tokens bounds; max_concurrency re-runs nothing."""
    from conftest import copy_checkout, run_snakemake

    workdir = copy_checkout(tmp_path)
    (workdir / "search.yaml").write_text(json.dumps(SEARCH))
    proc = run_snakemake(workdir, *DEMO_LLM_TARGETS, "--cores", "2", "--configfile", "config/demo.yaml",
                         "search.yaml", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert planned_rules(workdir, "config/demo.yaml", "search.yaml") == set()
    edits = {"question": ({"max_tokens": {"question": 100}}, {"generate_questions", "select_questions"}),
             "paraphrase": ({"max_tokens": {"paraphrase": 3.0}}, {"paraphrase_chunks", "validation_paraphrases"}),
             "selection": ({"max_tokens": {"selection": 41}}, {"select_questions"}),
             "concurrency": ({"max_concurrency": 2, "progress_every": 1}, set())}
    for name, (llm, rules) in edits.items():
        (workdir / f"{name}.yaml").write_text(json.dumps({"llm": llm}))
        assert planned_rules(workdir, "config/demo.yaml", "search.yaml", f"{name}.yaml") == rules, name
