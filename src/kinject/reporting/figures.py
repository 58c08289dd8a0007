"""The report's figures, each a PNG with the CSV behind it: accuracy against the paraphrase set (with the trend),
training loss per run, accuracy against K (rule figures)."""

from __future__ import annotations

import re

import pandas as pd

from kinject.io import atomic_path, write_csv
from kinject.reporting.columns import FINETUNED, NAMES, column_label, retrieval_of, with_k0
from kinject.training.methods import METHODS, by_prefix

# a run's loss: results/finetune/{model}/{task}/{method's folder}k{k}/train_loss.csv
FOLDERS = "|".join(re.escape(m.folder) for m in METHODS.values() if m.folder)
LOSS_RE = re.compile(r"finetune/(?P<model>[^/]+)/(?P<task>[^/]+)/(?P<folder>" + FOLDERS
                     + r")?k(?P<k>\d+)/train_loss\.csv$")
PREFIX_OF_FOLDER = {m.folder: m.prefix for m in METHODS.values()}


def read_losses(paths) -> pd.DataFrame:
    """Per-step training loss of every fine-tuning run (…/{model}/{task}/k{k}/train_loss.csv, under the
    method's folder for other methods: …/{task}/{folder}k{k}/…), with its method (the cells' prefix)."""
    frames = []
    for path in map(str, paths):
        m = LOSS_RE.search(path)
        df = pd.read_csv(path)
        frames.append(df.assign(model=m["model"], task=m["task"], method=PREFIX_OF_FOLDER[m["folder"] or ""],
                                paraphrase_set=int(m["k"])))
    return pd.concat(frames, ignore_index=True)


def _save_figure(fig, png) -> None:
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")


def _error_bars(g: pd.DataFrame):
    """Distances from each accuracy down to ci_low and up to ci_high (matplotlib's yerr)."""
    return [(g["accuracy"] - g["ci_low"]).clip(lower=0), (g["ci_high"] - g["accuracy"]).clip(lower=0)]


def _dodge(i: int, n: int, width: float = 0.3) -> float:
    """The sideways offset of series i of n, spread over ``width`` (x units) around 0."""
    return 0.0 if n < 2 else width * (i / (n - 1) - 0.5)


def _trend_label(trends: pd.DataFrame, at: dict) -> str:
    if trends is None or trends.empty:
        return ""
    match = trends
    for column, value in at.items():
        match = match[match[column].astype(str) == str(value)]
    if match.empty:
        return ""
    t = match.iloc[0]
    if pd.isna(t["slope"]):
        return f"; trend: {t['note']}"
    return f"; logit slope {t['slope']:+.3f} [{t['slope_low']:+.3f}, {t['slope_high']:+.3f}]/set, p={t['p_value']:.2g}"


def write_figures(scores_csv, loss_paths, out: dict, trend_csv=None) -> str:
    """(a) accuracy vs paraphrase set with 95% error bars (ci_low, ci_high) and the trend estimate, (b) training loss
    vs step, one panel per run, each with its own epoch boundaries, (c) accuracy vs K with error bars, a series per
    retrieval cell of every retriever, labelled as the tables' columns (RAG, FT-par10+RAG, RAG (bm25), Oracle)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    scores = pd.read_csv(scores_csv)
    if "extra_seed" in scores.columns:  # the run seed's models: one point per cell (the tables average the seeds)
        scores = scores[~scores["extra_seed"].astype(bool)]
    trends = pd.read_csv(trend_csv) if trend_csv is not None else None
    on_sets = [prefix for prefix in FINETUNED if not by_prefix(prefix).unit]  # not a curve of token budgets
    ft = scores[scores["method"].isin(on_sets) & (scores["k"] == 0)]
    setting = ["model", "task", "format", "shots", "method"]
    ft = ft[ft.groupby(setting)["paraphrase_set"].transform("nunique") > 1]
    write_csv(out["paraphrases_csv"], ft[setting + ["paraphrase_set", "accuracy", "n_questions", "ci_low", "ci_high"]])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    series = list(ft.groupby(setting))
    for i, ((model, task, fmt, shots, method), g) in enumerate(series):
        g = g.sort_values("paraphrase_set")
        label = f"{model} / {task} {NAMES[method]} ({fmt}, n={g['n_questions'].iloc[0]})" + _trend_label(
            trends, {"model": model, "task": task, "format": fmt, "shots": shots, "method": method})
        ax.errorbar(g["paraphrase_set"].astype(float) + _dodge(i, len(series)), g["accuracy"], yerr=_error_bars(g),
                    marker="o", capsize=3, label=label)
    ax.set(xlabel="paraphrases per chunk in the FT data (set k)", ylabel="accuracy (95% interval)",
           title="Fine-tuning: accuracy vs number of paraphrases")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=6) if len(ft) else None
    _save_figure(fig, out["paraphrases_png"])
    plt.close(fig)

    _synthetic_figure(plt, scores, out)

    losses = read_losses(loss_paths)
    write_csv(out["loss_csv"], losses)
    runs = list(losses.groupby(["model", "task", "method", "paraphrase_set"]))
    ncols = min(3, len(runs))
    nrows = -(-len(runs) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 2.8 * nrows), squeeze=False)
    for ax, ((model, task, method, p), g) in zip(axes.flat, runs):
        ax.plot(g["step"], g["loss"], lw=1)
        for step in epoch_boundaries(g):
            ax.axvline(step, color="grey", lw=0.6, ls="--")
        ax.set_title(f"{model} / {task} / {NAMES[method]} set {p} ({epoch_count(g)} epochs)", fontsize=8)
        ax.set_xlabel("optimizer step", fontsize=7)
        ax.set_ylabel("training loss", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(runs):]:
        ax.set_visible(False)
    fig.suptitle("Training loss per run (dashed: that run's epoch boundaries)")
    fig.tight_layout()
    _save_figure(fig, out["loss_png"])
    plt.close(fig)

    keys = ["model", "task", "format", "shots", "method", "paraphrase_set"]
    # every retriever's RAG and FT+RAG cells (rag, ftrag, rag-bm25, ftrag-bm25, rag-oracle), each from K = 0 (no
    # retrieval: the Base or FT cell) as the tables' candidates; the oracle's one point at K = 1
    curve = with_k0(scores[retrieval_of(scores["method"])], scores, keys).sort_values(keys + ["k"])
    curve = curve.assign(column=[column_label(m, p) for m, p in zip(curve["method"], curve["paraphrase_set"])])
    write_csv(out["k_csv"], curve[keys + ["column", "k", "accuracy", "n_questions", "ci_low", "ci_high"]])
    fig, ax = plt.subplots(figsize=(7, 4))
    series = list(curve.groupby(keys, dropna=False))
    for i, (key, g) in enumerate(series):  # each series nudged sideways so the error bars do not hide each other
        model, task, fmt, shots, _, _ = key
        ax.errorbar(g["k"] + _dodge(i, len(series)), g["accuracy"], yerr=_error_bars(g), marker=".", capsize=2,
                    label=f"{model}/{task}/{fmt}/{shots}-shot/{g['column'].iloc[0]}")
    ax.set(xlabel="retrieved chunks K", ylabel="accuracy (95% interval)", title="Accuracy vs K")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=5)
    _save_figure(fig, out["k_png"])
    plt.close(fig)
    return "accuracy vs paraphrase set, accuracy vs synthetic tokens, training loss per run, accuracy vs K"


def synthetic_curve(scores: pd.DataFrame) -> pd.DataFrame:
    """Accuracy against synthetic tokens: each method of amounts' cells (synthetic CPT's budgets, K = 0) and, as its 0,
    FT's set 0 of the same setting (the chunks alone), where the setting has both."""
    setting = ["model", "task", "format", "shots"]
    out = []
    for prefix in (p for p in FINETUNED if by_prefix(p).unit):
        tuned = scores[(scores["method"] == prefix) & (scores["k"] == 0)]
        start = scores[(scores["method"] == METHODS["full"].prefix) & (scores["paraphrase_set"] == 0)
                       & (scores["k"] == 0)].merge(tuned[setting].drop_duplicates(), on=setting)
        out += [start.assign(method=prefix, column="FT"),
                tuned.assign(column=[column_label(prefix, p) for p in tuned["paraphrase_set"]])]
    columns = setting + ["method", "column", "tokens", "accuracy", "n_questions", "ci_low", "ci_high"]
    if not out:
        return pd.DataFrame(columns=columns)
    curve = pd.concat(out, ignore_index=True).assign(tokens=lambda d: d["paraphrase_set"].astype(int))
    return curve.sort_values(setting + ["method", "tokens"])[columns].reset_index(drop=True)


def _synthetic_figure(plt, scores: pd.DataFrame, out: dict) -> None:
    curve = synthetic_curve(scores)
    write_csv(out["synthetic_csv"], curve)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (model, task, fmt, shots, method), g in curve.groupby(["model", "task", "format", "shots", "method"]):
        ax.errorbar(g["tokens"], g["accuracy"], yerr=_error_bars(g), marker="o", capsize=3,
                    label=f"{model} / {task} {NAMES[method]} ({fmt}, {shots}-shot, n={g['n_questions'].iloc[0]})")
    ax.set(xlabel="synthetic tokens in the training data (0: FT, the chunks alone)",
           ylabel="accuracy (95% interval)", title="Synthetic continued pre-training: accuracy vs synthetic tokens")
    if len(curve):
        ax.legend(fontsize=6)
    else:
        ax.text(0.5, 0.5, "no synthetic CPT cells in this grid", ha="center", va="center", transform=ax.transAxes)
    _save_figure(fig, out["synthetic_png"])
    plt.close(fig)


def epoch_boundaries(run: pd.DataFrame) -> list:
    """The steps at which a run's logged epoch passes a whole number (its own, from its own log)."""
    whole = run["epoch"].astype(float).apply(lambda e: int(e + 1e-9))
    ends = run.loc[whole.diff().fillna(0) > 0, "step"]
    return ends[ends < run["step"].max()].tolist()  # the end of the last epoch is the end of the run


def epoch_count(run: pd.DataFrame) -> int:
    import math

    return max(1, math.ceil(float(run["epoch"].max()) - 1e-9))
