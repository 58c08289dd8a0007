"""Chat completions through the openai client, behind a content-addressed response cache.

Every request (model, messages, seed, temperature, and the response format in JSON mode) hashes to one
cache file. A cached reply is replayed without any network. In ``llm.mode: live`` a miss calls the
OpenAI-compatible endpoint (``llm.base_url``, key from ``llm.api_key_env``); in ``llm.mode: replay`` a miss
is an error and nothing is called or written. The demo replays its shipped cache (replies written by the
offline author ``kinject.demo.author``, not by an LLM) through this same code.

JSON mode (``response_format: json_object``) is sent only with ``llm.json_mode: true``: models such as
``gpt-4`` refuse it with HTTP 400. Without it the prompt asks for a JSON object and ``parse_json_reply``
takes it out of the reply (a fenced block, or the first object in surrounding prose).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

from kinject.errors import KinjectError
from kinject.io import write_json, write_text

log = logging.getLogger(__name__)


def request_key(request: dict) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def parse_json_reply(reply: str) -> dict:
    """The JSON object in a chat reply: the whole reply, else a fenced ```json block, else the first
    ``{...}`` that parses in surrounding prose. ValueError when there is none (the reply is asked again)."""
    text = reply.strip()
    candidates = [text, *re.findall(r"```(?:json|JSON)?[ \t]*\n(.*?)```", text, flags=re.DOTALL)]
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    raise ValueError(f"no JSON object in the reply: {text[:80]!r}")


class ResponseCache:
    """One JSON file per request: ``<dir>/<key[:2]>/<key>.json`` holding the request and the reply.
    A read-only cache (replay mode) refuses to write."""

    def __init__(self, directory, *, writable: bool = True):
        self.dir = Path(directory)
        self.writable = writable

    def path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.json"

    def get(self, request: dict) -> str | None:
        path = self.path(request_key(request))
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))["reply"]
        except (json.JSONDecodeError, KeyError):
            raise KinjectError(path, "corrupt response-cache entry (delete it to ask again)") from None

    def put(self, request: dict, reply: str, usage: dict | None = None) -> None:
        if not self.writable:
            raise KinjectError(self.dir, "the response cache is read-only here (llm.mode: replay)")
        write_json(self.path(request_key(request)), {"request": request, "reply": reply, "usage": usage or {}})


@dataclass
class Spend:
    calls: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    invalid: int = 0

    def add_usage(self, usage) -> None:
        self.calls += 1
        if usage:
            self.prompt_tokens += getattr(usage, "prompt_tokens", 0) or 0
            self.completion_tokens += getattr(usage, "completion_tokens", 0) or 0


@dataclass
class LLMClient:
    """JSON-returning chat calls with a cache, a spend counter, bounded retries and a quarantine file."""

    model: str
    cache: ResponseCache
    mode: str = "live"  # live: a miss calls the endpoint (or backend); replay: a miss is an error
    json_mode: bool = False  # send response_format json_object (only models that support it accept it)
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.7
    max_retries: int = 5
    invalid_retries: int = 2
    timeout_s: float = 120.0
    backend: Callable[[dict], tuple[str, object]] | None = None  # request -> (reply, usage)
    spend: Spend = field(default_factory=Spend)
    quarantined: list = field(default_factory=list)

    def __post_init__(self):
        if self.mode not in ("live", "replay"):
            raise ValueError(f"llm.mode must be live or replay, not {self.mode!r}")
        if self.mode == "replay" and self.cache.writable:
            self.cache = ResponseCache(self.cache.dir, writable=False)

    @classmethod
    def from_config(cls, llm: dict, *, backend=None) -> "LLMClient":
        """From the ``llm`` section as the schema fills it (config/schema.yaml holds the defaults)."""
        return cls(model=llm["model"], cache=ResponseCache(llm["cache"]), mode=llm["mode"],
                   json_mode=llm["json_mode"], base_url=llm["base_url"], api_key_env=llm["api_key_env"],
                   temperature=llm["temperature"], max_retries=llm["max_retries"],
                   invalid_retries=llm["invalid_retries"], timeout_s=llm["timeout_s"], backend=backend)

    def request(self, messages: list[dict], seed: int, attempt: int = 0) -> dict:
        req = {"model": self.model, "messages": messages, "seed": seed, "temperature": self.temperature}
        if self.json_mode:
            req["response_format"] = {"type": "json_object"}
        if attempt:  # a retry after an invalid reply is a new request (and a new cache entry)
            req["seed"] = seed + 1000003 * attempt
        return req

    def missing(self, requests: list[dict]) -> list[dict]:
        return [r for r in requests if self.cache.get(r) is None]

    def ensure_can_call(self, requests: list[dict]) -> None:
        """Before any spend: every request is cached, or a key/endpoint is configured for the misses."""
        misses = self.missing(requests)
        if misses and self.mode == "replay":
            raise KinjectError(self.cache.dir, self._replay_miss(f"{len(misses)} of {len(requests)} LLM requests are"))
        if misses and self.backend is None and not self._has_endpoint():
            raise KinjectError(self.cache.dir, f"{len(misses)} of {len(requests)} LLM requests are not in the "
                               f"response cache and no API key is set (export {self.api_key_env}, "
                               f"or set llm.base_url for a local OpenAI-compatible server)")

    def _replay_miss(self, what: str) -> str:
        return (f"{what} not in the response cache and llm.mode is replay, which never calls the LLM "
                f"(model {self.model!r}); rebuild the cache, or set llm.mode: live to ask the endpoint")

    def _has_endpoint(self) -> bool:
        return bool(os.environ.get(self.api_key_env)) or bool(self.base_url)

    @cached_property
    def _openai(self):
        """One openai client per LLMClient, so its HTTP connections are reused across calls."""
        import openai

        return openai.OpenAI(api_key=os.environ.get(self.api_key_env) or "unused", base_url=self.base_url,
                             max_retries=self.max_retries, timeout=self.timeout_s)

    def _call(self, req: dict) -> str:
        if self.mode == "replay":  # checked first: replay calls neither the endpoint nor a backend
            raise KinjectError(self.cache.dir, self._replay_miss(f"LLM request {request_key(req)[:12]} is"))
        if self.backend is not None:
            reply, usage = self.backend(req)
        else:
            if not self._has_endpoint():
                raise KinjectError(self.cache.dir, f"LLM request {request_key(req)[:12]} is not cached and "
                                   f"{self.api_key_env} is not set")
            reply, usage = self._create(req)
        self.spend.add_usage(usage)
        self.cache.put(req, reply, usage.model_dump() if hasattr(usage, "model_dump") else dict(usage or {}))
        return reply

    def _create(self, req: dict):
        """One live completion. The openai client retries 408/409/429/5xx and timeouts (``llm.max_retries``); any
        other refusal (400, 401, 404, ...) stops the rule with one line at once; a refusal of JSON mode names
        the model and the ``llm.json_mode`` switch."""
        import openai

        where = self.base_url or "OpenAI API"
        try:
            resp = self._openai.chat.completions.create(**req)
        except openai.APIStatusError as exc:
            if exc.status_code in (408, 409, 429) or exc.status_code >= 500:  # the statuses openai retries
                raise KinjectError(where, f"LLM call failed after {self.max_retries} retries: {exc}") from None
            if self.json_mode and exc.status_code == 400 and "response_format" in str(exc):
                raise KinjectError(where, f"model {self.model!r} refuses JSON mode (HTTP {exc.status_code}, "
                                   f"response_format json_object): set llm.json_mode: false for this model "
                                   f"(the prompts ask for JSON themselves)") from None
            raise KinjectError(where, f"LLM request for model {self.model!r} refused (HTTP {exc.status_code}): "
                               f"{exc}") from None
        except openai.OpenAIError as exc:
            raise KinjectError(where, f"LLM call failed after {self.max_retries} retries: {exc}") from None
        return resp.choices[0].message.content or "", resp.usage

    def chat_json(self, messages: list[dict], seed: int, validate: Callable[[dict], object]):
        """Ask for JSON (``parse_json_reply``); ``validate`` turns it into a result or raises ValueError.
        An invalid reply is asked again (a new seed); after ``invalid_retries`` it is quarantined: None."""
        replies = []
        for attempt in range(self.invalid_retries + 1):
            req = self.request(messages, seed, attempt)
            reply = self.cache.get(req)
            if reply is None:
                reply = self._call(req)
            else:
                self.spend.cached += 1
            try:
                return validate(parse_json_reply(reply))
            except (ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
                self.spend.invalid += 1
                replies.append({"seed": req["seed"], "reply": reply, "error": str(exc)})
                log.warning("invalid LLM reply (attempt %d): %s", attempt + 1, exc)
        self.quarantined.append({"messages": messages, "seed": seed, "replies": replies})
        return None

    def write_quarantine(self, path) -> None:
        """Replies that never validated, for a person to inspect (an empty file when there were none)."""
        write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.quarantined))

    def log_spend(self) -> None:
        s = self.spend
        log.info("LLM spend: %d calls, %d cached replies, %d prompt tokens, %d completion tokens, %d invalid",
                 s.calls, s.cached, s.prompt_tokens, s.completion_tokens, s.invalid)


# The llm settings that decide a rule's replies, hence its output: the rules pass these as params (a change
# re-runs them). The rest (mode, base_url, api_key_env, max_retries, timeout_s) only say how replies are
# fetched; jobs read them from the config, so switching endpoint or replay mode re-runs nothing.
REPLY_SETTINGS = ("model", "temperature", "json_mode", "invalid_retries", "cache", "backend", "author_world")


def reply_settings(llm: dict) -> dict:
    return {key: llm[key] for key in REPLY_SETTINGS if key in llm}


def client_from_config(llm: dict) -> LLMClient:
    """The configured client. ``backend: demo_author`` answers misses from the demo world's offline author
    (how the shipped demo cache was written, in live mode; see kinject.demo.build_cache), never the network."""
    backend = None
    if llm["backend"] == "demo_author":
        from kinject.demo.backend import request_backend

        backend = request_backend(llm["author_world"])
    return LLMClient.from_config(llm, backend=backend)
