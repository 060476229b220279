import keras
import numpy as np
import pytest

from keras_shiftinv.layers import OffsetSubsample
from tests.helpers import input_gradient, run_layer_test
from tests.layers import reference, reference_polyphase

PAD_MODES = ("zero", "reflect", "replicate", "circular")


def _run(layer, x_last):
    x = reference.to_format(x_last, layer.data_format)
    return reference.to_last(keras.ops.convert_to_numpy(layer(x)), layer.data_format)


@pytest.mark.parametrize(
    "strides, size, data_format",
    [
        (2, (8, 6), "channels_last"),
        (2, (7, 5), "channels_first"),
        (3, (7, 5), "channels_last"),
        ((1, 3), (4, 7), "channels_first"),
    ],
)
def test_matches_definition(strides, size, data_format):
    x = np.random.default_rng(0).standard_normal((2, *size, 3)).astype("float32")
    for pad_mode in PAD_MODES:
        layer = OffsetSubsample(strides, pad_mode, data_format=data_format)
        np.testing.assert_array_equal(
            _run(layer, x), reference_polyphase.offset_subsample(x, strides, pad_mode)
        )


def test_rgb_becomes_rrrrggggbbbb():
    x = np.zeros((1, 2, 2, 3), "float32")
    x[..., 1] = 1
    x[..., 2] = 2
    y = keras.ops.convert_to_numpy(OffsetSubsample()(x))
    np.testing.assert_array_equal(y[0, 0, 0], [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])


@pytest.mark.parametrize(
    "strides, size, data_format",
    [
        (2, (12, 6), "channels_last"),
        (2, (7, 11), "channels_first"),
        ((2, 3), (7, 11), "channels_last"),
        (3, (1, 4), "channels_first"),
    ],
)
def test_inverse_round_trip_is_exact(strides, size, data_format):
    x = np.random.default_rng(1).standard_normal((2, *size, 3)).astype("float32")
    x = reference.to_format(x, data_format)
    layer = OffsetSubsample(strides, data_format=data_format)
    back = keras.ops.convert_to_numpy(layer.invert(layer(x), size=size))
    np.testing.assert_array_equal(back, x)


def test_inverse_without_size_keeps_the_padding():
    x = np.random.default_rng(2).standard_normal((1, 5, 4, 2)).astype("float32")
    layer = OffsetSubsample(2, pad_mode="replicate")
    back = keras.ops.convert_to_numpy(layer.invert(layer(x)))
    np.testing.assert_array_equal(
        back, np.pad(x, ((0, 0), (0, 1), (0, 0), (0, 0)), "edge")
    )


def test_gradient_reaches_every_input_element_once():
    x = np.random.default_rng(3).standard_normal((2, 6, 8, 3)).astype("float32")
    np.testing.assert_array_equal(input_gradient(OffsetSubsample(), x), 1.0)


def test_layer_contract(tmp_path):
    run_layer_test(
        OffsetSubsample,
        {"strides": 2, "pad_mode": "circular", "data_format": "channels_first"},
        (2, 3, 9, 8),
        (2, 12, 5, 4),
        tmp_path,
    )


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"strides": 0}, "strides"),
        ({"strides": (2, 2, 2)}, "strides"),
        ({"pad_mode": "mirror"}, "pad_mode"),
        ({"data_format": "NHWC"}, "data_format"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, name):
    with pytest.raises(ValueError, match=name):
        OffsetSubsample(**kwargs)


def test_bad_inputs_give_clear_errors():
    layer = OffsetSubsample(2)
    with pytest.raises(ValueError, match="rank-4"):
        layer(np.zeros((2, 8, 8), "float32"))
    with pytest.raises(ValueError, match="divisible"):
        layer.invert(np.zeros((1, 4, 4, 6), "float32"))
    with pytest.raises(ValueError, match="size"):
        layer.invert(np.zeros((1, 4, 4, 8), "float32"), size=(8, 8, 1))


@pytest.mark.tf_only
@pytest.mark.parametrize("pad_mode", PAD_MODES)
def test_unknown_sizes_in_a_traced_function(pad_mode):
    import tensorflow as tf

    layer = OffsetSubsample((2, 3), pad_mode)
    x = np.random.default_rng(4).standard_normal((2, 9, 7, 3)).astype("float32")
    traced = tf.function(
        layer, input_signature=[tf.TensorSpec((None, None, None, 3), "float32")]
    )
    np.testing.assert_array_equal(traced(x).numpy(), layer(x).numpy())
