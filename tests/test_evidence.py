"""The evidence protocol's statistics and its report-only path, on small synthetic
predictions checked against NumPy computed another way."""

import itertools
import json
import math
import os

import numpy as np
import pytest

pytest.importorskip("scipy")
pytest.importorskip("matplotlib")

from tests.benchmark_scripts import load_script  # noqa: E402

script = load_script("evidence")
# Loading evidence.py puts the benchmarks folder on sys.path.
from reproduction import evidence, evidence_report, statistics  # noqa: E402

# t quantiles 0.975 (tables): df = 2, 4.
T975 = {2: 4.302652729911275, 4: 2.7764451051977987}


def test_pair_agreement_counts_every_pair_of_distinct_shifts():
    rng = np.random.default_rng(1)
    classes = rng.integers(0, 3, (20, 6))
    expected = [
        np.mean([row[i] == row[j] for i, j in itertools.combinations(range(6), 2)])
        for row in classes
    ]
    np.testing.assert_allclose(statistics.pair_agreement(classes), expected)
    with pytest.raises(ValueError, match="2 shifts or more"):
        statistics.pair_agreement(classes[:, :1])


def test_t_interval_and_p_value():
    values = np.array([0.01, 0.03, 0.02, 0.05, 0.04])
    (low, high), p = statistics.t_interval(values)
    half = T975[4] * values.std(ddof=1) / math.sqrt(5)
    assert low == pytest.approx(values.mean() - half)
    assert high == pytest.approx(values.mean() + half)
    # The interval excludes 0 exactly when p < 0.05.
    assert p < 0.05 and low > 0
    (low, high), p = statistics.t_interval(np.array([0.02, -0.01, 0.0]))
    assert low < 0 < high and p > 0.05


def test_holm_matches_the_step_down_rule():
    p = [0.01, 0.04, 0.03, 0.005]
    # Sorted: 0.005 * 4, 0.01 * 3, 0.03 * 2, 0.04 * 1, made monotone.
    np.testing.assert_allclose(statistics.holm(p), [0.03, 0.06, 0.06, 0.02])


def test_mcnemar_is_the_exact_binomial_test():
    a = np.array([1] * 9 + [0] * 2 + [1] * 5 + [0] * 4, bool)
    b = np.array([0] * 9 + [1] * 2 + [1] * 5 + [0] * 4, bool)
    only_a, only_b, p = statistics.mcnemar(a, b)
    assert (only_a, only_b) == (9, 2)
    tail = sum(math.comb(11, k) for k in range(0, 3)) / 2**11
    assert p == pytest.approx(2 * tail)


def test_verdict_rule():
    up = statistics.Comparison((0.02,), 0.02, (0.01, 0.03), 0.001, (0.01, 0.03))
    down = statistics.Comparison((-0.02,), -0.02, (-0.03, -0.01), 0.001, (0, 0))
    assert statistics.verdict(up, 0.01) == "holds"
    assert statistics.verdict(down, 0.01) == "does not hold"
    assert statistics.verdict(up, 0.2) == "not settled"


def _fake_run(out_dir, variant, augment, seed, rng, flip_rate):
    """A run folder whose circular predictions change class with `flip_rate`."""
    n, s = 60, 16
    labels = rng.integers(0, 3, n)
    classes = labels.copy()
    classes[rng.random(n) < 0.2] = 0
    flips = rng.random((n, s)) < flip_rate
    shifted = np.where(flips, (classes[:, None] + 1) % 3, classes[:, None])
    circular, crop = evidence.shift_sets()
    arrays = {
        "labels": labels.astype(np.int8),
        "classes": classes.astype(np.int8),
        "shifts_circular": circular.astype(np.int8),
        "classes_circular": shifted.astype(np.int8),
        "shifts_crop": crop.astype(np.int8),
        "classes_crop": shifted[:, ::-1].astype(np.int8),
        "variant": np.array(variant),
        "augment": np.array(augment),
        "seed": np.array(seed),
    }
    folder = os.path.join(out_dir, "runs", evidence.run_name(variant, augment, seed))
    os.makedirs(folder)
    np.savez_compressed(os.path.join(folder, "predictions.npz"), **arrays)
    summary = {"initial_high_frequency_share": 0.5, "high_frequency_share": 0.25}
    record = {
        "commit": "0123456789abcdef",
        "downsampling_summary": {"all": summary, "learned": summary},
    }
    with open(os.path.join(folder, "record.json"), "w") as f:
        json.dump(record, f)
    return arrays


def _consistency(arrays):
    """Circular consistency as the mean over images and ordered pairs i != j."""
    c = arrays["classes_circular"].astype(int)
    agree = [
        np.mean([c[k, i] == c[k, j] for i in range(16) for j in range(16) if i != j])
        for k in range(len(c))
    ]
    return float(np.mean(agree))


def test_report_recomputes_the_claims_from_the_files(tmp_path):
    out = str(tmp_path)
    rng = np.random.default_rng(0)
    made = {}
    for seed in range(3):
        for variant, rate in (("baseline", 0.3), ("blur4", 0.05)):
            made[(variant, seed)] = _fake_run(out, variant, "shift", seed, rng, rate)
    benchmarks = str(tmp_path / "B.md")
    body = script.report(out, benchmarks)

    rows = evidence_report.claim_rows(
        evidence_report.load_runs(out), "shift", "circular"
    )
    assert [(r["a"], r["b"]) for r in rows] == [("blur4", "baseline")]
    differences = [
        _consistency(made[("blur4", s)]) - _consistency(made[("baseline", s)])
        for s in range(3)
    ]
    comparison = rows[0]["comparison"]
    np.testing.assert_allclose(comparison.differences, differences)
    half = T975[2] * np.std(differences, ddof=1) / math.sqrt(3)
    np.testing.assert_allclose(
        comparison.interval,
        (np.mean(differences) - half, np.mean(differences) + half),
    )
    low, high = comparison.bootstrap
    assert low < np.mean(differences) < high
    # One claim: Holm leaves its p as it is; a large drop in flips "holds".
    assert rows[0]["holm_p"] == pytest.approx(comparison.p_value)
    assert rows[0]["verdict"] == "holds"
    assert f"{100 * np.mean(differences):+.2f}" in body
    # The report is a function of the files: the same bytes again.
    with open(os.path.join(out, "report.md")) as f:
        first = f.read()
    with open(os.path.join(out, "evidence.png"), "rb") as f:
        image = f.read()
    script.report(out, benchmarks)
    with open(os.path.join(out, "report.md")) as f:
        assert f.read() == first
    with open(os.path.join(out, "evidence.png"), "rb") as f:
        assert f.read() == image
    with open(benchmarks) as f:
        assert "evidence-results:start" in f.read()


def test_the_shift_sets_are_fixed_and_in_range():
    circular, crop = evidence.shift_sets()
    np.testing.assert_array_equal(circular, evidence.shift_sets()[0])
    assert len({tuple(s) for s in circular}) == 16
    assert len({tuple(s) for s in crop}) == 16
    assert circular.min() >= 0 and circular.max() < 8
    assert crop.min() >= -4 and crop.max() <= 4


def test_run_selection():
    args = script.parse_args(["run", "--variants", "blur4", "--augment", "none"])
    assert script.selected_runs(args) == [("blur4", "none", s) for s in (0, 1, 2)]


def test_predictions_are_the_models_classes_under_the_fixed_shifts():
    keras = pytest.importorskip("keras")
    pytest.importorskip("tensorflow")
    rng = np.random.default_rng(3)
    images = rng.random((7, 12, 12, 1)).astype("float32")
    labels = rng.integers(0, 4, 7)
    model = keras.Sequential(
        [keras.Input((12, 12, 1)), keras.layers.Flatten(), keras.layers.Dense(4)]
    )
    arrays = evidence.predictions(model, (images, labels), "blur4", "none", 2)

    def classes(x):
        return np.argmax(model.predict(x, verbose=0), axis=-1)

    def zero_shift(x, dy, dx):
        padded = np.pad(x, ((0, 0), (4, 4), (4, 4), (0, 0)))
        return padded[:, 4 - dy : 16 - dy, 4 - dx : 16 - dx]

    np.testing.assert_array_equal(arrays["labels"], labels)
    np.testing.assert_array_equal(arrays["classes"], classes(images))
    for k, (dy, dx) in enumerate(arrays["shifts_circular"]):
        rolled = np.roll(images, (dy, dx), axis=(1, 2))
        np.testing.assert_array_equal(arrays["classes_circular"][:, k], classes(rolled))
    for k, (dy, dx) in enumerate(arrays["shifts_crop"]):
        np.testing.assert_array_equal(
            arrays["classes_crop"][:, k], classes(zero_shift(images, dy, dx))
        )
    assert (str(arrays["variant"]), str(arrays["augment"]), int(arrays["seed"])) == (
        "blur4",
        "none",
        2,
    )


def test_sweep_chooses_the_most_consistent_weight_that_keeps_accuracy():
    candidates = evidence.SWEEP_CANDIDATES
    numbers = {
        "blur4": {"circular": 0.98, "accuracy": 0.910},
        candidates[0]: {"circular": 0.975, "accuracy": 0.912},
        candidates[1]: {"circular": 0.985, "accuracy": 0.908},
        # The most consistent, but 0.5 points below blur4's accuracy.
        candidates[2]: {"circular": 0.995, "accuracy": 0.905},
    }
    assert evidence.choose(numbers) == candidates[1]
    numbers[candidates[1]]["accuracy"] = 0.9
    numbers[candidates[0]]["accuracy"] = 0.9
    assert evidence.choose(numbers) is None


def test_sweep_report_from_the_files(tmp_path):
    out = str(tmp_path)
    rates = (("blur4", 0.1), ("group-dense-lowpass", 0.2))
    rates += tuple(zip(evidence.SWEEP_CANDIDATES, (0.15, 0.01, 0.05), strict=True))
    # The same generator state for every run: the same labels and unshifted
    # classes (equal accuracies), so the most consistent candidate is chosen.
    made = {
        v: _fake_run(out, v, "shift", 100, np.random.default_rng(5), r)
        for v, r in rates
    }
    body = script.sweep_report(out, None)
    numbers = {
        v: {
            "circular": _consistency(a),
            "accuracy": float(np.mean(a["classes"] == a["labels"])),
        }
        for v, a in made.items()
    }
    assert evidence.choose(numbers) == evidence.SWEEP_CANDIDATES[1]
    assert f"Chosen: **{evidence.SWEEP_CANDIDATES[1]}**" in body
    for variant, arrays in made.items():
        assert f"| {variant} | {100 * _consistency(arrays):.2f} |" in body
