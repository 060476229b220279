import keras
import numpy as np
import pytest

from keras_shiftinv import filters
from keras_shiftinv import ops as si_ops
from keras_shiftinv.layers import BlurPool2D, MaxBlurPool2D
from tests.helpers import input_gradient, run_layer_test
from tests.layers import reference

PAD_MODES = ("reflect", "replicate", "zero", "circular")
FORMATS = ("channels_last", "channels_first")


def _run(layer, x_last, data_format):
    x = reference.to_format(x_last, data_format)
    return reference.to_last(keras.ops.convert_to_numpy(layer(x)), data_format)


@pytest.mark.parametrize("filt_size", range(1, 8))
@pytest.mark.parametrize("pad_mode", PAD_MODES)
@pytest.mark.parametrize("strides", [1, 2, 3, (2, 1)])
def test_blur_pool_matches_numpy(filt_size, pad_mode, strides):
    rng = np.random.default_rng(filt_size)
    for h, w in ((8, 8), (9, 7)):
        x = rng.standard_normal((2, h, w, 3)).astype("float32")
        expected = reference.blur_pool(x, filt_size, strides, pad_mode)
        for data_format in FORMATS:
            layer = BlurPool2D(filt_size, strides, pad_mode, data_format=data_format)
            np.testing.assert_allclose(
                _run(layer, x, data_format), expected, rtol=1e-5, atol=1e-5
            )


@pytest.mark.parametrize("filt_size", [5, 7])
def test_circular_blur_pool_of_a_map_smaller_than_the_filter(filt_size):
    # A 7-tap circular blur of a 2x3 map wraps around more than once.
    x = np.random.default_rng(0).standard_normal((2, 2, 3, 4)).astype("float32")
    expected = reference.blur_pool(x, filt_size, 2, "circular")
    for data_format in FORMATS:
        layer = BlurPool2D(filt_size, 2, "circular", data_format=data_format)
        np.testing.assert_allclose(
            _run(layer, x, data_format), expected, rtol=1e-5, atol=1e-5
        )


@pytest.mark.parametrize("filt_size", range(2, 8))
@pytest.mark.parametrize("pad_mode", PAD_MODES)
def test_both_portable_blur_formulations_are_exact(filt_size, pad_mode):
    # The portable path takes one formulation when the sizes are known and the other
    # when they are not: each must match the reference, and their gradients must
    # agree, on every backend.
    rng = np.random.default_rng(filt_size)
    taps = filters.binomial_filter(filt_size)
    pad = filters.blur_padding(filt_size)
    for (h, w), strides, data_format in [
        ((9, 7), (2, 3), "channels_last"),
        ((8, 8), (1, 2), "channels_first"),
        ((7, 10), (3, 1), "channels_last"),
    ]:
        x_last = rng.standard_normal((2, h, w, 3)).astype("float32")
        expected = reference.blur_pool(x_last, filt_size, strides, pad_mode)
        upstream = reference.to_format(
            rng.standard_normal(expected.shape).astype("float32"), data_format
        )
        x = reference.to_format(x_last, data_format)
        gradients = []
        for blur in (si_ops._blur_gather, si_ops._blur_padded_depthwise):
            args = (taps, strides, pad, pad_mode, data_format)
            got = keras.ops.convert_to_numpy(blur(x, *args))
            np.testing.assert_allclose(
                reference.to_last(got, data_format), expected, rtol=1e-5, atol=1e-5
            )
            gradients.append(
                input_gradient(
                    lambda v, b=blur, a=args, u=upstream: keras.ops.multiply(
                        b(v, *a), u
                    ),
                    x,
                )
            )
        np.testing.assert_allclose(*gradients, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pool_size", [2, 3, (2, 3)])
@pytest.mark.parametrize("pad_mode", PAD_MODES)
def test_max_blur_pool_matches_numpy(pool_size, pad_mode):
    x = np.random.default_rng(1).standard_normal((2, 11, 10, 4)).astype("float32")
    expected = reference.blur_pool(
        reference.max_pool_dense(x, pool_size), 4, 2, pad_mode
    )
    for data_format in FORMATS:
        layer = MaxBlurPool2D(pool_size, 4, 2, pad_mode, data_format=data_format)
        np.testing.assert_allclose(
            _run(layer, x, data_format), expected, rtol=1e-5, atol=1e-5
        )


@pytest.mark.parametrize("strides", [1, 2, 3])
def test_filt_size_one_is_plain_subsampling(strides):
    x = np.random.default_rng(2).standard_normal((2, 10, 9, 3)).astype("float32")
    y = keras.ops.convert_to_numpy(BlurPool2D(filt_size=1, strides=strides)(x))
    np.testing.assert_array_equal(y, x[:, ::strides, ::strides, :])


@pytest.mark.parametrize("filt_size", [2, 3, 4, 5, 7])
@pytest.mark.parametrize("strides", [2, 3])
def test_circular_shift_by_stride_shifts_output_by_one(filt_size, strides):
    x = np.random.default_rng(3).standard_normal((2, 12, 12, 3)).astype("float32")
    layer = BlurPool2D(filt_size, strides, pad_mode="circular")
    y = keras.ops.convert_to_numpy(layer(x))
    for dy, dx in ((1, 0), (0, 1), (1, 2)):
        shifted = np.roll(x, (dy * strides, dx * strides), axis=(1, 2))
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(layer(shifted)),
            np.roll(y, (dy, dx), axis=(1, 2)),
            rtol=1e-5,
            atol=1e-5,
        )


@pytest.mark.parametrize("pad_mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("filt_size", [2, 4, 7])
def test_constant_image_stays_constant(pad_mode, filt_size):
    x = np.full((1, 9, 8, 2), 3.5, "float32")
    y = keras.ops.convert_to_numpy(BlurPool2D(filt_size, 2, pad_mode)(x))
    np.testing.assert_allclose(y, 3.5, rtol=1e-6)
    y = keras.ops.convert_to_numpy(MaxBlurPool2D(2, filt_size, 2, pad_mode)(x))
    np.testing.assert_allclose(y, 3.5, rtol=1e-6)


def test_zero_padding_darkens_only_the_border():
    x = np.ones((1, 12, 12, 1), "float32")
    y = keras.ops.convert_to_numpy(BlurPool2D(5, 2, "zero")(x))[0, :, :, 0]
    np.testing.assert_allclose(y[1:-1, 1:-1], 1.0, rtol=1e-6)
    assert (y[0] < 1).all() and (y[:, -1] < 1).all()


@pytest.mark.parametrize("filt_size", [2, 4, 5])
def test_circular_blur_preserves_the_sum(filt_size):
    x = np.random.default_rng(4).random((2, 10, 10, 3)).astype("float32")
    y = keras.ops.convert_to_numpy(BlurPool2D(filt_size, 1, "circular")(x))
    np.testing.assert_allclose(y.sum(axis=(1, 2)), x.sum(axis=(1, 2)), rtol=1e-5)


@pytest.mark.parametrize("pad_mode", PAD_MODES)
def test_gradient_reaches_every_input_pixel(pad_mode):
    x = np.random.default_rng(5).standard_normal((2, 9, 10, 3)).astype("float32")
    grad = input_gradient(BlurPool2D(pad_mode=pad_mode), x)
    assert grad.shape == x.shape
    assert np.all(np.abs(grad) > 0)


def test_max_blur_pool_gradient_follows_the_dense_maximum():
    # Dense max pooling routes the gradient to the winner of each 2x2 window, and
    # the circular blur gives every dense position a positive weight.
    x = np.random.default_rng(6).standard_normal((1, 8, 8, 2)).astype("float32")
    grad = input_gradient(MaxBlurPool2D(pad_mode="circular"), x)
    winners = np.zeros_like(x, bool)
    for u in range(7):
        for v in range(7):
            window = x[0, u : u + 2, v : v + 2]
            flat = window.reshape(4, 2).argmax(0)
            for c in range(2):
                winners[0, u + flat[c] // 2, v + flat[c] % 2, c] = True
    np.testing.assert_array_equal(np.abs(grad) > 0, winners)


@pytest.mark.parametrize("data_format", FORMATS)
def test_blur_pool_layer_contract(data_format, tmp_path):
    shape = (2, 9, 8, 4) if data_format == "channels_last" else (2, 4, 9, 8)
    expected = (2, 5, 4, 4) if data_format == "channels_last" else (2, 4, 5, 4)
    run_layer_test(
        BlurPool2D,
        {
            "filt_size": 3,
            "strides": 2,
            "pad_mode": "replicate",
            "data_format": data_format,
        },
        shape,
        expected,
        tmp_path,
    )


@pytest.mark.parametrize("data_format", FORMATS)
def test_max_blur_pool_layer_contract(data_format, tmp_path):
    shape = (2, 9, 8, 4) if data_format == "channels_last" else (2, 4, 9, 8)
    expected = (2, 4, 4, 4) if data_format == "channels_last" else (2, 4, 4, 4)
    run_layer_test(
        MaxBlurPool2D,
        {
            "pool_size": 2,
            "filt_size": 4,
            "strides": 2,
            "pad_mode": "reflect",
            "data_format": data_format,
        },
        shape,
        expected,
        tmp_path,
    )


def test_filter_is_not_a_weight():
    layer = BlurPool2D()
    layer.build((None, 8, 8, 3))
    assert layer.weights == []
    layer = MaxBlurPool2D()
    layer.build((None, 8, 8, 3))
    assert layer.weights == []


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"filt_size": 0}, "filt_size"),
        ({"filt_size": 2.5}, "filt_size"),
        ({"pad_mode": "mirror"}, "pad_mode"),
        ({"strides": 0}, "strides"),
        ({"strides": (2, 2, 2)}, "strides"),
        ({"data_format": "NHWC"}, "data_format"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, name):
    for layer_cls in (BlurPool2D, MaxBlurPool2D):
        with pytest.raises(ValueError, match=name):
            layer_cls(**kwargs)
    with pytest.raises(ValueError, match="pool_size"):
        MaxBlurPool2D(pool_size=0)


def test_bad_inputs_give_clear_errors():
    with pytest.raises(ValueError, match="rank-4"):
        BlurPool2D()(np.zeros((2, 8, 8), "float32"))
    with pytest.raises(ValueError, match="reflect"):
        BlurPool2D(filt_size=7)(np.zeros((1, 3, 8, 1), "float32"))
    with pytest.raises(ValueError, match="pool_size"):
        MaxBlurPool2D(pool_size=3)(np.zeros((1, 2, 8, 1), "float32"))
