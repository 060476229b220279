"""The statistics of the evidence protocol (BENCHMARKS.md "Evidence protocol"),
computed from per-image predictions only: consistency over every pair of a fixed
shift set, paired differences between two variants over seeds (mean, 95%
t-interval), a per-image paired bootstrap interval pooled over seeds, Holm's
correction over the claims of a table, the verdict rule, and McNemar's exact test
per seed for accuracy.

NumPy and SciPy only (no TensorFlow), so the report runs from the committed files
alone."""

import dataclasses

import numpy as np
from scipy import stats

# Two-sided level of every interval and of the family-wise error of a table.
ALPHA = 0.05
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 0


def pair_agreement(classes):
    """Per image, the fraction of the pairs of distinct shifts of `classes` [N, S]
    (the predicted class of each image under each of S shifts) whose classes agree:
    `sum_c n_c (n_c - 1) / (S (S - 1))`, with `n_c` the shifts predicting class c."""
    classes = np.asarray(classes)
    count = classes.shape[1]
    if count < 2:
        raise ValueError(f"classes needs 2 shifts or more per image, got {count}.")
    same = (classes[:, :, None] == classes[:, None, :]).sum(axis=(1, 2)) - count
    return same / (count * (count - 1))


def per_image(predictions, measure):
    """The per-image values of `measure` ("circular", "crop": pair agreement under
    that shift set; "accuracy": 1 where the unshifted class is the label) from the
    arrays of one run's predictions.npz."""
    if measure == "accuracy":
        return (predictions["classes"] == predictions["labels"]).astype(float)
    return pair_agreement(predictions[f"classes_{measure}"])


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A paired comparison of two variants over seeds.

    Args:
        differences: per seed, the mean over images of `a - b` (one number a seed).
        mean: their mean.
        interval: the 95% t-interval of the mean over seeds (`nan`s with fewer
            than two seeds).
        p_value: two-sided p of the one-sample t-test of the differences (1.0 with
            fewer than two seeds or when all of them are equal to 0).
        bootstrap: the 95% percentile interval of the mean difference when the test
            images are resampled (the same resample in every seed).
    """

    differences: tuple
    mean: float
    interval: tuple
    p_value: float
    bootstrap: tuple


def t_interval(values, alpha=ALPHA):
    """The (1 - alpha) t-interval of the mean of `values` and the two-sided p of
    the t-test of mean 0."""
    values = np.asarray(values, float)
    n = len(values)
    mean = float(values.mean())
    if n < 2:
        return (float("nan"), float("nan")), 1.0
    error = float(values.std(ddof=1)) / np.sqrt(n)
    if error == 0:
        return (mean, mean), 1.0 if mean == 0 else 0.0
    half = float(stats.t.ppf(1 - alpha / 2, n - 1)) * error
    p = float(2 * stats.t.sf(abs(mean) / error, n - 1))
    return (mean - half, mean + half), p


def paired_bootstrap(a, b, samples=BOOTSTRAP_SAMPLES, seed=BOOTSTRAP_SEED):
    """The 95% percentile interval of the mean over seeds and images of `a - b`
    ([seeds, N] per-image values of two variants on the same N test images) when
    the images are drawn again with replacement, the same draw for every seed."""
    difference = np.asarray(a, float) - np.asarray(b, float)
    rng = np.random.default_rng(seed)
    n = difference.shape[1]
    per_image_mean = difference.mean(axis=0)
    means = np.empty(samples)
    for k in range(samples):
        means[k] = per_image_mean[rng.integers(0, n, n)].mean()
    low, high = np.quantile(means, [ALPHA / 2, 1 - ALPHA / 2])
    return float(low), float(high)


def compare(a, b):
    """A `Comparison` of the per-image values `a` and `b` ([seeds, N], seeds in
    the same order)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(
            f"a and b must be [seeds, images] of one shape, got {a.shape}, {b.shape}."
        )
    differences = (a - b).mean(axis=1)
    interval, p = t_interval(differences)
    return Comparison(
        differences=tuple(float(d) for d in differences),
        mean=float(differences.mean()),
        interval=interval,
        p_value=p,
        bootstrap=paired_bootstrap(a, b),
    )


def holm(p_values):
    """Holm's step-down adjusted p-values (same order as `p_values`)."""
    p = np.asarray(p_values, float)
    order = np.argsort(p, kind="stable")
    m = len(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def verdict(comparison, adjusted_p, direction=1, alpha=ALPHA):
    """ "holds" when the difference over seeds is significant after Holm's
    correction (`adjusted_p < alpha`, i.e. the corrected interval excludes 0) in the
    claimed `direction` (+1: a > b, -1: a < b); "does not hold" when it is
    significant the other way; otherwise "not settled"."""
    if adjusted_p >= alpha or comparison.mean == 0:
        return "not settled"
    return "holds" if np.sign(comparison.mean) == direction else "does not hold"


def mcnemar(correct_a, correct_b):
    """McNemar's exact test of two classifiers on the same images (bool [N] each):
    (images only `a` gets right, images only `b` gets right, two-sided p of the
    binomial test of equal counts)."""
    correct_a = np.asarray(correct_a, bool)
    correct_b = np.asarray(correct_b, bool)
    only_a = int(np.sum(correct_a & ~correct_b))
    only_b = int(np.sum(~correct_a & correct_b))
    if only_a + only_b == 0:
        return only_a, only_b, 1.0
    p = stats.binomtest(only_a, only_a + only_b, 0.5).pvalue
    return only_a, only_b, float(p)
