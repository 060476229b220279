"""TensorFlow fast path of `keras_shiftinv.ops.blur_pool2d`.

Used by `ops.blur_pool2d` on the TensorFlow backend when both spatial sizes are
known at trace time, on channels_last tensors. The result equals the portable path
(pad, then a VALID depthwise convolution) up to float rounding, and so does the
gradient (tests/layers/test_blur_pool_fast_path.py).

Why: on CPU, padding copies the whole input and costs more than the blur itself
(reflect padding takes 3x the convolution's time on a (32, 56, 56, 64) tensor). The
padded blur is linear and separable. Along one axis, let `A` be the matrix of "pad
with pad_mode, blur, subsample", `A0` the same with zero padding and `D = A - A0`:
`D` is non-zero only in the few output rows whose window reaches the padding and the
few input rows the padding copies. Per channel,

    A_h X A_w^T = A0_h X A0_w^T + D_h X A0_w^T + A0_h X D_w^T + D_h X D_w^T.

The first term is one depthwise convolution that pads with zeros on the fly, without
copying `X`. The others are made of a few border rows or columns of `X`: weighted
sums of them, blurred along the other axis by small convolutions, and added into
the border of the output by one scatter. The gradient `A_h^T G A_w` has the same
structure with every map replaced by its adjoint, so it is written out (a custom
gradient) rather than left to autodiff, which would build input-sized tensors for
the gathered rows and columns.

The convolutions use padding "SAME": with explicit padding TensorFlow's CPU backward
kernel leaves oneDNN, runs 2-3x slower and rejects unequal strides. SAME pads
`total // 2` before; zero taps appended to the filter make that equal to the blur's
`(filt_size - 1) // 2`. Measurements: BENCHMARKS.md (benchmarks/bench_layers.py).
"""

import collections
import functools

import numpy as np
import tensorflow as tf

from keras_shiftinv.filters import binomial_filter, blur_padding, check_pad_fits

_NUMPY_PAD_MODE = {
    "reflect": "reflect",
    "replicate": "edge",
    "zero": "constant",
    "circular": "wrap",
}

# Blur-and-subsample along one axis: `border` is `D` (module docstring) restricted to
# its non-zero output indices `rows` and input indices `cols`; `taps` is the filter
# with the zero taps that align padding "SAME".
_AxisPlan = collections.namedtuple(
    "_AxisPlan", ["rows", "cols", "border", "taps", "stride"]
)


@functools.lru_cache(maxsize=256)
def _axis_plan(size, filt_size, stride, pad_mode):
    taps = binomial_filter(filt_size)
    before, after = blur_padding(filt_size)
    out = -(-size // stride)
    identity = np.eye(size)

    def blur_matrix(mode):
        padded = np.pad(identity, ((before, after), (0, 0)), _NUMPY_PAD_MODE[mode])
        windows = [padded[i * stride : i * stride + filt_size] for i in range(out)]
        return np.stack([taps @ window for window in windows])

    difference = blur_matrix(pad_mode) - blur_matrix("zero")
    rows = np.flatnonzero(difference.any(axis=1))
    cols = np.flatnonzero(difference.any(axis=0))
    # SAME pads (out - 1) * stride + len(taps) - size in total, half of it (rounded
    # down) before. That half is `before` or less, never more, so padding the filter
    # with zeros at its end is enough to reach `before`.
    excess = (out - 1) * stride + filt_size - size - 2 * before
    taps = np.pad(taps, (0, max(-excess, 0)))
    return _AxisPlan(rows, cols, difference[np.ix_(rows, cols)], taps, stride)


def _transposed(plan):
    """The plan of the adjoint map: input and output indices swap roles."""
    return plan._replace(rows=plan.cols, cols=plan.rows, border=plan.border.T)


def _depthwise(x, taps, strides, size, transpose):
    """Blur of NHWC `x` by the outer product of `taps` (a pair), with `strides` and
    padding "SAME", to spatial `size`; with `transpose`, the adjoint of that blur
    applied to `x` (an output of it), back to the input's spatial `size`."""
    channels = x.shape[-1]
    kernel = np.outer(*taps)[:, :, None, None]
    kernel = tf.constant(np.tile(kernel, (1, 1, channels, 1)), x.dtype)
    strides = (1, *strides, 1)
    if not transpose:
        return tf.nn.depthwise_conv2d(x, kernel, strides, "SAME")
    shape = tf.concat([tf.shape(x)[:1], [*size, channels]], axis=0)
    return tf.nn.depthwise_conv2d_backprop_input(shape, kernel, x, strides, "SAME")


def _gather_combine(x, indices, matrix, axis):
    """`matrix` (p, q) times the q slices `indices` of NHWC `x` along `axis` (1 or 2).

    p and q are a few and the matrix is sparse: weighted sums of slices beat a
    broadcast product or a batched matmul here."""
    parts = [tf.gather(x, int(i), axis=axis) for i in indices]
    combined = [
        tf.add_n(
            [weight * part for weight, part in zip(row, parts, strict=True) if weight]
        )
        for row in matrix
    ]
    return tf.stack(combined, axis=axis)


def _blur_along(x, plan, axis, length, transpose):
    """Zero-padded blur-and-subsample by `plan` along `axis` (1 or 2) of NHWC `x`, to
    `length` samples there; with `transpose`, its adjoint back to `length`."""
    if axis == 1:
        x = tf.transpose(x, (0, 2, 1, 3))
    _, other, size, channels = x.shape
    # Each line becomes an image of height 1, so the strides can be equal: without
    # oneDNN (float16) TensorFlow's CPU kernels reject unequal strides.
    x = tf.reshape(x, (-1, 1, size, channels))
    taps = (np.ones(1), plan.taps)
    x = _depthwise(x, taps, (plan.stride, plan.stride), (1, length), transpose)
    x = tf.reshape(x, (-1, other, length, channels))
    return tf.transpose(x, (0, 2, 1, 3)) if axis == 1 else x


def _add_border(y, x, rows, cols, transpose):
    """`y` plus `D_h x A0_w^T + A0_h x D_w^T + D_h x D_w^T`, the terms of the module
    docstring's decomposition that touch the border; transposed with `transpose`
    (then `rows` and `cols` are `_transposed` plans)."""
    _, height, width, channels = y.shape
    terms, positions = [], []
    if len(rows.rows):
        row_band = _gather_combine(x, rows.cols, rows.border, axis=1)
        terms.append(_blur_along(row_band, cols, 2, width, transpose))
        positions.append(rows.rows[:, None] * width + np.arange(width))
    if len(cols.rows):
        col_band = _gather_combine(x, cols.cols, cols.border, axis=2)
        terms.append(_blur_along(col_band, rows, 1, height, transpose))
        positions.append(np.arange(height)[:, None] * width + cols.rows)
    if len(rows.rows) and len(cols.rows):
        corner = _gather_combine(row_band, cols.cols, cols.border, axis=2)
        terms.append(corner)
        positions.append(rows.rows[:, None] * width + cols.rows)
    if not terms:
        return y
    updates = tf.concat(
        [tf.reshape(t, (-1, t.shape[1] * t.shape[2], channels)) for t in terms], axis=1
    )
    positions = np.concatenate([p.ravel() for p in positions]).astype("int32")
    # A scatter copies the tensor it adds into (TensorFlow does not forward it on
    # CPU), so all terms go in one scatter, into the output flattened to
    # (batch * height * width, channels).
    offsets = tf.range(tf.shape(y)[0]) * (height * width)
    indices = tf.reshape(offsets[:, None] + positions, (-1, 1))
    y = tf.tensor_scatter_nd_add(
        tf.reshape(y, (-1, channels)), indices, tf.reshape(updates, (-1, channels))
    )
    return tf.reshape(y, (-1, height, width, channels))


def blur_pool2d(x, filt_size, strides, pad_mode):
    """`ops.blur_pool2d` of a channels_last tensor with static height and width."""
    x = tf.convert_to_tensor(x)
    pad = blur_padding(filt_size)
    plans = []
    for axis, stride in zip((1, 2), strides, strict=True):
        check_pad_fits(x.shape[axis], pad, pad_mode, axis)
        plans.append(_axis_plan(x.shape[axis], filt_size, stride, pad_mode))
    rows, cols = plans
    taps = (rows.taps, cols.taps)

    @tf.custom_gradient
    def blur(x):
        def grad(upstream):
            dx = _depthwise(upstream, taps, strides, x.shape[1:3], transpose=True)
            return _add_border(
                dx, upstream, _transposed(rows), _transposed(cols), transpose=True
            )

        y = _depthwise(x, taps, strides, None, transpose=False)
        return _add_border(y, x, rows, cols, transpose=False), grad

    return blur(x)
