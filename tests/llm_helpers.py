"""A concurrent OpenAI-compatible endpoint on loopback for the LLM-client tests: it answers kinject's three
prompts by their wording, records every request (with the time it came and how many were in flight), and a
test can make it slow, cut replies at max_tokens, refuse or rate-limit some requests (``FakeEndpoint.script``)."""

from __future__ import annotations

import json
import re
import threading
import time

from loopback import Handler

from kinject.qa.replies import request_key


def answer(body: dict) -> str:
    """A valid JSON reply to one of kinject's prompts (questions, selection, paraphrases), by its wording."""
    prompt, seed = body["messages"][-1]["content"], body["seed"]
    if prompt.startswith("Write "):
        n = int(re.match(r"Write (\d+) ", prompt)[1])
        return json.dumps({"questions": [{"question": f"Q{i} seed {seed}?", "choices": ["w", "x", "y", "z"],
                                          "answer": i % 4} for i in range(n)]})
    if prompt.startswith("Below are "):
        keep = int(re.search(r"Choose the (\d+) most specific", prompt)[1])
        return json.dumps({"keep": list(range(keep))[::-1]})
    n = int(re.search(r"Give (\d+) different", prompt)[1])
    return json.dumps({"paraphrases": [f"para seed {seed} #{i}" for i in range(n)]})


def completion(body: dict, content: str, finish_reason: str = "stop", completion_tokens: int = 5) -> str:
    return json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                       "choices": [{"index": 0, "finish_reason": finish_reason,
                                    "message": {"role": "assistant", "content": content}}],
                       "usage": {"prompt_tokens": 11, "completion_tokens": completion_tokens,
                                 "total_tokens": 11 + completion_tokens}})


class FakeEndpoint(Handler):
    """Set the class attributes with ``reset`` before a test. ``script(body, n)`` (n: the 0-based number of
    the request) returns None to answer normally, or (status, body, headers) to answer that instead."""

    latency = 0.0
    script = None
    requests: list = []  # (arrival time, request key, body) of every request
    answered: list = []  # request keys answered 200
    in_flight = most_in_flight = 0
    lock = threading.Lock()

    @classmethod
    def reset(cls, latency=0.0, script=None):
        cls.latency, cls.script, cls.requests, cls.answered = latency, script, [], []
        cls.in_flight = cls.most_in_flight = 0

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls = type(self)
        with cls.lock:
            n = len(cls.requests)
            cls.requests.append((time.monotonic(), request_key(body), body))
            cls.in_flight += 1
            cls.most_in_flight = max(cls.most_in_flight, cls.in_flight)
        try:
            scripted = cls.script(body, n) if cls.script else None
            if scripted is None:
                time.sleep(cls.latency)
                with cls.lock:
                    cls.answered.append(request_key(body))
                return self.respond(200, completion(body, answer(body)))
            status, text, headers = scripted
            if status == 200:
                with cls.lock:
                    cls.answered.append(request_key(body))
            self.respond(status, text, **headers)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout)
            pass
        finally:
            with cls.lock:
                cls.in_flight -= 1
