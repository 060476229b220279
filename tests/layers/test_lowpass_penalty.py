import os

import keras
import numpy as np
import pytest

from keras_shiftinv import diagnostics
from keras_shiftinv import ops as si_ops
from keras_shiftinv.layers import ShiftInvariantDown
from tests.helpers import input_gradient, run_layer_test
from tests.layers import reference


def _rng(seed=0):
    return np.random.default_rng(seed)


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _model(layer, shape=(8, 8, 3)):
    inputs = keras.Input(shape)
    x = keras.layers.GlobalAveragePooling2D()(layer(inputs))
    return keras.Model(inputs, keras.layers.Dense(2)(x))


@pytest.mark.parametrize(
    "kernel",
    [
        np.ones((1, 1)),
        np.outer([1, 3, 3, 1], [1, 3, 3, 1]),
        np.outer([1, 2, 1], [1, 1]),
        np.array([[1.0, -1.0]]),
        _rng(0).standard_normal((3, 3, 4, 5)),
        _rng(1).standard_normal((6, 6, 2)),
        np.zeros((3, 3)),
    ],
)
def test_share_matches_numpy(kernel):
    share = float(_numpy(si_ops.high_frequency_share(kernel.astype("float32"))))
    np.testing.assert_allclose(share, reference.high_frequency_share(kernel), atol=1e-6)


def test_per_filter_shares_are_those_of_each_last_index():
    kernel = _rng(2).standard_normal((6, 6, 3, 4)).astype("float32")
    kernel[..., 2] = 0.0
    shares = _numpy(si_ops.high_frequency_share(kernel, per_filter=True))
    expected = [reference.high_frequency_share(kernel[..., f]) for f in range(4)]
    np.testing.assert_allclose(shares, expected, atol=1e-6)
    assert shares[2] == 0.0
    with pytest.raises(ValueError, match="kernel"):
        si_ops.high_frequency_share(np.ones((3, 3)), per_filter=True)


def test_gradient_matches_finite_differences():
    kernel = _rng(3).standard_normal((4, 6, 2, 3))
    # The gradient of the sum of the per-filter shares, against central
    # differences of the NumPy reference in float64.
    grad = input_gradient(
        lambda k: si_ops.high_frequency_share(k, per_filter=True),
        kernel.astype("float32"),
    )

    def total(k):
        return sum(reference.high_frequency_share(k[..., f]) for f in range(3))

    eps = 1e-5
    numeric = np.zeros_like(kernel)
    for index in np.ndindex(kernel.shape):
        step = np.zeros_like(kernel)
        step[index] = eps
        numeric[index] = (total(kernel + step) - total(kernel - step)) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-3, atol=1e-5)
    zero = input_gradient(si_ops.high_frequency_share, np.zeros((3, 3), "float32"))
    assert np.all(np.isfinite(zero))


def _impulse_kernel(layer, channels, size=12):
    """The layer's (6, 6, channels, filters) image kernel, read from its responses
    to impulses (zero padding, no bias): output (oy, ox) of an impulse at (py, px)
    is the tap (py + 2 - 2 * oy, px + 2 - 2 * ox)."""
    impulses = list(np.ndindex(channels, 2, 2))
    x = np.zeros((len(impulses), size, size, channels), "float32")
    for b, (c, dy, dx) in enumerate(impulses):
        x[b, size // 2 + dy, size // 2 + dx, c] = 1.0
    y = _numpy(layer(x))
    kernel = np.full((6, 6, channels, layer.filters), np.nan)
    for b, (c, dy, dx) in enumerate(impulses):
        py, px = size // 2 + dy, size // 2 + dx
        for oy, ox in np.ndindex(size // 2, size // 2):
            ty, tx = py + 2 - 2 * oy, px + 2 - 2 * ox
            if 0 <= ty < 6 and 0 <= tx < 6:
                kernel[ty, tx, c] = y[b, oy, ox]
    return kernel


@pytest.mark.parametrize("branch", ["group", "conv3d"])
def test_share_is_the_mean_over_output_channels_of_the_effective_filters(branch):
    channels, filters = 3, 4
    layer = ShiftInvariantDown(filters, branch=branch, use_bias=False)
    layer.build((None, 12, 12, channels))
    effective = _impulse_kernel(layer, channels)
    np.testing.assert_allclose(
        _numpy(layer.effective_kernel()), effective, rtol=1e-5, atol=1e-6
    )
    expected = np.mean(
        [reference.high_frequency_share(effective[..., f]) for f in range(filters)]
    )
    share = float(_numpy(layer.high_frequency_share()))
    np.testing.assert_allclose(share, expected, atol=1e-6)
    _, kernel = diagnostics.effective_filter(layer)
    np.testing.assert_allclose(
        share,
        np.mean([diagnostics.high_frequency_share(kernel[..., f]) for f in range(4)]),
        atol=1e-6,
    )


@pytest.mark.parametrize("branch", ["group", "conv3d"])
def test_the_loss_is_added_while_training_only(branch):
    layer = ShiftInvariantDown(4, branch=branch, lowpass_penalty=2.5)
    model = _model(layer)
    x = _rng(4).standard_normal((2, 8, 8, 3)).astype("float32")
    model(x)
    assert model.losses == []
    model(x, training=True)
    (loss,) = model.losses
    expected = 2.5 * float(_numpy(layer.high_frequency_share()))
    np.testing.assert_allclose(float(_numpy(loss)), expected, rtol=1e-6)
    # fit's loss is the data loss plus the penalty; evaluate's is not.
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    target = np.zeros((2, 2), "float32")
    data_loss = model.evaluate(x, target, verbose=0)
    history = model.fit(x, target, batch_size=2, epochs=1, verbose=0)
    np.testing.assert_allclose(
        history.history["loss"][0], data_loss + expected, rtol=1e-5
    )


def test_zero_adds_no_loss_and_old_configs_load():
    layer = ShiftInvariantDown(4)
    assert layer.lowpass_penalty == 0.0
    model = _model(layer)
    model(np.ones((1, 8, 8, 3), "float32"), training=True)
    assert model.losses == []
    config = layer.get_config()
    assert config["lowpass_penalty"] == 0.0
    del config["lowpass_penalty"]  # a config saved before the option existed
    assert ShiftInvariantDown.from_config(config).lowpass_penalty == 0.0


def test_config_and_keras_file_round_trip(tmp_path):
    layer = run_layer_test(
        ShiftInvariantDown,
        {"filters": 4, "branch": "conv3d", "lowpass_penalty": 0.5},
        (2, 8, 8, 3),
        (2, 4, 4, 4),
        tmp_path,
        check_mixed_precision=False,
    )
    assert layer.get_config()["lowpass_penalty"] == 0.5
    model = _model(ShiftInvariantDown(4, lowpass_penalty=0.5))
    path = os.path.join(tmp_path, "penalty.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = np.ones((1, 8, 8, 3), "float32")
    model(x, training=True)
    loaded(x, training=True)
    np.testing.assert_allclose(
        [float(_numpy(v)) for v in loaded.losses],
        [float(_numpy(v)) for v in model.losses],
        rtol=1e-6,
    )


@pytest.mark.parametrize("value", [-0.1, float("inf"), float("nan"), "1", True, None])
def test_bad_penalty_names_itself(value):
    with pytest.raises(ValueError, match="lowpass_penalty"):
        ShiftInvariantDown(4, lowpass_penalty=value)


@pytest.mark.parametrize("branch", ["group", "conv3d"])
def test_fit_with_a_large_weight_lowers_the_share(branch):
    keras.utils.set_random_seed(0)
    layer = ShiftInvariantDown(4, branch=branch, lowpass_penalty=10.0)
    model = _model(layer)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x = _rng(5).standard_normal((8, 8, 8, 3)).astype("float32")
    y = _rng(6).standard_normal((8, 2)).astype("float32")
    before = float(_numpy(layer.high_frequency_share()))
    model.fit(x, y, batch_size=8, epochs=5, verbose=0)
    after = float(_numpy(layer.high_frequency_share()))
    # A random (he_normal) start is nearly white: 0.75.
    assert before > 0.6
    assert after < before - 0.1
