"""The LLM client: cache replay, the no-key error before any spend, retries, quarantine, a live endpoint."""

import json

import pytest
from loopback import Handler, serve

from kinject.errors import KinjectError
from kinject.llm import LLMClient, ResponseCache, request_key

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
    assert len(FakeOpenAI.requests) == 3  # two refused, one answered, by the openai client's own retries
    assert FakeOpenAI.requests[-1]["response_format"] == {"type": "json_object"}
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
