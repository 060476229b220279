import keras
import numpy as np
import pytest

from keras_shiftinv.layers import CircularPadding2D
from tests.helpers import input_gradient, run_layer_test
from tests.layers import reference


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize(
    "padding, widths",
    [
        (1, ((1, 1), (1, 1))),
        ((2, 0), ((2, 2), (0, 0))),
        (((0, 3), (2, 1)), ((0, 3), (2, 1))),
        (((5, 5), (4, 4)), ((5, 5), (4, 4))),
        # Wider than the 5x4 input: wraps around more than once.
        (((11, 6), (9, 4)), ((11, 6), (9, 4))),
    ],
)
def test_matches_numpy_wrap(data_format, padding, widths):
    x = np.random.default_rng(0).standard_normal((2, 5, 4, 3)).astype("float32")
    layer = CircularPadding2D(padding, data_format=data_format)
    y = layer(reference.to_format(x, data_format))
    y = reference.to_last(keras.ops.convert_to_numpy(y), data_format)
    np.testing.assert_array_equal(y, np.pad(x, ((0, 0), *widths, (0, 0)), "wrap"))


def test_gradient_counts_the_copies_of_each_element():
    x = np.random.default_rng(1).standard_normal((1, 4, 5, 2)).astype("float32")
    padding = ((1, 6), (3, 0))
    grad = input_gradient(CircularPadding2D(padding), x)
    # Pad the positions themselves, then count how often each one occurs.
    index = np.arange(x.size).reshape(x.shape)
    padded = np.pad(index, ((0, 0), *padding, (0, 0)), "wrap")
    counts = np.bincount(padded.ravel(), minlength=x.size).reshape(x.shape)
    np.testing.assert_array_equal(grad, counts)
    assert counts.min() >= 1


def test_layer_contract(tmp_path):
    run_layer_test(
        CircularPadding2D,
        {"padding": ((1, 2), (0, 1)), "data_format": "channels_last"},
        (2, 6, 5, 3),
        (2, 9, 6, 3),
        tmp_path,
    )


@pytest.mark.parametrize("padding", [-1, (1, -1), (1, 2, 3), ((1,), (1, 1)), "1"])
def test_bad_padding_names_itself(padding):
    with pytest.raises(ValueError, match="padding"):
        CircularPadding2D(padding)


def test_bad_data_format_names_itself():
    with pytest.raises(ValueError, match="data_format"):
        CircularPadding2D(1, data_format="NCHW")
