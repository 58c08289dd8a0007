"""Synthetic continued pre-training (EntiGraph: Yang et al., ICLR 2025, "Synthetic continued pretraining"): the
fine-tuning method ``synthetic`` trains the whole model, as method full does (packed blocks, the loss on every
token), on a task's original chunks plus a budget of synthetic text about their entities (kinject.qa.entigraph: an
LLM lists each chunk's entities, then writes about pairs and triples of them).

Its models are one per token budget, ``synthetic.tokens`` (the wildcard k of its rules and cells is the budget:
cells ``syn-p20000``, columns ``SynCPT-20000tok``): budget k trains on the chunks and the first texts of the
synthetic corpus, in its dealt order, until k tokens of the fine-tuned model's own tokenizer are reached (the text
that crosses k is kept whole: the set file records the tokens it holds). Budgets are nested prefixes, so the
accuracy against k is a curve, read beside the paraphrase sets' (whose set k adds k paraphrases of every chunk).
Budget 0 would be method full's set 0 (the chunks alone) and is not allowed: FT is that column.

Its learning-rate search, where the task has validation, trains on the smallest budget (the search's trials, the
validated model, are that budget's models), and its choice applies to every budget, as set 0's does to the
paraphrase sets. Its FT+RAG cells are of the largest budget.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from kinject.errors import KinjectError
from kinject.io import read_parquet, write_parquet
from kinject.paths import SYNTHETIC_SET

log = logging.getLogger(__name__)

TRAIN = SYNTHETIC_SET
COLUMNS = ["chunk_id", "source", "order", "text"]  # source: "chunk" (an original) or "synthetic"
UNIT = "tok"  # its columns' suffix: SynCPT-20000tok


def budgets(config: dict) -> list[int]:
    """synthetic.tokens, ascending."""
    return sorted(int(t) for t in config.get("synthetic", {}).get("tokens", []))


def sets(config: dict, task: dict, rag: bool = False) -> list[int]:
    """Its models of a task: one per budget; the FT+RAG cells' the largest budget's."""
    every = budgets(config)
    return every[-1:] if rag else every


def search_set(config: dict) -> int:
    """The budget its search trains on: the smallest."""
    every = budgets(config)
    return every[0] if every else 0


def check(config: dict, key: str, task: dict, source: str) -> None:
    """A task trained with it needs synthetic.tokens (the schema: counts > 0, each once) and some combination to ask
    about."""
    syn = config.get("synthetic", {})
    tokens = list(syn.get("tokens", []))
    where = f"{key}.finetune_methods" if "finetune_methods" in task else "finetune.methods"
    if not tokens:
        raise KinjectError(source, f"{where} trains synthetic, but synthetic.tokens (its token budgets) is missing")
    if syn.get("pairs_per_chunk", 0) + syn.get("triples_per_chunk", 0) == 0:
        raise KinjectError(source, "synthetic.pairs_per_chunk and synthetic.triples_per_chunk are both 0: no "
                           "synthetic text would be written")


def build_set(chunks_path, texts_path, tokenizer_dir, out, *, budget: int) -> str:
    """Rule synthetic_set: the chunks (source chunk), then the synthetic texts in their order until ``budget`` tokens
    of the model's tokenizer (no special tokens) are reached; one line if the texts hold fewer tokens than that."""
    from kinject.training.blocks import load_tokenizer

    chunks = read_parquet(chunks_path, columns=["chunk_id", "text"])
    texts = read_parquet(texts_path, columns=["chunk_id", "order", "text"]).sort_values("order", kind="stable")
    tokenizer = load_tokenizer(tokenizer_dir)
    counts = [len(ids) for ids in tokenizer(texts["text"].astype(str).tolist(), add_special_tokens=False,
                                              verbose=False)["input_ids"]]
    total = sum(counts)
    if total < budget:
        raise KinjectError(texts_path, f"synthetic.tokens: budget {budget} is more than the {total} tokens of all "
                           f"{len(texts)} synthetic texts: lower it, or raise synthetic.pairs_per_chunk / "
                           f"triples_per_chunk (more texts per chunk)")
    held, n = 0, 0
    while held < budget:
        held += counts[n]
        n += 1
    kept = texts.iloc[:n]
    rows = pd.concat([chunks.assign(source="chunk", order=-1),
                      kept.assign(source="synthetic")[["chunk_id", "source", "order", "text"]]], ignore_index=True)
    write_parquet(out, rows[COLUMNS])
    log.info("budget %d: the %d chunks and %d of %d synthetic texts, %d tokens", budget, len(chunks), n, len(texts), held)
    return f"budget {budget}: {len(chunks)} chunks + {n} synthetic texts ({held} tokens)"


def training_tokens(config: dict, task: str, corpus, root: Path, k: int = 0) -> float | None:
    """Plan: tokens of one epoch over budget k's data: the chunks (as paraphrase set 0) and k synthetic tokens, plus
    BOS/EOS per synthetic text (a text about as long as llm.max_tokens.relation's half)."""
    from kinject.planning.corpus import training_tokens as set_tokens

    chunks = set_tokens(config, task, corpus, root, 0)
    return None if chunks is None else chunks + int(k) * (1 + 2 / max(1, text_tokens(config)))


def text_tokens(config: dict) -> int:
    """Plan: tokens of one synthetic text (plan.llm_reply_tokens.relation)."""
    return int(config["plan"]["llm_reply_tokens"].get("relation", 150))
