"""Result tables and figures in the shape of the paper's: one accuracy per grid cell, aggregated."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pandas as pd

from kinject.errors import KinjectError
from kinject.io import atomic_path, write_csv, write_parquet, write_text

log = logging.getLogger(__name__)

SCORE_RE = re.compile(r"scores/(?P<model>[^/]+)/(?P<task>[^/]+)/(?P<method>[^/_]+)_k(?P<k>\d+)_(?P<shots>\d+)shot"
                      r"_(?P<format>[a-z]+)\.json$")


def read_scores(paths, groups: dict) -> pd.DataFrame:
    """Long table: one row per score file (model, task, group, format, method, paraphrase set, K, shots,
    accuracy)."""
    rows = []
    for path in map(str, paths):
        m = SCORE_RE.search(path)
        if not m:
            raise KinjectError(path, "not a score file path (scores/{model}/{task}/{method}_k{K}_{shots}shot_{format}.json)")
        try:
            score = json.loads(Path(path).read_text())
            acc = float(score["accuracy"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise KinjectError(path, f"not a score file ({exc})") from None
        if not 0.0 <= acc <= 1.0:
            raise KinjectError(path, f"accuracy {acc} is outside [0, 1]")
        method = m["method"]
        rows.append({"model": m["model"], "task": m["task"], "group": groups[m["task"]], "format": m["format"],
                     "method": method.split("-p")[0], "paraphrase_set": int(method.split("-p")[1]) if "-p" in method else None,
                     "k": int(m["k"]), "shots": int(m["shots"]), "accuracy": acc,
                     "n_questions": score.get("n_questions")})
    df = pd.DataFrame(rows)
    df["paraphrase_set"] = df["paraphrase_set"].astype("Int64")
    return df.sort_values(["model", "task", "format", "shots", "method", "paraphrase_set", "k"]).reset_index(drop=True)


def _label(method: str, p) -> str:
    if method in ("base", "rag"):
        return {"base": "Base", "rag": "RAG"}[method]
    ft = "FT" if int(p) == 0 else f"FT-par{int(p)}"
    return ft if method == "ft" else f"{ft}+RAG"


def best_k(scores: pd.DataFrame) -> pd.DataFrame:
    """Best K per setting (model, task, format, shots, method, paraphrase set) among the retrieval methods."""
    rag = scores[scores["method"].isin(["rag", "ftrag"])]
    keys = ["model", "task", "format", "shots", "method", "paraphrase_set"]
    idx = rag.groupby(keys, dropna=False)["accuracy"].idxmax()
    return rag.loc[idx, keys + ["k", "accuracy"]].rename(columns={"k": "best_k"}).reset_index(drop=True)


def _labelled(df: pd.DataFrame, suffix: str = "") -> pd.DataFrame:
    return df.assign(column=[_label(m, p) + suffix for m, p in zip(df["method"], df["paraphrase_set"])])


def group_table(scores: pd.DataFrame, group: str, shots: int) -> pd.DataFrame:
    """The paper's table for a group of tasks: per task, scoring format and model, Base / FT / RAG / FT+RAG (RAG
    at its best K)."""
    sub = scores[(scores["group"] == group) & (scores["shots"] == shots)]
    best = best_k(sub)
    plain = sub[sub["method"].isin(["base", "ft"])]
    cells = pd.concat([_labelled(plain), _labelled(best)])
    # FT on the original chunks (set 0, the paper's FT-reg) and every set that also has an FT+RAG column (the
    # paper's FT-par); the whole sweep over paraphrase sets is a figure
    ft_sets = set(best.loc[best["method"] == "ftrag", "paraphrase_set"].dropna()) | {0}
    cells = cells[(cells["method"] != "ft") | cells["paraphrase_set"].isin(ft_sets)]
    index = ["task", "format", "model"]
    table = cells.pivot_table(index=index, columns="column", values="accuracy", sort=False)
    order = ["Base"] + sorted({c for c in table.columns if c.startswith("FT") and "+" not in c}) + ["RAG"] \
        + sorted({c for c in table.columns if c.endswith("+RAG")})
    table = table[[c for c in order if c in table.columns]]
    ks = _labelled(best, " K").pivot_table(index=index, columns="column", values="best_k", sort=False)
    ks = ks[[f"{c} K" for c in table.columns if f"{c} K" in ks.columns]]
    return table.join(ks).reset_index()


def _markdown(df: pd.DataFrame) -> str:
    def fmt(column: str, value) -> str:
        if pd.isna(value):
            return ""
        if column.endswith(" K"):
            return str(int(value))
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(fmt(c, v) for c, v in zip(df.columns, row)) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def write_tables(score_paths, groups: dict, out_dir, scores_csv, best_k_csv) -> str:
    """The result tables of a group (task -> table group) of score files."""
    scores = read_scores(score_paths, groups)
    out_dir = Path(out_dir)
    for (group, shots), _ in scores.groupby(["group", "shots"]):
        table = group_table(scores, group, shots)
        stem = out_dir / f"{group}_{shots}shot"
        write_csv(f"{stem}.csv", table, float_format="%.4f")
        write_parquet(f"{stem}.parquet", table)
        write_text(f"{stem}.md", f"# {group}, {shots}-shot: accuracy\n\n" + _markdown(table))
    write_csv(scores_csv, scores)
    write_csv(best_k_csv, best_k(scores))
    return f"{len(scores)} scores in {scores.groupby(['group', 'shots']).ngroups} tables"


def read_losses(paths) -> pd.DataFrame:
    """Per-step training loss of every fine-tuning run (…/{model}/{task}/k{k}/train_loss.csv)."""
    frames = []
    for path in map(str, paths):
        m = re.search(r"finetune/(?P<model>[^/]+)/(?P<task>[^/]+)/k(?P<k>\d+)/train_loss\.csv$", path)
        df = pd.read_csv(path)
        frames.append(df.assign(model=m["model"], task=m["task"], paraphrase_set=int(m["k"])))
    return pd.concat(frames, ignore_index=True)


def _save_figure(fig, png) -> None:
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")


def write_figures(scores_csv, loss_paths, out: dict) -> str:
    """(a) accuracy vs paraphrase set, (b) training loss vs step with epoch boundaries, (c) accuracy vs K."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = pd.read_csv(scores_csv)
    ft = scores[(scores["method"] == "ft") & (scores["k"] == 0)]
    setting = ["model", "task", "format", "shots"]
    ft = ft[ft.groupby(setting)["paraphrase_set"].transform("nunique") > 1]
    write_csv(out["paraphrases_csv"], ft[setting + ["paraphrase_set", "accuracy"]])
    fig, ax = plt.subplots(figsize=(6, 4))
    for (model, task, fmt, shots), g in ft.groupby(setting):
        ax.plot(g["paraphrase_set"], g["accuracy"], marker="o", label=f"{model} / {task} ({fmt})")
    ax.set(xlabel="paraphrases per chunk in the FT data (set k)", ylabel="accuracy",
           title="Fine-tuning: accuracy vs number of paraphrases")
    ax.legend(fontsize=7) if len(ft) else None
    _save_figure(fig, out["paraphrases_png"])
    plt.close(fig)

    losses = read_losses(loss_paths)
    write_csv(out["loss_csv"], losses)
    fig, ax = plt.subplots(figsize=(7, 4))
    longest = losses[losses["paraphrase_set"] == losses.groupby(["model", "task"])["paraphrase_set"].transform("max")]
    for (model, task), g in longest.groupby(["model", "task"]):
        ax.plot(g["step"], g["loss"], label=f"{model} / {task} (set {g['paraphrase_set'].iloc[0]})")
        ends = g.loc[g["epoch"].apply(int).diff().fillna(0) > 0, "step"]
        for step in ends:
            ax.axvline(step, color="grey", lw=0.5, ls="--")
    ax.set(xlabel="optimizer step", ylabel="training loss", title="Training loss (dashed: epoch boundaries)")
    ax.legend(fontsize=7)
    _save_figure(fig, out["loss_png"])
    plt.close(fig)

    keys = ["model", "task", "format", "shots", "method", "paraphrase_set"]
    rag = scores[scores["method"].isin(["rag", "ftrag"])]
    anchors = pd.concat([scores[scores["method"] == "base"].assign(method="rag"),
                         scores[scores["method"] == "ft"].assign(method="ftrag")])  # K = 0: no retrieval
    curve = pd.concat([anchors.merge(rag[keys].drop_duplicates(), on=keys), rag]).sort_values(keys + ["k"])
    write_csv(out["k_csv"], curve[keys + ["k", "accuracy"]])
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, g in curve.groupby(keys, dropna=False):
        model, task, fmt, shots, method, p = key
        ax.plot(g["k"], g["accuracy"], marker=".", label=f"{model}/{task}/{fmt}/{shots}-shot/{_label(method, p)}")
    ax.set(xlabel="retrieved chunks K", ylabel="accuracy", title="Accuracy vs K")
    ax.legend(fontsize=5)
    _save_figure(fig, out["k_png"])
    plt.close(fig)
    return "accuracy vs paraphrase set, training loss vs step, accuracy vs K"
