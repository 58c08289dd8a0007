"""Requests in flight: the calls of one stage through a thread pool, with pool-wide back-off and progress lines.

``Pool.run`` asks every call of a stage with up to ``llm.max_concurrency`` requests in flight. Each call's
attempts (the re-asks after an invalid reply, each a new seed) stay in order within the call, so every
request, seed and cache key is the one a sequential run makes, and the results and the quarantine come back
in the order of the calls: byte-identical outputs at any concurrency. A reply is cached the moment it
arrives, so an interrupted stage loses none it paid for.

The endpoint's retries are the pool's, not the openai client's: 408, 409, 5xx and dropped connections are
retried up to ``llm.max_retries`` times with exponential back-off; a 429 holds every worker (its
``Retry-After`` / ``retry-after-ms``, else the back-off), since a rate limit is the endpoint's, not one
request's. A timeout is never re-sent: the server may still be generating the timed-out reply, and a second
request would start a second one (billed, on a paid endpoint); the stage stops with one line once the
requests in flight have come back (and been cached).
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

from kinject.errors import KinjectError
from kinject.qa.replies import parse_json_reply, request_key

log = logging.getLogger(__name__)

RETRIED = (408, 409, 429)  # and every 5xx: the statuses an OpenAI-compatible endpoint may answer in time
BACKOFF_S, BACKOFF_MAX_S = 0.5, 8.0  # the openai client's own defaults


class Stopped(Exception):
    """A call not sent because another call of the stage failed."""


def retry_after(response) -> float | None:
    """Seconds a refusal asks the client to wait: ``retry-after-ms``, or ``Retry-After`` in seconds or as an
    HTTP date; None when it says nothing."""
    headers = getattr(response, "headers", None) or {}
    try:
        if headers.get("retry-after-ms"):
            return max(float(headers["retry-after-ms"]) / 1000, 0.0)
        value = headers.get("retry-after")
        if value:
            try:
                return max(float(value), 0.0)
            except ValueError:
                return max(email.utils.parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None
    return None


class Gate:
    """The pool-wide hold of a 429: every worker waits until it is over before sending. `clock` and `sleep` are
    time.monotonic and time.sleep; a test passes its own, to tell a hold kept from one skipped by the gate's
    clock instead of the wall clock, which a loaded machine stretches."""

    def __init__(self, clock=time.monotonic, sleep=time.sleep):
        self._until = 0.0
        self._lock = threading.Lock()
        self.clock, self.sleep = clock, sleep

    def hold(self, seconds: float) -> None:
        with self._lock:
            self._until = max(self._until, self.clock() + seconds)

    def wait(self) -> None:
        while True:
            with self._lock:
                delay = self._until - self.clock()
            if delay <= 0:
                return
            self.sleep(delay)


class Pool:
    def __init__(self, client):
        self.client = client
        self.gate = Gate()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.opened = threading.Event()  # the endpoint has answered a request
        self.probe = threading.Lock()

    def count(self, usage: dict) -> None:
        with self.lock:
            self.client.spend.add_usage(usage)

    # ---- one request to the endpoint ----
    def create(self, req: dict):
        """(reply, usage, finish_reason) of one live completion. Until the endpoint has answered one, requests
        go one at a time: a refusal of the configuration (JSON mode, the key, the model) costs one request."""
        if not self.opened.is_set():
            with self.probe:
                if not self.opened.is_set():
                    try:
                        out = self._send(req)
                    except BaseException:
                        self.stop.set()  # before the next waiting worker takes the probe
                        raise
                    self.opened.set()
                    return out
        return self._send(req)

    def _send(self, req: dict):
        """One completion, retried as the module docstring says; any other refusal (400, 401, 404, ...) stops
        the stage with one line at once; a refusal of JSON mode names the model and the ``llm.json_mode`` switch."""
        import openai

        c = self.client
        where = c.base_url or "OpenAI API"
        last = None
        for retry in range(c.max_retries + 1):
            self.gate.wait()
            if self.stop.is_set():
                raise Stopped
            delay = min(BACKOFF_S * 2 ** retry, BACKOFF_MAX_S)
            try:
                resp = c._openai.chat.completions.create(**req)
            except openai.APITimeoutError:
                raise KinjectError(where, f"LLM request {request_key(req)[:12]} timed out after {c.timeout_s:g} s "
                                   f"(llm.timeout_s) and is not re-sent (the server may still be generating it: a "
                                   f"second request would be a second runaway); the replies so far are cached: "
                                   f"raise llm.timeout_s, or lower llm.max_concurrency where the server queues "
                                   f"requests (the timeout counts the queue), and run again") from None
            except openai.APIStatusError as exc:
                status = exc.status_code
                if status not in RETRIED and status < 500:
                    raise self._refusal(exc, where) from None
                last, asked = exc, retry_after(exc.response)
                delay = delay if asked is None else asked
                if status == 429:
                    log.warning("HTTP 429 from %s: every request waits %.1f s", where, delay)
                    self.gate.hold(delay)
                    delay = 0.0
            except openai.APIConnectionError as exc:
                last = exc
            else:
                choice = resp.choices[0]
                return choice.message.content or "", resp.usage, choice.finish_reason
            if retry < c.max_retries:
                time.sleep(delay)
        raise KinjectError(where, f"LLM call failed after {c.max_retries} retries: {last}")

    def _refusal(self, exc, where) -> KinjectError:
        c = self.client
        if c.json_mode and exc.status_code == 400 and "response_format" in str(exc):
            return KinjectError(where, f"model {c.model!r} refuses JSON mode (HTTP {exc.status_code}, "
                                f"response_format json_object): set llm.json_mode: false for this model "
                                f"(the prompts ask for JSON themselves)")
        return KinjectError(where, f"LLM request for model {c.model!r} refused (HTTP {exc.status_code}): {exc}")

    # ---- one call: its attempts in order ----
    def ask(self, call):
        """(result, None), or (None, the quarantine record) after 1 + llm.invalid_retries invalid replies."""
        c = self.client
        replies = []
        for attempt in range(c.invalid_retries + 1):
            req = c.request(call.messages, call.seed, attempt, call.max_tokens)
            reply = c.cache.entry(req)
            if reply is None:
                if self.stop.is_set():
                    raise Stopped
                reply = c._call(req)
            else:
                with self.lock:
                    c.spend.cached += 1
            cut = reply.cut_reason(req["max_tokens"])
            try:
                if cut:
                    raise ValueError(cut)
                return call.validate(parse_json_reply(reply.text)), None
            except (ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
                with self.lock:
                    c.spend.invalid += 1
                    c.spend.cut += bool(cut)
                record = {"seed": req["seed"], "reply": reply.text, "error": str(exc)}
                if reply.finish_reason not in (None, "stop"):  # as the cache records it: the same on a replay
                    record["finish_reason"] = reply.finish_reason
                replies.append(record)
                log.warning("invalid LLM reply (attempt %d): %s", attempt + 1, exc)
        return None, {"messages": call.messages, "seed": call.seed, "replies": replies}

    # ---- a stage's calls ----
    def run(self, calls, what: str) -> list:
        c = self.client
        results, records = [None] * len(calls), [None] * len(calls)
        done = [0]
        self.stop.clear()

        def finished(i, outcome):
            results[i], records[i] = outcome
            done[0] += 1
            if c.progress_every and done[0] % c.progress_every == 0 and done[0] < len(calls):
                quarantined = sum(r is not None for r in records)
                with self.lock:
                    log.info("%s: %d/%d prompts done, %d quarantined; %s", what, done[0], len(calls), quarantined,
                             c.spend_line())

        workers = min(c.max_concurrency, len(calls))
        if workers <= 1:
            for i, call in enumerate(calls):
                finished(i, self.ask(call))
        else:
            # a call whose first request repeats an earlier call's waits until the pool is done: it then
            # replays that call's cached replies, as it would one at a time (in flight together, both would pay)
            first, repeats = {}, []
            for i, call in enumerate(calls):
                key = request_key(c.request(call.messages, call.seed, 0, call.max_tokens))
                (repeats.append(i) if key in first else first.setdefault(key, i))
            errors = []
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llm") as pool:
                futures = {pool.submit(self.ask, calls[i]): i for i in first.values()}
                for future in as_completed(futures):
                    if future.cancelled():
                        continue
                    try:
                        finished(futures[future], future.result())
                    except Stopped:
                        continue
                    except BaseException as exc:  # the first failure stops the stage; those in flight finish
                        errors.append(exc)
                        self.stop.set()
                        for other in futures:
                            other.cancel()
            if errors:
                raise errors[0]
            for i in repeats:
                finished(i, self.ask(calls[i]))
        c.quarantined += [r for r in records if r is not None]
        return results
