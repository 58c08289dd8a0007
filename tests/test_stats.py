"""kinject.reporting.stats against hand-worked cases: a Wilson interval, an exact McNemar test, a fixed-seed bootstrap,
Benjamini-Hochberg, a logit slope, and cross-fitting that never chooses K on the questions it reports."""

import math

import numpy as np
import pandas as pd
import pytest

from kinject.errors import KinjectError
from kinject.reporting.stats import (
    bh_adjust,
    cross_fit,
    halves,
    mcnemar_exact,
    paired_bootstrap,
    paraphrase_trend,
    wilson,
)

Z = 1.959963984540054  # the 97.5% normal quantile


def test_wilson_interval_of_9_of_10():
    # by hand: centre (x + z^2/2) / (n + z^2), half-width z / (n + z^2) * sqrt(x (n - x) / n + z^2 / 4)
    centre = (9 + Z**2 / 2) / (10 + Z**2)
    half = Z / (10 + Z**2) * math.sqrt(9 * 1 / 10 + Z**2 / 4)
    lo, hi = wilson(9, 10)
    assert (lo, hi) == pytest.approx((centre - half, centre + half), abs=1e-12)
    assert (round(lo, 4), round(hi, 4)) == (0.5958, 0.9821)
    assert wilson(0, 10)[0] == 0 and wilson(10, 10)[1] == pytest.approx(1)


def test_exact_mcnemar_counts_only_the_discordant_pairs():
    # 6 questions only a got right, 1 only b, 3 both: p = 2 P(X <= 1), X ~ Bin(7, 1/2) = 2 * 8/128
    a = [1] * 6 + [0] + [1] * 3
    b = [0] * 6 + [1] + [1] * 3
    assert mcnemar_exact(a, b) == (6, 1, pytest.approx(16 / 128))
    assert mcnemar_exact(b, a) == (1, 6, pytest.approx(0.125))
    assert mcnemar_exact([1, 0, 1], [1, 0, 1])[2] == pytest.approx(1.0)


def test_paired_bootstrap_by_hand():
    # differences 1 on 9 questions, 0 on 1: a resample's mean is Bin(10, 0.9) / 10; P(<= 0.6) = 0.013 and
    # P(<= 0.7) = 0.070 put the 2.5% point at 0.7; P(= 1) = 0.35 puts the 97.5% point at 1
    a, b = [1] * 10, [0] * 9 + [1]
    assert paired_bootstrap(a, b, seed=7) == pytest.approx((0.7, 1.0))
    # two questions, differences 1 and 0: resampled means 0, 1/2, 1 with probabilities 1/4, 1/2, 1/4
    assert paired_bootstrap([1, 0], [0, 0], seed=1) == pytest.approx((0.0, 1.0))
    assert paired_bootstrap([1, 1, 0], [1, 1, 0], seed=1) == (0.0, 0.0)  # no discordant question


def test_paired_bootstrap_is_fixed_by_its_seed():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 2, 80), rng.integers(0, 2, 80)
    first = paired_bootstrap(a, b, seed=11)
    assert paired_bootstrap(a, b, seed=11) == first
    assert paired_bootstrap(a, b, seed=12) != first
    assert first[0] < a.mean() - b.mean() < first[1]


def test_benjamini_hochberg_by_hand():
    # sorted 0.01 0.03 0.04 0.2 times m / rank: 0.04 0.06 0.0533 0.2, then the running minimum from the top
    assert bh_adjust([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.16 / 3, 0.16 / 3, 0.2])
    out = bh_adjust([0.5, float("nan")])
    assert out[0] == pytest.approx(0.5) and math.isnan(out[1])


def test_logit_slope_is_the_log_odds_ratio_of_two_sets():
    # set 0: 2 of 10 right (odds 1/4), set 1: 5 of 10 (odds 1): slope log 4
    rows = [{"question_id": f"q{i}", "paraphrase_set": s, "correct": i < c} for s, c in ((0, 2), (1, 5))
            for i in range(10)]
    trend = paraphrase_trend(pd.DataFrame(rows))
    assert trend["slope"] == pytest.approx(math.log(4), rel=1e-6)
    assert trend["slope_low"] < trend["slope"] < trend["slope_high"] and trend["n_questions"] == 10
    flat = paraphrase_trend(pd.DataFrame(rows).assign(correct=True))
    assert math.isnan(flat["slope"]) and "every answer right" in flat["note"]


def test_halves_are_seeded_and_independent_of_order():
    ids = [f"q{i}" for i in range(11)]
    h = halves(ids, 3)
    assert h.value_counts().to_dict() == {"B": 6, "A": 5}
    assert halves(ids[::-1], 3).equals(h)
    assert not halves(ids, 4).equals(h)


def test_cross_fitting_never_chooses_k_on_the_questions_it_reports():
    """Whatever the answers of a half's own questions, the K they are reported at stays the same: it is
    chosen on the other half only."""
    rng = np.random.default_rng(5)
    ids = [f"q{i}" for i in range(30)]
    half = halves(ids, 9)
    for trial in range(25):
        by_k = pd.DataFrame(rng.random((30, 4)) < rng.random(4), index=ids, columns=[1, 2, 3, 5])
        per_q, choices = cross_fit(by_k, 9)
        assert {(c["chosen_on"], c["reported_on"]) for c in choices} == {("half A", "half B"), ("half B", "half A")}
        for own in ("A", "B"):
            changed = by_k.copy()
            mine = half[half == own].index
            changed.loc[mine] = rng.random((len(mine), 4)) < 0.5
            again = cross_fit(changed, 9)[0].set_index("question_id")
            assert (again.loc[mine, "k"] == per_q.set_index("question_id").loc[mine, "k"]).all()


def test_cross_fitting_by_hand():
    """K=1 right exactly on half A, K=2 right exactly on half B: half A chooses 1, half B chooses 2, and each
    is then reported where its K is wrong: accuracy 0, where the oracle (best on all, a tie: K=1) says 0.5."""
    ids = [f"q{i}" for i in range(10)]
    half = halves(ids, 1)
    by_k = pd.DataFrame({1: half == "A", 2: half == "B"})
    per_q, choices = cross_fit(by_k, 1)
    assert [(c["chosen_on"], c["k"], c["n"]) for c in choices] == [("half A", 1, 5), ("half B", 2, 5)]
    assert not per_q["correct"].any()
    with pytest.raises(KinjectError, match="needs two questions or more"):
        cross_fit(by_k.iloc[:1], 1)
    assert per_q.set_index("question_id")["k"].to_dict() == {q: 2 if half[q] == "A" else 1 for q in ids}
