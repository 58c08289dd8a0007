"""The statistics of the result tables, all computed from the per-question records (one row per question
per grid cell): a 95% interval per cell (Wilson, widened by the design effect where questions share a
source: :func:`clustered_interval`), paired comparisons of two cells over the same questions (a seeded
cluster bootstrap interval of the accuracy difference, an exact McNemar p-value and Durkalski's clustered
McNemar, Benjamini-Hochberg adjusted across the grid; over several training seeds, a two-level bootstrap of seeds
and clusters: :func:`two_level_replicates`), K chosen off the reported questions by cross-fitting
(whole clusters to a half), and the paraphrase trend (a logistic regression of per-question correctness on
the paraphrase set, clustered by the questions' source).

A question's cluster (kinject.reporting.clusters) is its source chunk for generated questions, its table's
group column where one is named, itself otherwise; with one question per cluster every statistic here is
the per-question one. The computations are the libraries' (statsmodels, scipy); what is ours is which
questions go where.
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import pandas as pd

from kinject.errors import KinjectError

log = logging.getLogger(__name__)

LEVEL = 0.95
N_RESAMPLES = 10_000
HALVES = ("A", "B")


def wilson(n_correct: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """The Wilson score interval of a proportion (statsmodels ``proportion_confint``, method 'wilson')."""
    from statsmodels.stats.proportion import proportion_confint

    if n <= 0:
        return (float("nan"), float("nan"))
    lo, hi = proportion_confint(int(n_correct), int(n), alpha=1 - level, method="wilson")
    return (float(lo), float(hi))


def mcnemar_exact(a, b) -> tuple[int, int, float]:
    """Exact McNemar test of two paired 0/1 vectors: (a right where b is wrong, b right where a is wrong,
    two-sided p), statsmodels ``mcnemar(exact=True)`` (a binomial test on the discordant pairs)."""
    from statsmodels.stats.contingency_tables import mcnemar

    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    table = [[int((a & b).sum()), int((a & ~b).sum())], [int((~a & b).sum()), int((~a & ~b).sum())]]
    return table[0][1], table[1][0], float(mcnemar(table, exact=True).pvalue)


def _codes(n: int, clusters) -> np.ndarray:
    """Integer codes of n questions' clusters, in order of first appearance (None: every question its own)."""
    if clusters is None:
        return np.arange(n)
    codes = pd.factorize(pd.Series(np.asarray(clusters)).astype(str))[0]
    if len(codes) != n:
        raise ValueError(f"{len(codes)} clusters for {n} questions")
    return codes


def design_effect(values, clusters=None) -> float:
    """Kish's design effect of the mean of ``values`` (Kish 1965, *Survey Sampling*, §8.2): the variance of the
    mean under clustering over the variance that treats every value as independent. The first is the
    cluster-robust (sandwich) variance of an intercept-only OLS (statsmodels ``cov_type="cluster"``; Liang &
    Zeger 1986), the second its HC1 variance; each carries its small-sample factor (G/(G-1) clusters, n/(n-1)
    values), so the ratio is 1 when every cluster holds one value. NaN where it is undefined: the values do
    not vary, or they are all one cluster."""
    import statsmodels.api as sm

    y = np.asarray(values, dtype=float)
    codes = _codes(len(y), clusters)
    n_clusters = int(codes.max()) + 1 if len(y) else 0
    if n_clusters == len(y) and len(y) >= 2:
        return 1.0
    if len(y) < 2 or n_clusters < 2 or np.all(y == y[0]):
        return float("nan")
    x = np.ones((len(y), 1))
    clustered = sm.OLS(y, x).fit(cov_type="cluster", cov_kwds={"groups": codes}).bse[0] ** 2
    independent = sm.OLS(y, x).fit(cov_type="HC1").bse[0] ** 2
    return float(clustered / independent)


def clustered_interval(correct, clusters=None, level: float = LEVEL) -> dict:
    """A cell's accuracy with its interval for questions in clusters: accuracy, n_questions, n_correct,
    n_clusters, design_effect (:func:`design_effect`) and ci_low, ci_high, the Wilson interval at the
    effective sample size n / deff with the count scaled alike (Kish's effective n; Korn & Graubard 1998,
    "Confidence intervals for proportions with small expected number of positive counts estimated from survey
    data", Survey Methodology 24:193-201, do the same for Clopper-Pearson). A design effect below 1 or
    undefined is taken as 1, as Korn & Graubard cap the effective n at n: never narrower than Wilson on the n
    questions, and exactly Wilson when every cluster holds one question."""
    from statsmodels.stats.proportion import proportion_confint

    y = np.asarray(correct, dtype=bool)
    n, n_correct = len(y), int(y.sum())
    codes = _codes(n, clusters)
    out = {"accuracy": n_correct / n if n else float("nan"), "n_questions": n, "n_correct": n_correct,
           "n_clusters": int(codes.max()) + 1 if n else 0, "design_effect": design_effect(y, codes)}
    deff = out["design_effect"] if out["design_effect"] > 1 else 1.0  # NaN > 1 is False
    if deff == 1.0:
        low, high = wilson(n_correct, n, level)
    else:
        n_eff = n / deff
        low, high = proportion_confint(n_correct / deff, n_eff, alpha=1 - level, method="wilson")
    return {**out, "ci_low": float(low), "ci_high": float(high)}


def paired_bootstrap(a, b, *, seed: int, clusters=None, n_resamples: int = N_RESAMPLES,
                     level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of mean(a) - mean(b) from a cluster bootstrap: whole clusters of questions (each
    question's pair together) resampled with replacement, the difference of a resample being its clusters'
    summed differences over their questions (the cluster bootstrap of Davison & Hinkley 1997, *Bootstrap
    Methods and their Application*, §3.8; Field & Welsh 2007). scipy's ``bootstrap`` (paired) on the
    per-cluster sums and sizes, its generator seeded by ``seed``. ``clusters``: each question's cluster (None:
    every question its own), where it draws exactly what the per-question bootstrap of the differences draws."""
    from scipy.stats import bootstrap

    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    codes = _codes(len(diff), clusters)
    if len(diff) < 2 or np.all(diff == diff[0]) or codes.max() < 1:  # every resample gives the same mean
        value = float(diff.mean()) if len(diff) else float("nan")
        return (value, value)
    sums, sizes = np.bincount(codes, weights=diff), np.bincount(codes).astype(float)

    def ratio(s, m, axis=-1):
        return s.sum(axis=axis) / m.sum(axis=axis)

    res = bootstrap((sums, sizes), ratio, paired=True, n_resamples=n_resamples, confidence_level=level,
                    method="percentile", vectorized=True, rng=np.random.default_rng(seed))
    return (float(res.confidence_interval.low), float(res.confidence_interval.high))


def clustered_mcnemar(a, b, clusters=None) -> float:
    """Two-sided p of the McNemar test for clustered matched pairs of Durkalski, Palesch, Lipsitz & Rust (2003,
    "Analysis of clustered matched-pair data", Statistics in Medicine 22:2417-2428): with b_k (c_k) the
    questions of cluster k only a (only b) got right, X² = (Σ_k (b_k − c_k))² / Σ_k (b_k − c_k)², referred to
    χ² with 1 degree of freedom (scipy ``chi2.sf``). With one question per cluster it is McNemar's asymptotic
    statistic (b − c)² / (b + c), uncorrected. No cluster with more of one kind of discordance: p = 1."""
    from scipy.stats import chi2

    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    codes = _codes(len(a), clusters)
    d = np.bincount(codes, weights=(a & ~b).astype(float) - (~a & b).astype(float))
    denominator = float((d ** 2).sum())
    if denominator == 0:
        return 1.0
    return float(chi2.sf(d.sum() ** 2 / denominator, df=1))


def paired_test(a, b, clusters=None) -> tuple[float, str]:
    """(p, test) of a paired comparison: the exact McNemar test where every cluster holds one question,
    Durkalski's clustered McNemar (:func:`clustered_mcnemar`) where some cluster holds two or more."""
    codes = _codes(len(np.asarray(a)), clusters)
    if len(codes) == 0 or codes.max() + 1 == len(codes):
        return mcnemar_exact(a, b)[2], "McNemar exact"
    return clustered_mcnemar(a, b, codes), "Durkalski clustered McNemar"


# -- training seeds: a cell trained once per seed (kinject.training.seeds) ---------------------------------

def two_level_replicates(values, clusters=None, *, seed: int, n_resamples: int = N_RESAMPLES) -> np.ndarray:
    """Bootstrap replicates of the mean of a seeds x questions array (``values``: one row per training seed, one
    column per question; 0/1 correctness, or a paired difference): each replicate draws the seeds with
    replacement and, independently, whole clusters of questions with replacement (``clusters``: each column's;
    None: every question its own), and is the mean over the drawn seeds of the drawn clusters' summed values
    over their questions. The two ways of the array resampled independently: Owen's pigeonhole bootstrap for
    crossed factors (Owen 2007, "The pigeonhole bootstrap", Annals of Applied Statistics 1:246-262; McCullagh 2000,
    Bernoulli 6:285-301), whose variance, for equal cluster sizes, is exactly var(seed means)/S + var(cluster
    means)/G + var(interaction)/(S·G) (slightly conservative). With one seed it is the cluster bootstrap of
    :func:`paired_bootstrap` (another random stream). Draws are multinomial counts from numpy's generator,
    seeded by ``seed``."""
    x = np.atleast_2d(np.asarray(values, dtype=float))
    n_seeds, n = x.shape
    codes = _codes(n, clusters)
    n_clusters = int(codes.max()) + 1
    sums = np.stack([np.bincount(codes, weights=row, minlength=n_clusters) for row in x])  # seeds x clusters
    sizes = np.bincount(codes, minlength=n_clusters).astype(float)
    rng = np.random.default_rng(seed)
    seed_counts = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=n_resamples)
    cluster_counts = rng.multinomial(n_clusters, np.full(n_clusters, 1 / n_clusters), size=n_resamples)
    drawn = np.einsum("bs,sg,bg->b", seed_counts, sums, cluster_counts)
    return drawn / (n_seeds * (cluster_counts @ sizes))


def seeds_interval(correct, clusters=None, *, seed: int, level: float = LEVEL) -> dict:
    """A cell trained once per seed (``correct``: seeds x questions, 0/1): its accuracy, the mean over seeds, with
    the percentile interval of :func:`two_level_replicates` (seed and question variance both); n_questions,
    n_clusters, n_seeds, n_correct (per seed, on average) and design_effect (of each question's mean over the
    seeds, :func:`design_effect`)."""
    x = np.atleast_2d(np.asarray(correct, dtype=float))
    codes = _codes(x.shape[1], clusters)
    replicates = two_level_replicates(x, codes, seed=seed)
    low, high = np.quantile(replicates, [(1 - level) / 2, (1 + level) / 2])
    return {"accuracy": float(x.mean()), "n_questions": x.shape[1], "n_correct": float(x.sum(axis=1).mean()),
            "n_clusters": int(codes.max()) + 1, "n_seeds": x.shape[0],
            "design_effect": design_effect(x.mean(axis=0), codes), "ci_low": float(low), "ci_high": float(high)}


def seeds_paired(differences, clusters=None, *, seed: int, level: float = LEVEL) -> tuple[float, float, float]:
    """(low, high, p) of a paired comparison over several seeds (``differences``: seeds x questions, a − b within
    each seed): the percentile interval of :func:`two_level_replicates` and its two-sided p, twice the smaller
    share of replicates on either side of 0 ((count + 1) / (B + 1), so never 0), capped at 1."""
    replicates = two_level_replicates(differences, clusters, seed=seed)
    low, high = np.quantile(replicates, [(1 - level) / 2, (1 + level) / 2])
    b = len(replicates)
    p = 2 * min(((replicates <= 0).sum() + 1) / (b + 1), ((replicates >= 0).sum() + 1) / (b + 1))
    return float(low), float(high), float(min(1.0, p))


def bh_adjust(pvalues) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (statsmodels ``multipletests``, method 'fdr_bh'); NaN stays NaN."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="fdr_bh")[1]
    return out


def bh_table(rows: list[dict], columns: list[str], p_column: str) -> pd.DataFrame:
    """A table of paired comparisons (``rows``, in ``columns``) with ``p_bh``: its ``p_column`` adjusted by
    Benjamini-Hochberg across every row."""
    table = pd.DataFrame(rows, columns=columns)
    table["p_bh"] = bh_adjust(table[p_column]) if len(table) else []
    return table


# -- K chosen off the reported questions ------------------------------------------------------------------

def halves(question_ids, seed: int, clusters=None) -> pd.Series:
    """Each question's half ('A' or 'B'), whole clusters to a half: the clusters' ids (``clusters``, each
    question's, in the order of question_ids; None: every question its own) sorted, so the order the records
    come in does not matter, put in a seeded random order, and taken into half A in that order while A holds
    fewer than half the questions (never the last one, so B is never empty); the rest are half B. With one
    question per cluster it is the middle cut of a seeded shuffle. The same ids, clusters and seed always give
    the same halves. Indexed by the sorted question ids."""
    ids = list(map(str, question_ids))
    if len(set(ids)) < len(ids):
        raise KinjectError("records", "question ids repeat; cannot split them into halves")
    cluster_of = pd.Series(ids if clusters is None else [str(c) for c in clusters], index=ids)
    names = sorted(cluster_of.unique())
    size = cluster_of.value_counts()
    half_of, before = {}, 0
    for j, i in enumerate(np.random.default_rng(seed).permutation(len(names))):
        half_of[names[i]] = "A" if before < len(ids) // 2 and j < len(names) - 1 else "B"
        before += int(size[names[i]])
    return pd.Series(cluster_of.map(half_of).to_numpy(), index=ids, name="half").reindex(sorted(ids))


def setting_seed(seed: int, *key) -> int:
    """A seed per setting derived from the config seed and the setting's key (stable across runs)."""
    digest = hashlib.sha256(repr((seed, *map(str, key))).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def best_of(correct_by_k: pd.DataFrame) -> int:
    """The K (a column) of highest accuracy; ties go to the smallest K."""
    means = correct_by_k.mean()
    return int(means[means == means.max()].index.min())


def cross_fit(correct_by_k: pd.DataFrame, seed: int, clusters=None) -> tuple[pd.DataFrame, list[dict]]:
    """K chosen on one half of the questions, reported on the other, both ways.

    ``correct_by_k``: index question id, one 0/1 column per K; ``clusters``: each question's cluster, in its
    order (None: every question its own), so that a cluster's questions fall in one half. Returns the per-question table (question id,
    half, the K used for it, correct at that K) and the two choices ({chosen_on, reported_on, k, n}): a
    question in half A is scored at the K that half B chose, and the other way round, so no question is
    reported at a K its own correctness helped choose.
    """
    if len(correct_by_k) < 2:
        raise KinjectError("records", f"cross-fitting K needs two questions or more (got {len(correct_by_k)})")
    if clusters is not None and pd.Series(np.asarray(clusters)).nunique() < 2:
        raise KinjectError("records", "cross-fitting K needs two clusters of questions or more (all "
                           f"{len(correct_by_k)} questions come from one source)")
    half = halves(correct_by_k.index, seed, clusters).reindex(correct_by_k.index.astype(str))
    half.index = correct_by_k.index
    choices, used = [], pd.Series(0, index=correct_by_k.index)
    for chosen_on, reported_on in (HALVES, HALVES[::-1]):
        k = best_of(correct_by_k[half == chosen_on])
        used[half == reported_on] = k
        choices.append({"chosen_on": f"half {chosen_on}", "reported_on": f"half {reported_on}", "k": k,
                        "n": int((half == reported_on).sum())})
    correct = [bool(correct_by_k.at[q, used[q]]) for q in correct_by_k.index]
    return pd.DataFrame({"question_id": correct_by_k.index, "half": half.to_numpy(), "k": used.to_numpy(),
                         "correct": correct}), choices


# -- the paraphrase trend ---------------------------------------------------------------------------------

def paraphrase_trend(records: pd.DataFrame, level: float = LEVEL) -> dict:
    """Logistic regression of per-question correctness on the paraphrase set k (statsmodels ``Logit``), the
    standard errors clustered (Liang & Zeger 1986) by the questions' cluster, their source (every question is
    asked once per set, and questions of one source chunk are alike, so their answers are not independent).
    ``records``: question_id, paraphrase_set, correct, and cluster (unset: each question its own). Returns the slope (log-odds per
    paraphrase set) with its interval and p-value, or NaNs and the reason when the fit is impossible."""
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import PerfectSeparationError, PerfectSeparationWarning

    y = records["correct"].astype(float).to_numpy()
    x = sm.add_constant(records["paraphrase_set"].astype(float).to_numpy())
    clusters = records["cluster"] if "cluster" in records.columns else records["question_id"]
    groups = pd.factorize(clusters.astype(str))[0]
    out = {"n_sets": int(records["paraphrase_set"].nunique()), "n_questions": int(records["question_id"].nunique()),
           "n_clusters": int(groups.max()) + 1 if len(groups) else 0,
           "slope": np.nan, "slope_low": np.nan, "slope_high": np.nan, "p_value": np.nan, "note": ""}
    if out["n_sets"] < 2:
        return {**out, "note": "fewer than two paraphrase sets"}
    if y.min() == y.max():
        return {**out, "note": "every answer " + ("right" if y[0] else "wrong") + ": no trend to fit"}
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PerfectSeparationWarning)
            fit = sm.Logit(y, x).fit(disp=0, cov_type="cluster", cov_kwds={"groups": groups})
    except (PerfectSeparationError, PerfectSeparationWarning, np.linalg.LinAlgError) as exc:
        log.warning("paraphrase trend not fitted: %s", exc)
        return {**out, "note": f"not fitted ({type(exc).__name__})"}
    lo, hi = fit.conf_int(alpha=1 - level)[1]
    return {**out, "slope": float(fit.params[1]), "slope_low": float(lo), "slope_high": float(hi),
            "p_value": float(fit.pvalues[1]),
            "note": "logit, SE clustered by " + ("source" if out["n_clusters"] < out["n_questions"] else "question")}
