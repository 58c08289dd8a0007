"""The paper grid's longest prompt fits Llama-2's 4,096 tokens under the shipped few-shot RAG policy.

The longest prompt of config.yaml is 5-shot with K = 5 retrieved chunks. It is built here by the pipeline's
own code (write_lmeval_task, then lm-eval's few-shot prompt) from stand-in text: chunks of exactly
chunking.max_words words of encyclopedic English with dates and numbers (tests/fixtures), and MMLU-like
questions longer than the paper's subjects have (120-word questions, four 20-word options: the paper chose
subjects whose questions are short). Tokens are counted with Llama-2's own tokenizer (the 32,000-entry
SentencePiece of Llama 1 and 2, from llama.cpp's vocabulary-only GGUF file, which `make test` fetches from the
llama-cpp-python sdist on PyPI), the smallest vocabulary of the paper's three models (Mistral's is the same
size; Orca-2 is Llama-2's plus 3 tokens), so the one that takes the most tokens for the same text.
"""

import sys
from pathlib import Path

import pandas as pd
import pytest

from kinject.evaluation.evaluate import write_lmeval_task
from kinject.settings import load_config

ROOT = Path(__file__).resolve().parents[1]
LLAMA2_MAX_LENGTH = 4096
LLAMA_VOCAB = Path(sys.prefix) / "share" / "llama-vocab" / "ggml-vocab-llama-spm.gguf"  # Makefile
WORDS = (ROOT / "tests" / "fixtures" / "encyclopedic_english.txt").read_text().split()


def words(start: int, n: int) -> str:
    return " ".join(WORDS[(start + i) % len(WORDS)] for i in range(n))


@pytest.fixture(scope="module")
def tokenizer(hf_offline):
    from transformers import AutoTokenizer

    assert LLAMA_VOCAB.is_file(), f"{LLAMA_VOCAB} is missing: `make test` fetches it"
    llama = AutoTokenizer.from_pretrained(LLAMA_VOCAB.parent, gguf_file=LLAMA_VOCAB.name)
    assert len(llama) == 32_000 and llama("Hello world").input_ids == [1, 15043, 3186]  # Llama-2's own ids
    return llama


def longest_prompt_tokens(tmp_path, monkeypatch, tokenizer, config, fmt: str, fewshot_context: str) -> int:
    """Tokens of the 5-shot, K = max(retrieval.k) prompt plus its longest continuation."""
    from lm_eval.tasks import TaskManager

    k, shots, max_words = max(config["retrieval"]["k"]), max(max(t["shots"]) for t in config["tasks"].values()), \
        config["chunking"]["max_words"]
    chunks = pd.DataFrame({"chunk_id": [f"c{i}" for i in range(k)], "title": "t",
                           "text": [words(97 * i, max_words) for i in range(k)], "n_words": max_words})
    questions = pd.DataFrame([{"id": f"{split}{i}", "question": words(31 * i, 120) + "?",
                               "choices": [words(53 * i + 7 * j, 20) for j in range(4)], "answer": i % 4,
                               "split": split, "chunk_id": None}
                              for split, n in (("test", 1), ("dev", shots)) for i in range(n)])
    retrieved = pd.DataFrame([{"question_id": q, "rank": r, "chunk_id": f"c{r}", "score": 1.0}
                              for q in questions["id"] for r in range(k)])
    for name, df in (("chunks", chunks), ("questions", questions), ("retrieved", retrieved)):
        df.to_parquet(tmp_path / f"{name}.parquet")
    task_dir = write_lmeval_task(tmp_path / "questions.parquet", tmp_path / f"{fmt}_{fewshot_context}", "longest",
                                 k=k, retrieved_parquet=tmp_path / "retrieved.parquet",
                                 chunks_parquet=tmp_path / "chunks.parquet", fmt=fmt, subject="college_chemistry",
                                 fewshot_context=fewshot_context)
    monkeypatch.setattr("datasets.config.HF_DATASETS_CACHE", tmp_path / "datasets-cache")
    task = TaskManager(include_path=str(task_dir), include_defaults=False).load(["longest"])["tasks"]["longest"]
    doc = task.test_docs()[0]
    prompt = task.fewshot_context(doc, num_fewshot=shots)
    assert prompt.count(chunks["text"][0]) >= 1 and prompt.count("?") >= shots + 1
    return max(len(tokenizer(prompt + task.config.target_delimiter + str(choice))["input_ids"])
               for choice in task.doc_to_choice(doc))


def test_the_paper_grids_longest_prompt_fits_llama2(tmp_path, monkeypatch, tokenizer):
    config = load_config(ROOT / "config.yaml")
    assert max(config["retrieval"]["k"]) == 5 and config["chunking"]["max_words"] == 200
    shipped = config["evaluation"]["fewshot_context"]
    for fmt in ("options", "letters"):
        tokens = longest_prompt_tokens(tmp_path, monkeypatch, tokenizer, config, fmt, shipped)
        print(f"longest {fmt} prompt under {shipped}: {tokens} tokens")
        assert tokens <= LLAMA2_MAX_LENGTH, f"{fmt}: {tokens} tokens under {shipped}"
    # the policy is what makes it fit: with K chunks for every example, six times K chunks overflow
    overflow = longest_prompt_tokens(tmp_path, monkeypatch, tokenizer, config, "options", "every_example")
    print(f"under every_example: {overflow} tokens")
    assert overflow > LLAMA2_MAX_LENGTH
