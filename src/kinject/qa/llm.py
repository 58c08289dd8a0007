"""Chat completions through the openai client, behind a content-addressed response cache.

Every request (model, messages, seed, temperature, and the response format in JSON mode) hashes to one
cache file. A cached reply is replayed without any network. In ``llm.mode: live`` a miss calls the
OpenAI-compatible endpoint (``llm.base_url``, key from ``llm.api_key_env``); in ``llm.mode: replay`` a miss
is an error and nothing is called or written. The demo replays its shipped cache (replies written by the
offline author ``kinject.demo.author``, not by an LLM) through this same code.

JSON mode (``response_format: json_object``) is sent only with ``llm.json_mode: true``: models such as
``gpt-4`` refuse it with HTTP 400. Without it the prompt asks for a JSON object and ``parse_json_reply``
takes it out of the reply (a fenced block, or the first object in surrounding prose).

Every request carries ``max_tokens``, the bound of what its prompt asks for (``llm.max_tokens``, see
``questions_max_tokens`` and ``paraphrase_max_tokens``). It is not part of the cache key: a reply that ended
before the bound is the same reply under any larger bound. A reply cut at the bound (``finish_reason:
length``) is invalid, never parsed: it is asked again with a new seed, then quarantined; its cache entry
records the bound it was cut at, so a larger bound asks again. ``LLMClient.map_json`` keeps up to
``llm.max_concurrency`` requests in flight (kinject.qa.llm_pool) with the same requests, seeds and output order
as one at a time.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, NamedTuple

from kinject.errors import KinjectError
from kinject.io import write_json, write_text
from kinject.qa.replies import UNKEYED, request_key

log = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = {"question": 160, "selection": 40, "paraphrase": 2.0, "chars_per_token": 3.0,
                      "overhead": 120, "default": 1024, "entities": 400, "relation": 300}


def questions_max_tokens(bound: dict, n: int) -> int:
    """The reply bound of a call asking for ``n`` questions: n x llm.max_tokens.question + overhead."""
    return n * bound["question"] + bound["overhead"]


def selection_max_tokens(bound: dict) -> int:
    """The reply bound of a selection call (a short list of indices)."""
    return bound["selection"] + bound["overhead"]


def entities_max_tokens(bound: dict) -> int:
    """The reply bound of an entity call (synthetic CPT, kinject.qa.entigraph): a summary and a list of names."""
    return bound["entities"] + bound["overhead"]


def relation_max_tokens(bound: dict) -> int:
    """The reply bound of a relation call: one passage of a few sentences."""
    return bound["relation"] + bound["overhead"]


def paraphrase_max_tokens(bound: dict, chars: float, n: int) -> int:
    """The reply bound of a call asking for ``n`` paraphrases of a text of ``chars`` characters: n x the text's
    tokens (characters / llm.max_tokens.chars_per_token) x llm.max_tokens.paraphrase + overhead."""
    return math.ceil(n * chars / bound["chars_per_token"] * bound["paraphrase"]) + bound["overhead"]


class Reply(NamedTuple):
    text: str
    finish_reason: str | None = None  # None: not recorded (entries written before max_tokens was sent)
    max_tokens: int | None = None  # the bound the reply was written under
    completion_tokens: int | None = None

    def cut_reason(self, max_tokens: int) -> str | None:
        """Why this reply, under the bound ``max_tokens``, is cut (invalid); None when it is whole."""
        if self.finish_reason == "length":
            return f"the reply was cut at max_tokens {self.max_tokens} (finish_reason length), not parsed"
        if self.completion_tokens is not None and self.completion_tokens > max_tokens:
            return f"the reply has {self.completion_tokens} tokens, more than max_tokens {max_tokens}"
        return None


class ResponseCache:
    """One JSON file per request: ``<dir>/<key[:2]>/<key>.json`` holding the request, the reply and its usage;
    a reply that did not end on its own (finish_reason other than stop) also records finish_reason and the
    max_tokens it was asked under. A read-only cache (replay mode) refuses to write."""

    def __init__(self, directory, *, writable: bool = True):
        self.dir = Path(directory)
        self.writable = writable

    def path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.json"

    def entry(self, request: dict) -> Reply | None:
        """The cached reply that answers ``request``: None when there is none, or when the entry was cut at a
        smaller max_tokens than the request's (a larger bound may let the reply finish: asked again)."""
        path = self.path(request_key(request))
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            usage = data.get("usage") or {}
            reply = Reply(data["reply"], data.get("finish_reason"), data.get("max_tokens"),
                          usage.get("completion_tokens"))
        except (json.JSONDecodeError, KeyError, AttributeError):
            raise KinjectError(path, "corrupt response-cache entry (delete it to ask again)") from None
        if reply.finish_reason == "length" and (reply.max_tokens or 0) < request.get("max_tokens", 0):
            return None
        return reply

    def get(self, request: dict) -> str | None:
        reply = self.entry(request)
        return None if reply is None else reply.text

    def put(self, request: dict, reply: str, usage: dict | None = None, finish_reason: str | None = None) -> None:
        if not self.writable:
            raise KinjectError(self.dir, "the response cache is read-only here (llm.mode: replay)")
        keyed = {k: v for k, v in request.items() if k not in UNKEYED}
        entry = {"request": keyed, "reply": reply, "usage": usage or {}}
        if finish_reason not in (None, "stop"):  # a whole reply's entry is as it was before max_tokens was sent
            entry.update(finish_reason=finish_reason, max_tokens=request.get("max_tokens"))
        write_json(self.path(request_key(request)), entry)


@dataclass
class Spend:
    calls: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    invalid: int = 0
    cut: int = 0

    def add_usage(self, usage: dict) -> None:
        self.calls += 1
        self.prompt_tokens += usage.get("prompt_tokens") or 0
        self.completion_tokens += usage.get("completion_tokens") or 0

    def usd(self, price: dict | None) -> float | None:
        """What the calls made so far cost at ``price`` (USD per 10^6 input / output tokens); None unknown."""
        if price is None:
            return None
        return (self.prompt_tokens * price["input"] + self.completion_tokens * price["output"]) / 1e6


class Call(NamedTuple):
    """One prompt of a stage: asked until ``validate`` accepts a reply (up to llm.invalid_retries again)."""
    messages: list
    seed: int
    validate: Callable[[dict], object]
    max_tokens: int | None = None  # None: llm.max_tokens.default


def _usage_dict(usage) -> dict:
    if hasattr(usage, "model_dump"):
        return usage.model_dump(exclude_none=True)
    return dict(usage or {})


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
    max_concurrency: int = 1
    max_tokens: dict = field(default_factory=lambda: dict(DEFAULT_MAX_TOKENS))
    progress_every: int = 50
    price: dict | None = None  # USD per 10^6 input / output tokens (plan.llm_prices), for the progress lines
    # request -> (reply, usage) or (reply, usage, finish_reason)
    backend: Callable[[dict], tuple] | None = None
    spend: Spend = field(default_factory=Spend)
    quarantined: list = field(default_factory=list)

    def __post_init__(self):
        if self.mode not in ("live", "replay"):
            raise ValueError(f"llm.mode must be live or replay, not {self.mode!r}")
        if self.mode == "replay" and self.cache.writable:
            self.cache = ResponseCache(self.cache.dir, writable=False)
        self.max_tokens = {**DEFAULT_MAX_TOKENS, **self.max_tokens}

    @classmethod
    def from_config(cls, llm: dict, *, backend=None, price: dict | None = None) -> "LLMClient":
        """From the ``llm`` section as the schema fills it (config/schema.yaml holds the defaults)."""
        return cls(model=llm["model"], cache=ResponseCache(llm["cache"]), mode=llm["mode"],
                   json_mode=llm["json_mode"], base_url=llm["base_url"], api_key_env=llm["api_key_env"],
                   temperature=llm["temperature"], max_retries=llm["max_retries"],
                   invalid_retries=llm["invalid_retries"], timeout_s=llm["timeout_s"],
                   max_concurrency=llm.get("max_concurrency", 1), max_tokens=llm.get("max_tokens", {}),
                   progress_every=llm.get("progress_every", 50), price=price, backend=backend)

    # ---- the bounds of what a prompt asks for (the same functions give kinject plan its worst case) ----
    def questions_max_tokens(self, n: int) -> int:
        return questions_max_tokens(self.max_tokens, n)

    def selection_max_tokens(self) -> int:
        return selection_max_tokens(self.max_tokens)

    def paraphrase_max_tokens(self, text: str, n: int) -> int:
        return paraphrase_max_tokens(self.max_tokens, len(text), n)

    def request(self, messages: list[dict], seed: int, attempt: int = 0, max_tokens: int | None = None) -> dict:
        req = {"model": self.model, "messages": messages, "seed": seed, "temperature": self.temperature,
               "max_tokens": int(max_tokens or self.max_tokens["default"])}
        if self.json_mode:
            req["response_format"] = {"type": "json_object"}
        if attempt:  # a retry after an invalid reply is a new request (and a new cache entry)
            req["seed"] = seed + 1000003 * attempt
        return req

    def missing(self, requests: list[dict]) -> list[dict]:
        return [r for r in requests if self.cache.entry(r) is None]

    def ensure_can_call(self, requests: list[dict]) -> None:
        """Before any spend: every request is cached, or a key/endpoint is configured for the misses."""
        misses = self.missing(requests)
        if misses and self.mode == "replay":
            raise KinjectError(self.cache.dir, self._replay_miss(f"{len(misses)} of {len(requests)} LLM requests are"))
        if misses and self.backend is None and not self._has_endpoint():
            raise KinjectError(self.cache.dir, f"{len(misses)} of {len(requests)} LLM requests are not in the "
                               f"response cache and no API key is set (export {self.api_key_env}, "
                               f"or set llm.base_url for a local OpenAI-compatible server)")

    def ensure_can_ask(self, calls: list[Call]) -> None:
        """:meth:`ensure_can_call` for the first request of each of a stage's calls (what ``map_json`` asks first)."""
        self.ensure_can_call([self.request(c.messages, c.seed, max_tokens=c.max_tokens) for c in calls])

    def _replay_miss(self, what: str) -> str:
        return (f"{what} not in the response cache and llm.mode is replay, which never calls the LLM "
                f"(model {self.model!r}); rebuild the cache, or set llm.mode: live to ask the endpoint")

    def _has_endpoint(self) -> bool:
        return bool(os.environ.get(self.api_key_env)) or bool(self.base_url)

    @cached_property
    def _openai(self):
        """One openai client per LLMClient, shared by the pool's threads (its HTTP connections are reused).
        Its own retries are off: kinject.qa.llm_pool retries, so that a 429 holds every worker."""
        import openai

        return openai.OpenAI(api_key=os.environ.get(self.api_key_env) or "unused", base_url=self.base_url,
                             max_retries=0, timeout=self.timeout_s)

    @cached_property
    def _pool(self):
        from kinject.qa.llm_pool import Pool

        return Pool(self)

    def _call(self, req: dict) -> Reply:
        """One request that is not in the cache: asked, counted and cached the moment it arrives."""
        if self.mode == "replay":  # checked first: replay calls neither the endpoint nor a backend
            raise KinjectError(self.cache.dir, self._replay_miss(f"LLM request {request_key(req)[:12]} is"))
        if self.backend is not None:
            reply, usage, *finish = self.backend(req)
            finish_reason = finish[0] if finish else "stop"
        else:
            if not self._has_endpoint():
                raise KinjectError(self.cache.dir, f"LLM request {request_key(req)[:12]} is not cached and "
                                   f"{self.api_key_env} is not set")
            reply, usage, finish_reason = self._pool.create(req)
        usage = _usage_dict(usage)
        self._pool.count(usage)
        self.cache.put(req, reply, usage, finish_reason)
        return Reply(reply, finish_reason, req["max_tokens"], usage.get("completion_tokens"))

    def map_json(self, calls: list[Call], what: str = "LLM") -> list:
        """Every call's result (``validate`` of its reply's JSON) in the order of ``calls``, None for a call
        quarantined after llm.invalid_retries re-asks; up to llm.max_concurrency requests in flight. The
        quarantine, the cache and the results are the same as one call at a time."""
        return self._pool.run(calls, what)

    def chat_json(self, messages: list[dict], seed: int, validate: Callable[[dict], object],
                  max_tokens: int | None = None):
        """One call of ``map_json``: ask for JSON (``parse_json_reply``); ``validate`` turns it into a result or
        raises ValueError. An invalid or cut reply is asked again (a new seed); after ``invalid_retries`` it is
        quarantined: None."""
        return self.map_json([Call(messages, seed, validate, max_tokens)])[0]

    def write_quarantine(self, path) -> None:
        """Replies that never validated, for a person to inspect (an empty file when there were none)."""
        write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.quarantined))

    def spend_line(self) -> str:
        s, usd = self.spend, self.spend.usd(self.price)
        cost = f"USD {usd:.2f}" if usd is not None else f"cost unknown (no plan.llm_prices.{self.model})"
        return (f"{s.calls} calls, {s.cached} cached replies, {s.invalid} invalid ({s.cut} cut at max_tokens), "
                f"{s.prompt_tokens} prompt + {s.completion_tokens} completion tokens, {cost}")

    def log_spend(self) -> None:
        log.info("LLM spend: %s", self.spend_line())


# The llm settings that decide a rule's replies, hence its output: the rules pass these as params (a change
# re-runs them). The rest (mode, base_url, api_key_env, max_retries, timeout_s, max_concurrency,
# progress_every) only say how replies are fetched; jobs read them from the config, so switching endpoint,
# replay mode or the number of requests in flight re-runs nothing.
REPLY_SETTINGS = ("model", "temperature", "json_mode", "invalid_retries", "cache", "backend", "author_world",
                  "max_tokens")


# The llm.max_tokens keys that bound each kind of call (a rule's params hold only its own, so a change of the
# question bound does not re-run the paraphrases).
BOUND_KEYS = {"questions": ("question", "overhead"), "selection": ("selection", "overhead"),
              "paraphrases": ("paraphrase", "chars_per_token", "overhead"),
              "entities": ("entities", "overhead"), "relations": ("relation", "overhead")}


def reply_settings(llm: dict, calls: str | None = None) -> dict:
    """The settings of REPLY_SETTINGS in ``llm``; with ``calls`` (a key of BOUND_KEYS), of llm.max_tokens only
    the bounds those calls use."""
    out = {key: llm[key] for key in REPLY_SETTINGS if key in llm}
    if calls is not None and "max_tokens" in out:
        out["max_tokens"] = {key: out["max_tokens"][key] for key in BOUND_KEYS[calls] if key in out["max_tokens"]}
    return out


def client_from_config(llm: dict, plan: dict | None = None) -> LLMClient:
    """The configured client. ``backend: demo_author`` answers misses from the demo world's offline author
    (how the shipped demo cache was written, in live mode; see kinject.demo.build_cache), never the network.
    ``plan``: the config's plan section, whose ``llm_prices`` give the progress lines their cost."""
    backend = None
    if llm["backend"] == "demo_author":
        from kinject.demo.backend import request_backend

        backend = request_backend(llm["author_world"])
    price = ((plan or {}).get("llm_prices") or {}).get(llm["model"])
    return LLMClient.from_config(llm, backend=backend, price=price)
