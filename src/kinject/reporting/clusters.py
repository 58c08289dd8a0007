"""Which questions share a source, so the statistics (kinject.reporting.stats) count them as one cluster, not
as independent draws: a generated question's source chunk (two questions are kept per chunk), a table
question's group where the task names a group column (``questions.group_column``), any other question (MMLU,
a table without a group column) itself.

Rule question_clusters writes a task's clusters (kinject.paths.QUESTION_CLUSTERS: question_id, cluster) from
its question file, so no evaluation job changes; the tables join them to the per-question records
(kinject.reporting.records).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from kinject.errors import KinjectError
from kinject.io import read_parquet, write_parquet
from kinject.qa.question_file import read_questions

log = logging.getLogger(__name__)

COLUMNS = ["question_id", "cluster"]


def question_clusters(questions, out, table=None, group_column=None) -> str:
    """Rule question_clusters: each question of ``questions`` (a question file) with its cluster, written to
    ``out``: ``group:<value>`` of the table's ``group_column`` where one is named (``table``: the question
    table), else ``chunk:<chunk_id>`` where the question has a source chunk, else ``question:<id>``."""
    df = read_questions(questions)
    ids = df["id"].astype(str)
    if group_column:
        from kinject.knowledge.corpus import table_question_groups

        groups = table_question_groups(table, group_column)
        missing = ids[~ids.isin(groups.index)]
        if len(missing):
            raise KinjectError(table, f"has no row for question {missing.iloc[0]!r} of {questions}")
        cluster = "group:" + groups.reindex(ids).to_numpy(dtype=object)
        source = f"column {group_column!r}"
    else:
        chunk = df["chunk_id"]
        cluster = np.where(chunk.notna(), "chunk:" + chunk.astype(str), "question:" + ids)
        source = "source chunks" if chunk.notna().any() else "one question each"
    frame = pd.DataFrame({"question_id": ids.to_numpy(), "cluster": cluster})
    write_parquet(out, frame)
    return f"{len(frame)} questions in {frame['cluster'].nunique()} clusters ({source})"


def read_clusters(path) -> pd.Series:
    """A task's clusters (question id -> cluster); a question listed twice is one line naming the file."""
    df = read_parquet(path, columns=COLUMNS)
    if df["question_id"].duplicated().any():
        raise KinjectError(path, f"question {df['question_id'][df['question_id'].duplicated()].iloc[0]!r} "
                           "is listed twice")
    return pd.Series(df["cluster"].astype(str).to_numpy(), index=df["question_id"].astype(str), name="cluster")


def with_clusters(records: pd.DataFrame, clusters_file, cache: dict | None = None) -> pd.DataFrame:
    """``records`` (question_id, ...) with each question's ``cluster`` from ``clusters_file``
    (kinject.paths.clusters_path of the score file). Without that file (tables built outside the workflow)
    each question is its own cluster, and a warning says so; a record whose question the file lacks is one
    line naming the file."""
    path = str(clusters_file)
    cache = {} if cache is None else cache
    if path not in cache:
        cache[path] = read_clusters(path) if Path(path).exists() else None
        if cache[path] is None:
            log.warning("%s not found: every question is its own cluster", path)
    if cache[path] is None:
        return records.assign(cluster="question:" + records["question_id"].astype(str))
    cluster = records["question_id"].astype(str).map(cache[path])
    if cluster.isna().any():
        raise KinjectError(path, f"has no cluster for question {records['question_id'][cluster.isna()].iloc[0]!r}")
    return records.assign(cluster=cluster.to_numpy())


def clusters_of(records: pd.DataFrame) -> pd.Series:
    """Question id -> cluster of per-question records (their ``cluster`` column; each question its own
    where the records have none)."""
    ids = records["question_id"].astype(str)
    cluster = records["cluster"].astype(str) if "cluster" in records.columns else "question:" + ids
    return pd.Series(np.asarray(cluster), index=ids.to_numpy()).groupby(level=0).first()
