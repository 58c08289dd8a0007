"""The demo's LLM backend: the offline author (kinject.demo.author) answers the pipeline's own prompts from
the fictional world's facts. No LLM is involved.

It is used only to (re)write the response cache that ships in resources/demo/llm_cache
(``python -m kinject.demo.build_cache``, live mode); the demo itself replays that cache (``llm.mode: replay``)
through the openai-client code. Without JSON mode (``llm.json_mode: false``, the demo's and the paper's
setting) it answers the way chat models often do, with the JSON object in a fenced block, so the demo goes
through the same reply parsing (kinject.qa.llm.parse_json_reply) as a live gpt-4.
"""

from __future__ import annotations

import json
import re
from functools import partial

from kinject.demo.author import (
    author_entities,
    author_paraphrases,
    author_questions,
    author_relation,
    author_selection,
    load_world,
)


def _between(text: str, start: str, end: str | None = None) -> str:
    body = text.split(start, 1)[1]
    return body.split(end, 1)[0] if end else body


def answer(world, request: dict) -> tuple[str, None]:
    prompt = request["messages"][-1]["content"]
    seed = request["seed"]
    if prompt.startswith("Write "):
        n = int(re.match(r"Write (\d+) ", prompt)[1])
        reply = {"questions": author_questions(world, _between(prompt, "\n\nText:\n"), n=n, seed=seed)}
    elif prompt.startswith("Below are "):
        keep = int(re.search(r"Choose the (\d+) most specific", prompt)[1])
        questions = json.loads(_between(prompt, "Questions:\n"))
        reply = {"keep": author_selection(world, questions, keep=keep)}
    elif prompt.startswith("Your task is to paraphrase"):
        n = int(re.search(r"Give (\d+) different paraphrases", prompt)[1])
        text = _between(prompt, "Input paragraph:\n", "\n\nBelow are some examples")
        reply = {"paraphrases": author_paraphrases(world, text, n=n, seed=seed)}
    elif prompt.startswith("You are a knowledge analyst. Read the document"):
        reply = author_entities(world, _between(prompt, "\n\nDocument:\n"))
    elif prompt.startswith("You are a knowledge analyst. Below is a document"):
        listing = re.search(r"entities that it mentions: (.*)\.\nWrite a passage", prompt, re.S)[1]
        names = [name.strip().strip('"') for name in listing.split('"; "')]
        reply = {"text": author_relation(world, _between(prompt, "\n\nDocument:\n"), names, seed)}
    else:
        raise ValueError(f"the demo author does not know this prompt: {prompt[:60]!r}")
    text = json.dumps(reply, ensure_ascii=False)
    return (text if "response_format" in request else f"```json\n{text}\n```"), None


def request_backend(world_path):
    return partial(answer, load_world(world_path))
