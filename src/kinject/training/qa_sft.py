"""QA-SFT (Mecklenburg et al. 2024, "Injecting New Knowledge into Large Language Models via Supervised
Fine-Tuning"): the fine-tuning method ``qa_sft`` trains the whole model on question-answer pairs about the knowledge
base instead of its documents, with the loss on the answer's tokens only.

Its pairs are the generated candidate questions that were not selected for the test set (rule qa_sft_pairs,
kinject.qa.leakage: after a check that no test question or near-duplicate of one enters), each written in a neutral
template, ``finetune.qa_sft.template`` (default ``"Question: {question}\\nAnswer: {answer}"``). Only a task whose
questions are generated has candidates. It trains one model per task: paraphrase set 0 means "the QA pairs" (its
cells QA-SFT and QA-SFT+RAG); the paraphrase sets are the documents', which it does not read. With
``finetune.qa_sft.qa_per_chunk`` N > 0, one more call of the question prompt per chunk asks N more candidates (rule
qa_sft_extra, seed + :data:`EXTRA_SEED`), which join the unselected ones before the leakage check.
"""

from __future__ import annotations

import logging
from pathlib import Path

from kinject.errors import KinjectError
from kinject.io import read_parquet
from kinject.paths import QA_SFT_TRAIN, results_root, rooted

log = logging.getLogger(__name__)

TRAIN = QA_SFT_TRAIN
OPTION = "answer_only"  # the training process's flag (--answer-only): (prompt, answer) examples, loss on the answer
IGNORE = -100  # the label the loss skips (torch's cross_entropy ignore_index)
TEMPLATE_TOKENS = 4  # plan: the template's own tokens per pair ("Question:", "Answer:")


EXTRA_SEED = 1  # the extra pairs' calls (qa_per_chunk) use the run's seed + this: other requests than the test's


def extra_per_chunk(config: dict) -> int:
    """finetune.qa_sft.qa_per_chunk: extra pairs asked per chunk (0: none; rule qa_sft_extra)."""
    return int(config["finetune"]["qa_sft"].get("qa_per_chunk", 0))


def settings(config: dict) -> dict:
    """The pairs rule's params: the template and the leakage check's cosine threshold."""
    qa = config["finetune"]["qa_sft"]
    return {"template": qa["template"], "threshold": qa["leakage_threshold"]}


def options(config: dict) -> dict:
    """What method qa_sft adds to the training rules' settings and command line: --answer-only."""
    return {OPTION: True}


def sets(config: dict, task: dict, rag: bool = False) -> list[int]:
    """The one model a task trains: set 0, the QA pairs."""
    return [0]


def check(config: dict, key: str, task: dict, source: str, name: str = "qa_sft") -> None:
    """Only a task whose questions are generated has candidates to train on; the template must be one. ``name``: the
    method trained on the pairs (qa_sft, or PIT's, kinject.training.pit)."""
    from kinject.qa.leakage import check_template
    from kinject.qa.sources import QUESTION_SOURCES

    q = task["questions"]
    if QUESTION_SOURCES[q["source"]].rule != "generate_questions":
        where = f"{key}.finetune_methods" if "finetune_methods" in task else "finetune.methods"
        raise KinjectError(source, f"{where}: {name} trains on the generated candidate questions, but "
                           f"{key}.questions.source is {q['source']}")
    check_template(config["finetune"]["qa_sft"]["template"], "finetune.qa_sft.template", source)


def read_pairs(path) -> list[tuple[str, str]]:
    """(prompt, answer) of every pair of a training file (rule qa_sft_pairs)."""
    pairs = read_parquet(path, columns=["prompt", "answer"])
    return [(str(p), str(a)) for p, a in zip(pairs["prompt"], pairs["answer"])]


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def answer_only_examples(tokenizer, pairs, block_size: int) -> list[dict]:
    """One example per (prompt, answer) pair: BOS, the prompt and the answer and EOS, right-padded to the longest
    example (at most ``block_size`` tokens, longer ones cut there); labels are the answer's tokens and EOS, IGNORE
    (-100) on the prompt's and the padding. The prompt's tokens are those it shares with the whole text's
    tokenization (a tokenizer may merge the space before the answer into the answer's first token)."""
    pairs = list(pairs)
    if not pairs:
        raise ValueError("no question-answer pairs to train on")
    if block_size < 2:
        raise ValueError(f"block_size must be at least 2, got {block_size}")
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rows, cut = [], 0
    for prompt, answer in pairs:
        whole = tokenizer(prompt + answer, add_special_tokens=False)["input_ids"]
        shared = common_prefix(tokenizer(prompt, add_special_tokens=False)["input_ids"], whole)
        ids = [bos] + whole + [eos]
        labels = [IGNORE] * (1 + shared) + ids[1 + shared:]
        if len(ids) > block_size:
            ids, labels, cut = ids[:block_size], labels[:block_size], cut + 1
        rows.append((ids, labels))
    if cut:
        log.warning("%d of %d QA pairs are longer than block_size %d tokens: cut there", cut, len(rows), block_size)
    if all(label == IGNORE for _, labels in rows for label in labels):
        raise KinjectError("finetune.block_size", f"{block_size} tokens leave no answer token of any QA pair")
    width = max(len(ids) for ids, _ in rows)
    return [{"input_ids": ids + [pad] * (width - len(ids)), "attention_mask": [1] * len(ids) + [0] * (width - len(ids)),
             "labels": labels + [IGNORE] * (width - len(labels))} for ids, labels in rows]


def training_tokens(config: dict, task: str, corpus, root: Path, k: int = 0) -> float | None:
    """Plan: tokens of one epoch over a task's pairs (padding aside): the pairs' file once built, else every
    unselected candidate and extra one, chunks x (per_chunk - keep + qa_per_chunk), as long as a question and its
    answer and the template."""
    from kinject.planning.corpus import read_column, text_tokens

    path = root / rooted(TRAIN.format(task=task), results_root(config))
    cpt = config["plan"]["chars_per_token"]
    if path.is_file():
        texts = [p + a for p, a in zip(read_column(path, "prompt"), read_column(path, "answer"))]
        return sum(text_tokens(texts, cpt)) + 2 * len(texts)
    if any(corpus[key] is None for key in ("chunks", "question_tokens", "answer_tokens")):
        return None
    q = config["tasks"][task]["questions"]
    pairs = corpus["chunks"] * (max(0, q["per_chunk"] - q["keep"]) + extra_per_chunk(config))
    return pairs * (corpus["question_tokens"] + corpus["answer_tokens"] + TEMPLATE_TOKENS + 2)
