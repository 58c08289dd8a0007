"""The training data: chunks wrapped in BOS/EOS, tokenized, concatenated and cut into fixed-size blocks (as
transformers' language-modeling examples do), and the batch arithmetic over processes."""

from __future__ import annotations

import hashlib
import json
import logging

from kinject.io import read_parquet

log = logging.getLogger(__name__)


def pack_blocks(docs_token_ids: list[list[int]], block_size: int, bos_id: int, eos_id: int) -> list[list[int]]:
    """Wrap each doc as [bos] + ids + [eos], concatenate, cut into blocks of exactly ``block_size``.

    A BOS/EOS the tokenizer already put at a doc's edge is not doubled. The tail shorter than a block
    is dropped (as transformers' run_clm does), except when the whole stream is shorter than one block:
    then it is the only block, so a tiny corpus still trains.
    """
    if block_size < 1:
        raise ValueError(f"block_size must be positive, got {block_size}")
    if not docs_token_ids:
        raise ValueError("no documents to pack")
    stream: list[int] = []
    for ids in docs_token_ids:
        ids = list(ids)
        if not ids or ids[0] != bos_id:
            ids.insert(0, bos_id)
        if len(ids) == 1 or ids[-1] != eos_id:
            ids.append(eos_id)
        stream.extend(ids)
    if len(stream) < block_size:
        return [stream]
    return [stream[i:i + block_size] for i in range(0, len(stream) - block_size + 1, block_size)]


def training_texts(parquet_path) -> list[str]:
    """The ``text`` column of a chunk / paraphrase-set parquet."""
    return [str(t) for t in read_parquet(parquet_path, columns=["text"])["text"]]


def load_tokenizer(base):
    """``AutoTokenizer`` for ``base``; a tokenizer without a pad token pads with EOS."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def tokenize_blocks(tokenizer, texts, block_size: int) -> list[list[int]]:
    """Tokenize ``texts`` with ``tokenizer`` and pack them (BOS falls back to EOS for BOS-less tokenizers)."""
    texts = list(texts)
    if not texts:
        raise ValueError("no texts to train or evaluate on")
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    ids = tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"]
    return pack_blocks(ids, block_size, bos, tokenizer.eos_token_id)


class BlockDataset:
    """Map-style dataset of equal-length blocks; labels are the inputs (the model shifts them). A block that is a
    dict (a method's example: input_ids, attention_mask, labels) is given as it is."""

    def __init__(self, blocks):
        self.blocks = blocks

    def __len__(self):
        return len(self.blocks)

    def __getitem__(self, i):
        import torch

        if isinstance(self.blocks[i], dict):
            return {key: torch.tensor(value, dtype=torch.long) for key, value in self.blocks[i].items()}
        ids = torch.tensor(self.blocks[i], dtype=torch.long)
        return {"input_ids": ids, "labels": ids.clone()}


def gradient_accumulation(batch_size: int, per_device_batch_size: int, world_size: int) -> int:
    """Micro-batches per optimizer step so that one step sees about ``batch_size`` blocks."""
    return max(1, batch_size // (per_device_batch_size * world_size))


def _digest(blocks) -> str:
    h = hashlib.sha256()
    for block in blocks:
        h.update(json.dumps(block).encode())
    return h.hexdigest()
