"""The question file (``questions.parquet``) every question source writes and every later stage reads: its
columns and the contract a row must meet, checked on write and on read."""

from __future__ import annotations

import pandas as pd

from kinject.errors import KinjectError
from kinject.io import read_parquet, write_parquet

COLUMNS = ["id", "question", "choices", "answer", "split", "chunk_id"]


def check_questions(df: pd.DataFrame, path) -> pd.DataFrame:
    """The question-file contract every later stage relies on; a violation names the file and row."""
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise KinjectError(path, f"missing column(s) {', '.join(missing)}")
    if df.empty:
        raise KinjectError(path, "has no questions")
    dup = df["id"][df["id"].duplicated()]
    if len(dup):
        raise KinjectError(path, f"duplicate question id {dup.iloc[0]!r}")
    for row in df.itertuples():
        choices = list(row.choices) if row.choices is not None else []
        if not str(row.question or "").strip():
            raise KinjectError(path, f"question {row.id!r} has no text")
        if len(choices) < 2:
            raise KinjectError(path, f"question {row.id!r} has fewer than 2 choices")
        if pd.isna(row.answer) or not 0 <= int(row.answer) < len(choices):
            raise KinjectError(path, f"question {row.id!r} has a missing or out-of-range answer ({row.answer!r})")
        if row.split not in ("test", "dev"):
            raise KinjectError(path, f"question {row.id!r} has split {row.split!r} (expected test or dev)")
    return df


def read_questions(path) -> pd.DataFrame:
    return check_questions(read_parquet(path, allow_empty=True), path)


def write_questions(path, df: pd.DataFrame) -> None:
    df = df[COLUMNS].reset_index(drop=True)
    check_questions(df, path)
    write_parquet(path, df)
