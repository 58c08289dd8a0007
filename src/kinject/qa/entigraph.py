"""Synthetic continued pre-training's corpus (EntiGraph: Yang et al., ICLR 2025, "Synthetic continued pretraining"):
an LLM lists each chunk's salient entities (rule synthetic_entities), then writes, for pairs and optionally triples
of one chunk's entities, a passage on how they relate in that chunk (rule synthetic_texts). The prompts are
kinject.qa.prompts.ENTITIES and RELATION; the calls go through the project's LLM client (its cache, its requests in
flight, its re-asks and quarantine), as the questions' and paraphrases' do.

Which combinations are asked is a pure function of the run's seed and the chunk: of a chunk's n entities, up to
``synthetic.pairs_per_chunk`` of its n(n-1)/2 pairs and ``synthetic.triples_per_chunk`` of its triples, drawn without
replacement. The texts' order, which the token budgets take prefixes of (kinject.training.synthetic), deals the
chunks' texts round-robin: every chunk's first text (chunks in a seeded order), then every chunk's second, ..., so a
smaller budget covers the knowledge base as evenly as a larger one and is a prefix of it.
"""

from __future__ import annotations

import itertools
import logging
import zlib

import numpy as np
import pandas as pd

from kinject.errors import KinjectError
from kinject.io import read_parquet, write_parquet
from kinject.qa import prompts
from kinject.qa.llm import Call, LLMClient, entities_max_tokens, relation_max_tokens

log = logging.getLogger(__name__)

ENTITY_COLUMNS = ["chunk_id", "entity"]
TEXT_COLUMNS = ["chunk_id", "order", "entities", "size", "text"]
SEP = " | "  # between a text's entities in its `entities` column


def text_settings(config: dict) -> dict:
    """Rule synthetic_texts' settings (its params): how many pairs and triples of a chunk's entities are asked."""
    syn = config["synthetic"]
    return {"pairs": int(syn["pairs_per_chunk"]), "triples": int(syn["triples_per_chunk"])}


def valid_entities(reply: dict) -> list[str]:
    """A reply's entities: stripped, each once (case aside), at least two (a pair needs two)."""
    items = reply["entities"]
    if not isinstance(items, list):
        raise ValueError("entities is not a list")
    out, seen = [], set()
    for item in items:
        name = str(item).strip()
        if name and name.casefold() not in seen:
            seen.add(name.casefold())
            out.append(name)
    if len(out) < 2:
        raise ValueError(f"expected at least two entities, got {len(out)}")
    return out


def valid_text(reply: dict) -> str:
    text = str(reply["text"]).strip()
    if not text:
        raise ValueError("empty text")
    return text


def entities(chunks_path, out, quarantine, client: LLMClient, *, seed: int) -> str:
    """Rule synthetic_entities: one call per chunk; a row per (chunk, entity) in the reply's order."""
    chunks = read_parquet(chunks_path, columns=["chunk_id", "text"])
    calls = [Call(prompts.entities_messages(text), seed, valid_entities, entities_max_tokens(client.max_tokens))
             for text in chunks["text"]]
    client.ensure_can_ask(calls)
    rows = [{"chunk_id": chunk_id, "entity": name}
            for chunk_id, names in zip(chunks["chunk_id"], client.map_json(calls, "entities")) for name in names or []]
    client.log_spend()
    client.write_quarantine(quarantine)
    df = pd.DataFrame(rows, columns=ENTITY_COLUMNS)
    if df.empty:
        raise KinjectError(chunks_path, "no chunk got valid entities (see the quarantine file)")
    lacking = len(chunks) - df["chunk_id"].nunique()
    if lacking:
        log.warning("%d of %d chunks have no entities (their calls were quarantined): no synthetic text about them",
                    lacking, len(chunks))
    write_parquet(out, df)
    return f"{len(df)} entities of {df['chunk_id'].nunique()} chunks, {len(client.quarantined)} calls quarantined"


def combinations(chunk_id: str, names: list[str], *, pairs: int, triples: int, seed: int) -> list[tuple[str, ...]]:
    """The entity combinations asked about one chunk: up to ``pairs`` of its pairs, then up to ``triples`` of its
    triples, each drawn without replacement by a generator seeded with the run's seed and the chunk id."""
    rng = np.random.default_rng([seed, zlib.crc32(str(chunk_id).encode())])
    out = []
    for size, count in ((2, pairs), (3, triples)):
        every = list(itertools.combinations(names, size))
        if count and every:
            picked = rng.choice(len(every), size=min(count, len(every)), replace=False)
            out += [every[i] for i in picked]
    return out


def plan_calls(chunks: pd.DataFrame, ents: pd.DataFrame, *, pairs: int, triples: int, seed: int) -> list[dict]:
    """Every relation call: {chunk_id, entities, text (the chunk's), rank (the call's place among its chunk's)}."""
    by_chunk = ents.groupby("chunk_id", sort=False)["entity"].apply(list).to_dict()
    out = []
    for chunk_id, text in zip(chunks["chunk_id"], chunks["text"]):
        names = by_chunk.get(chunk_id, [])
        for rank, combo in enumerate(combinations(chunk_id, names, pairs=pairs, triples=triples, seed=seed)):
            out.append({"chunk_id": chunk_id, "entities": list(combo), "text": text, "rank": rank})
    return out


def dealt_order(planned: list[dict], seed: int) -> list[int]:
    """The training order of the planned texts: round-robin over the chunks (in a seeded order), each chunk's texts in
    their drawn order; a budget takes a prefix of it (kinject.training.synthetic)."""
    chunk_ids = list(dict.fromkeys(p["chunk_id"] for p in planned))
    place = {c: i for i, c in enumerate(np.random.default_rng(seed).permutation(len(chunk_ids)))}
    position = {c: place[i] for i, c in enumerate(chunk_ids)}
    return sorted(range(len(planned)), key=lambda i: (planned[i]["rank"], position[planned[i]["chunk_id"]]))


def relation_texts(chunks_path, entities_path, out, quarantine, client: LLMClient, *, pairs: int, triples: int,
                   seed: int) -> str:
    """Rule synthetic_texts: one call per planned combination (:func:`plan_calls`); a row per valid text, in the
    order the budgets take them (:func:`dealt_order`: column ``order``)."""
    chunks = read_parquet(chunks_path, columns=["chunk_id", "text"])
    ents = read_parquet(entities_path, columns=ENTITY_COLUMNS)
    planned = plan_calls(chunks, ents, pairs=pairs, triples=triples, seed=seed)
    if not planned:
        raise KinjectError(entities_path, "no chunk has two entities: nothing to write synthetic texts about")
    calls = [Call(prompts.relation_messages(p["text"], p["entities"]), seed, valid_text,
                  relation_max_tokens(client.max_tokens)) for p in planned]
    client.ensure_can_ask(calls)
    texts = client.map_json(calls, "relation texts")
    client.log_spend()
    client.write_quarantine(quarantine)
    rows = []
    for order, i in enumerate(dealt_order(planned, seed)):
        if texts[i] is not None:
            p = planned[i]
            rows.append({"chunk_id": p["chunk_id"], "order": order, "entities": SEP.join(p["entities"]),
                         "size": len(p["entities"]), "text": texts[i]})
    df = pd.DataFrame(rows, columns=TEXT_COLUMNS)
    if df.empty:
        raise KinjectError(entities_path, "no relation text was valid (see the quarantine file)")
    write_parquet(out, df)
    return (f"{len(df)} synthetic texts about {df['chunk_id'].nunique()} chunks' entities "
            f"({int((df['size'] == 2).sum())} pairs, {int((df['size'] == 3).sum())} triples), "
            f"{len(client.quarantined)} calls quarantined")
