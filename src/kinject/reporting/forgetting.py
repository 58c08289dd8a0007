"""Forgetting: what fine-tuning costs on questions it was not about. Every control question set
(``evaluation.controls``) is scored on each base model and on every fine-tuned checkpoint (of every fine-tuning
method; kinject.paths.CONTROL_SCORE); the table pairs each checkpoint with its base model over the same questions:
both accuracies with their Wilson intervals, the difference with a seeded paired bootstrap 95% interval, the
discordant counts, the exact McNemar p-value and the Benjamini-Hochberg adjusted p-value across every row
(kinject.reporting.stats, as kinject.reporting.comparisons).
"""

from __future__ import annotations

import re

import pandas as pd

from kinject.errors import KinjectError
from kinject.io import write_csv, write_text
from kinject.reporting.columns import column_label
from kinject.reporting.records import score_records
from kinject.reporting.stats import bh_table, mcnemar_exact, paired_bootstrap, setting_seed, wilson
from kinject.training.methods import METHODS

PREFIXES = "|".join(m.prefix for m in METHODS.values())  # the fine-tuned cells' prefixes (kinject.training.methods)
CONTROL_RE = re.compile(r"controls/scores/(?P<model>[^/]+)/(?:base|(?P<task>[^/]+)/(?P<method>" + PREFIXES
                        + r")-p(?P<p>\d+))"
                        r"/(?P<control>[^/]+)\.json$")
COLUMNS = ["model", "control", "task", "method", "paraphrase_set", "checkpoint", "n", "accuracy_base",
           "base_low", "base_high", "accuracy_ft", "ft_low", "ft_high", "delta", "delta_low", "delta_high",
           "ft_only", "base_only", "p_mcnemar", "p_bh"]


def read_control_records(paths) -> pd.DataFrame:
    """One row per question per control score file: model, control, task / method / paraphrase set of the
    checkpoint (none for the base model), question_id, correct. A score file whose accuracy its records do not
    give is an error naming it."""
    frames = []
    for path in map(str, paths):
        m = CONTROL_RE.search(path)
        if not m:
            raise KinjectError(path, "not a control score file (controls/scores/{model}/base/{control}.json or "
                                     f"controls/scores/{{model}}/{{task}}/{{{PREFIXES}}}-p{{n}}/{{control}}.json)")
        frames.append(score_records(path).assign(
            model=m["model"], control=m["control"], task=m["task"] or "", method=m["method"] or "base",
            paraphrase_set=int(m["p"]) if m["p"] else -1))
    if not frames:
        raise KinjectError("evaluation.controls", "no control score files")
    return pd.concat(frames, ignore_index=True)


def forgetting_table(records: pd.DataFrame, seed: int) -> pd.DataFrame:
    """One row per (model, control, fine-tuned checkpoint) against that model's base (read_control_records)."""
    out = []
    for (model, control), g in records.groupby(["model", "control"], sort=True):
        base = g[g["method"] == "base"].set_index("question_id")["correct"]
        if base.empty:
            raise KinjectError(f"control {control}", f"no score of the base model {model}")
        tuned = g[g["method"] != "base"]
        for (task, method, p), c in tuned.groupby(["task", "method", "paraphrase_set"], sort=True):
            ft = c.set_index("question_id")["correct"]
            if set(ft.index) != set(base.index):
                raise KinjectError(f"control {control}", f"{model} {task} {column_label(method, p)} was scored on "
                                   "other questions than the base model")
            ft = ft.reindex(base.index)
            low, high = paired_bootstrap(ft, base, seed=setting_seed(seed, model, control, task, method, p))
            ft_only, base_only, p_value = mcnemar_exact(ft, base)
            n = len(base)
            out.append({"model": model, "control": control, "task": task, "method": method, "paraphrase_set": p,
                        "checkpoint": f"{task} {column_label(method, p)}", "n": n,
                        "accuracy_base": base.mean(), **dict(zip(("base_low", "base_high"), wilson(int(base.sum()), n))),
                        "accuracy_ft": ft.mean(), **dict(zip(("ft_low", "ft_high"), wilson(int(ft.sum()), n))),
                        "delta": ft.mean() - base.mean(), "delta_low": low, "delta_high": high,
                        "ft_only": ft_only, "base_only": base_only, "p_mcnemar": p_value})
    return bh_table(out, COLUMNS, "p_mcnemar")


def forgetting_markdown(table: pd.DataFrame) -> str:
    lines = ["# Forgetting: control questions outside every knowledge base", "",
             "Accuracy [Wilson 95%] of each fine-tuned checkpoint on each control question set (0-shot, no "
             "retrieval) against its base model's, over the same questions. Δ = fine-tuned − base, with a paired "
             "bootstrap 95% interval; ft only / base only: questions only that model got right; exact McNemar p, "
             "and p adjusted by Benjamini-Hochberg across every row. See docs/own-corpus.md.", "",
             "| model | control | checkpoint | n | base | fine-tuned | Δ [95%] | ft only | base only | p | p (BH) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples(index=False):
        lines.append(f"| {r.model} | {r.control} | {r.checkpoint} | {r.n} | {r.accuracy_base:.3f} "
                     f"[{r.base_low:.2f}, {r.base_high:.2f}] | {r.accuracy_ft:.3f} [{r.ft_low:.2f}, {r.ft_high:.2f}] | "
                     f"{r.delta:+.3f} [{r.delta_low:+.2f}, {r.delta_high:+.2f}] | {r.ft_only} | {r.base_only} | "
                     f"{r.p_mcnemar:.3g} | {r.p_bh:.3g} |")
    return "\n".join(lines) + "\n"


def write_forgetting(score_paths, csv, md, *, seed: int) -> str:
    """Rule forgetting: the table as CSV and markdown; one line for the console."""
    table = forgetting_table(read_control_records(score_paths), seed)
    write_csv(csv, table)
    write_text(md, forgetting_markdown(table))
    worst = table.loc[table["delta"].idxmin()] if len(table) else None
    return f"{len(table)} checkpoint-control pairs" + (
        f"; largest drop {worst['delta']:+.3f} ({worst['checkpoint']}, {worst['control']})" if worst is not None else "")
