"""The TensorFlow fast path of blur_pool2d (keras_shiftinv/_blur_tf.py) against the
portable keras.ops path and the NumPy reference: outputs and gradients."""

import keras
import numpy as np
import pytest

from keras_shiftinv import ops as si_ops
from keras_shiftinv.layers import MaxBlurPool2D
from tests.layers import reference

tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.tf_only

PAD_MODES = ("reflect", "replicate", "zero", "circular")
FORMATS = ("channels_last", "channels_first")
STRIDES = (1, 2, 3, (2, 1), (3, 2))
SIZES = ((8, 8), (9, 7))


def _value_and_gradient(fn, x, upstream):
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    return y.numpy(), tape.gradient(y, x, output_gradients=upstream).numpy()


def _reference_gradient(x, filt_size, strides, pad_mode, upstream):
    """J^T upstream, with the Jacobian J of the (linear) reference from impulses."""
    _, h, w, _ = x.shape
    impulses = np.eye(h * w).reshape(h * w, h, w, 1)
    jacobian = reference.blur_pool(impulses, filt_size, strides, pad_mode)[..., 0]
    return np.einsum("qij,nijc->nqc", jacobian, upstream).reshape(x.shape)


@pytest.mark.parametrize("pad_mode", PAD_MODES)
@pytest.mark.parametrize("filt_size", range(1, 8))
def test_fast_path_matches_portable_path_and_reference(filt_size, pad_mode):
    rng = np.random.default_rng(filt_size)
    for (h, w), strides, data_format in [
        (size, s, f) for size in SIZES for s in STRIDES for f in FORMATS
    ]:
        x_last = rng.standard_normal((2, h, w, 3)).astype("float32")
        expected = reference.blur_pool(x_last, filt_size, strides, pad_mode)
        upstream_last = rng.standard_normal(expected.shape).astype("float32")
        grad_expected = _reference_gradient(
            x_last, filt_size, strides, pad_mode, upstream_last
        )
        x = reference.to_format(x_last, data_format)
        upstream = reference.to_format(upstream_last, data_format)
        args = (filt_size, strides, pad_mode, data_format)
        y, grad = _value_and_gradient(
            lambda v, args=args: si_ops.blur_pool2d(v, *args), x, upstream
        )
        for got, want in ((y, expected), (grad, grad_expected)):
            np.testing.assert_allclose(
                reference.to_last(got, data_format), want, rtol=1e-5, atol=1e-5
            )
        if filt_size > 1:
            y_portable, grad_portable = _value_and_gradient(
                lambda v, args=args: si_ops._blur_pool2d_portable(v, *args),
                x,
                upstream,
            )
            np.testing.assert_allclose(y, y_portable, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(grad, grad_portable, rtol=1e-5, atol=1e-5)


def _op_types(fn, signature):
    graph = tf.function(fn, input_signature=[signature]).get_concrete_function().graph
    return {op.type for op in graph.get_operations()}


@pytest.mark.parametrize("pad_mode", ["reflect", "zero"])
def test_static_sizes_take_the_fast_path_unknown_sizes_the_portable_one(pad_mode):
    def blur(v):
        return si_ops.blur_pool2d(v, 4, 2, pad_mode)

    static = _op_types(blur, tf.TensorSpec((None, 12, 12, 3)))
    dynamic = _op_types(blur, tf.TensorSpec((None, None, None, 3)))
    # The fast path never pads the input; the portable path always does.
    assert not static & {"Pad", "PadV2", "MirrorPad"}
    assert dynamic & {"Pad", "PadV2", "MirrorPad"}


def test_symbolic_inputs_still_give_symbolic_outputs():
    # keras.Input is not a TensorFlow tensor: the ops stay usable on it.
    x = keras.Input((9, 8, 3))
    assert tuple(si_ops.blur_pool2d(x).shape) == (None, 5, 4, 3)
    assert tuple(si_ops.max_blur_pool2d(x).shape) == (None, 4, 4, 3)


@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("pad_mode", PAD_MODES)
def test_unknown_sizes_in_tf_function_give_the_same_numbers(pad_mode, data_format):
    rng = np.random.default_rng(7)
    x = reference.to_format(
        rng.standard_normal((2, 11, 10, 4)).astype("float32"), data_format
    )
    shape = (None, 4, None, None) if data_format == "channels_first" else None
    signature = tf.TensorSpec(shape or (None, None, None, 4))

    def blur(v):
        return si_ops.blur_pool2d(v, 4, 2, pad_mode, data_format)

    upstream = rng.standard_normal(blur(x).shape).astype("float32")
    dynamic = tf.function(blur, input_signature=[signature])
    for got, want in zip(
        _value_and_gradient(dynamic, x, upstream),
        _value_and_gradient(blur, x, upstream),
        strict=True,
    ):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("data_format", FORMATS)
def test_max_blur_pool_gradient_matches_the_portable_blur(data_format):
    rng = np.random.default_rng(8)
    x = reference.to_format(
        rng.standard_normal((2, 11, 10, 3)).astype("float32"), data_format
    )
    layer = MaxBlurPool2D(pad_mode="reflect", data_format=data_format)
    upstream = rng.standard_normal(layer(x).shape).astype("float32")

    def portable(v):
        v = tf.nn.max_pool2d(v, 2, 1, "VALID", data_format="NHWC")
        return si_ops._blur_pool2d_portable(v, 4, (2, 2), "reflect", "channels_last")

    if data_format == "channels_first":
        last = portable

        def portable(v):
            y = last(tf.transpose(v, (0, 2, 3, 1)))
            return tf.transpose(y, (0, 3, 1, 2))

    for got, want in zip(
        _value_and_gradient(layer, x, upstream),
        _value_and_gradient(portable, x, upstream),
        strict=True,
    ):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_second_order_gradient_matches_the_portable_path():
    # The custom gradient is itself differentiable: Hessian-vector products agree.
    rng = np.random.default_rng(9)
    x = tf.constant(rng.standard_normal((2, 9, 8, 3)).astype("float32"))
    direction = tf.constant(rng.standard_normal(x.shape).astype("float32"))

    def hessian_vector(fn):
        with tf.GradientTape() as outer:
            outer.watch(x)
            with tf.GradientTape() as inner:
                inner.watch(x)
                loss = tf.reduce_sum(fn(x) ** 2)
            grad = inner.gradient(loss, x)
            projected = tf.reduce_sum(grad * direction)
        return outer.gradient(projected, x).numpy()

    args = (4, (2, 2), "circular", "channels_last")
    np.testing.assert_allclose(
        hessian_vector(lambda v: si_ops.blur_pool2d(v, *args)),
        hessian_vector(lambda v: si_ops._blur_pool2d_portable(v, *args)),
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.parametrize("filt_size", [5, 6, 7])
def test_circular_blur_of_maps_smaller_than_the_filter(filt_size):
    # The last pools of a 32x32 VGG see 2x2 maps: the padding wraps more than once.
    rng = np.random.default_rng(filt_size)
    for (h, w), strides in [((1, 1), 2), ((2, 3), 2), ((3, 2), (2, 1)), ((2, 2), 1)]:
        x = rng.standard_normal((2, h, w, 3)).astype("float32")
        expected = reference.blur_pool(x, filt_size, strides, "circular")
        upstream = rng.standard_normal(expected.shape).astype("float32")
        grad_expected = _reference_gradient(x, filt_size, strides, "circular", upstream)
        args = (filt_size, strides, "circular", "channels_last")
        for fn in (si_ops.blur_pool2d, si_ops._blur_pool2d_portable):
            y, grad = _value_and_gradient(
                lambda v, fn=fn, args=args: fn(v, *args), x, upstream
            )
            np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(grad, grad_expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pad_mode", PAD_MODES)
def test_graph_traced_without_a_tape_is_differentiated_by_tensorflow(pad_mode):
    # Inference and export graphs use the portable border update; called under a
    # tape later, TensorFlow differentiates their ops: the same gradient.
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 9, 8, 3)).astype("float32")
    args = (4, (2, 2), pad_mode, "channels_last")
    inference = tf.function(lambda v: si_ops.blur_pool2d(v, *args))
    inference.get_concrete_function(tf.TensorSpec(x.shape))
    expected = reference.blur_pool(x, *args[:3])
    upstream = rng.standard_normal(expected.shape).astype("float32")
    y, grad = _value_and_gradient(inference, x, upstream)
    assert inference.experimental_get_tracing_count() == 1
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        grad,
        _reference_gradient(x, *args[:3], upstream),
        rtol=1e-5,
        atol=1e-5,
    )
