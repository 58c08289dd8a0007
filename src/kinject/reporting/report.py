"""Result tables in the shape of the paper's: one accuracy per grid cell, with its interval, computed from the
per-question records (kinject.reporting.records); the statistics are kinject.reporting.stats', the comparisons
kinject.reporting.comparisons', the cells' column names kinject.reporting.columns', the figures
kinject.reporting.figures'."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from kinject.errors import KinjectError
from kinject.io import write_csv, write_parquet, write_text
from kinject.reporting.clusters import clusters_of
from kinject.reporting.columns import FINETUNED, NAMES, RETRIEVAL, column_label, retrieval_of, with_k0  # noqa: F401 (theirs)
from kinject.reporting.figures import write_figures  # noqa: F401 (scripts/figures.py imports it from here)
from kinject.reporting.records import read_results
from kinject.reporting.stats import best_of, clustered_interval, cross_fit, seeds_interval, setting_seed
from kinject.training.methods import METHODS, by_prefix

log = logging.getLogger(__name__)

SETTING = ["group", "model", "task", "format", "shots"]
ORACLE = "oracle"
CROSS_FIT = "cross-fit"


def _tuned_columns(columns, method) -> list[str]:
    """A method's fine-tuned columns ({label}, {label}-par{p}), each control's of it (kinject.training.methods:
    matches; FT-steps{p}) right after the column of the set it matches."""
    out = []
    for p in method.sets_in(columns):
        out.append(method.column(p))
        out += [m.column(p) for m in METHODS.values() if m.matches == method.name and p and m.column(p) in columns]
    return out


def choose_k(records: pd.DataFrame, seed: int, selection: str = CROSS_FIT) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The K of every retrieval setting (RAG, FT+RAG per paraphrase set) and the questions scored at it; the
    candidates are K = 0 (no retrieval: :func:`with_k0`) and every K > 0 scored.

    ``cross-fit``: the questions of a task are cut into two seeded halves, whole clusters to a half
    (kinject.reporting.stats.halves, the same for every model, format and method of the task); K is chosen on one half and reported on the other, both
    ways, so every question is reported at a K chosen without it. ``oracle``: the paper's, the best K on all
    the test questions it then reports. Returns (per-question records at the chosen K, one row per choice:
    the setting, selection, chosen_on, reported_on, best_k, n and accuracy on the reported questions).
    """
    keys = SETTING + ["method", "paraphrase_set", "seed", "extra_seed"]  # each training seed's model its own K
    chosen, choices = [], []
    retrieval = with_k0(records[retrieval_of(records["method"])], records, keys)
    for key, g in retrieval.groupby(keys, dropna=False, sort=False):
        at = dict(zip(keys, key, strict=True))
        by_k = g.pivot(index="question_id", columns="k", values="correct")
        if by_k.isna().any().any():
            raise KinjectError(f"records of {at['model']}/{at['task']}", f"the K = {list(by_k.columns)} cells of "
                               f"{column_label(at['method'], at['paraphrase_set'])} hold different questions")
        by_k, cluster_of = by_k.astype(bool), clusters_of(g)  # a cluster's questions fall in one half
        if selection == ORACLE:
            k = best_of(by_k)
            per_q = pd.DataFrame({"question_id": by_k.index, "k": k, "correct": by_k[k].to_numpy()})
            picks = [{"chosen_on": "test (all questions)", "reported_on": "test (all questions)", "k": k,
                      "n": len(by_k), "accuracy": float(by_k[k].mean())}]
        else:
            try:
                per_q, picks = cross_fit(by_k, setting_seed(seed, at["task"]), cluster_of.reindex(by_k.index.astype(str)).to_numpy())
            except KinjectError as err:
                raise KinjectError(f"records of {at['model']}/{at['task']}", err.problem) from None
            for pick in picks:
                pick["accuracy"] = float(per_q.loc[per_q["half"] == pick["reported_on"][-1], "correct"].mean())
            per_q = per_q.drop(columns="half")
        chosen.append(per_q.assign(**at, cluster=cluster_of.reindex(per_q["question_id"].astype(str)).to_numpy()))
        choices += [{**at, "selection": selection, **{("best_k" if c == "k" else c): v for c, v in pick.items()}}
                    for pick in picks]
    columns = keys + ["selection", "chosen_on", "reported_on", "best_k", "n", "accuracy"]
    return (pd.concat(chosen, ignore_index=True) if chosen else records.iloc[:0],
            pd.DataFrame(choices, columns=columns))


def reported(records: pd.DataFrame, seed: int, selection: str = CROSS_FIT) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per question, the correctness of every table column: Base and FT as scored, RAG and FT+RAG at the K
    that ``selection`` chose; each row labelled with its column (and, for retrieval, the K it was scored at).
    Returns (those records, the choices of choose_k)."""
    if "cluster" not in records.columns:  # records read without their clusters: each question its own
        records = records.assign(cluster="question:" + records["question_id"].astype(str))
    if "seed" not in records.columns:  # records of one training seed
        records = records.assign(seed=pd.NA, extra_seed=False)
    chosen, choices = choose_k(records, seed, selection)
    plain = records[~retrieval_of(records["method"])]
    out = pd.concat([plain, chosen], ignore_index=True)
    out["paraphrase_set"] = out["paraphrase_set"].astype("Int64")
    return out.assign(column=[column_label(m, p) for m, p in zip(out["method"], out["paraphrase_set"])]), choices


def _k_label(choices: pd.DataFrame) -> str:
    """The K of a column: one number, or 'K_A/K_B' when the halves chose different K (half A's choice first)."""
    ks = choices.sort_values("chosen_on")["best_k"].astype(int).tolist()
    return str(ks[0]) if len(set(ks)) == 1 else "/".join(map(str, ks))


def cell_interval(g: pd.DataFrame, seed: int) -> dict:
    """A column's accuracy and interval from its per-question rows: kinject.reporting.stats.clustered_interval
    for one model; for a model trained under several seeds (kinject.training.seeds), the mean over the seeds with
    the two-level bootstrap interval (stats.seeds_interval, its resamples seeded by ``seed``)."""
    if g["seed"].nunique() < 2:
        return {**clustered_interval(g["correct"], g["cluster"]), "n_seeds": 1}
    wide = g.pivot(index="question_id", columns="seed", values="correct")
    if wide.isna().any().any():
        raise KinjectError(f"records of {g['model'].iloc[0]}/{g['task'].iloc[0]}", "the training seeds of one cell "
                           "hold different questions")
    clusters = g.drop_duplicates("question_id").set_index("question_id")["cluster"].reindex(wide.index)
    return seeds_interval(wide.T.astype(float).to_numpy(), clusters.to_numpy(), seed=seed)


def group_table(rows: pd.DataFrame, choices: pd.DataFrame, group: str, shots: int, seed: int = 0) -> pd.DataFrame:
    """The paper's table for a group of tasks: per task, scoring format and model, Base / FT / RAG / FT+RAG
    accuracies (RAG at its chosen K), then their K columns, the questions and their clusters (n_questions,
    n_clusters), then each accuracy's 95% interval (``<column> low`` / ``<column> high``: Wilson, widened by
    the design effect, kinject.reporting.stats.clustered_interval) and its design effect
    (``<column> design_effect``). A column trained under several seeds (kinject.training.seeds) is their mean,
    with the two-level bootstrap interval (:func:`cell_interval`) and ``<column> n_seeds``; its K column is the
    run seed's choice."""
    sub = rows[(rows["group"] == group) & (rows["shots"] == shots)]
    # FT on the original chunks (set 0, the paper's FT-reg) and every set that also has an FT+RAG column (the
    # paper's FT-par), per fine-tuning method; the whole sweep over paraphrase sets is a figure. A control's
    # (FT-steps{k}) beside its method's FT-par{k}; a method of amounts' every budget (synthetic CPT's curve)
    for tuned, with_rag in FINETUNED.items():
        if by_prefix(tuned).unit:
            continue
        shown = by_prefix(tuned).matches
        with_rag = FINETUNED[METHODS[shown].prefix] if shown else with_rag
        ft_sets = set(sub.loc[sub["method"] == with_rag, "paraphrase_set"].dropna()) | {0}
        sub = sub[(sub["method"] != tuned) | sub["paraphrase_set"].isin(ft_sets)]
    index = ["task", "format", "model"]
    cells = pd.DataFrame([{**dict(zip(index + ["column"], key, strict=True)),
                           **cell_interval(g, setting_seed(seed, group, shots, *key))}
                          for key, g in sub.groupby(index + ["column"], sort=False)]).rename(
        columns={"ci_low": "low", "ci_high": "high"})
    table = cells.pivot_table(index=index, columns="column", values="accuracy", sort=False)
    tuned = [_tuned_columns(table.columns, m) for m in METHODS.values() if not m.matches]
    rag_of = [c.removesuffix("+RAG") for c in table.columns if c.endswith("+RAG")]  # FT-par2+RAG: FT-par2
    with_rag = [[f"{m.column(p)}+RAG" for p in m.sets_in(rag_of)] for m in METHODS.values() if not m.matches]
    order = ["Base"] + sum(tuned, []) + ["RAG"] + sum(with_rag, [])
    columns = [c for c in order if c in table.columns]
    columns += sorted(c for c in table.columns if c not in columns)  # other retrievers' and the oracle's
    table = table[columns]
    picked = choices[(choices["group"] == group) & (choices["shots"] == shots) & ~choices["extra_seed"].astype(bool)]
    if len(picked):
        picked = picked.assign(column=[column_label(m, p) + " K" for m, p in zip(picked["method"], picked["paraphrase_set"])])
        ks = picked.groupby(index + ["column"], sort=False)[["chosen_on", "best_k"]].apply(_k_label).unstack("column")
        table = table.join(ks[[f"{c} K" for c in columns if f"{c} K" in ks.columns]])
    table = table.join(cells.groupby(index, sort=False)[["n_questions", "n_clusters"]].max())
    bounds = ("low", "high", "design_effect") + (("n_seeds",) if (cells["n_seeds"] > 1).any() else ())
    for bound in bounds:
        ci = cells.pivot_table(index=index, columns="column", values=bound, sort=False, dropna=False)
        table = table.join(ci.reindex(columns=columns).rename(columns=lambda c: f"{c} {bound}"))
    return table.reset_index()


def markdown_table(df: pd.DataFrame) -> str:
    """A table in markdown: a value with an interval (columns ``<c> low``, ``<c> high``) as ``0.897 [0.80, 0.95]``,
    ``deff 1.40`` after it where its design effect (``<c> design_effect``) is not 1 and ``3 seeds`` where it is a mean
    over training seeds (``<c> n_seeds``), those columns folded in; other floats to 3 decimals, missing values
    empty. The result tables' and the retrieval diagnostics' (kinject.reporting.retrieval)."""
    shown = [c for c in df.columns if not c.endswith((" low", " high", " design_effect", " n_seeds"))]

    def fmt(row, column: str) -> str:
        value = row[column]
        if pd.isna(value):
            return ""
        if f"{column} low" in row.index:
            deff = row.get(f"{column} design_effect", float("nan"))
            seeds = row.get(f"{column} n_seeds", 1)
            return f"{value:.3f} [{row[f'{column} low']:.2f}, {row[f'{column} high']:.2f}]" + (
                f" deff {deff:.2f}" if pd.notna(deff) and abs(deff - 1) > 5e-3 else "") + (
                f" {int(seeds)} seeds" if pd.notna(seeds) and seeds > 1 else "")
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    lines += ["| " + " | ".join(fmt(row, c) for c in shown) + " |" for _, row in df.iterrows()]
    return "\n".join(lines) + "\n"


def retrievers_line(columns) -> str:
    """What the other retrievers' and the oracle's columns are, where a table has them (docs/retrieval.md)."""
    if not any(c.endswith(")") or "Oracle" in c for c in columns):
        return ""
    return (" RAG (bm25), (hybrid), (rerank): those retrievers' chunks instead of dense's; Oracle, FT+Oracle: each "
            "question's own source chunk as the context (not the Oracle K below). See docs/retrieval.md.")


def precision_line(scores: pd.DataFrame) -> str:
    """What a table's cells were scored in: ``Scored in fp32 (AVX2, no native bf16); ...``, or, where its cells
    differ, each (precision, hardware) with its count of cells (logged: they should not mix)."""
    kinds = scores.groupby(["precision", "hardware"]).size()
    if len(kinds) == 1:
        (precision, hardware), = kinds.index
        return f"Scored in {precision} ({hardware}); the fine-tuned models' training precision: their training.json."
    mixed = "; ".join(f"{p} ({h}): {n} cells" for (p, h), n in kinds.items())
    log.warning("the cells of one table were scored in different precisions: %s", mixed)
    return f"Scored in different precisions (re-run on one kind of machine to compare cells): {mixed}."


def write_tables(score_paths, groups: dict, out_dir, scores_csv, best_k_csv, *, seed: int,
                 comparisons_csv=None, trend_csv=None) -> str:
    """The result tables of a group (task -> table group) of score files and their records: per group and
    shots a table (CSV, parquet, markdown; the markdown adds the oracle-K table below), scores.csv (every
    cell), best_k.csv (every choice of K, cross-fit and oracle), the paired comparisons and the paraphrase
    trend (kinject.reporting.comparisons)."""
    from kinject.reporting.comparisons import comparisons, comparisons_markdown, paraphrase_trends

    scores, records = read_results(score_paths, groups, run_seed=seed)
    rows, choices = reported(records, seed)
    oracle_rows, oracle_choices = reported(records, seed, ORACLE)
    out_dir = Path(out_dir)
    for (group, shots), _ in scores.groupby(["group", "shots"]):
        table = group_table(rows, choices, group, shots, seed)
        stem = out_dir / f"{group}_{shots}shot"
        write_csv(f"{stem}.csv", table, float_format="%.4f")
        write_parquet(f"{stem}.parquet", table)
        text = (f"# {group}, {shots}-shot: accuracy [95% interval: Wilson, widened by the design effect (deff) "
                "where questions share a source]\n\n"
                "RAG and FT+RAG at the K chosen by cross-fitting (chosen on one half of the questions, reported "
                "on the other; `a/b`: the K each half chose). `n seeds`: the mean over n training seeds, its interval a "
                "two-level bootstrap of seeds and question clusters. See docs/statistics.md. "
                + precision_line(scores[(scores["group"] == group) & (scores["shots"] == shots)])
                + retrievers_line(table.columns) + "\n\n" + markdown_table(table))
        oracle = group_table(oracle_rows, oracle_choices, group, shots, seed)
        text += ("\n## Oracle K (the paper's: the best K on the very questions reported; optimistic)\n\n"
                 + markdown_table(oracle))
        write_text(f"{stem}.md", text)
    write_csv(scores_csv, scores)
    write_csv(best_k_csv, pd.concat([choices, oracle_choices], ignore_index=True))
    n_comparisons = 0
    if comparisons_csv is not None:
        table = comparisons(rows, seed)
        write_csv(comparisons_csv, table)
        write_text(Path(comparisons_csv).with_suffix(".md"), comparisons_markdown(table))
        n_comparisons = len(table)
    if trend_csv is not None:
        write_csv(trend_csv, paraphrase_trends(records))
    return (f"{len(scores)} scores in {scores.groupby(['group', 'shots']).ngroups} tables, "
            f"{n_comparisons} paired comparisons")
