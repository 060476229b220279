import keras
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from keras_shiftinv.app import metrics  # noqa: E402

pytestmark = pytest.mark.tf_only


def _images(n=24, size=8, channels=2, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, channels))


def _invariant_model(size=8, channels=2, classes=3):
    """Global average pooling of a pointwise function, then dense: shift-invariant."""
    inputs = keras.Input((size, size, channels))
    features = keras.layers.GlobalAveragePooling2D()(
        keras.layers.Conv2D(6, 1, activation="relu")(inputs)
    )
    outputs = keras.layers.Dense(classes, activation="softmax")(features)
    return keras.Model(inputs, outputs)


class ColumnParity(keras.layers.Layer):
    """Class 1 when the even columns sum higher than the odd ones, else class 0.

    A circular shift by an odd dx (even width) swaps even and odd columns, so the
    class flips exactly when dx is odd; dy does not matter.
    """

    def call(self, x):
        even = keras.ops.sum(x[:, :, 0::2], axis=(1, 2, 3))
        odd = keras.ops.sum(x[:, :, 1::2], axis=(1, 2, 3))
        one = keras.ops.cast(even > odd, "float32")
        return keras.ops.stack([1.0 - one, one], axis=-1)


def _parity_model(size=8, channels=2):
    return keras.Sequential([keras.Input((size, size, channels)), ColumnParity()])


def _parity_labels(x):
    return (x[:, :, 0::2].sum(axis=(1, 2, 3)) > x[:, :, 1::2].sum(axis=(1, 2, 3))) * 1


def _same_parity_probability(max_shift):
    """P(dx1 = dx2 mod 2) for dx1, dx2 independent and uniform in [0, max_shift)."""
    even = (max_shift + 1) // 2
    return (even**2 + (max_shift - even) ** 2) / max_shift**2


def _reference_shift(x, dy, dx, mode):
    """Independent numpy version: pad by P, take the window displaced by -(dy, dx)."""
    if mode == "circular":
        return np.roll(x, (dy, dx), axis=(0, 1))
    p = 6
    padded = np.pad(x, [(p, p), (p, p), (0, 0)], mode=mode)
    h, w = x.shape[:2]
    return padded[p - dy : p - dy + h, p - dx : p - dx + w]


@pytest.mark.parametrize(
    "mode, pad_mode, numpy_mode",
    [
        ("circular", "reflect", "circular"),
        ("crop", "reflect", "reflect"),
        ("crop", "zero", "constant"),
    ],
)
def test_shifts_match_numpy_per_sample(mode, pad_mode, numpy_mode):
    x = _images(n=5, size=7, channels=3).astype("float32")
    dy = np.array([0, 3, -2, 6, -6])
    dx = np.array([1, -5, 0, 2, 6])
    out = metrics.shift_images(x, dy, dx, mode=mode, pad_mode=pad_mode).numpy()
    for n in range(len(x)):
        expected = _reference_shift(x[n], dy[n], dx[n], numpy_mode)
        np.testing.assert_array_equal(out[n], expected)
    scalar = metrics.shift_images(x, 2, -1, mode=mode, pad_mode=pad_mode).numpy()
    np.testing.assert_array_equal(scalar[3], _reference_shift(x[3], 2, -1, numpy_mode))


def test_named_shifts():
    x = _images(n=3).astype("float32")
    np.testing.assert_array_equal(
        metrics.circular_shift(x, [1, 2, 3], 4).numpy(),
        metrics.shift_images(x, [1, 2, 3], 4, mode="circular").numpy(),
    )
    np.testing.assert_array_equal(
        metrics.crop_shift(x, 2, [0, -1, 1], pad_mode="zero").numpy(),
        metrics.shift_images(x, 2, [0, -1, 1], mode="crop", pad_mode="zero").numpy(),
    )
    roundtrip = metrics.circular_shift(metrics.circular_shift(x, 3, -2), -3, 2)
    np.testing.assert_array_equal(roundtrip.numpy(), x)


def test_invariant_model_scores_one_and_no_variation():
    # In [0, 1]: on raw pixels the random model's logits reach the hundreds, and
    # the rounding of its pooled sums, which a shift reorders, then moves the
    # probabilities by more than the 1e-6 asserted below.
    x = _images() / 255
    y = np.random.default_rng(1).integers(0, 3, len(x))
    model = _invariant_model()
    for samples in (3, "all"):
        score = metrics.shift_consistency(model, (x, y), max_shift=4, samples=samples)
        assert score == 1.0
    variation = metrics.classification_variation(model, (x, y), max_shift=4)
    assert 0.0 <= variation < 1e-10
    curves = metrics.diagonal_stability(model, (x, y), max_shift=5)
    assert curves.shape == (len(x), 6)
    np.testing.assert_allclose(curves, curves[:, :1] * np.ones((1, 6)), atol=1e-6)


@pytest.mark.parametrize("max_shift", [2, 3, 5])
def test_parity_model_scores_its_exact_expectation(max_shift):
    x = _images()
    model = _parity_model()
    exact = metrics.shift_consistency(model, x, max_shift=max_shift, samples="all")
    assert exact == pytest.approx(_same_parity_probability(max_shift), abs=1e-12)
    sampled = metrics.shift_consistency(model, x, max_shift=max_shift, samples=100)
    # 2400 pairs: the standard error is about 0.01.
    assert sampled == pytest.approx(_same_parity_probability(max_shift), abs=0.04)


@pytest.mark.parametrize("max_shift", [1, 2, 3])
def test_symmetric_shifts_score_their_exact_expectation(max_shift):
    # dx uniform in [-m, m]: 2m + 1 values, of which those with dx even agree.
    x = _images()
    exact = metrics.shift_consistency(
        _parity_model(), x, max_shift=max_shift, samples="all", symmetric=True
    )
    values = np.arange(-max_shift, max_shift + 1)
    even = np.sum(values % 2 == 0)
    expected = (even**2 + (len(values) - even) ** 2) / len(values) ** 2
    assert exact == pytest.approx(expected, abs=1e-12)
    sampled = metrics.shift_consistency(
        _parity_model(), x, max_shift=max_shift, samples=100, symmetric=True
    )
    assert sampled == pytest.approx(expected, abs=0.04)


@pytest.mark.parametrize(
    "pad_mode, numpy_mode", [("reflect", "reflect"), ("zero", "constant")]
)
def test_crop_consistency_matches_numpy(pad_mode, numpy_mode):
    x = _images(n=10)
    grid = [(dy, dx) for dy in range(3) for dx in range(3)]
    classes = np.array(
        [
            [
                _parity_labels(_reference_shift(im, dy, dx, numpy_mode)[None])[0]
                for dy, dx in grid
            ]
            for im in x
        ]
    )
    expected = (classes[:, :, None] == classes[:, None, :]).mean()
    score = metrics.shift_consistency(
        _parity_model(), x, mode="crop", pad_mode=pad_mode, max_shift=3, samples="all"
    )
    assert score == pytest.approx(expected, abs=1e-12)
    assert score not in (0.0, 1.0)


def test_parity_model_per_pair_agreement_is_the_parity_of_the_draws():
    x = _images()
    rng = np.random.default_rng(5)
    result = metrics.predict_shifted(
        _parity_model(),
        x,
        lambda n: rng.integers(0, 6, size=(n, 4, 2)),
        batch_size=10,
    )
    flips = result.shifts[:, :, 1] % 2 == 1
    expected = np.where(
        flips, 1 - _parity_labels(x)[:, None], _parity_labels(x)[:, None]
    )
    np.testing.assert_array_equal(result.classes, expected)
    assert result.labels is None and result.label_probs is None


def test_parity_model_variation_accuracy_and_diagonal():
    x = _images()
    y = _parity_labels(x)
    model = _parity_model()
    # Correct for even dx only: the probability is 1 on a fraction q of the shifts.
    for max_shift in (2, 3):
        q = ((max_shift + 1) // 2) / max_shift
        variation = metrics.classification_variation(model, (x, y), max_shift=max_shift)
        assert variation == pytest.approx(q * (1 - q), abs=1e-7)
    assert metrics.shifted_accuracy(model, (x, y), max_shift=1) == 1.0
    assert metrics.shifted_accuracy(
        model, (x, y), max_shift=2, samples=100
    ) == pytest.approx(0.5, abs=0.04)
    curves = metrics.diagonal_stability(model, (x, y), max_shift=4)
    np.testing.assert_array_equal(curves, np.tile([1, 0, 1, 0, 1], (len(x), 1)))


def test_data_forms_agree():
    x = _images(n=20)
    y = np.random.default_rng(2).integers(0, 3, len(x))
    model = _invariant_model()

    def accuracy(data, **kwargs):
        return metrics.shifted_accuracy(model, data, max_shift=3, **kwargs)

    expected = float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))
    unbatched = tf.data.Dataset.from_tensor_slices((x, y))
    assert accuracy((x, y)) == pytest.approx(expected)
    assert accuracy(unbatched, batch_size=7) == pytest.approx(expected)
    assert accuracy(unbatched.batch(6)) == pytest.approx(expected)
    assert accuracy((x, np.eye(3)[y])) == pytest.approx(expected)
    limited = metrics.predict_shifted(
        model, unbatched.batch(6), [(0, 0)], max_batches=2
    )
    assert limited.classes.shape == (12, 1)
    with pytest.raises(ValueError, match="needs labels"):
        metrics.classification_variation(model, x, max_shift=2)
    as_dict = tf.data.Dataset.from_tensor_slices({"image": x, "label": y})
    with pytest.raises(ValueError, match="must yield images"):
        metrics.shift_consistency(model, as_dict)


def test_consistency_is_reproducible_with_seed():
    x = _images(n=40)
    inputs = keras.Input((8, 8, 2))
    hidden = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(inputs)
    outputs = keras.layers.Dense(5, activation="softmax")(
        keras.layers.Flatten()(hidden)
    )
    model = keras.Model(inputs, outputs)
    scores = [
        metrics.shift_consistency(model, x, max_shift=4, samples=5, seed=s)
        for s in (1, 1, 2)
    ]
    assert scores[0] == scores[1] and 0.0 <= scores[2] <= 1.0


@pytest.mark.parametrize(
    "kwargs, arg",
    [
        ({"mode": "roll"}, "mode"),
        ({"pad_mode": "edge"}, "pad_mode"),
        ({"max_shift": 0}, "max_shift"),
        ({"samples": 0}, "samples"),
        ({"seed": -1}, "seed"),
        ({"max_batches": 0}, "max_batches"),
    ],
)
def test_bad_arguments(kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        metrics.shift_consistency(_parity_model(), _images(n=2), **kwargs)


def test_labels_beyond_the_outputs_are_an_error():
    x = _images(n=4)
    with pytest.raises(tf.errors.InvalidArgumentError, match="number of model out"):
        metrics.shifted_accuracy(_parity_model(), (x, np.full(4, 2)), max_shift=1)
