"""The statistics of the result tables, all computed from the per-question records (one row per question
per grid cell): a 95% Wilson interval per cell, paired comparisons of two cells over the same questions
(a seeded bootstrap interval of the accuracy difference, an exact McNemar p-value, Benjamini-Hochberg
adjusted across the grid), K chosen off the reported questions by cross-fitting, and the paraphrase trend
(a logistic regression of per-question correctness on the paraphrase set, clustered by question).

The computations are the libraries' (statsmodels, scipy); what is ours is which questions go where.
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


def paired_bootstrap(a, b, *, seed: int, n_resamples: int = N_RESAMPLES, level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of mean(a) - mean(b) resampling questions (the pairs together), scipy's
    ``bootstrap`` on the per-question differences with a generator seeded by ``seed``."""
    from scipy.stats import bootstrap

    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if len(diff) < 2 or np.all(diff == diff[0]):  # every resample gives the same mean
        value = float(diff.mean()) if len(diff) else float("nan")
        return (value, value)
    res = bootstrap((diff,), np.mean, n_resamples=n_resamples, confidence_level=level, method="percentile",
                    vectorized=True, rng=np.random.default_rng(seed))
    return (float(res.confidence_interval.low), float(res.confidence_interval.high))


def bh_adjust(pvalues) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (statsmodels ``multipletests``, method 'fdr_bh'); NaN stays NaN."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="fdr_bh")[1]
    return out


# -- K chosen off the reported questions ------------------------------------------------------------------

def halves(question_ids, seed: int) -> pd.Series:
    """Each question's half ('A' or 'B'): a seeded shuffle of the ids (sorted first, so the order the records
    come in does not matter) cut in the middle. The same ids and seed always give the same halves."""
    ids = sorted(map(str, question_ids))
    if len(set(ids)) < len(ids):
        raise KinjectError("records", "question ids repeat; cannot split them into halves")
    order = np.random.default_rng(seed).permutation(len(ids))
    half = np.where(np.arange(len(ids)) < len(ids) // 2, "A", "B")
    return pd.Series(half, index=[ids[i] for i in order], name="half").reindex(ids)


def setting_seed(seed: int, *key) -> int:
    """A seed per setting derived from the config seed and the setting's key (stable across runs)."""
    digest = hashlib.sha256(repr((seed, *map(str, key))).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def best_of(correct_by_k: pd.DataFrame) -> int:
    """The K (a column) of highest accuracy; ties go to the smallest K."""
    means = correct_by_k.mean()
    return int(means[means == means.max()].index.min())


def cross_fit(correct_by_k: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, list[dict]]:
    """K chosen on one half of the questions, reported on the other, both ways.

    ``correct_by_k``: index question id, one 0/1 column per K. Returns the per-question table (question id,
    half, the K used for it, correct at that K) and the two choices ({chosen_on, reported_on, k, n}): a
    question in half A is scored at the K that half B chose, and the other way round, so no question is
    reported at a K its own correctness helped choose.
    """
    if len(correct_by_k) < 2:
        raise KinjectError("records", f"cross-fitting K needs two questions or more (got {len(correct_by_k)})")
    half = halves(correct_by_k.index, seed).reindex(correct_by_k.index.astype(str))
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
    standard errors clustered by question (every question is asked once per set, so its answers are not
    independent). ``records``: question_id, paraphrase_set, correct. Returns the slope (log-odds per
    paraphrase set) with its interval and p-value, or NaNs and the reason when the fit is impossible."""
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import PerfectSeparationError, PerfectSeparationWarning

    y = records["correct"].astype(float).to_numpy()
    x = sm.add_constant(records["paraphrase_set"].astype(float).to_numpy())
    groups = pd.factorize(records["question_id"])[0]
    out = {"n_sets": int(records["paraphrase_set"].nunique()), "n_questions": int(records["question_id"].nunique()),
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
            "p_value": float(fit.pvalues[1]), "note": "logit, SE clustered by question"}
