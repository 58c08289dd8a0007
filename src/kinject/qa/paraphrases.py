"""Paraphrase sets 0..N: the paper's prompt, N paraphrases per call, a different seed per iteration."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

from kinject.errors import KinjectError
from kinject.io import read_parquet, write_parquet
from kinject.qa import prompts
from kinject.qa.llm import Call, LLMClient

log = logging.getLogger(__name__)


def valid_paraphrases(n: int):
    def validate(reply: dict) -> list[str]:
        items = [str(p).strip() for p in reply["paraphrases"]]
        if len(items) < n or not all(items[:n]):
            raise ValueError(f"expected {n} non-empty paraphrases, got {len(items)}")
        return items[:n]

    return validate


def _plan(chunks: pd.DataFrame, count: int, per_call: int, seed: int) -> list[tuple[str, int, int, list, str, int]]:
    """(chunk_id, first paraphrase number, seed, messages, chunk text, paraphrases asked) for every call:
    iteration i uses seed + i."""
    calls = []
    for c in chunks.itertuples():
        for i in range(math.ceil(count / per_call)):
            n = min(per_call, count - i * per_call)
            calls.append((c.chunk_id, i * per_call + 1, seed + i, prompts.paraphrase_messages(c.text, n), c.text, n))
    return calls


def short_chunks(paraphrases: pd.DataFrame, chunk_ids, k: int) -> dict[str, int]:
    """The chunks (in the order of chunk_ids) that lack one of paraphrases 1..k: {chunk_id: how many they have}."""
    have = paraphrases[paraphrases["paraphrase"].between(1, k)].groupby("chunk_id")["paraphrase"].nunique()
    counts = {c: int(have.get(c, 0)) for c in chunk_ids}
    return {c: n for c, n in counts.items() if n < k}


def _describe(short: dict[str, int], k: int) -> str:
    return ", ".join(f"{c} ({n} of {k})" for c, n in short.items())


def log_completeness(paraphrases: pd.DataFrame, chunk_ids, k: int) -> dict[str, int]:
    """Log whether every chunk got its k paraphrases, naming the short ones; returns them."""
    chunk_ids = list(chunk_ids)
    short = short_chunks(paraphrases, chunk_ids, k)
    if short:
        log.warning("%d of %d chunks are short of their %d paraphrases (their calls were quarantined): %s",
                    len(short), len(chunk_ids), k, _describe(short, k))
    else:
        log.info("all %d chunks have their %d paraphrases", len(chunk_ids), k)
    return short


def generate(chunks: pd.DataFrame, client: LLMClient, *, count: int, per_call: int, seed: int) -> pd.DataFrame:
    planned = _plan(chunks, count, per_call, seed)
    calls = [Call(m, s, valid_paraphrases(n), client.paraphrase_max_tokens(text, n))
             for _, _, s, m, text, n in planned]
    client.ensure_can_ask(calls)
    rows = []
    for (chunk_id, first, *_), texts in zip(planned, client.map_json(calls, "paraphrases")):
        for j, text in enumerate(texts or []):
            rows.append({"chunk_id": chunk_id, "paraphrase": first + j, "text": text})
    client.log_spend()
    df = pd.DataFrame(rows, columns=["chunk_id", "paraphrase", "text"])
    log_completeness(df, chunks["chunk_id"], count)
    return df


def paraphrase_chunks(chunks_path, out, quarantine, client: LLMClient, *, count: int, per_call: int, seed: int):
    chunks = read_parquet(chunks_path, columns=["chunk_id", "text"])
    df = generate(chunks, client, count=count, per_call=per_call, seed=seed)
    client.write_quarantine(quarantine)
    if df.empty:
        raise KinjectError(chunks_path, "no chunk got valid paraphrases (see the quarantine file)")
    write_parquet(out, df)
    return f"{len(df)} paraphrases of {df['chunk_id'].nunique()} chunks, {len(client.quarantined)} calls quarantined"


def paraphrase_set(chunks_path, generated_path, out, *, k: int, allow_incomplete: bool = False) -> str:
    """Set k: every original chunk plus its paraphrases 1..k (the FT training text). A chunk short of one
    of them (its LLM calls were quarantined) stops the set with one line, unless ``allow_incomplete``
    (``paraphrases.allow_incomplete``): then the set is built and the short chunks are logged."""
    chunks = read_parquet(chunks_path, columns=["chunk_id", "text"])
    parts = [chunks.assign(paraphrase=0)[["chunk_id", "paraphrase", "text"]]]
    if k > 0:
        gen = read_parquet(generated_path, columns=["chunk_id", "paraphrase", "text"])
        have = gen["paraphrase"].max()
        if have < k:
            raise KinjectError(generated_path, f"holds paraphrases up to {have}, set k={k} needs {k}")
        short = short_chunks(gen, chunks["chunk_id"], k)
        if short and not allow_incomplete:
            first, n = next(iter(short.items()))
            raise KinjectError(generated_path, f"chunk {first!r} has {n} of the {k} paraphrases set k={k} needs; "
                               f"{len(short)} of {len(chunks)} chunks are short (their LLM calls were quarantined: "
                               f"see the quarantine file next to it); set paraphrases.allow_incomplete: true "
                               f"to build the set anyway")
        if short:
            log.warning("paraphrases.allow_incomplete: set k=%d built with %d of %d chunks short: %s", k,
                        len(short), len(chunks), _describe(short, k))
        parts.append(gen[gen["paraphrase"] <= k])
    df = pd.concat(parts).sort_values(["paraphrase", "chunk_id"], kind="stable").reset_index(drop=True)
    write_parquet(out, df)
    log.info("paraphrase set k=%d: %d texts", k, len(df))
    return f"set k={k}: {len(df)} texts"


def validation_paraphrases(chunks_path, out, quarantine, client: LLMClient, *, n_chunks: int, per_chunk: int,
                           seed: int) -> None:
    """The held-out validation set: `n_chunks` random chunks x `per_chunk` paraphrases (the paper: 240 x 2),
    with seeds apart from the training paraphrases'."""
    chunks = read_parquet(chunks_path, columns=["chunk_id", "text"])
    rng = np.random.default_rng(seed)
    picked = chunks.iloc[np.sort(rng.choice(len(chunks), size=min(n_chunks, len(chunks)), replace=False))]
    df = generate(picked, client, count=per_chunk, per_call=per_chunk, seed=seed + 100_000)
    client.write_quarantine(quarantine)
    if df.empty:
        raise KinjectError(chunks_path, "no validation paraphrase was produced (see the quarantine file)")
    write_parquet(out, df)
    return f"{len(df)} validation paraphrases of {df['chunk_id'].nunique()} held-out chunks"
