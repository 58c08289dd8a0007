"""The per-question records of the score files (kinject.paths.RECORDS_PATTERN), each question with its
cluster (kinject.reporting.clusters), and every cell's accuracy with its interval (kinject.reporting.stats
.clustered_interval): what the tables, comparisons and figures are computed from."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from kinject.errors import KinjectError
from kinject.io import read_parquet
from kinject.paths import clusters_path, records_path
from kinject.reporting.clusters import with_clusters
from kinject.reporting.stats import clustered_interval
from kinject.training.seeds import untag

# a cell's method: base, rag, {prefix}-p{k}, or an extra training seed's {prefix}-p{k}_s{seed} (kinject.training.seeds)
SCORE_RE = re.compile(r"scores/(?P<model>[^/]+)/(?P<task>[^/]+)/(?P<method>[^/_]+(?:_s\d+)?)_k(?P<k>\d+)_"
                      r"(?P<shots>\d+)shot_(?P<format>[a-z]+)\.json$")


def _cell_of(path: str, run_seed: int | None = None) -> dict:
    """A score file's cell from its path; ``seed``: its model's training seed (an extra seed's from its tag, the run's
    seed ``run_seed`` for the other fine-tuned cells, None for base and RAG), ``extra_seed``: whether it is tagged."""
    m = SCORE_RE.search(path)
    if not m:
        raise KinjectError(path, "not a score file path (scores/{model}/{task}/{method}_k{K}_{shots}shot_{format}.json)")
    method = m["method"]
    p, seed = untag(method.split("-p")[1]) if "-p" in method else (None, None)
    return {"model": m["model"], "task": m["task"], "format": m["format"], "method": method.split("-p")[0],
            "paraphrase_set": p, "k": int(m["k"]), "shots": int(m["shots"]),
            "seed": seed if seed is not None else (run_seed if p is not None else None), "extra_seed": seed is not None}


def score_records(path) -> pd.DataFrame:
    """A score file's per-question records (question_id, correct; kinject.paths.records_path), checked to give
    the accuracy the score file states: a score file, its accuracy in [0, 1], no question twice."""
    try:
        acc = float(json.loads(Path(path).read_text())["accuracy"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise KinjectError(path, f"not a score file ({exc})") from None
    if not 0.0 <= acc <= 1.0:
        raise KinjectError(path, f"accuracy {acc} is outside [0, 1]")
    records_file = records_path(path)
    records = read_parquet(records_file, columns=["question_id", "correct"])
    if records["question_id"].duplicated().any():
        raise KinjectError(records_file, "a question id repeats")
    n, n_correct = len(records), int(records["correct"].astype(bool).sum())
    if abs(n_correct / n - acc) > 1e-9:
        raise KinjectError(path, f"accuracy {acc} but its {n} records ({records_file}) give {n_correct / n}")
    return pd.DataFrame({"question_id": records["question_id"].astype(str), "correct": records["correct"].astype(bool)})


def ran_in(path) -> dict:
    """The precision a score file's job ran in and on what (kinject.precision; "unrecorded" in older files)."""
    scores = json.loads(Path(path).read_text())
    return {"precision": scores.get("precision", "unrecorded"), "hardware": scores.get("hardware", "unrecorded")}


def read_results(paths, groups: dict, run_seed: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(scores, records) of score files and the per-question records beside each (kinject.paths.records_path).

    ``scores``: one row per score file (model, task, group, format, method, paraphrase set, K, shots, accuracy,
    n_questions, n_correct, n_clusters, design_effect and the 95% interval ci_low, ci_high: Wilson, widened
    by the design effect where questions share a source), computed from its records, and the precision it
    was scored in and the hardware (:func:`ran_in`), and its model's training seed (seed, extra_seed: a model of an
    extra seed of finetune.seeds; ``run_seed``, the run's seed, for the other fine-tuned cells); a score file whose
    accuracy its records do not give is an error. ``records``: one row per question per cell, with the question's cluster (its task's
    kinject.paths.QUESTION_CLUSTERS file; each question its own where there is none).
    """
    rows, frames, cache = [], [], {}
    for path in map(str, paths):
        cell = _cell_of(path, run_seed)
        records = with_clusters(score_records(path), clusters_path(path), cache)
        cell["group"] = groups[cell["task"]]
        rows.append({**cell, **clustered_interval(records["correct"], records["cluster"]), **ran_in(path)})
        frames.append(records.assign(**cell))
    order = ["model", "task", "format", "shots", "method", "paraphrase_set", "k"]
    scores = pd.DataFrame(rows)
    records = pd.concat(frames, ignore_index=True)
    for frame in (scores, records):
        frame["paraphrase_set"] = frame["paraphrase_set"].astype("Int64")
        frame["seed"] = frame["seed"].astype("Int64")
    scores = scores[["model", "task", "group", "format", "method", "paraphrase_set", "k", "shots", "seed", "extra_seed",
                     "accuracy", "n_questions", "n_correct", "n_clusters", "design_effect", "ci_low", "ci_high",
                     "precision", "hardware"]]
    return scores.sort_values(order + ["seed"]).reset_index(drop=True), records


def read_scores(paths, groups: dict) -> pd.DataFrame:
    """The ``scores`` of read_results."""
    return read_results(paths, groups)[0]
