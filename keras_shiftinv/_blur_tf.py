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
the border of the output.

How they are added depends on who runs the graph. In a training step that XLA does
not compile (a gradient tape records; `_keras_compat.tf_may_update_in_place`), in
place, with `tf.raw_ops.InplaceAdd` into the fresh output of the convolution: no
copy of the output. The gradient `A_h^T G A_w` has the same structure with every
map replaced by its adjoint, so it is written out (a custom gradient, also added
in place) rather than left to autodiff, which would build input-sized tensors for
the gathered rows and columns. Everywhere else (inference, every `model.export`
format, which trace without a tape, and XLA), with ops that XLA, tf2onnx, LiteRT's
builtin set and OpenVINO all take: the border pixels' sums spread over the image by
one gather, then added (`_add_gathered`): two passes over the output that the
in-place update does not make; TensorFlow differentiates those ops itself. No
export can tell it is traced for export, so the portable ops are the default.

The convolutions use padding "SAME": with explicit padding TensorFlow's CPU backward
kernel leaves oneDNN, runs 2-3x slower and rejects unequal strides. SAME pads
`total // 2` before; zero taps appended to the filter make that equal to the blur's
`(filt_size - 1) // 2`. Measurements: BENCHMARKS.md (benchmarks/bench_layers.py).
"""

import collections
import functools

import numpy as np
import tensorflow as tf

from keras_shiftinv import _keras_compat
from keras_shiftinv.filters import (
    NUMPY_PAD_MODE,
    binomial_filter,
    blur_padding,
    check_pad_fits,
)

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
        padded = np.pad(identity, ((before, after), (0, 0)), NUMPY_PAD_MODE[mode])
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


def _sparse_terms(matrix):
    """`matrix` (p, q) as a few pairs `(columns, weights)`, one column and weight per
    row each, whose sum is the matrix: the k-th pair holds each row's k-th non-zero
    (or a zero of the row, once it has no more)."""
    # Per row, the columns of the non-zeros first, in order.
    order = np.argsort(matrix == 0, axis=1, kind="stable")
    rows = np.arange(len(matrix))
    count = int((matrix != 0).sum(axis=1).max())
    return [(order[:, k], matrix[rows, order[:, k]]) for k in range(count)]


def _band(x, plan, axis):
    """`plan.border` (p, q) times the q slices `plan.cols` of NHWC `x` along `axis` (1
    or 2): the p combined slices, in their place along `axis`.

    The matrix is sparse (most rows have one non-zero), so this is a gather and a
    broadcast product per non-zero of a row: fewer ops than a gather per slice, and
    far faster than an einsum, which transposes."""
    shape = [1, 1, 1, 1]
    shape[axis] = -1
    band = None
    for columns, weights in _sparse_terms(plan.border):
        term = tf.gather(x, plan.cols[columns], axis=axis) * tf.constant(
            weights.reshape(shape), x.dtype
        )
        band = term if band is None else band + term
    return band


def _blur_band(band, plan, axis, length, transpose):
    """Zero-padded blur-and-subsample by `plan` along `axis` (1 or 2) of the NHWC
    `band`, a few slices along the other axis, to `length` samples; with `transpose`,
    its adjoint back to `length`.

    The band is reshaped, never transposed, so that the blurred axis is one of an
    image whose other spatial size is 1: then the strides can be equal (without
    oneDNN, for float16, TensorFlow's CPU kernels reject unequal strides)."""
    _, height, width, channels = band.shape
    if axis == 2:
        lines = tf.reshape(band, (-1, 1, width, channels))
        taps, size = (np.ones(1), plan.taps), (1, length)
    else:
        lines = tf.reshape(band, (-1, height, 1, width * channels))
        taps, size = (plan.taps, np.ones(1)), (length, 1)
    lines = _depthwise(lines, taps, (plan.stride, plan.stride), size, transpose)
    if axis == 2:
        return tf.reshape(lines, (-1, height, length, channels))
    return tf.reshape(lines, (-1, length, width, channels))


def _border_terms(x, rows, cols, size, transpose):
    """The terms `D_h x A0_w^T`, `A0_h x D_w^T` and `D_h x D_w^T` of the module
    docstring's decomposition, which touch the border of the output of spatial
    `size`; transposed with `transpose` (then `rows` and `cols` are `_transposed`
    plans). A list of `(term, positions)`: an NHWC term and the flat index
    `row * width + column` in the output of each of its pixels (an array of the
    term's spatial shape)."""
    height, width = size
    terms = []
    if len(rows.rows):
        row_band = _band(x, rows, axis=1)
        positions = rows.rows[:, None] * width + np.arange(width)
        terms.append((_blur_band(row_band, cols, 2, width, transpose), positions))
    if len(cols.rows):
        col_band = _band(x, cols, axis=2)
        positions = np.arange(height)[:, None] * width + cols.rows
        terms.append((_blur_band(col_band, rows, 1, height, transpose), positions))
    if len(rows.rows) and len(cols.rows):
        corner = _band(row_band, cols, axis=2)
        terms.append((corner, rows.rows[:, None] * width + cols.rows))
    return terms


def _add_in_place(y, terms):
    """`y` plus `terms` (`_border_terms`), written into `y`'s buffer. `y` must be
    a tensor no other op reads."""
    _, height, width, channels = y.shape
    images = tf.range(tf.shape(y)[0])[:, None]
    for term, positions in terms:
        # InplaceAdd adds one row of a matrix at a time: whole rows of the image
        # when the term covers them (the row band), else pixels.
        first = positions[:, :1]
        whole_rows = positions.shape[1] == width and not (first % width).any()
        per_image = height if whole_rows else height * width
        positions = first // width if whole_rows else positions
        row_size = height * width * channels // per_image
        indices = images * per_image + positions.ravel().astype("int32")
        # InplaceAdd writes into `y`'s buffer instead of copying it, as a scatter
        # does on CPU (a copy that cost as much as half the blur). That is safe
        # because `y` is the fresh output of the blur convolution, read by nothing
        # else.
        y = tf.raw_ops.InplaceAdd(
            x=tf.reshape(y, (-1, row_size)),
            i=tf.reshape(indices, (-1,)),
            v=tf.reshape(term, (-1, row_size)),
        )
    return tf.reshape(y, (-1, height, width, channels))


def _add_gathered(y, terms):
    """`y` plus `terms` (`_border_terms`) with ops that XLA, tf2onnx, LiteRT's
    builtin set and OpenVINO all take: the terms summed per border pixel (a few
    small gathers), then spread over the image by one gather whose other pixels
    read a zero row, and one addition."""
    _, height, width, channels = y.shape
    flat = [
        tf.reshape(term, (-1, term.shape[1] * term.shape[2], channels))
        for term, _ in terms
    ]
    positions = [p.ravel() for _, p in terms]
    border = np.unique(np.concatenate(positions))
    # Row 0 of `stacked` is zero: the border pixels a term does not touch read it.
    stacked = tf.concat([tf.zeros_like(flat[0][:, :1]), *flat], axis=1)
    rows = np.cumsum([1] + [len(p) for p in positions])
    correction = None
    for start, pixels in zip(rows[:-1], positions, strict=True):
        read = np.zeros(len(border), "int32")
        read[np.searchsorted(border, pixels)] = start + np.arange(len(pixels))
        term = tf.gather(stacked, read, axis=1)
        correction = term if correction is None else correction + term
    spread = np.zeros(height * width, "int32")
    spread[border] = 1 + np.arange(len(border))
    correction = tf.concat([tf.zeros_like(correction[:, :1]), correction], axis=1)
    correction = tf.gather(correction, spread, axis=1)
    return y + tf.reshape(correction, (-1, height, width, channels))


def _linear(apply, adjoint):
    """`apply` (a linear map) with `adjoint` as its gradient, and `apply` as the
    adjoint's gradient, so every order of derivative is defined (InplaceAdd has no
    registered gradient)."""

    @tf.custom_gradient
    def linear(x):
        return apply(x), _linear(adjoint, apply)

    return linear


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
    size = x.shape[1:3]

    def blur(x, add_border):
        y = _depthwise(x, taps, strides, None, transpose=False)
        terms = _border_terms(x, rows, cols, y.shape[1:3], transpose=False)
        return add_border(y, terms) if terms else y

    if not _keras_compat.tf_may_update_in_place():
        # Inference, export or XLA: portable ops, differentiated by TensorFlow.
        return blur(x, _add_gathered)

    def blur_adjoint(upstream):
        dx = _depthwise(upstream, taps, strides, size, transpose=True)
        terms = _border_terms(
            upstream, _transposed(rows), _transposed(cols), size, transpose=True
        )
        return _add_in_place(dx, terms) if terms else dx

    return _linear(functools.partial(blur, add_border=_add_in_place), blur_adjoint)(x)
