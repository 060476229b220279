"""Inputs an adversarial user gives every layer: NaNs, out-of-range indices, empty
batches, integer and bool images, NumPy integers as arguments, huge filters. None may
give another image's answer, a wrong shape or a backend traceback."""

import json
import math
from fractions import Fraction

import keras
import numpy as np
import pytest

import zoo
from keras_shiftinv import antialias, filters
from keras_shiftinv import ops as si_ops
from keras_shiftinv.layers import (
    BlurPool2D,
    CircularPadding2D,
    MaxBlurPool2D,
    OffsetSubsample,
    PolyphaseDown2D,
    PolyphaseGather2D,
    ShiftInvariantDown,
)
from keras_shiftinv.validation import MAX_FILT_SIZE
from tests.layers import reference, reference_polyphase

# (layer class, arguments): every layer of the package that takes one image tensor.
IMAGE_LAYERS = [
    (BlurPool2D, {}),
    (BlurPool2D, {"pad_mode": "zero", "filt_size": 3}),
    (MaxBlurPool2D, {}),
    (OffsetSubsample, {}),
    (CircularPadding2D, {"padding": 1}),
    (PolyphaseDown2D, {"filt_size": 3}),
    (ShiftInvariantDown, {"filters": 4}),
    (ShiftInvariantDown, {"filters": 4, "branch": "conv3d"}),
    (ShiftInvariantDown, {"filters": 4, "polyphase_order": "aps"}),
]
LAYER_IDS = [f"{cls.__name__}-{i}" for i, (cls, _) in enumerate(IMAGE_LAYERS)]


def _numpy(outputs):
    return [keras.ops.convert_to_numpy(o) for o in keras.tree.flatten(outputs)]


def _images(n=3, size=8, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, size, size, channels)).astype("float32")


@pytest.mark.parametrize("criterion", ["l2", "l1", "linf"])
@pytest.mark.parametrize("bad", [0, 2])  # the first image, or the last one
def test_polyphase_down_nan_image_keeps_its_own_component(criterion, bad):
    x = _images()
    # Row 1, column 1: in component (1, 1), index 3.
    x[bad, 1, 1, 0] = np.nan
    y, index = _numpy(PolyphaseDown2D(criterion=criterion, return_indices=True)(x))
    assert index[bad] == 3
    np.testing.assert_array_equal(y[bad], x[bad, 1::2, 1::2])
    assert np.isnan(y[bad, 0, 0, 0])
    # The other images get what they get alone.
    clean = [k for k in range(len(x)) if k != bad]
    expected_y, expected_index = reference_polyphase.polyphase_down(
        x[clean], 2, criterion, 1, "circular"
    )
    np.testing.assert_array_equal(index[clean], expected_index)
    np.testing.assert_allclose(y[clean], expected_y, rtol=1e-6)


def test_polyphase_down_nan_follows_a_circular_shift():
    # Invariance holds for the NaN image too: the component holding the NaN moves
    # with it.
    x = _images(n=1)
    x[0, 2, 4, 1] = np.nan
    layer = PolyphaseDown2D(return_indices=True)
    y, index = _numpy(layer(x))
    y_shifted, index_shifted = _numpy(layer(np.roll(x, (1, 3), axis=(1, 2))))
    assert (index[0], index_shifted[0]) == (0, 3)
    np.testing.assert_array_equal(y_shifted, np.roll(y, (0, 1), axis=(1, 2)))


@pytest.mark.parametrize("bad", [0, 2])
def test_aps_shift_invariant_down_nan_image_does_not_leak(bad):
    x = _images()
    x[bad, 3, 2, 2] = np.nan
    layer = ShiftInvariantDown(4, polyphase_order="aps", pad_mode="circular")
    y = _numpy(layer(x))[0]
    clean = [k for k in range(len(x)) if k != bad]
    np.testing.assert_allclose(y[clean], _numpy(layer(x[clean]))[0], rtol=1e-5)


def test_polyphase_gather_clips_indices_to_the_own_image():
    x = _images(n=4)
    indices = np.array([-1, 4, 7, 2], "int32")
    y = _numpy(PolyphaseGather2D()([x, indices]))[0]
    for k, i in enumerate(np.clip(indices, 0, 3)):
        np.testing.assert_array_equal(y[k], x[k, i // 2 :: 2, i % 2 :: 2])


def _with_batch(shape, batch):
    return (batch, *shape[1:])


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("cls, kwargs", IMAGE_LAYERS, ids=LAYER_IDS)
def test_empty_batch_gives_an_empty_output_of_the_right_shape(cls, kwargs, data_format):
    layer = cls(**kwargs, data_format=data_format)
    x = reference.to_format(_images(n=1), data_format)
    one = _numpy(layer(x))
    empty = _numpy(layer(x[:0]))
    assert [e.shape for e in empty] == [_with_batch(o.shape, 0) for o in one]
    assert [e.dtype for e in empty] == [o.dtype for o in one]


def test_empty_batch_of_polyphase_down_indices_and_gather():
    x = _images(n=0)
    y, index = _numpy(PolyphaseDown2D(return_indices=True)(x))
    assert y.shape == (0, 4, 4, 3) and index.shape == (0,)
    gathered = _numpy(PolyphaseGather2D()([x, np.zeros((0,), "int32")]))[0]
    assert gathered.shape == (0, 4, 4, 3)


@pytest.mark.parametrize("dtype", ["uint8", "int32", "bool"])
@pytest.mark.parametrize("cls, kwargs", IMAGE_LAYERS, ids=LAYER_IDS)
def test_integer_and_bool_inputs_are_cast_to_the_compute_dtype(cls, kwargs, dtype):
    layer = cls(**kwargs)
    pixels = np.random.default_rng(1).integers(0, 256, (2, 8, 8, 3))
    x = (pixels > 127) if dtype == "bool" else pixels.astype(dtype)
    outputs = _numpy(layer(x))
    expected = _numpy(layer(x.astype("float32")))
    assert outputs[0].dtype == np.dtype(layer.compute_dtype)
    for out, ref in zip(outputs, expected, strict=True):
        np.testing.assert_array_equal(out, ref)


def test_integer_images_into_polyphase_gather():
    pixels = np.random.default_rng(2).integers(0, 256, (2, 6, 6, 2)).astype("uint8")
    indices = np.array([1, 2], "int32")
    y = _numpy(PolyphaseGather2D()([pixels, indices]))[0]
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y[0], pixels[0, 0::2, 1::2])
    np.testing.assert_array_equal(y[1], pixels[1, 1::2, 0::2])


@pytest.mark.parametrize(
    "cls, numpy_kwargs",
    [
        (BlurPool2D, {"filt_size": np.int64(3), "strides": np.int32(2)}),
        (MaxBlurPool2D, {"pool_size": np.int64(2), "filt_size": np.uint8(3)}),
        (OffsetSubsample, {"strides": (np.int64(2), np.int16(1))}),
        (CircularPadding2D, {"padding": np.int64(2)}),
        (PolyphaseDown2D, {"strides": np.int64(2), "filt_size": np.int64(2)}),
        (PolyphaseGather2D, {"strides": np.int64(2)}),
        (ShiftInvariantDown, {"filters": np.int64(4), "kernel_size": np.int64(3)}),
    ],
)
def test_numpy_integers_are_integer_arguments(cls, numpy_kwargs):
    layer = cls(**numpy_kwargs, name="layer")
    plain = cls(**{k: _python(v) for k, v in numpy_kwargs.items()}, name="layer")
    # The config is JSON (a saved model's) and holds plain ints.
    assert json.dumps(layer.get_config()) == json.dumps(plain.get_config())


def _python(value):
    return tuple(int(v) for v in value) if isinstance(value, tuple) else int(value)


def test_numpy_integer_filt_size_computes_the_same_blur():
    x = _images()
    np.testing.assert_array_equal(
        _numpy(BlurPool2D(filt_size=np.int64(5))(x))[0],
        _numpy(BlurPool2D(filt_size=5)(x))[0],
    )


def _kernel_is_exact_in_float32(filt_size):
    n = filt_size - 1
    taps = np.array([math.comb(n, k) for k in range(filt_size)]) / 2.0**n
    kernel = np.outer(taps, taps)
    return all(
        Fraction(float(np.float32(kernel[i, j])))
        == Fraction(math.comb(n, i) * math.comb(n, j), 4**n)
        for i in range(filt_size)
        for j in range(filt_size)
    )


def test_filt_size_cap_is_the_largest_exact_float32_kernel():
    assert all(_kernel_is_exact_in_float32(k) for k in range(1, MAX_FILT_SIZE + 1))
    assert not _kernel_is_exact_in_float32(MAX_FILT_SIZE + 1)


def test_largest_filt_size_matches_numpy():
    x = _images(n=2, size=20)
    y = _numpy(BlurPool2D(filt_size=MAX_FILT_SIZE)(x))[0]
    expected = reference.blur_pool(x, MAX_FILT_SIZE, 2, "reflect")
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("filt_size", [MAX_FILT_SIZE + 1, 5000, 10**6])
@pytest.mark.parametrize(
    "make",
    [
        BlurPool2D,
        MaxBlurPool2D,
        PolyphaseDown2D,
        lambda filt_size: si_ops.blur_pool2d(_images(), filt_size),
        filters.binomial_filter,
        # The zoo and antialias() take filt_size too.
        lambda filt_size: zoo.resnet18(variant="blur", filt_size=filt_size),
        lambda filt_size: antialias(
            keras.Sequential([keras.Input((8, 8, 1)), keras.layers.MaxPooling2D()]),
            filt_size=filt_size,
        ),
    ],
)
def test_too_large_filt_size_is_a_clear_error(make, filt_size):
    with pytest.raises(ValueError, match=f"Received: filt_size={filt_size}$"):
        make(filt_size=filt_size)
