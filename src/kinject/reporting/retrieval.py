"""Retrieval diagnostics: how often each retriever puts a question's source chunk (the chunk a generated question
was written from: the question file's ``chunk_id``) in its top K, and, per RAG cell, whether a wrong answer came
with the source retrieved (a reading error) or without it (a retrieval miss).

Rule retrieval_tables writes, from the question files, every listed retriever's retrieved files, the question
clusters and the RAG cells' per-question records (so no evaluation job changes):

- ``retrieval_ranks.parquet``: per task, retriever and question with a source, ``source_rank`` (1-based rank of
  the source chunk in the retrieved list; empty where it is not within the list's max(retrieval.k));
- ``retrieval.csv`` / ``.md``: recall@K per task, retriever and K, with its 95% interval (Wilson widened by the
  design effect of the questions' clusters: kinject.reporting.stats.clustered_interval), and the count of
  questions left out for having no source (MMLU and table questions);
- ``retrieval_split.csv`` / ``.md``: per RAG cell (K > 0: RAG and FT+RAG of every retriever but the oracle) the
  2x2 of source retrieved within K or not x answered right or wrong, over the questions with a source.
"""

from __future__ import annotations

import logging

import pandas as pd

from kinject.errors import KinjectError
from kinject.evaluation.retrievers import RETRIEVERS, cell_retriever
from kinject.io import read_parquet, write_csv, write_parquet, write_text
from kinject.qa.question_file import read_questions
from kinject.reporting.clusters import with_clusters
from kinject.reporting.records import _cell_of, score_records
from kinject.reporting.report import markdown_table
from kinject.reporting.stats import clustered_interval

log = logging.getLogger(__name__)

RANK_COLUMNS = ["task", "retriever", "question_id", "source_chunk", "source_rank", "depth"]
SPLIT = ["retrieved_right", "retrieved_wrong", "missed_right", "missed_wrong"]


def source_ranks(questions: pd.DataFrame, retrieved: pd.DataFrame, retrieved_file="retrieved") -> pd.DataFrame:
    """Each question with a source chunk (``questions``: a question file's id, chunk_id) and the 1-based rank of
    that chunk in its retrieved list (``retrieved``: question_id, rank 0-based, chunk_id), <NA> where the list
    lacks it; ``depth``: the list's length. A question with a source and no list is one line naming the file."""
    sourced = questions[questions["chunk_id"].notna()]
    ids = sourced["id"].astype(str)
    hits = retrieved.assign(question_id=retrieved["question_id"].astype(str))
    listed = ids[~ids.isin(hits["question_id"])]
    if len(listed):
        raise KinjectError(retrieved_file, f"has no retrieved chunks for question {listed.iloc[0]!r}; retrieved for "
                           "another question file")
    depth = hits.groupby("question_id").size()
    source = pd.DataFrame({"question_id": ids.to_numpy(), "source_chunk": sourced["chunk_id"].astype(str).to_numpy()})
    found = source.merge(hits.assign(chunk_id=hits["chunk_id"].astype(str)),
                         left_on=["question_id", "source_chunk"], right_on=["question_id", "chunk_id"], how="left")
    found = found.groupby("question_id", sort=False)["rank"].min()  # a chunk listed twice: its best rank
    return source.assign(source_rank=(source["question_id"].map(found) + 1).astype("Int64"),
                         depth=source["question_id"].map(depth).astype(int).to_numpy())


def recall_rows(ranks: pd.DataFrame, clusters: pd.Series, ks, n_without_source: int) -> list[dict]:
    """recall@K for each K of one task and retriever's ranks, with its clustered interval (``clusters``:
    question id -> cluster)."""
    rows = []
    for k in ks:
        found = ranks["source_rank"].fillna(0).between(1, k).to_numpy(dtype=bool)
        if len(found):
            stats = clustered_interval(found, ranks["question_id"].map(clusters).to_numpy())
        else:
            stats = {"accuracy": float("nan"), "n_questions": 0, "n_correct": 0, "n_clusters": 0,
                     "design_effect": float("nan"), "ci_low": float("nan"), "ci_high": float("nan")}
        rows.append({"k": k, "recall": stats["accuracy"], "n_questions": stats["n_questions"],
                     "n_found": stats["n_correct"], "n_without_source": n_without_source,
                     "n_clusters": stats["n_clusters"], "design_effect": stats["design_effect"],
                     "ci_low": stats["ci_low"], "ci_high": stats["ci_high"]})
    return rows


def split_row(records: pd.DataFrame, ranks: pd.DataFrame, k: int, records_file="records") -> dict:
    """The 2x2 of one RAG cell at depth ``k`` over the questions with a source: source retrieved within K or
    not x answered right or wrong; with the accuracy on each side and the share of wrong answers that are
    retrieval misses. A question with a source the records lack is one line naming the records."""
    correct = records.set_index("question_id")["correct"]
    absent = ranks["question_id"][~ranks["question_id"].isin(correct.index)]
    if len(absent):
        raise KinjectError(records_file, f"has no record of question {absent.iloc[0]!r}")
    right = correct.reindex(ranks["question_id"]).to_numpy(dtype=bool)
    got = ranks["source_rank"].fillna(0).between(1, k).to_numpy(dtype=bool)
    counts = {"retrieved_right": int((got & right).sum()), "retrieved_wrong": int((got & ~right).sum()),
              "missed_right": int((~got & right).sum()), "missed_wrong": int((~got & ~right).sum())}
    wrong = counts["retrieved_wrong"] + counts["missed_wrong"]
    return {"n_questions": len(ranks), **counts,
            "accuracy_retrieved": counts["retrieved_right"] / got.sum() if got.any() else float("nan"),
            "accuracy_missed": counts["missed_right"] / (~got).sum() if (~got).any() else float("nan"),
            "miss_share_of_errors": counts["missed_wrong"] / wrong if wrong else float("nan")}


def recall_markdown(table: pd.DataFrame) -> str:
    recall = "recall [95% CI]"  # shown as 0.912 [0.80, 0.96] deff 1.35 (markdown_table folds its interval in)
    shown = table.rename(columns={"recall": recall, "ci_low": f"{recall} low", "ci_high": f"{recall} high",
                                  "design_effect": f"{recall} design_effect"})
    shown = shown[["task", "retriever", "k", recall, f"{recall} low", f"{recall} high", f"{recall} design_effect",
                   "n_found", "n_questions", "n_without_source", "n_clusters"]]
    return ("# Retrieval: recall@K of each question's source chunk\n\n"
            "The share of questions whose source chunk (the chunk a generated question was written from) is "
            "among the retriever's top K: how often the model was shown the answer at all. 95% interval: Wilson, "
            "widened by the design effect (deff) where questions share a source chunk. n_without_source: "
            "questions with no source chunk (MMLU, tables), left out. See docs/retrieval.md.\n\n" + markdown_table(shown))


def split_markdown(table: pd.DataFrame) -> str:
    return ("# RAG errors: retrieval misses and reading errors\n\n"
            "Per RAG cell (each retriever's RAG and FT+RAG) and the questions with a source chunk: source retrieved within K or "
            "not x answered right or wrong. retrieved_wrong: reading errors (the answer was in the prompt); "
            "missed_wrong: retrieval misses. miss_share_of_errors: the wrong answers that are retrieval misses. "
            "seed: an extra training seed's model (blank: the run's seed). See docs/retrieval.md.\n\n"
            + markdown_table(table))


def write_retrieval_tables(questions: dict, retrieved: dict, clusters: dict, score_paths, ks, out: dict) -> str:
    """Rule retrieval_tables. ``questions`` and ``clusters``: task -> its question file, its question clusters;
    ``retrieved``: (task, retriever) -> its retrieved file; ``score_paths``: the RAG cells' score files (their
    records beside them); ``ks``: the retrieval depths K > 0; ``out``: ranks (parquet), recall_csv, recall_md,
    split_csv, split_md."""
    frames, recall, cluster_of = [], [], {}
    for task, path in questions.items():
        qs = read_questions(path)
        qs = qs[qs["split"] == "test"]  # the reported questions (an MMLU task's dev split holds its few-shot examples)
        left_out = int(qs["chunk_id"].isna().sum())
        if left_out:
            log.info("%s: %d of %d questions have no source chunk: left out of recall", task, left_out, len(qs))
        cluster_of[task] = with_clusters(pd.DataFrame({"question_id": qs["id"].astype(str)}), clusters[task]) \
            .set_index("question_id")["cluster"]
        for (t, name), file in retrieved.items():
            if t != task:
                continue
            ranks = source_ranks(qs, read_parquet(file, columns=["question_id", "rank", "chunk_id"]), file)
            frames.append(ranks.assign(task=task, retriever=name))
            recall += [{"task": task, "retriever": name, **row}
                       for row in recall_rows(ranks, cluster_of[task], ks, left_out)]
    ranks = pd.concat(frames, ignore_index=True)[RANK_COLUMNS] if frames else pd.DataFrame(columns=RANK_COLUMNS)
    recall = pd.DataFrame(recall)
    split = []
    for path in map(str, score_paths):
        cell = _cell_of(path)
        retriever = cell_retriever(cell["method"])[1]
        if cell["k"] == 0 or RETRIEVERS[retriever].oracle:
            continue  # the oracle's context is the source: nothing to split
        task_ranks = ranks[(ranks["task"] == cell["task"]) & (ranks["retriever"] == retriever)]
        if task_ranks.empty:
            continue  # a task without sourced questions (MMLU): no split
        split.append({**cell, "retriever": retriever, **split_row(score_records(path), task_ranks, cell["k"], path)})
    # seed: an extra training seed's model (kinject.training.seeds); blank, the run's seed (or no training)
    split = pd.DataFrame(split, columns=["model", "task", "format", "method", "retriever", "paraphrase_set", "seed", "k",
                                         "shots", "n_questions", *SPLIT, "accuracy_retrieved", "accuracy_missed",
                                         "miss_share_of_errors"])
    split["paraphrase_set"] = split["paraphrase_set"].astype("Int64")
    split["seed"] = split["seed"].astype("Int64")
    split = split.sort_values(["model", "task", "format", "shots", "method", "paraphrase_set", "seed", "k"],
                              na_position="first").reset_index(drop=True)
    write_parquet(out["ranks"], ranks)
    write_csv(out["recall_csv"], recall, float_format="%.4f")
    write_text(out["recall_md"], recall_markdown(recall))
    write_csv(out["split_csv"], split, float_format="%.4f")
    write_text(out["split_md"], split_markdown(split))
    return (f"recall@K of {ranks.groupby(['task', 'retriever']).ngroups} task x retriever lists "
            f"({len(recall)} rows), {len(split)} RAG cells split")
