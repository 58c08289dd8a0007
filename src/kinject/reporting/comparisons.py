"""The paper's contrasts as paired comparisons over the same questions, and the paraphrase-sweep trend.

Per task, model, scoring format and shots: RAG vs Base, FT vs Base, RAG vs FT, FT-par{k}+RAG vs RAG (every
set with an FT+RAG model) and FT-par{k} vs FT (every paraphrase set k > 0); with other retrievers
(retrieval.retrievers) each one's RAG and FT+RAG against dense's, and RAG against the oracle (the source chunk as
the context: :func:`retriever_contrasts`); with another fine-tuning method
(kinject.training.methods), the same for its columns and it vs FT at each paraphrase set; with the steps-matched
control of set k (FT-steps{k}: the chunks alone, for set k's optimizer steps), FT-par{k} vs FT-steps{k} (the
paraphrases net of training amount) and FT-steps{k} vs FT (the steps alone). Each row: both
accuracies, their difference with a seeded cluster bootstrap 95% interval (whole clusters of questions resampled:
kinject.reporting.clusters), its design effect and the clusters, the discordant counts, the exact McNemar p-value,
the p-value of the test that counts clusters (kinject.reporting.stats.paired_test: the exact McNemar where each
cluster holds one question, Durkalski's clustered McNemar otherwise) and its Benjamini-Hochberg adjusted
p-value across every row of the grid. RAG and FT+RAG are at the K chosen by
cross-fitting (kinject.reporting.report.reported), so the comparison carries no selection advantage.

Where a fine-tuned column was trained under several seeds (kinject.training.seeds), its comparisons are paired
within seed (:func:`seed_pairs`): two trained columns on the seeds both have, an untrained one (Base, RAG)
against every seed of the other; Δ is the mean over those seeds of the per-seed difference, its interval and p
the two-level bootstrap's (kinject.reporting.stats.seeds_paired: seeds, then clusters of questions), a only /
b only summed over the seeds, and no McNemar p (test: two-level bootstrap). A comparison with one seed pair is
the one-seed comparison above, unchanged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kinject.errors import KinjectError
from kinject.reporting.clusters import clusters_of
from kinject.reporting.stats import (
    bh_table,
    design_effect,
    mcnemar_exact,
    paired_bootstrap,
    paired_test,
    paraphrase_trend,
    seeds_paired,
    setting_seed,
)
from kinject.training.methods import METHODS, by_prefix

SETTING = ["group", "model", "task", "format", "shots"]
COLUMNS = SETTING + ["contrast", "a", "b", "n", "n_clusters", "n_seeds", "accuracy_a", "accuracy_b", "delta", "delta_low",
                     "delta_high", "design_effect", "a_only", "b_only", "p_mcnemar", "test", "p_clustered", "p_bh"]


def contrasts(columns) -> list[tuple[str, str]]:
    """(a, b) pairs among a setting's table columns (labels as kinject.reporting.report._label writes them)."""
    have = set(columns)
    # the methods' labels (not a control's): the first, full fine-tuning (FT), is the others' reference
    labels = [m.label for m in METHODS.values() if not m.matches]
    pairs = [("RAG", "Base")] + [pair for name in labels for pair in ((name, "Base"), ("RAG", name))]
    pairs += [(c, "RAG") for c in sorted(have) if c.endswith("+RAG")]
    for m in (m for m in METHODS.values() if not m.matches and not m.unit):
        pairs += [(m.column(p), m.label) for p in m.sets_in(have) if p]
    for name in labels[1:]:
        pairs += [(c.replace(labels[0], name, 1), c) for c in sorted(have) if c.startswith(labels[0]) and "+" not in c]
    for m in (m for m in METHODS.values() if m.unit):  # a method of amounts (SynCPT-20000tok): vs FT, Base; RAG vs it
        amounts = [m.column(p) for p in m.sets_in(have)]
        pairs += [pair for c in amounts for pair in ((c, labels[0]), (c, "Base"), ("RAG", c))]
    for control in (m for m in METHODS.values() if m.matches):  # the steps-matched control of set k (FT-steps{k})
        method = METHODS[control.matches]
        sets = [p for p in control.sets_in(have) if p]
        pairs += [pair for p in sets
                  for pair in ((method.column(p), control.column(p)), (control.column(p), method.label))]
    pairs += retriever_contrasts(have)
    return [(a, b) for a, b in pairs if a in have and b in have]


def retriever_contrasts(have: set) -> list[tuple[str, str]]:
    """Another retriever's columns against the paper's dense ones (RAG (bm25) vs RAG, RAG (bm25) vs Base,
    FT-par{k}+RAG (bm25) vs FT-par{k}+RAG), and RAG against its ceiling, the oracle (the source chunk as the
    context): RAG vs Oracle (what retrieval costs), each other retriever's RAG vs Oracle, Oracle vs Base,
    FT-par{k}+RAG vs FT-par{k}+Oracle."""
    pairs = []
    for c in sorted(have):
        if c.endswith(")") and " (" in c:
            plain = c.rsplit(" (", 1)[0]
            pairs += [(c, plain)] + ([(c, "Base"), (c, "Oracle")] if plain == "RAG" else [])
    pairs += [("RAG", "Oracle"), ("Oracle", "Base")]
    pairs += [(c.removesuffix("Oracle") + "RAG", c) for c in sorted(have) if c.endswith("+Oracle")]
    return pairs


def seed_pairs(a_seeds, b_seeds) -> list[tuple]:
    """The (seed of a, seed of b) pairs a comparison is paired within: an untrained column's one model (its seed
    None: Base, RAG) with every seed of the other; two trained columns on the seeds both have, in order."""
    a_seeds, b_seeds = list(a_seeds), list(b_seeds)
    if a_seeds == [None]:
        return [(None, s) for s in b_seeds]
    if b_seeds == [None]:
        return [(s, None) for s in a_seeds]
    return [(s, s) for s in sorted(set(a_seeds) & set(b_seeds))]


def _by_seed(g: pd.DataFrame, at: dict) -> tuple[dict, pd.Index, np.ndarray]:
    """A setting's per-question correctness: {column: {seed (None: untrained): 0/1 Series}}, every series on the
    same sorted question ids (an error naming the columns where a cell lacks some), and their clusters."""
    ids = pd.Index(sorted(g["question_id"].unique()))
    seed = g["seed"].astype(object).where(g["seed"].notna(), None) if "seed" in g.columns else pd.Series(None, g.index)
    out, lacking = {}, []
    for (column, s), cell in g.assign(_seed=seed.to_numpy()).groupby(["column", "_seed"], dropna=False, sort=True):
        series = cell.set_index("question_id")["correct"].reindex(ids)
        if series.isna().any():
            lacking.append(column)
        out.setdefault(column, {})[None if pd.isna(s) else int(s)] = series
    if lacking:
        raise KinjectError(f"records of {at['model']}/{at['task']}", "the cells of one setting hold different "
                           f"questions ({', '.join(sorted(set(lacking)))} lack some)")
    return out, ids, clusters_of(g).reindex(ids.astype(str)).to_numpy()


def comparisons(rows: pd.DataFrame, seed: int) -> pd.DataFrame:
    """One row per contrast per setting from the reported per-question records (kinject.reporting.report.reported:
    question_id, correct, column, the setting's columns and, where read, cluster and seed); BH adjusts the
    p_clustered of all rows together."""
    out = []
    for key, g in rows.groupby(SETTING, sort=True):
        at = dict(zip(SETTING, key, strict=True))
        cells, ids, clusters = _by_seed(g, at)
        for a, b in contrasts(cells):
            pairs = seed_pairs(cells[a], cells[b])
            xa = np.stack([cells[a][sa].astype(bool).to_numpy() for sa, _ in pairs])
            xb = np.stack([cells[b][sb].astype(bool).to_numpy() for _, sb in pairs])
            diff = xa.astype(float) - xb.astype(float)
            row = {**at, "contrast": f"{a} vs {b}", "a": a, "b": b, "n": len(ids), "n_clusters": len(set(clusters)),
                   "n_seeds": len(pairs), "accuracy_a": xa.mean(), "accuracy_b": xb.mean(), "delta": diff.mean(),
                   "design_effect": design_effect(diff.mean(axis=0), clusters),
                   "a_only": int((xa & ~xb).sum()), "b_only": int((~xa & xb).sum())}
            if len(pairs) == 1:
                low, high = paired_bootstrap(xa[0], xb[0], seed=setting_seed(seed, *key, a, b), clusters=clusters)
                p_clustered, test = paired_test(xa[0], xb[0], clusters)
                p = mcnemar_exact(xa[0], xb[0])[2]
            else:
                low, high, p_clustered = seeds_paired(diff, clusters, seed=setting_seed(seed, *key, a, b))
                p, test = float("nan"), "two-level bootstrap"
            out.append({**row, "delta_low": low, "delta_high": high, "p_mcnemar": p, "test": test,
                        "p_clustered": p_clustered})
    return bh_table(out, COLUMNS, "p_clustered")


def comparisons_markdown(table: pd.DataFrame) -> str:
    lines = ["# Paired comparisons (the same questions)", "",
             "Δ = accuracy of a − accuracy of b, with a paired bootstrap 95% interval resampling clusters of "
             "questions (questions of one source chunk or group together; deff: the design effect of Δ); "
             "a only / b only: questions only a (only b) got right; p: the exact McNemar test where every cluster "
             "is one question, Durkalski's clustered McNemar (†) otherwise, the two-level bootstrap of seeds and "
             "clusters (‡) where a column was trained under several seeds (Δ then the mean over the seeds of the "
             "within-seed difference; a only / b only summed over them), and p adjusted by Benjamini-Hochberg "
             "across every row. RAG and FT+RAG at the cross-fitted K. See docs/statistics.md.",
             "", "| task | format | shots | model | contrast | n (clusters) | Δ [95%] | deff | a only | b only | p | "
             "p (BH) |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples(index=False):
        dagger = {"McNemar exact": "", "two-level bootstrap": " ‡"}.get(r.test, " †")
        seeds = f", {r.n_seeds} seeds" if r.n_seeds > 1 else ""
        lines.append(f"| {r.task} | {r.format} | {r.shots} | {r.model} | {r.contrast} | {r.n} ({r.n_clusters}{seeds}) | "
                     f"{r.delta:+.3f} [{r.delta_low:+.2f}, {r.delta_high:+.2f}] | {r.design_effect:.2f} | {r.a_only} | "
                     f"{r.b_only} | {r.p_clustered:.3g}{dagger} | {r.p_bh:.3g} |")
    return "\n".join(lines) + "\n"


def paraphrase_trends(records: pd.DataFrame) -> pd.DataFrame:
    """Per setting and fine-tuning method (its cells' prefix) with models of two or more paraphrase sets: the
    logit slope of per-question correctness on the set k (kinject.reporting.stats.paraphrase_trend), with the sets
    and the first and last set's accuracy. A steps-matched control's (method steps) is the slope of the same
    training amount without the paraphrases: its sets k and, as its set 0, its method's set 0 model."""
    keys = SETTING + ["method"]
    if "extra_seed" in records.columns:  # the run seed's models: every set has one (kinject.training.seeds)
        records = records[~records["extra_seed"].astype(bool)]
    ft = records[records["method"].isin([m.prefix for m in METHODS.values()]) & (records["k"] == 0)]
    # a control's series starts at its method's set 0 (the same data and steps: that very model), a curve of amounts'
    # (synthetic CPT's budgets) at full's set 0 (none of the amount: the chunks alone)
    for m in (m for m in METHODS.values() if m.matches or m.unit):
        start = ft[(ft["method"] == METHODS[m.matches or "full"].prefix) & (ft["paraphrase_set"] == 0)]
        ft = pd.concat([ft, start.assign(method=m.prefix)], ignore_index=True)
    out = []
    for key, g in ft.groupby(keys, sort=True):
        sets = sorted(int(p) for p in g["paraphrase_set"].unique())
        if len(sets) < 2:
            continue
        acc = g.groupby("paraphrase_set")["correct"].mean()
        per = by_prefix(key[-1]).trend_per  # synthetic CPT's slope: per 1,000 tokens of its budgets
        trend = paraphrase_trend(g.assign(paraphrase_set=g["paraphrase_set"].astype(int) / per))
        if per != 1 and trend["note"].startswith("logit"):
            trend["note"] += f"; per {per:,} {by_prefix(key[-1]).unit}" + (", from FT's set 0" if sets[0] == 0 else "")
        out.append({**dict(zip(keys, key, strict=True)), "sets": " ".join(map(str, sets)),
                    "accuracy_first": float(acc.loc[sets[0]]), "accuracy_last": float(acc.loc[sets[-1]]), **trend})
    return pd.DataFrame(out, columns=keys + ["sets", "accuracy_first", "accuracy_last", "n_sets", "n_questions",
                                                "n_clusters", "slope", "slope_low", "slope_high", "p_value", "note"])
