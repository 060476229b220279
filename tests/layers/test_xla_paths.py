"""TensorFlow with XLA (`jit_compile=True`) takes the portable blur: its fast path's
depthwise convolutions are slow on XLA's CPU. Same outputs and gradients."""

import numpy as np
import pytest

from keras_shiftinv import _keras_compat
from keras_shiftinv import ops as si_ops

pytestmark = pytest.mark.tf_only


def test_compiling_with_xla_inside_jit_compiled_functions_only():
    import tensorflow as tf

    seen = []

    def record(x):
        seen.append(_keras_compat.compiling_with_xla())
        return x + 1

    tf.function(record)(tf.zeros(2))
    tf.function(record, jit_compile=True)(tf.zeros(2))
    # A plain function called inside a compiled one is compiled with it.
    tf.function(lambda x: tf.function(record)(x), jit_compile=True)(tf.ones(2))
    assert seen == [False, True, True]
    assert not _keras_compat.compiling_with_xla()


@pytest.mark.parametrize(
    "pad_mode, data_format",
    [("reflect", "channels_last"), ("circular", "channels_first")],
)
def test_blur_under_xla_takes_the_portable_path_and_matches(
    pad_mode, data_format, monkeypatch
):
    import tensorflow as tf

    from keras_shiftinv import _blur_tf

    shape = (2, 9, 8, 3) if data_format == "channels_last" else (2, 3, 9, 8)
    x = tf.constant(np.random.default_rng(0).standard_normal(shape), tf.float32)
    rng = np.random.default_rng(1)

    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = si_ops.max_blur_pool2d(
                x, 2, 4, 2, pad_mode=pad_mode, data_format=data_format
            )
            loss = tf.reduce_sum(y * cotangent)
        return y, tape.gradient(loss, x)

    out_shape = (2, 4, 4, 3) if data_format == "channels_last" else (2, 3, 4, 4)
    cotangent = tf.constant(rng.standard_normal(out_shape), tf.float32)
    fast = tf.function(step)(x)
    calls = []
    fast_blur = _blur_tf.blur_pool2d
    monkeypatch.setattr(
        _blur_tf, "blur_pool2d", lambda *a: calls.append(a) or fast_blur(*a)
    )
    compiled = tf.function(step, jit_compile=True)(x)
    assert not calls
    for a, b in zip(compiled, fast, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)
