"""The corpus a task's jobs read, measured: chunks, questions and paraphrase sets from their artifacts once they
exist (characters / plan.chars_per_token = tokens), else the estimates in ``plan.corpus``; and the tokens a
training epoch or an evaluation cell puts through the model. Nothing here imports torch."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from kinject.errors import KinjectError
from kinject.paths import CHUNKS, QUESTIONS, results_root, rooted

CHOICES = 4  # answer options per question until questions.parquet exists (MMLU: 4; generated: the 4 asked for)
CORPUS_FIELDS = ("chunks", "tokens_per_chunk", "max_chunk_tokens", "questions", "question_tokens",
                 "max_question_tokens", "answer_tokens")


@dataclass
class Corpus:
    figures: dict = field(default_factory=dict)  # CORPUS_FIELDS + "choices"; None when unknown
    sources: dict = field(default_factory=dict)

    def __getitem__(self, key):
        return self.figures.get(key)


def text_tokens(texts, chars_per_token: float) -> list[int]:
    return [math.ceil(len(t) / chars_per_token) for t in texts]


def read_column(path: Path, column: str) -> list:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path, columns=[column]).column(column).to_pylist()
    except Exception as exc:  # pyarrow raises several types for a broken or foreign file
        raise KinjectError(path, f"cannot read column {column!r} ({exc})") from None


def text_stats(path: Path, chars_per_token: float) -> tuple[int, int, int]:
    """(texts, total tokens, longest) of a parquet's text column."""
    tokens = text_tokens([str(t) for t in read_column(path, "text")], chars_per_token)
    return len(tokens), sum(tokens), max(tokens, default=0)


def task_corpus(config: dict, task: str, root: Path) -> Corpus:
    """The task's corpus figures: from its artifacts when they exist, else plan.corpus.<task> / .default."""
    cpt = config["plan"]["chars_per_token"]
    estimates = config["plan"].get("corpus", {})
    corpus = Corpus()
    for key in CORPUS_FIELDS:
        for where in (task, "default"):
            if key in estimates.get(where, {}):
                corpus.figures[key] = estimates[where][key]
                corpus.sources[key] = f"plan.corpus.{where}"
                break
    corpus.figures["choices"], corpus.sources["choices"] = CHOICES, "kinject.planning.corpus.CHOICES"
    chunks = root / rooted(CHUNKS.format(task=task), results_root(config))
    if chunks.is_file():
        n, total, longest = text_stats(chunks, cpt)
        corpus.figures.update(chunks=n, tokens_per_chunk=total / max(n, 1), max_chunk_tokens=longest)
        corpus.sources.update(dict.fromkeys(("chunks", "tokens_per_chunk", "max_chunk_tokens"), str(chunks)))
    questions = root / rooted(QUESTIONS.format(task=task), results_root(config))
    if questions.is_file():
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(questions, columns=["question", "choices", "split"]).to_pylist()
        except Exception as exc:
            raise KinjectError(questions, f"cannot read question, choices, split ({exc})") from None
        test = [r for r in rows if r["split"] == "test"]
        asked = text_tokens([f"Question: {r['question']}\nAnswer:" for r in test], cpt)
        answers = text_tokens([f" {c}" for r in test for c in r["choices"]], cpt)
        corpus.figures.update(questions=len(test), question_tokens=sum(asked) / max(len(asked), 1),
                              max_question_tokens=max(asked, default=0),
                              answer_tokens=sum(answers) / max(len(answers), 1),
                              choices=len(answers) / max(len(test), 1))
        corpus.sources.update(dict.fromkeys(("questions", "question_tokens", "max_question_tokens", "answer_tokens",
                                             "choices"), str(questions)))
    for key in CORPUS_FIELDS:
        corpus.figures.setdefault(key, None)
    return corpus


def missing(corpus: Corpus, task: str, keys) -> list[str]:
    """How to provide each unknown figure among keys."""
    artifact = {"chunks": CHUNKS, "tokens_per_chunk": CHUNKS, "max_chunk_tokens": CHUNKS}
    return [f"{task}: {key} unknown: build {artifact.get(key, QUESTIONS).format(task=task)} "
            f"or set plan.corpus.{task}.{key}" for key in keys if corpus[key] is None]


def training_tokens(config: dict, task: str, corpus: Corpus, root: Path, k: int) -> float | None:
    """Tokens of paraphrase set k per epoch: its parquet once built, else chunks x (1 + k) texts (a
    paraphrase is about as long as its chunk: the prompt asks for it); + BOS/EOS per text."""
    path = root / results_root(config) / task / "paraphrases" / f"paraphrases_k{k}.parquet"
    if path.is_file():
        n, total, _ = text_stats(path, config["plan"]["chars_per_token"])
        return total + 2 * n
    if corpus["chunks"] is None or corpus["tokens_per_chunk"] is None:
        return None
    return corpus["chunks"] * (1 + k) * (corpus["tokens_per_chunk"] + 2)


def validation_tokens(config: dict, task: str, corpus: Corpus, root: Path) -> float | None:
    path = root / results_root(config) / task / "validation" / "paraphrases.parquet"
    if path.is_file():
        n, total, _ = text_stats(path, config["plan"]["chars_per_token"])
        return total + 2 * n
    if corpus["chunks"] is None or corpus["tokens_per_chunk"] is None:
        return None
    val = config["tasks"][task]["validation"]
    return min(val["chunks"], corpus["chunks"]) * val["paraphrases"] * (corpus["tokens_per_chunk"] + 2)


def eval_requests(config: dict, corpus: Corpus, shots: int, k: int) -> tuple[float | None, int | None]:
    """(tokens through the model for one cell, tokens of its longest request). A request is one answer
    option after its prompt: shots x (question + answer) examples, K retrieved chunks (and K per example with
    evaluation.fewshot_context: every_example), the question. Stock lm-eval runs every request whole, so the
    prompt C times for C options; the shared prefix (evaluation.shared_prefix) runs the prompt once and the
    C options from its cached keys and values."""
    needed = ["questions", "question_tokens", "answer_tokens"] + (["tokens_per_chunk", "max_chunk_tokens"] if k else [])
    if any(corpus[key] is None for key in needed) or corpus["max_question_tokens"] is None:
        return None, None
    evaluation = config.get("evaluation", {})
    every = evaluation.get("fewshot_context", "question_only") == "every_example"
    answer = corpus["answer_tokens"]
    example = corpus["question_tokens"] + answer
    context = k * corpus["tokens_per_chunk"] if k else 0
    prompt = shots * (example + (context if every else 0)) + context + corpus["question_tokens"]
    per_question = (prompt + corpus["choices"] * answer if evaluation.get("shared_prefix", True)
                    else corpus["choices"] * (prompt + answer))
    longest = shots * (example + (context if every else 0)) + (k * corpus["max_chunk_tokens"] if k else 0) \
        + corpus["max_question_tokens"] + answer
    return corpus["questions"] * per_question, math.ceil(longest)
