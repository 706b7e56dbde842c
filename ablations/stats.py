"""Statistics of a sweep table: paired tests against the reference row, patient bootstrap CIs.

Every method of a sweep is tested on the same test images, so a cell and its reference are
compared image by image (paired by image id). The X-ray paper used Student's t-test for two
independent samples; pairing removes the image-to-image spread that both methods share and is
the test that fits this design (Wilcoxon signed-rank as the non-parametric check). Confidence
intervals resample patients, not images: slices of one CT volume (or radiographs of one
patient) are not independent.

Values here are unscaled per-image metrics (Dice in [0, 1], HD in pixels); the table scales.
NaN marks an undefined value (``sen`` of a negative image, ``hd`` with an empty mask).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from lightning_modules.metric_functions import mean_sd  # noqa: F401  (re-exported: stats.mean_sd)

ALPHA = 0.05  # significance level of the better/worse marks
N_RESAMPLES = 2000
CI_LEVEL = 0.95
_CHUNK = 500  # resamples drawn per block: bounds memory at 500 x patients indices


@dataclass(frozen=True)
class PairedTest:
    """A cell against its reference on the images defined in both.

    Attributes:
        n: number of pairs (images with a value in both runs).
        mean_diff: mean of cell minus reference, unscaled.
        t_stat, p_t: paired t-test (``scipy.stats.ttest_rel``), two-sided.
        w_stat, p_wilcoxon: Wilcoxon signed-rank (``zero_method="wilcox"``: zero differences
            dropped), two-sided. All differences zero gives p = 1 for both tests.
    """

    n: int
    mean_diff: float
    t_stat: float
    p_t: float
    w_stat: float
    p_wilcoxon: float

    def verdict(self, higher_is_better: bool = True) -> str:
        """``better`` or ``worse`` than the reference when the paired t-test's p < 0.05
        (the direction from the mean difference and the metric's sense), else empty."""
        return verdict(self.p_t, self.mean_diff, higher_is_better)


def verdict(p: float, mean_diff: float, higher_is_better: bool = True, alpha: float = ALPHA) -> str:
    """``better``/``worse`` for p < ``alpha`` in the direction of ``mean_diff``; else ``""``."""
    if not (np.isfinite(p) and p < alpha and np.isfinite(mean_diff)) or mean_diff == 0:
        return ""
    return "better" if (mean_diff > 0) == higher_is_better else "worse"


def independent_t(a: ArrayLike, b: ArrayLike) -> float:
    """Two-sided p of Student's t-test for two independent samples (equal variances), the
    X-ray paper's test, over the defined values of each; NaN with fewer than two in either."""
    a, b = (np.asarray(v, dtype=np.float64) for v in (a, b))
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if a.size < 2 or b.size < 2:
        return float("nan")
    if np.array_equal(np.sort(a), np.sort(b)):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # zero variance in both: p is NaN
        return float(stats.ttest_ind(a, b, equal_var=True).pvalue)


def pair_by_id(
    ids_a: Sequence[str], values_a: ArrayLike, ids_b: Sequence[str], values_b: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Values of two runs matched by image id, NaNs dropped pairwise.

    Returns:
        ``(ids, a, b)``: ids present in both with a defined value in both, in the order of
        ``ids_a``; ``a`` and ``b`` float64 arrays of the same length.
    Raises:
        ValueError: an id occurs twice in one run (the pairing would be ambiguous).
    """
    a = np.asarray(values_a, dtype=np.float64)
    b = np.asarray(values_b, dtype=np.float64)
    for ids, values in ((ids_a, a), (ids_b, b)):
        if len(ids) != len(values):
            raise ValueError(f"{len(ids)} ids but {len(values)} values")
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate image ids: each test image must appear once per run")
    position_b = {image_id: i for i, image_id in enumerate(ids_b)}
    keep_a = [i for i, image_id in enumerate(ids_a) if image_id in position_b]
    keep_b = [position_b[ids_a[i]] for i in keep_a]
    x, y = a[keep_a], b[keep_b]
    defined = ~(np.isnan(x) | np.isnan(y))
    matched = np.asarray(ids_a, dtype=object)[keep_a][defined]
    return matched, x[defined], y[defined]


def paired_tests(
    ids_a: Sequence[str], values_a: ArrayLike, ids_b: Sequence[str], values_b: ArrayLike
) -> PairedTest:
    """Paired t-test and Wilcoxon signed-rank of run ``a`` against run ``b`` by image id.

    Fewer than two pairs: every statistic NaN (no test is possible).
    """
    _, x, y = pair_by_id(ids_a, values_a, ids_b, values_b)
    n = len(x)
    if n < 2:
        nan = float("nan")
        return PairedTest(n, float(np.mean(x - y)) if n else nan, nan, nan, nan, nan)
    diff = x - y
    if not np.any(diff):  # identical values: no evidence of a difference (scipy gives 0/0)
        return PairedTest(n, 0.0, 0.0, 1.0, 0.0, 1.0)
    with warnings.catch_warnings():
        # constant non-zero differences: t = inf, p = 0 is the right limit; silence the note
        warnings.simplefilter("ignore", RuntimeWarning)
        t = stats.ttest_rel(x, y)
        w = stats.wilcoxon(diff, zero_method="wilcox")
    return PairedTest(
        n=n,
        mean_diff=float(diff.mean()),
        t_stat=float(t.statistic),
        p_t=float(t.pvalue),
        w_stat=float(w.statistic),
        p_wilcoxon=float(w.pvalue),
    )


def bootstrap_ci(
    values: ArrayLike,
    patients: Sequence[str],
    n_resamples: int = N_RESAMPLES,
    level: float = CI_LEVEL,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over images, resampling patients.

    Each resample draws as many patients as there are, with replacement, and takes the mean
    over all images of the drawn patients (a patient drawn twice counts twice). Images with a
    NaN value take no part, nor do patients left without a defined image.

    Args:
        values: float array ``N``, one per image (unscaled).
        patients: ``N`` patient keys.
        n_resamples: bootstrap resamples (seeded by ``seed``, so the interval is reproducible,
            whatever the identifier secret that made the keys).
        level: coverage of the interval (0.95: the 2.5th and 97.5th percentiles).
    Returns:
        ``(low, high)``; NaN when no image is defined.
    """
    values = np.asarray(values, dtype=np.float64)
    patients = np.asarray(patients)
    if values.shape != patients.shape:
        raise ValueError(f"{values.shape[0]} values but {patients.shape[0]} patient keys")
    defined = ~np.isnan(values)
    if not defined.any():
        return float("nan"), float("nan")
    # patients numbered in order of appearance (the data's order), not by sorted key: the
    # keys are HMACs under the site's secret, so sorting them would give every site (and
    # every fresh machine) other resamples, and another interval, for the same runs
    order = {key: i for i, key in enumerate(dict.fromkeys(patients[defined].tolist()))}
    patient_index = np.fromiter((order[k] for k in patients[defined].tolist()), dtype=np.int64)
    sums = np.bincount(patient_index, weights=values[defined])
    counts = np.bincount(patient_index).astype(np.float64)
    n_patients = len(sums)
    rng = np.random.default_rng(seed)
    means = []
    for start in range(0, n_resamples, _CHUNK):
        size = min(_CHUNK, n_resamples - start)
        drawn = rng.integers(0, n_patients, size=(size, n_patients))  # patients per resample
        means.append(sums[drawn].sum(axis=1) / counts[drawn].sum(axis=1))
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(np.concatenate(means), [tail, 1.0 - tail])
    return float(low), float(high)


def average_over_seeds(
    ids_per_seed: Sequence[Sequence[str]], values_per_seed: Sequence[ArrayLike]
) -> tuple[list[str], np.ndarray]:
    """Per-image mean over a cell's seeds, matched by image id.

    Args:
        ids_per_seed: the image ids of each seed's run.
        values_per_seed: the matching per-image values (float, NaN = undefined).
    Returns:
        ``(ids, values)``: every id seen (first-seen order) and the mean over the seeds where
        the image has a defined value (NaN where it has none).
    """
    order: dict[str, int] = {}
    for ids in ids_per_seed:
        for image_id in ids:
            order.setdefault(image_id, len(order))
    total = np.zeros(len(order))
    count = np.zeros(len(order))
    for ids, values in zip(ids_per_seed, values_per_seed, strict=True):
        values = np.asarray(values, dtype=np.float64)
        index = np.fromiter((order[i] for i in ids), dtype=np.int64, count=len(ids))
        defined = ~np.isnan(values)
        np.add.at(total, index[defined], values[defined])
        np.add.at(count, index[defined], 1.0)
    mean = np.full(len(order), np.nan)
    np.divide(total, count, out=mean, where=count > 0)
    return list(order), mean


def test_note(reference: str) -> str:
    """The table footnote that names the test behind the better/worse marks."""
    return (
        "▲ / ▼: significantly better / worse than the reference row "
        f"({reference}) at p < 0.05 in a two-sided paired t-test (scipy.stats.ttest_rel) of the "
        "column's per-image (per-patient) values on the column's own population, matched by "
        "image id (patient key): every method sees the same test images, so each is its own "
        "control. The p-values of this test, of the Wilcoxon signed-rank test (zero_method "
        "'wilcox') and of the papers' Student's t-test for two independent samples "
        "(scipy.stats.ttest_ind) are in table.csv."
    )


def ci_note(n_resamples: int, seed: int) -> str:
    """The table footnote that says what the confidence interval is."""
    return (
        "95% CI: percentile bootstrap of the mean over images, resampling patients with "
        f"replacement ({n_resamples} resamples, seed {seed}): the images of one patient are "
        "not independent."
    )
