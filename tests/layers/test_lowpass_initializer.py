import os

import keras
import numpy as np
import pytest

from keras_shiftinv import diagnostics
from keras_shiftinv.initializers import LowPass
from keras_shiftinv.layers import BlurPool2D, ShiftInvariantDown
from tests.helpers import _fit_step
from tests.layers import reference


def _x(shape=(2, 16, 12, 5), seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def _numpy(layer, x):
    return keras.ops.convert_to_numpy(layer(x))


@pytest.mark.parametrize("pad_mode", ["zero", "circular"])
@pytest.mark.parametrize("filt_size", [1, 2, 3, 4, 5, 6])
def test_group_module_starts_as_blur_pool(filt_size, pad_mode):
    x = _x()
    layer = ShiftInvariantDown(
        5, kernel_initializer=LowPass(filt_size), pad_mode=pad_mode
    )
    expected = reference.blur_pool(x, filt_size, 2, pad_mode)
    np.testing.assert_allclose(_numpy(layer, x), expected, atol=1e-5)


@pytest.mark.parametrize("pad_mode", ["zero", "circular"])
def test_string_lowpass_is_four_taps_and_equals_the_layer(pad_mode):
    x = _x()
    layer = ShiftInvariantDown(5, kernel_initializer="lowpass", pad_mode=pad_mode)
    blur = BlurPool2D(4, pad_mode=pad_mode)
    np.testing.assert_allclose(_numpy(layer, x), _numpy(blur, x), atol=1e-5)
    assert layer.kernel_initializer.filt_size == 4


@pytest.mark.parametrize("branch", ["group", "conv3d"])
@pytest.mark.parametrize("filters", [3, 8])
def test_other_widths_start_as_blur_then_a_1x1_conv(branch, filters):
    # With filt_size 2 both branches hold the filter exactly; the 1x1 conv is the
    # layer's own (Glorot) draw, read back through the folded kernel's channels.
    x = _x()
    layer = ShiftInvariantDown(
        filters, branch=branch, kernel_size=1, kernel_initializer=LowPass(2)
    )
    y = _numpy(layer, x)
    blurred = reference.blur_pool(x, 2, 2, "zero")
    # The output is linear in the blurred channels: solve for the 1x1 kernel.
    mixing, *_ = np.linalg.lstsq(
        blurred.reshape(-1, 5), y.reshape(-1, filters), rcond=None
    )
    np.testing.assert_allclose(blurred @ mixing, y, atol=1e-5)
    assert np.abs(mixing).max() > 0.1
    limit = np.sqrt(6 / (5 + filters))  # Glorot uniform's bound
    assert np.abs(mixing).max() <= limit + 1e-6


def _conv3d_effective_filter(filt_size):
    """The 6x6 image filter closest (least squares) to the binomial among those a
    conv3d module with summed depth outputs can make: per tap, the 4 component
    values (E0, E1, E2, E3) = (P, P + Q, Q + R, R)."""
    taps = np.array([1, 3, 3, 1], float) / 8 if filt_size == 4 else None
    one = np.zeros(6)
    one[1:5] = taps  # image offsets -2..3, the filter's -1..2
    target = np.outer(one, one).reshape(3, 2, 3, 2)  # (i, dy, j, dx)
    design = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1], [0, 0, 1]], float)
    effective = np.zeros_like(target)
    for i in range(3):
        for j in range(3):
            values = target[i, :, j, :].reshape(4)
            solution, *_ = np.linalg.lstsq(design, values, rcond=None)
            effective[i, :, j, :] = (design @ solution).reshape(2, 2)
    return effective.reshape(6, 6)


def _strided_filter(x, kernel, pad_mode):
    """Per channel, y[p, q] = sum kernel[u + 2, v + 2] x[2p + u, 2q + v] for
    u, v in -2..3, with zeros or wrap-around outside."""
    mode = reference.NP_PAD_MODE[pad_mode]
    xp = np.pad(x.astype(float), ((0, 0), (2, 3), (2, 3), (0, 0)), mode)
    n, h, w, c = x.shape
    out = np.zeros((n, h // 2, w // 2, c))
    for p in range(h // 2):
        for q in range(w // 2):
            window = xp[:, 2 * p : 2 * p + 6, 2 * q : 2 * q + 6]
            out[:, p, q] = np.einsum("nuvc,uv->nc", window, kernel)
    return out


@pytest.mark.parametrize("pad_mode", ["zero", "circular"])
def test_conv3d_module_starts_as_its_closest_low_pass(pad_mode):
    x = _x()
    layer = ShiftInvariantDown(
        5, branch="conv3d", kernel_initializer="lowpass", pad_mode=pad_mode
    )
    kernel = _conv3d_effective_filter(4)
    np.testing.assert_allclose(
        _numpy(layer, x), _strided_filter(x, kernel, pad_mode), atol=1e-5
    )
    # A low-pass filter: between the 3- and 4-tap binomials, far from white.
    share = diagnostics.high_frequency_share(kernel)
    assert diagnostics.reference_share(4) < share < diagnostics.reference_share(3)
    assert kernel.sum() == pytest.approx(1.0)


def _mixing_fit(inputs, outputs):
    """The 1x1 kernel (least squares) from `inputs` to `outputs` (channels last)
    and the largest error of that linear fit."""
    channels, filters = inputs.shape[-1], outputs.shape[-1]
    mixing, *_ = np.linalg.lstsq(
        inputs.reshape(-1, channels), outputs.reshape(-1, filters), rcond=None
    )
    return mixing, np.abs(inputs @ mixing - outputs).max()


@pytest.mark.parametrize("pad_mode", ["zero", "circular"])
@pytest.mark.parametrize("filt_size", [3, 4, 5])
@pytest.mark.parametrize("filters", [10, 13])
def test_conv3d_with_twice_the_channels_is_exactly_blur_then_1x1(
    filters, filt_size, pad_mode
):
    # 5 input channels: from 10 filters on, two Conv3D filters per channel hold
    # the binomial exactly.
    x = _x()
    layer = ShiftInvariantDown(
        filters,
        branch="conv3d",
        kernel_initializer=LowPass(filt_size),
        pad_mode=pad_mode,
    )
    mixing, error = _mixing_fit(
        reference.blur_pool(x, filt_size, 2, pad_mode), _numpy(layer, x)
    )
    assert error < 1e-5
    limit = np.sqrt(6 / (5 + filters))  # Glorot uniform's bound
    assert 0.1 < np.abs(mixing).max() <= limit + 1e-6
    # Filters beyond twice the channels add nothing yet, but have kernels.
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    pointwise = keras.ops.convert_to_numpy(layer.pointwise_kernel)[0, 0]
    assert np.all(pointwise[20:] == 0)
    assert np.all(np.abs(kernel[..., 10:]).sum(axis=(0, 1, 2, 3)) > 0)


@pytest.mark.parametrize("filters", [6, 9])
def test_conv3d_with_fewer_filters_is_its_closest_low_pass_then_1x1(filters):
    x = _x()
    layer = ShiftInvariantDown(filters, branch="conv3d", kernel_initializer="lowpass")
    closest = _strided_filter(x, _conv3d_effective_filter(4), "zero")
    _, error = _mixing_fit(closest, _numpy(layer, x))
    assert error < 1e-5
    # ...which is not the blur.
    _, error = _mixing_fit(reference.blur_pool(x, 4, 2, "zero"), _numpy(layer, x))
    assert error > 1e-2


def test_exact_conv3d_start_trains_every_weight():
    _fit_step(
        ShiftInvariantDown,
        {"filters": 7, "branch": "conv3d", "kernel_initializer": "lowpass"},
        _x((2, 8, 8, 3)),
    )


@pytest.mark.parametrize("branch", ["group", "conv3d"])
def test_training_moves_the_module_and_round_trips(branch, tmp_path):
    x = _x((4, 8, 8, 3))
    inputs = keras.Input((8, 8, 3))
    layer = ShiftInvariantDown(3, branch=branch, kernel_initializer="lowpass")
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(layer(inputs)))
    model = keras.Model(inputs, outputs)
    before = _numpy(layer, x)

    config = layer.get_config()
    clone = ShiftInvariantDown.from_config(config)
    assert isinstance(clone.kernel_initializer, LowPass)
    assert clone.get_config() == config
    np.testing.assert_allclose(_numpy(clone, x), before, atol=1e-6)

    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    model.fit(x, np.ones((4, 2), "float32"), epochs=1, batch_size=4, verbose=0)
    after = _numpy(layer, x)
    assert np.abs(after - before).max() > 1e-4

    path = os.path.join(tmp_path, "lowpass.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x)),
        keras.ops.convert_to_numpy(model(x)),
        atol=1e-6,
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kernel_size": 1},  # holds 2 taps at stride 2
        {"kernel_size": 3, "kernel_initializer": LowPass(7)},  # holds 6
        {"kernel_size": 1, "strides": 3, "kernel_initializer": LowPass(4)},
    ],
)
def test_kernel_too_small_for_the_filter(kwargs):
    kwargs = {"kernel_initializer": "lowpass", **kwargs}
    with pytest.raises(ValueError, match="filt_size="):
        ShiftInvariantDown(4, **kwargs)


def test_stride_three_holds_more_taps():
    # At stride 3 a 1x1 kernel covers offsets 0..2: a 2-tap filter fits.
    x = _x((1, 9, 9, 2))
    layer = ShiftInvariantDown(
        2, kernel_size=1, strides=3, kernel_initializer=LowPass(2)
    )
    np.testing.assert_allclose(
        _numpy(layer, x), reference.blur_pool(x, 2, 3, "zero"), atol=1e-5
    )


def test_lowpass_alone_is_not_a_weight_initializer():
    with pytest.raises(ValueError, match="ShiftInvariantDown"):
        LowPass()((3, 3))
    with pytest.raises(ValueError, match="filt_size"):
        LowPass(0)
