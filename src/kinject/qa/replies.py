"""What an LLM request is keyed by in the cache, and how a chat reply's JSON object is read: shared by the
client (kinject.qa.llm) and its concurrent pool (kinject.qa.llm_pool)."""

from __future__ import annotations

import hashlib
import json
import re

# What a request sends but its cache key leaves out (see the module docstring).
UNKEYED = ("max_tokens",)


def request_key(request: dict) -> str:
    keyed = {k: v for k, v in request.items() if k not in UNKEYED}
    return hashlib.sha256(json.dumps(keyed, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


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
