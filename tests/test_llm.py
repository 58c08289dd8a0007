"""The LLM client: cache replay, replay mode, the no-key error before any spend, JSON mode and JSON parsed from
prose, retries, quarantine, a live endpoint."""

import json

import pytest
from loopback import Handler, serve

from kinject.errors import KinjectError
from kinject.llm import LLMClient, ResponseCache, parse_json_reply, request_key

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
    assert len(FakeOpenAI.requests) == 3  # two refused, one answered, by the openai client's own retries
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
