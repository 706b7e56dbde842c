"""Statistics of the sweep table: paired tests by image id, patient bootstrap, seed averaging."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats as sps

from ablations import stats


def test_paired_tests_pair_by_id_not_by_position():
    rng = np.random.default_rng(3)
    ids = [f"img{i:02d}" for i in range(12)]
    base = rng.uniform(0.2, 0.9, 12)
    a = base + rng.normal(0.05, 0.05, 12)  # the cell: a little better on each image
    order = rng.permutation(12)  # the reference's CSV lists the images in another order
    ids_b = [ids[i] for i in order]
    b = base[order]
    result = stats.paired_tests(ids, a, ids_b, b)
    expected = sps.ttest_rel(a, base)
    assert result.n == 12
    assert result.p_t == pytest.approx(expected.pvalue, rel=1e-12)
    assert result.t_stat == pytest.approx(expected.statistic, rel=1e-12)
    assert result.p_wilcoxon == pytest.approx(sps.wilcoxon(a - base).pvalue, rel=1e-12)
    assert result.mean_diff == pytest.approx(np.mean(a - base))
    # pairing by position would have compared different images: a much weaker test
    assert sps.ttest_rel(a, b).pvalue > 10 * result.p_t


def test_paired_t_and_wilcoxon_match_hand_computation():
    ids = list("abcde")
    ref = np.zeros(5)
    diff = np.array([1.0, 2.0, -3.0, 4.0, 5.0])
    result = stats.paired_tests(ids, diff, ids, ref)
    # t = mean / (sd / sqrt(n)) = 1.8 / (3.1145 / sqrt 5); two-sided p from t with 4 df
    t = 1.8 / (math.sqrt(np.var(diff, ddof=1)) / math.sqrt(5))
    assert result.t_stat == pytest.approx(t, rel=1e-12)
    assert result.p_t == pytest.approx(2 * sps.t.sf(t, df=4), rel=1e-10)
    # Wilcoxon: ranks 1..5, W- = 3; exact two-sided p = 2 * #{rank subsets with sum <= 3} / 2^5
    # (subsets {}, {1}, {2}, {3}, {1, 2}) = 10 / 32
    assert result.w_stat == 3.0
    assert result.p_wilcoxon == pytest.approx(10 / 32, rel=1e-12)
    assert result.verdict() == ""


def test_nan_is_dropped_pairwise_and_missing_ids_ignored():
    ids_a = ["a", "b", "c", "d", "e", "x"]
    a = [0.9, np.nan, 0.7, 0.8, 0.6, 0.1]
    ids_b = ["e", "d", "c", "b", "a", "y"]
    b = [0.5, np.nan, 0.4, 0.3, 0.6, 0.2]
    matched, x, y = stats.pair_by_id(ids_a, a, ids_b, b)
    assert list(matched) == ["a", "c", "e"]  # b: NaN in a; d: NaN in b; x, y: in one run only
    assert x.tolist() == [0.9, 0.7, 0.6]
    assert y.tolist() == [0.6, 0.4, 0.5]
    assert stats.paired_tests(ids_a, a, ids_b, b).n == 3


def test_identical_values_give_p_one_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = stats.paired_tests(["a", "b", "c"], [0.5, 1.0, 0.0], ["c", "b", "a"], [0, 1, 0.5])
    assert (result.n, result.p_t, result.p_wilcoxon, result.mean_diff) == (3, 1.0, 1.0, 0.0)
    assert result.verdict() == ""


def test_constant_shift_is_significant_and_too_few_pairs_is_nan():
    ids = [str(i) for i in range(8)]
    values = np.arange(8) / 8  # exact binary fractions: every difference is exactly 0.125
    shifted = stats.paired_tests(ids, values + 0.125, ids, values)
    assert shifted.p_t == 0.0 and shifted.verdict() == "better"
    assert shifted.verdict(higher_is_better=False) == "worse"  # e.g. a larger HD
    assert shifted.p_wilcoxon == pytest.approx(2 / 2**8)  # all 8 ranks positive, exact
    one = stats.paired_tests(["a", "b"], [1.0, np.nan], ["a", "b"], [0.5, 0.2])
    assert one.n == 1 and math.isnan(one.p_t) and math.isnan(one.p_wilcoxon)
    assert one.mean_diff == 0.5


def test_duplicate_ids_are_refused():
    with pytest.raises(ValueError, match="duplicate image ids"):
        stats.pair_by_id(["a", "a"], [1, 2], ["a", "b"], [1, 2])


def test_bootstrap_identical_patients_gives_zero_width_interval_at_the_mean():
    one_patient = [0.2, 0.4, 0.9]
    values = one_patient * 5
    patients = [p for p in "ABCDE" for _ in range(3)]
    low, high = stats.bootstrap_ci(values, patients)
    assert low == pytest.approx(0.5, abs=1e-12)
    assert high == pytest.approx(0.5, abs=1e-12)


def test_bootstrap_two_patients_weights_images_not_patients():
    # A: one image at 0; B: three images at 1. Resamples: AA (mean 0, p 1/4), AB (3/4 over
    # four images, p 1/2), BB (1, p 1/4). A 40% central interval is [0.75, 0.75]; averaging
    # patient means instead would give 0.5.
    values = [0.0, 1.0, 1.0, 1.0]
    patients = ["A", "B", "B", "B"]
    assert stats.bootstrap_ci(values, patients, level=0.4) == pytest.approx((0.75, 0.75))
    assert stats.bootstrap_ci(values, patients) == (0.0, 1.0)
    # NaN images take no part: B keeps its two defined images
    low, high = stats.bootstrap_ci([0.0, 1.0, np.nan, 1.0], patients, level=0.4)
    assert (low, high) == pytest.approx((2 / 3, 2 / 3))


def test_bootstrap_is_seeded_and_checks_lengths():
    rng = np.random.default_rng(0)
    values = rng.uniform(size=40)
    patients = [f"p{i // 4}" for i in range(40)]
    first = stats.bootstrap_ci(values, patients, seed=7)
    assert stats.bootstrap_ci(values, patients, seed=7) == first
    assert stats.bootstrap_ci(values, patients, seed=8) != first
    assert first[0] < values.mean() < first[1]
    assert all(math.isnan(v) for v in stats.bootstrap_ci([np.nan, np.nan], ["a", "b"]))
    with pytest.raises(ValueError, match="3 values but 2 patient keys"):
        stats.bootstrap_ci([1.0, 2.0, 3.0], ["a", "b"])


def test_bootstrap_covers_the_true_mean_when_images_of_a_patient_are_correlated():
    # 30 patients x 10 images; the patient effect dominates (sd 1 vs 0.3 per image), so the
    # images are far from independent. Resampling patients keeps the nominal 95% coverage;
    # resampling images (each image its own "patient") is overconfident.
    rng = np.random.default_rng(2024)
    patients = np.repeat(np.arange(30), 10).astype(str)
    images = np.arange(300).astype(str)
    by_patient = by_image = 0
    trials = 300
    for _ in range(trials):
        values = np.repeat(rng.normal(0, 1, 30), 10) + rng.normal(0, 0.3, 300)
        low, high = stats.bootstrap_ci(values, patients, n_resamples=1000, seed=1)
        by_patient += low <= 0.0 <= high
        low, high = stats.bootstrap_ci(values, images, n_resamples=1000, seed=1)
        by_image += low <= 0.0 <= high
    assert 0.89 <= by_patient / trials <= 0.98
    assert by_image / trials < 0.75


def test_mean_sd_and_seed_averaging():
    mean, sd = stats.mean_sd([1.0, np.nan, 3.0])
    assert (mean, sd) == (2.0, pytest.approx(math.sqrt(2)))
    assert math.isnan(stats.mean_sd([4.0])[1])
    assert all(math.isnan(v) for v in stats.mean_sd([]))
    ids, values = stats.average_over_seeds(
        [["a", "b", "c"], ["c", "a", "b"]],
        [[0.2, np.nan, 1.0], [0.0, 0.4, 0.5]],
    )
    assert ids == ["a", "b", "c"]
    # a: (0.2 + 0.4) / 2; b: only seed 1 defines it; c: (1.0 + 0.0) / 2
    assert values.tolist() == pytest.approx([0.3, 0.5, 0.5])


def test_verdict_has_a_direction():
    assert stats.verdict(0.049, 0.1) == "better"
    assert stats.verdict(0.049, -0.1) == "worse"
    assert stats.verdict(0.049, -0.1, higher_is_better=False) == "better"
    assert stats.verdict(0.05, 0.1) == ""
    assert stats.verdict(float("nan"), 0.1) == ""
    assert stats.verdict(0.01, 0.0) == ""


def test_independent_t_is_students_two_sample_test():
    a, b = [0.9, 0.8, np.nan, 0.7, 0.85], [0.5, 0.6, 0.4]
    expected = sps.ttest_ind([0.9, 0.8, 0.7, 0.85], b, equal_var=True).pvalue
    assert stats.independent_t(a, b) == pytest.approx(expected, rel=1e-12)
    assert stats.independent_t([0.3, 0.2], [0.2, 0.3]) == 1.0
    assert math.isnan(stats.independent_t([0.5], b))
