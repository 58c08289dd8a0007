"""Questions before documents (PIT, Jiang et al. ACL 2024, "Instruction-tuned Language Models are Better Knowledge
Learners"): the fine-tuning methods ``pit`` and ``pit_mixed`` train the whole model, in one run, on QA-SFT's
question-answer pairs (kinject.training.qa_sft: loss on the answer only) and on paraphrase set k's texts (the
original chunks and k paraphrases of each, packed into blocks as method full packs them).

``pit`` trains in two phases: every epoch is one pass over the QA pairs, then one over the texts' blocks, each
shuffled within its phase; so every QA example comes before every text block of the epoch, and an epoch ends on the
documents (the search's validation loss, on held-out paraphrases of the documents, is measured there). With several
epochs the phases alternate: QA, documents, QA, documents. ``pit_mixed`` shuffles both together, a micro-batch at a
time: each micro-batch but at most two is all QA pairs or all text blocks (so a pair is not padded to a block's
length), and the micro-batches of both kinds come in one shuffled order (with fewer QA pairs or text blocks than a
micro-batch, ``finetune.per_device_batch_size``, a phase is mixed only into those two: a warning says so). Either
way a micro-batch is right-padded to its longest example (:func:`pad_batch`), and each epoch's order comes from the
run's seed and the epoch (:class:`PhaseSampler`), the same in every process and on a resume.

Its data is one file per (task, k) (rule pit_train, :func:`build_training_file`): the pairs (phase 1), then set k's
texts (phase 2). It trains the task's paraphrase sets as method full does (its cells PIT, PIT-par{k}, PIT+RAG ...).
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from kinject.io import read_parquet, write_parquet
from kinject.paths import PIT_TRAIN
from kinject.training import qa_sft

log = logging.getLogger(__name__)

TRAIN = PIT_TRAIN
QA, TEXT = 1, 2  # the phases, in PIT's order
COLUMNS = ["phase", "chunk_id", "prompt", "answer", "text"]
OPTIONS = {"pit": "qa_then_text", "pit_mixed": "qa_with_text"}  # each method's flag (--qa-then-text, --qa-with-text)


def options(name: str, config: dict) -> dict:
    """What method ``name`` adds to the training rules' settings and command line: its flag."""
    return {OPTIONS[name]: True}


def check(name: str, config: dict, key: str, task: dict, source: str) -> None:
    """As QA-SFT's (its pairs are QA-SFT's): generated questions, a valid template."""
    qa_sft.check(config, key, task, source, name=name)


def build_training_file(pairs_path, texts_path, out, *, task: str, k: int) -> str:
    """Rule pit_train: QA-SFT's pairs (phase 1: prompt, answer) and then paraphrase set k's texts (phase 2: text),
    one file (columns :data:`COLUMNS`)."""
    pairs = read_parquet(pairs_path, columns=["chunk_id", "prompt", "answer"])
    texts = read_parquet(texts_path, columns=["chunk_id", "text"])
    rows = pd.concat([pairs.assign(phase=QA, text=""), texts.assign(phase=TEXT, prompt="", answer="")],
                     ignore_index=True)
    rows["chunk_id"] = rows["chunk_id"].astype(str)
    write_parquet(out, rows[COLUMNS])
    return f"task {task} set {k}: {len(pairs)} QA pairs, then {len(texts)} texts"


def read_rows(path) -> dict:
    """A training file's pairs [(prompt, answer)] and texts, each in the file's order."""
    rows = read_parquet(path, columns=COLUMNS)
    qa, text = rows[rows["phase"] == QA], rows[rows["phase"] == TEXT]
    if len(qa) + len(text) != len(rows):
        raise ValueError(f"{path}: phases other than {QA} (QA) and {TEXT} (text)")
    return {"pairs": [(str(p), str(a)) for p, a in zip(qa["prompt"], qa["answer"])],
            "texts": [str(t) for t in text["text"]]}


class PhasedExamples(list):
    """Training examples (dicts: input_ids, attention_mask, labels) with each one's phase (:data:`QA`, :data:`TEXT`)."""

    def __init__(self, examples, phases):
        super().__init__(examples)
        self.phases = list(phases)
        if len(self.phases) != len(self):
            raise ValueError("one phase per example")


def examples(tokenizer, rows: dict, block_size: int) -> PhasedExamples:
    """QA-SFT's answer-only example of every pair (unpadded: a batch is padded to its own longest), then the texts'
    packed blocks (kinject.training.blocks, as method full trains them), each scored on every token."""
    from kinject.training.blocks import tokenize_blocks

    qa = []
    for example in qa_sft.answer_only_examples(tokenizer, rows["pairs"], block_size):
        length = sum(example["attention_mask"])
        qa.append({key: value[:length] for key, value in example.items()})
    blocks = [{"input_ids": b, "attention_mask": [1] * len(b), "labels": list(b)}
              for b in tokenize_blocks(tokenizer, rows["texts"], block_size)]
    return PhasedExamples(qa + blocks, [QA] * len(qa) + [TEXT] * len(blocks))


def training_order(phases: list[int], *, seed: int, epoch: int, group: int, mixed: bool) -> list[int]:
    """The indices of one epoch's examples in training order, from ``seed`` and ``epoch``: each phase shuffled, then
    the QA phase whole before the text phase; or (``mixed``) both cut into groups of ``group`` (a micro-batch) and
    the groups shuffled together. Each phase's remainder short of a group is pooled with the other's, shuffled and
    cut again, the pool's own remainder last: every group holds one phase but at most two (the pool's)."""
    if group < 1:
        raise ValueError(f"group must be positive, got {group}")
    rng = np.random.default_rng([seed, epoch])
    by_phase = [[i for i, p in enumerate(phases) if p == phase] for phase in (QA, TEXT)]
    shuffled = [[ids[j] for j in rng.permutation(len(ids))] for ids in by_phase]
    if not mixed:
        return shuffled[0] + shuffled[1]
    groups, pool = [], []
    for ids in shuffled:
        cut = len(ids) - len(ids) % group
        groups += [ids[i:i + group] for i in range(0, cut, group)]
        pool += ids[cut:]
    pool = [pool[j] for j in rng.permutation(len(pool))]
    cut = len(pool) - len(pool) % group
    groups += [pool[i:i + group] for i in range(0, cut, group)]
    return [i for j in rng.permutation(len(groups)) for i in groups[j]] + pool[cut:]


class PhaseSampler:
    """The Trainer's sampler of a run's examples: :func:`training_order` of the epoch the Trainer sets (accelerate
    gives each process its micro-batches of it)."""

    def __init__(self, phases, *, seed: int, group: int, mixed: bool):
        self.phases, self.seed, self.group, self.mixed, self.epoch = list(phases), seed, group, mixed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.phases)

    def __iter__(self):
        return iter(training_order(self.phases, seed=self.seed, epoch=self.epoch, group=self.group, mixed=self.mixed))


def pad_batch(features: list[dict], pad_id: int) -> dict:
    """A micro-batch's examples (tensors) right-padded to its longest: input_ids with ``pad_id``, attention_mask 0,
    labels IGNORE (no loss). The validation's packed blocks (input_ids and labels, equal lengths) are only stacked."""
    import torch

    width = max(len(f["input_ids"]) for f in features)
    fill = {"input_ids": pad_id, "attention_mask": 0, "labels": qa_sft.IGNORE}
    return {key: torch.stack([torch.nn.functional.pad(f[key], (0, width - len(f[key])), value=value)
                              for f in features]) for key, value in fill.items() if key in features[0]}


def batching(mixed: bool, examples: PhasedExamples, *, seed: int, group: int, pad_id: int):
    """(sampler, collator) of a run: the phases' order (:class:`PhaseSampler`) and :func:`pad_batch`."""
    counts = [examples.phases.count(phase) for phase in (QA, TEXT)]
    log.info("%d QA examples %s %d text blocks, micro-batches of %d", counts[0],
             "shuffled together with" if mixed else "before", counts[1], group)
    if mixed and min(counts) < group:
        log.warning("fewer %s than a micro-batch (%d): they are mixed only into the pooled micro-batches of both",
                    "QA examples" if counts[0] < counts[1] else "text blocks", group)
    return PhaseSampler(examples.phases, seed=seed, group=group, mixed=mixed), partial(pad_batch, pad_id=pad_id)


def training_tokens(config: dict, task: str, corpus, root: Path, k: int = 0) -> float | None:
    """Plan: tokens of one epoch, the QA pairs' (QA-SFT's estimate) and paraphrase set k's (method full's)."""
    from kinject.planning.corpus import training_tokens as set_tokens

    qa, text = qa_sft.training_tokens(config, task, corpus, root), set_tokens(config, task, corpus, root, k)
    return None if qa is None or text is None else qa + text
