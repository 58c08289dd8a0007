"""QA-SFT's training pairs (kinject.training.qa_sft): the generated candidate questions that were not selected for
the test set, each with its correct option as the answer, after a leakage check against the test set.

The check removes a candidate whose question is a test question once normalised (:func:`normalise`: lowercase,
punctuation and whitespace folded), then one whose question embeds (the run's sentence-transformers embedder,
L2-normalised, as the retriever embeds) with cosine similarity >= ``finetune.qa_sft.leakage_threshold`` to some test
question: a near-duplicate or a paraphrase of a question the model will be scored on never enters its training.
The counts (pairs in, removed by text, removed by embedding, kept) are written beside the pairs.
"""

from __future__ import annotations

import logging
import re
import unicodedata

import pandas as pd

from kinject.errors import KinjectError
from kinject.io import read_parquet, write_json, write_parquet
from kinject.qa.question_file import read_questions

log = logging.getLogger(__name__)

PAIR_COLUMNS = ["id", "chunk_id", "question", "answer", "prompt"]


def normalise(text: str) -> str:
    """A question's text for the exact check: Unicode-normalised (NFKC), lowercase, every run of punctuation and
    whitespace one space, trimmed ("What's the date?" and "whats  the DATE" differ; "What is it ?" and "what is
    it" do not)."""
    text = unicodedata.normalize("NFKC", str(text)).lower()
    return " ".join(re.sub(r"[\W_]+", " ", text).split())


def prompt_of(template: str, question: str) -> str:
    """The template up to its ``{answer}`` with the question filled in: what the model reads, unscored."""
    return template.removesuffix("{answer}").replace("{question}", question)


def check_template(template: str, key: str, source: str) -> None:
    """A template has one ``{question}`` and ends with its one ``{answer}``, after the question."""
    if template.count("{question}") != 1 or template.count("{answer}") != 1 or not template.endswith("{answer}") \
            or template.index("{question}") > template.index("{answer}"):
        raise KinjectError(source, f"{key}: {template!r} must hold {{question}} once and end with {{answer}}")


def candidate_pairs(candidates: pd.DataFrame, selected: pd.DataFrame) -> pd.DataFrame:
    """The candidates the selection did not keep (by chunk and question text), each with its correct option's
    text as the answer: id (``<chunk id>-c<n>``), chunk_id, question, answer."""
    chosen = set(zip(selected["chunk_id"].astype(str), selected["question"].astype(str)))
    rows = []
    for row in candidates.itertuples():
        if (str(row.chunk_id), str(row.question)) in chosen:
            continue
        choices = list(row.choices)
        answer = int(row.answer)
        if not 0 <= answer < len(choices):
            raise KinjectError("candidates", f"candidate {row.chunk_id}-c{row.candidate} has answer {answer} of "
                               f"{len(choices)} choices")
        rows.append({"id": f"{row.chunk_id}-c{row.candidate}", "chunk_id": str(row.chunk_id),
                     "question": str(row.question), "answer": str(choices[answer])})
    return pd.DataFrame(rows, columns=["id", "chunk_id", "question", "answer"])


def merge_extra(candidates_path, extra_path, out) -> str:
    """Rule qa_sft_candidates: the candidates and the extra ones (finetune.qa_sft.qa_per_chunk, rule qa_sft_extra),
    one file, less every extra question that is, normalised (:func:`normalise`), a candidate's or an earlier extra
    one's (an LLM asked the same prompt again repeats itself). An extra candidate's number follows the candidates'
    highest, so every pair's id stays unique."""
    columns = ["chunk_id", "candidate", "question", "choices", "answer"]
    candidates, extra = read_parquet(candidates_path, columns=columns), read_parquet(extra_path, columns=columns)
    seen, keep = {normalise(q) for q in candidates["question"]}, []
    for question in extra["question"]:
        keep.append(normalise(question) not in seen)
        seen.add(normalise(question))
    new = extra[keep].assign(candidate=extra["candidate"][keep] + int(candidates["candidate"].max()) + 1)
    write_parquet(out, pd.concat([candidates, new], ignore_index=True))
    return (f"{len(candidates)} candidates and {len(new)} extra ones ({len(extra) - len(new)} repeated questions "
            "left out)")


def leaked(questions: list[str], test_questions: list[str], embedder, threshold: float) -> tuple[list, list]:
    """(by text, by embedding): for each of ``questions``, whether its normalised text is a test question's, and
    (where not) whether its embedding's cosine similarity to some test question's is >= ``threshold``.
    ``embedder``: a SentenceTransformer or its folder."""
    tests = {normalise(q) for q in test_questions}
    by_text = [normalise(q) in tests for q in questions]
    rest = [q for q, hit in zip(questions, by_text) if not hit]
    by_embedding = [False] * len(questions)
    if rest and test_questions:
        from kinject.evaluation.retrieval import _embedder, embed

        model = _embedder(embedder)
        similarity = embed(model, rest) @ embed(model, list(test_questions)).T
        near = iter((similarity >= threshold).any(axis=1).tolist())
        by_embedding = [False if hit else bool(next(near)) for hit in by_text]
    return by_text, by_embedding


def build_pairs(candidates_path, selected_path, questions_path, embedder, out, counts_out, *, template: str,
                threshold: float, task: str) -> str:
    """Rule qa_sft_pairs: the training pairs of ``task`` (columns id, chunk_id, question, answer, prompt) and their
    counts JSON. No pair left is one line naming the task and the file, before any training."""
    candidates = read_parquet(candidates_path, columns=["chunk_id", "candidate", "question", "choices", "answer"])
    selected = read_questions(selected_path)
    test = read_questions(questions_path)
    pairs = candidate_pairs(candidates, selected)
    by_text, by_embedding = leaked(pairs["question"].tolist(), test["question"].tolist(), embedder, threshold)
    keep = [not (a or b) for a, b in zip(by_text, by_embedding)]
    kept = pairs[keep].reset_index(drop=True)
    counts = {"candidates": len(candidates), "selected": len(candidates) - len(pairs), "pairs_in": len(pairs),
              "removed_by_text": sum(by_text), "removed_by_embedding": sum(by_embedding), "kept": len(kept),
              "test_questions": len(test), "threshold": threshold}
    if kept.empty:
        raise KinjectError(out, f"task {task}: no QA-SFT training pair left after the leakage check "
                           f"({counts['pairs_in']} unselected candidates, {counts['removed_by_text']} removed by text, "
                           f"{counts['removed_by_embedding']} by embedding)")
    kept["prompt"] = [prompt_of(template, q) for q in kept["question"]]
    write_parquet(out, kept[PAIR_COLUMNS])
    write_json(counts_out, counts)
    return (f"{len(kept)} QA-SFT pairs of {len(pairs)} unselected candidates ({counts['removed_by_text']} removed by "
            f"text, {counts['removed_by_embedding']} by embedding similarity >= {threshold:g})")
