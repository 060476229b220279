import os

import keras
import numpy as np
import pytest

from keras_shiftinv.layers import PolyphaseDown2D, PolyphaseGather2D
from tests.helpers import dtype_policy, input_gradient, run_layer_test
from tests.layers import reference, reference_polyphase

SHIFTS = [(dy, dx) for dy in range(4) for dx in range(4)]


def _numpy(outputs):
    return [keras.ops.convert_to_numpy(o) for o in keras.tree.flatten(outputs)]


@pytest.mark.parametrize(
    "strides, filt_size, pad_mode, size, data_format",
    [
        (2, 1, "circular", (8, 8), "channels_last"),
        (2, 3, "reflect", (9, 7), "channels_first"),
        (3, 1, "zero", (7, 9), "channels_last"),
        ((2, 1), 4, "circular", (6, 5), "channels_first"),
    ],
)
def test_matches_numpy(strides, filt_size, pad_mode, size, data_format):
    x = np.random.default_rng(0).standard_normal((4, *size, 3)).astype("float32")
    for criterion in ("l2", "l1", "linf"):
        layer = PolyphaseDown2D(
            strides, criterion, filt_size, pad_mode, True, data_format=data_format
        )
        y, index = _numpy(layer(reference.to_format(x, data_format)))
        expected_y, expected_index = reference_polyphase.polyphase_down(
            x, strides, criterion, filt_size, pad_mode
        )
        assert index.dtype == np.int32 and index.shape == (4,)
        np.testing.assert_array_equal(index, expected_index)
        np.testing.assert_allclose(
            reference.to_last(y, data_format), expected_y, rtol=1e-5, atol=1e-5
        )


@pytest.mark.parametrize("filt_size", [1, 3])
def test_exactly_invariant_to_circular_shifts(filt_size):
    x = np.random.default_rng(1).standard_normal((3, 12, 12, 4)).astype("float32")
    layer = PolyphaseDown2D(filt_size=filt_size, pad_mode="circular")
    pooled = np.mean(_numpy(layer(x))[0], axis=(1, 2))
    for dy, dx in SHIFTS:
        shifted = np.roll(x, (dy, dx), axis=(1, 2))
        y = _numpy(layer(shifted))[0]
        np.testing.assert_allclose(y.mean(axis=(1, 2)), pooled, rtol=1e-5, atol=1e-5)
    # Stronger: the output itself moves with the input, by whole output pixels.
    y = _numpy(layer(x))[0]
    shifted = _numpy(layer(np.roll(x, (2, 4), axis=(1, 2))))[0]
    np.testing.assert_allclose(shifted, np.roll(y, (1, 2), axis=(1, 2)), atol=1e-6)


def test_plain_subsampling_is_not_invariant():
    # The property above is not trivially true of any stride-2 sampling.
    x = np.random.default_rng(1).standard_normal((3, 12, 12, 4)).astype("float32")
    pooled = x[:, ::2, ::2].mean(axis=(1, 2))
    shifted = np.roll(x, (1, 0), axis=(1, 2))[:, ::2, ::2].mean(axis=(1, 2))
    assert np.abs(shifted - pooled).max() > 1e-3


def test_ties_are_deterministic_and_follow_the_content():
    # A +-1 checkerboard: every component has the same norm; the larger sum
    # picks the +1 phase, so a one-pixel shift still gives the same output.
    board = np.indices((8, 8)).sum(axis=0) % 2 * -2.0 + 1.0
    x = board[None, :, :, None].astype("float32")
    layer = PolyphaseDown2D(return_indices=True)
    y, index = _numpy(layer(x))
    np.testing.assert_array_equal(index, [0])
    np.testing.assert_array_equal(y, 1.0)
    y, index = _numpy(layer(np.roll(x, 1, axis=2)))
    np.testing.assert_array_equal(index, [1])
    np.testing.assert_array_equal(y, 1.0)
    # A constant image ties on both keys: the lowest index wins.
    _, index = _numpy(layer(np.ones((2, 6, 6, 1), "float32")))
    np.testing.assert_array_equal(index, [0, 0])


def test_gradient_goes_to_the_chosen_component_only():
    x = np.random.default_rng(2).standard_normal((3, 6, 8, 2)).astype("float32")
    layer = PolyphaseDown2D(strides=2, return_indices=True)
    _, index = _numpy(layer(x))
    grad = input_gradient(lambda v: layer(v)[0], x)
    expected = np.zeros_like(x)
    for n, i in enumerate(index):
        expected[n, i // 2 :: 2, i % 2 :: 2] = 1.0
    np.testing.assert_array_equal(grad, expected)


def test_gradient_reaches_every_input_element_with_a_blur():
    x = np.random.default_rng(3).standard_normal((2, 7, 8, 3)).astype("float32")
    grad = input_gradient(PolyphaseDown2D(filt_size=3), x)
    assert np.all(np.abs(grad) > 0)


@pytest.mark.parametrize(
    "strides, data_format", [(2, "channels_last"), ((3, 2), "channels_first")]
)
def test_gather_samples_the_chosen_component(strides, data_format):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 12, 10, 3)).astype("float32")
    other = rng.standard_normal((4, 12, 10, 5)).astype("float32")
    down = PolyphaseDown2D(strides, return_indices=True, data_format=data_format)
    gather = PolyphaseGather2D(strides, data_format=data_format)
    y, index = down(reference.to_format(x, data_format))
    # Sampling the input itself again gives the layer's own output.
    again = gather([reference.to_format(x, data_format), index])
    np.testing.assert_array_equal(_numpy(again)[0], _numpy(y)[0])
    sy, sx = (strides, strides) if isinstance(strides, int) else strides
    got = reference.to_last(
        _numpy(gather([reference.to_format(other, data_format), index]))[0],
        data_format,
    )
    for n, i in enumerate(_numpy(index)[0]):
        np.testing.assert_array_equal(got[n], other[n, i // sx :: sy, i % sx :: sx])


def test_gather_wraps_odd_sizes():
    x = np.arange(5 * 3, dtype="float32").reshape(1, 5, 3, 1)
    y = keras.ops.convert_to_numpy(PolyphaseGather2D()([x, np.array([3], "int32")]))
    wrapped = np.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)), "wrap")
    np.testing.assert_array_equal(y, wrapped[:, 1::2, 1::2])


def test_gather_gradient_follows_the_index():
    x = np.random.default_rng(5).standard_normal((2, 4, 6, 2)).astype("float32")
    index = np.array([1, 2], "int32")
    grad = input_gradient(lambda v: PolyphaseGather2D()([v, index]), x)
    expected = np.zeros_like(x)
    expected[0, 0::2, 1::2] = 1
    expected[1, 1::2, 0::2] = 1
    np.testing.assert_array_equal(grad, expected)


def test_layer_contract(tmp_path):
    run_layer_test(
        PolyphaseDown2D,
        {
            "strides": 2,
            "criterion": "l1",
            "filt_size": 3,
            "pad_mode": "circular",
            "data_format": "channels_first",
        },
        (2, 3, 9, 8),
        (2, 3, 5, 4),
        tmp_path,
    )


def test_indices_and_gather_in_a_saved_model(tmp_path):
    # run_layer_test takes one input and one output; this covers the layers'
    # two-tensor forms: a residual block whose shortcut follows the main path.
    inputs = keras.Input((None, None, 3))
    # Constant kernels: random initializers compile per shape on JAX (slow).
    main = keras.layers.Conv2D(4, 3, padding="same", kernel_initializer="ones")(inputs)
    down, index = PolyphaseDown2D(return_indices=True)(main)
    projection = keras.layers.Conv2D(4, 1, kernel_initializer="ones")(inputs)
    shortcut = PolyphaseGather2D()([projection, index])
    assert index.dtype == "int32" and tuple(index.shape) == (None,)
    model = keras.Model(inputs, [keras.layers.Add()([down, shortcut]), index])
    x = np.random.default_rng(6).standard_normal((2, 10, 6, 3)).astype("float32")
    y, i = _numpy(model(x))
    assert y.shape == (2, 5, 3, 4) and i.shape == (2,)
    path = os.path.join(tmp_path, "block.keras")
    model.save(path)
    for a, b in zip(_numpy(keras.saving.load_model(path)(x)), (y, i), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    model.compile(optimizer="sgd", loss=["mse", None])
    model.fit(x, [np.zeros_like(y), np.zeros_like(i)], epochs=1, verbose=0)
    for layer_cls in (PolyphaseDown2D, PolyphaseGather2D):
        layer = next(m for m in model.layers if isinstance(m, layer_cls))
        config = layer.get_config()
        assert layer_cls.from_config(config).get_config() == config


def test_mixed_precision_keeps_int32_indices():
    with dtype_policy("mixed_float16"):
        x = np.random.default_rng(7).standard_normal((2, 8, 8, 3)).astype("float32")
        y, index = PolyphaseDown2D(return_indices=True)(x)
        z = PolyphaseGather2D()([x, index])
    assert keras.backend.standardize_dtype(y.dtype) == "float16"
    assert keras.backend.standardize_dtype(z.dtype) == "float16"
    assert keras.backend.standardize_dtype(index.dtype) == "int32"
    expected = reference_polyphase.polyphase_down(x, 2, "l2", 1, "circular")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(index), expected[1])


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"strides": 0}, "strides"),
        ({"criterion": "l3"}, "criterion"),
        ({"filt_size": 0}, "filt_size"),
        ({"pad_mode": "mirror"}, "pad_mode"),
        ({"return_indices": "yes"}, "return_indices"),
        ({"data_format": "NHWC"}, "data_format"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, name):
    with pytest.raises(ValueError, match=name):
        PolyphaseDown2D(**kwargs)


def test_bad_inputs_give_clear_errors():
    with pytest.raises(ValueError, match="rank-4"):
        PolyphaseDown2D()(np.zeros((2, 8, 8), "float32"))
    x = np.zeros((2, 8, 8, 1), "float32")
    with pytest.raises(ValueError, match=r"\[x, indices\]"):
        PolyphaseGather2D()(x)
    with pytest.raises(ValueError, match=r"\(batch,\)"):
        PolyphaseGather2D()([x, np.zeros((2, 1), "int32")])
    with pytest.raises(ValueError, match="strides"):
        PolyphaseGather2D(strides=-1)


@pytest.mark.tf_only
def test_unknown_sizes_in_a_traced_function():
    import tensorflow as tf

    down = PolyphaseDown2D(filt_size=3, return_indices=True)
    gather = PolyphaseGather2D()
    x = np.random.default_rng(8).standard_normal((3, 9, 7, 2)).astype("float32")

    def fn(v):
        y, index = down(v)
        return y, index, gather([v, index])

    traced = tf.function(
        fn, input_signature=[tf.TensorSpec((None, None, None, 2), "float32")]
    )
    # Static sizes take TensorFlow's fast blur, unknown ones the keras.ops blur:
    # equal up to float rounding (the indices exactly).
    for a, b in zip(_numpy(traced(x)), _numpy(fn(x)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
