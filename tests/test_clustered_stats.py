"""The clustered statistics of kinject.reporting.stats (questions that share a source chunk or table group count
as one cluster) against hand-worked cases and the libraries, and each reduced to today's per-question
statistic when every cluster holds one question."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import bootstrap, chi2
from statsmodels.stats.contingency_tables import mcnemar

from kinject.errors import KinjectError
from kinject.reporting.stats import (
    clustered_interval,
    clustered_mcnemar,
    cross_fit,
    design_effect,
    halves,
    paired_bootstrap,
    paired_test,
    paraphrase_trend,
    wilson,
)

Z = 1.959963984540054  # the 97.5% normal quantile


def _wilson_by_hand(x: float, n: float) -> tuple[float, float]:
    p = x / n
    centre = (p + Z**2 / (2 * n)) / (1 + Z**2 / n)
    half = Z / (1 + Z**2 / n) * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2))
    return centre - half, centre + half


def test_design_effect_and_interval_by_hand():
    """Three source chunks of two questions: both right, both wrong, one of each (p = 0.5). Residuals ±0.5;
    cluster sums 1, -1, 0. Clustered variance of the mean: G/(G-1) * sum of squared sums / n^2 =
    1.5 * 2 / 36 = 1/12; independent (HC1): n/(n-1) * sum of squared residuals / n^2 = 1.2 * 1.5 / 36 = 1/20;
    design effect 5/3, effective n 6 / (5/3) = 3.6 with 1.8 right, and Wilson at those."""
    correct, clusters = [1, 1, 0, 0, 1, 0], ["c1", "c1", "c2", "c2", "c3", "c3"]
    assert design_effect(correct, clusters) == pytest.approx(5 / 3)
    cell = clustered_interval(correct, clusters)
    assert (cell["n_questions"], cell["n_correct"], cell["n_clusters"]) == (6, 3, 3)
    assert (cell["ci_low"], cell["ci_high"]) == pytest.approx(_wilson_by_hand(1.8, 3.6))
    low, high = wilson(3, 6)
    assert cell["ci_low"] < low and high < cell["ci_high"]  # wider than if the six were independent


def test_design_effect_is_the_cluster_robust_over_the_independent_variance():
    """On random clustered answers: the sandwich formulas written out by hand (Liang & Zeger's with the
    G/(G-1) factor over HC1's with n/(n-1)) give the design effect statsmodels' fits give."""
    rng = np.random.default_rng(7)
    clusters = rng.integers(0, 40, 150)
    y = (rng.random(150) < rng.random(40)[clusters]).astype(float)  # a difficulty per cluster
    e = y - y.mean()
    n, g = len(y), len(np.unique(clusters))
    clustered = g / (g - 1) * (pd.Series(e).groupby(clusters).sum() ** 2).sum() / n**2
    independent = n / (n - 1) * (e**2).sum() / n**2
    assert design_effect(y, clusters) == pytest.approx(clustered / independent, rel=1e-9)
    assert design_effect(y, clusters) > 1  # questions of one cluster alike


def test_one_question_per_cluster_is_wilson():
    rng = np.random.default_rng(3)
    correct = rng.random(37) < 0.4
    cell = clustered_interval(correct, [f"q{i}" for i in range(37)])
    assert cell["design_effect"] == 1.0 and cell["n_clusters"] == 37
    assert (cell["ci_low"], cell["ci_high"]) == wilson(int(correct.sum()), 37)
    assert clustered_interval(correct) == cell
    # answers alike across clusters (a design effect below 1) never narrow the interval below Wilson's
    anti = clustered_interval([1, 0] * 10, [i // 2 for i in range(20)])
    assert anti["design_effect"] < 1 and (anti["ci_low"], anti["ci_high"]) == wilson(10, 20)


def test_cluster_bootstrap_with_one_question_per_cluster_is_the_per_question_bootstrap():
    rng = np.random.default_rng(11)
    a, b = rng.random(60) < 0.6, rng.random(60) < 0.45
    diff = a.astype(float) - b.astype(float)
    scipy_ci = bootstrap((diff,), np.mean, n_resamples=2000, method="percentile", vectorized=True,
                         rng=np.random.default_rng(4)).confidence_interval
    expected = (float(scipy_ci.low), float(scipy_ci.high))
    assert paired_bootstrap(a, b, seed=4, n_resamples=2000) == expected
    assert paired_bootstrap(a, b, seed=4, n_resamples=2000, clusters=[f"q{i}" for i in range(60)]) == expected


def test_cluster_bootstrap_of_duplicated_questions_is_the_bootstrap_of_the_originals():
    """Every question asked twice (two questions of one chunk with the same answers): resampling the chunks
    gives exactly the interval of the 30 originals, not the narrower one of 60 independent questions."""
    rng = np.random.default_rng(2)
    a, b = rng.random(30) < 0.7, rng.random(30) < 0.4
    originals = paired_bootstrap(a, b, seed=8, n_resamples=2000)
    twice = np.repeat(a, 2), np.repeat(b, 2)
    clustered = paired_bootstrap(*twice, seed=8, n_resamples=2000, clusters=np.repeat(np.arange(30), 2))
    assert clustered == pytest.approx(originals, abs=1e-12)
    low, high = paired_bootstrap(*twice, seed=8, n_resamples=2000)
    assert high - low < clustered[1] - clustered[0]


def _pairs(per_cluster: list[tuple[int, int, int]]):
    """(a, b, clusters) with, per cluster, a_only questions only a got right, b_only only b, both right."""
    a, b, clusters = [], [], []
    for k, (a_only, b_only, both) in enumerate(per_cluster):
        a += [1] * a_only + [0] * b_only + [1] * both
        b += [0] * a_only + [1] * b_only + [1] * both
        clusters += [k] * (a_only + b_only + both)
    return np.array(a, bool), np.array(b, bool), clusters


def test_durkalski_clustered_mcnemar_by_hand():
    """Four chunks with (only a, only b) = (2, 0), (1, 1), (0, 1), (2, 0): the differences 2, 0, -1, 2 sum to
    3, their squares to 9: X² = 9 / 9 = 1 on 1 df, p = 0.3173 (2 (1 - Φ(1)))."""
    a, b, clusters = _pairs([(2, 0, 0), (1, 1, 0), (0, 1, 1), (2, 0, 0)])
    assert clustered_mcnemar(a, b, clusters) == pytest.approx(0.317310507862914, abs=1e-12)
    assert paired_test(a, b, clusters) == (clustered_mcnemar(a, b, clusters), "Durkalski clustered McNemar")
    same = _pairs([(1, 1, 0), (0, 0, 2)])
    assert clustered_mcnemar(*same) == 1.0  # no cluster leans either way


def test_durkalski_with_one_question_per_cluster_is_mcnemars_chi_square():
    rng = np.random.default_rng(6)
    a, b = rng.random(50) < 0.6, rng.random(50) < 0.4
    table = [[int((a & b).sum()), int((a & ~b).sum())], [int((~a & b).sum()), int((~a & ~b).sum())]]
    assert clustered_mcnemar(a, b) == pytest.approx(mcnemar(table, exact=False, correction=False).pvalue)
    assert clustered_mcnemar(a, b) == pytest.approx(chi2.sf((table[0][1] - table[1][0]) ** 2 / (table[0][1] + table[1][0]), 1))
    # each question its own cluster: the test the comparisons report stays the exact one
    p, test = paired_test(a, b, [f"q{i}" for i in range(50)])
    assert test == "McNemar exact" and p == mcnemar(table, exact=True).pvalue


def test_halves_keep_a_cluster_together():
    ids = [f"q{i:02d}" for i in range(40)]
    clusters = [f"c{i // 2}" if i < 30 else f"c{i}" for i in range(40)]  # 15 pairs, 10 single questions
    half = halves(ids, 5, clusters)
    by_cluster = pd.Series(half.reindex(ids).to_numpy()).groupby(clusters).nunique()
    assert (by_cluster == 1).all()
    assert abs(half.value_counts()["A"] - 20) <= 1
    assert halves(ids[::-1], 5, clusters[::-1]).equals(half)
    # one cluster larger than half the questions: half B still gets the last cluster
    big = halves(ids[:6], 0, ["x", "y", "y", "y", "y", "y"])
    assert set(big) == {"A", "B"}


def test_halves_of_single_question_clusters_are_the_middle_cut_of_a_seeded_shuffle():
    ids = [f"q{i}" for i in range(13)]
    order = np.random.default_rng(21).permutation(13)
    middle_cut = {sorted(ids)[j]: "A" if pos < 13 // 2 else "B" for pos, j in enumerate(order)}
    assert halves(ids, 21).to_dict() == middle_cut
    assert halves(ids, 21, clusters=ids).equals(halves(ids, 21))


def test_cross_fitting_needs_two_clusters():
    by_k = pd.DataFrame({1: [True, False, True], 2: [False, True, True]}, index=["q1", "q2", "q3"])
    with pytest.raises(KinjectError, match="two clusters of questions or more"):
        cross_fit(by_k, 1, clusters=["c", "c", "c"])
    per_q, _ = cross_fit(by_k, 1, clusters=["c", "c", "d"])
    assert per_q.iloc[0]["half"] == per_q.iloc[1]["half"]


def test_the_paraphrase_trend_clusters_its_standard_errors_by_source():
    """Ten chunks of two alike questions, each asked at sets 0, 1, 2: the slope's interval clustered by chunk
    is statsmodels' GLM (binomial) with the same cluster-robust covariance; with one question per cluster it
    is the per-question fit."""
    import statsmodels.api as sm

    rng = np.random.default_rng(12)
    easy = rng.random(10)
    rows = [{"question_id": f"q{c}{j}", "cluster": f"chunk{c}", "paraphrase_set": k,
             "correct": bool(rng.random() < min(1.0, easy[c] + 0.15 * k))}
            for c in range(10) for j in range(2) for k in range(3)]
    records = pd.DataFrame(rows)
    trend = paraphrase_trend(records)
    glm = sm.GLM(records["correct"].astype(float), sm.add_constant(records["paraphrase_set"].astype(float)),
                 family=sm.families.Binomial()).fit(cov_type="cluster",
                                                    cov_kwds={"groups": pd.factorize(records["cluster"])[0]})
    assert trend["slope"] == pytest.approx(glm.params.iloc[1], rel=1e-6)
    assert (trend["slope_low"], trend["slope_high"]) == pytest.approx(tuple(glm.conf_int().iloc[1]), rel=1e-5)
    assert (trend["n_clusters"], trend["n_questions"]) == (10, 20) and trend["note"].endswith("by source")
    by_question = paraphrase_trend(records.drop(columns="cluster"))
    assert by_question["note"].endswith("by question")
    assert paraphrase_trend(records.assign(cluster=records["question_id"])) == by_question
