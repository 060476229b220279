"""Exact shift properties under float16 and bfloat16 compute: the polyphase
choice is made in float32, and the circular blur computes every pixel alike."""

import keras
import numpy as np
import pytest

from keras_shiftinv import ops as si_ops
from keras_shiftinv.layers import BlurPool2D, PolyphaseDown2D
from tests.helpers import dtype_policy

POLICIES = ("mixed_float16", "mixed_bfloat16")


def _numpy(x):
    return keras.ops.convert_to_numpy(keras.ops.cast(x, "float32"))


def test_polyphase_choice_is_made_in_float32():
    # Component 0 has the larger L2 norm (3 * 300^2 = 270000 > 400^2 + 6 * 100^2
    # = 220000) but the smaller sum (900 < 1000). In float16 both squared norms
    # overflow to inf and the tie would go to the larger sum, component 1.
    x = np.zeros((1, 8, 8, 1), "float32")
    x[0, 0:6:2, 0, 0] = 300.0
    x[0, 0, 1, 0] = 400.0
    x[0, 2:14:2, 3, 0] = 100.0
    x = keras.ops.convert_to_tensor(x, "float16")
    assert int(_numpy(si_ops.polyphase_index(x))[0]) == 0
    with dtype_policy("mixed_float16"):
        layer = PolyphaseDown2D(return_indices=True)
        y, index = layer(x)
    assert int(_numpy(index)[0]) == 0
    np.testing.assert_array_equal(_numpy(y), _numpy(x)[:, ::2, ::2])


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize(
    "factory, stride",
    [
        (lambda: BlurPool2D(3, 1, "circular"), 1),
        (lambda: BlurPool2D(4, 2, "circular"), 2),
    ],
    ids=["BlurPool2D-3-s1", "BlurPool2D-4-s2"],
)
def test_circular_blur_commutes_exactly_with_circular_shifts(factory, stride, policy):
    x = np.random.default_rng(0).standard_normal((2, 12, 10, 5)).astype("float32")
    with dtype_policy(policy):
        layer = factory()
        y = _numpy(layer(x))
        for dy, dx in [(1, 0), (0, 1), (3, 5), (11, 9)]:
            dy, dx = dy * stride, dx * stride
            shifted = _numpy(layer(np.roll(x, (dy, dx), axis=(1, 2))))
            expected = np.roll(y, (dy // stride, dx // stride), axis=(1, 2))
            np.testing.assert_array_equal(shifted, expected, err_msg=f"{dy, dx}")
