"""Functional forms of the package's operations, written with `keras.ops`.

The layers in `keras_shiftinv.layers` are thin wrappers around these functions, so the
same code serves a layer, a custom `call` and a test.
"""

import keras
import numpy as np
from keras import ops

from keras_shiftinv import _keras_compat, filters
from keras_shiftinv.validation import (
    CONV_PAD_MODES,
    PAD_MODES,
    POLYPHASE_ORDERS,
    channel_axis,
    spatial_axes,
    standardize_choice,
    standardize_data_format,
    standardize_filt_size,
    standardize_pair,
)


def _slice_axis(x, axis, start, stop, step=None):
    index = [slice(None)] * len(x.shape)
    index[axis] = slice(start, stop, step)
    return x[tuple(index)]


def _sizes(x, axes):
    """The sizes of `x` along `axes`: ints where known when traced, scalar tensors
    otherwise. Unlike unpacking `ops.shape(x)`, it makes no op for the axes it
    does not return: on TensorFlow an unused size (the batch) would be a dangling
    op, which OpenVINO's converter makes an extra output of the model."""
    known = [x.shape[axis] for axis in axes]
    if None not in known:
        return tuple(known)
    shape = ops.shape(x)
    return tuple(shape[axis] for axis in axes)


def pad2d(x, padding, pad_mode="zero", data_format=None):
    """Pads the two spatial axes of a 4D tensor.

    Args:
        x: a 4D tensor.
        padding: ((top, bottom), (left, right)), or an int for all four sides.
        pad_mode: "zero", "reflect" (mirror without repeating the edge),
            "replicate" (repeat the edge) or "circular" (wrap around).
        data_format: "channels_last" or "channels_first".
    """
    pad_mode = standardize_choice(pad_mode, "pad_mode", PAD_MODES)
    data_format = standardize_data_format(data_format)
    if isinstance(padding, int):
        padding = ((padding, padding), (padding, padding))
    padding = tuple(standardize_pair(p, "padding", minimum=0) for p in padding)
    if all(p == (0, 0) for p in padding):
        return x
    axes = spatial_axes(data_format)
    for axis, pad in zip(axes, padding, strict=True):
        filters.check_pad_fits(x.shape[axis], pad, pad_mode, axis)
    # Keras' torch ops.pad cannot reflect one axis of a channels_first 4D tensor
    # (torch's reflection pads need both spatial axes): slices do it there.
    torch_reflect = pad_mode == "reflect" and keras.backend.backend() == "torch"
    if pad_mode == "zero" or (pad_mode == "reflect" and not torch_reflect):
        widths = [[0, 0]] * 4
        for axis, pad in zip(axes, padding, strict=True):
            widths[axis] = list(pad)
        return ops.pad(x, widths, mode="constant" if pad_mode == "zero" else "reflect")
    for axis, (before, after) in zip(axes, padding, strict=True):
        size = x.shape[axis]
        if pad_mode == "circular" and size is not None and max(before, after) > size:
            # Wider than the axis (a 7-tap blur of a 2x2 map): wrap more than once.
            copies = -(-max(before, after) // size)
            x = ops.concatenate([x] * (2 * copies + 1), axis=axis)
            start = copies * size - before
            x = _slice_axis(x, axis, start, start + size + before + after)
            continue
        if pad_mode == "circular":
            head = _slice_axis(x, axis, -before, None) if before else None
            tail = _slice_axis(x, axis, 0, after) if after else None
        elif pad_mode == "reflect":
            head = _slice_axis(x, axis, 1, before + 1) if before else None
            tail = _slice_axis(x, axis, -after - 1, -1) if after else None
            head = None if head is None else ops.flip(head, axis=axis)
            tail = None if tail is None else ops.flip(tail, axis=axis)
        else:
            head = ops.repeat(_slice_axis(x, axis, 0, 1), before, axis=axis)
            tail = ops.repeat(_slice_axis(x, axis, -1, None), after, axis=axis)
        parts = [p for p in (head, x, tail) if p is not None]
        x = ops.concatenate(parts, axis=axis)
    return x


def _tf_fast_path(x, data_format):
    """Whether `keras_shiftinv._blur_tf` serves this input: a tensor (not a symbolic
    `keras.KerasTensor`) on the TensorFlow backend, with both spatial sizes known at
    trace time, not compiled by XLA (its depthwise convolutions are slow on XLA's
    CPU; the portable path's gathers are what JAX runs)."""
    return (
        keras.backend.backend() == "tensorflow"
        and not isinstance(x, keras.KerasTensor)
        and all(x.shape[axis] is not None for axis in spatial_axes(data_format))
        and not _keras_compat.compiling_with_xla()
    )


def _channels_last_call(fn, x, *args):
    """`fn(x, *args, "channels_last")` on a channels_first `x`, transposed back."""
    y = fn(ops.transpose(x, (0, 2, 3, 1)), *args, "channels_last")
    return ops.transpose(y, (0, 3, 1, 2))


def blur_pool2d(x, filt_size=4, strides=2, pad_mode="reflect", data_format=None):
    """Binomial low-pass filter per channel, then subsampling by `strides`.

    See `keras_shiftinv.layers.BlurPool2D` for the definition.
    """
    data_format = standardize_data_format(data_format)
    strides = standardize_pair(strides, "strides")
    pad_mode = standardize_choice(pad_mode, "pad_mode", PAD_MODES)
    filt_size = standardize_filt_size(filt_size)
    if filt_size == 1:
        rows, cols = strides
        if data_format == "channels_last":
            return x[:, ::rows, ::cols, :]
        return x[:, :, ::rows, ::cols]
    # The fast path sums the border pixels in another order than the others, so a
    # circular shift, which moves pixels into and out of the border, changes them
    # by a rounding step: 1e-7 in float32, but 1e-3 in float16 and 1e-2 in
    # bfloat16, which breaks the exact invariance of the aps models. The portable
    # path computes every output pixel alike.
    exact_shift = pad_mode == "circular" and keras.backend.standardize_dtype(
        x.dtype
    ) in ("float16", "bfloat16")
    if _tf_fast_path(x, data_format) and not exact_shift:
        # TensorFlow's CPU depthwise convolution is channels_last only.
        if data_format == "channels_first":
            return _channels_last_call(blur_pool2d, x, filt_size, strides, pad_mode)
        # Imported here: the JAX backend needs no TensorFlow.
        from keras_shiftinv import _blur_tf

        return _blur_tf.blur_pool2d(x, filt_size, strides, pad_mode)
    return _blur_pool2d_portable(x, filt_size, strides, pad_mode, data_format)


def _blur_pool2d_portable(x, filt_size, strides, pad_mode, data_format):
    """`blur_pool2d` with `keras.ops` only (filt_size > 1; strides an int or a pair):
    `_blur_gather` when the spatial sizes are known (always on JAX and torch),
    otherwise `_blur_padded_depthwise`."""
    taps = filters.binomial_filter(filt_size)
    pad = filters.blur_padding(filt_size)
    strides = standardize_pair(strides, "strides")
    static = all(x.shape[axis] is not None for axis in spatial_axes(data_format))
    blur = _blur_gather if static else _blur_padded_depthwise
    return blur(x, taps, strides, pad, pad_mode, data_format)


def _blur_padded_depthwise(x, taps, strides, pad, pad_mode, data_format):
    """The blur of `x` padded by `pad` with `pad_mode`: padding, then one VALID
    depthwise convolution with the k x k kernel. Works for unknown spatial sizes."""
    x = pad2d(x, (pad, pad), pad_mode, data_format)
    channels = x.shape[channel_axis(data_format)]
    kernel = np.outer(taps, taps)[:, :, None, None] * np.ones((1, 1, channels, 1))
    kernel = ops.convert_to_tensor(kernel, dtype=x.dtype)
    return ops.depthwise_conv(x, kernel, strides, "valid", data_format)


def _blur_gather(x, taps, strides, pad, pad_mode, data_format):
    """The blur of `x` padded by `pad` with `pad_mode`, the padding folded into
    indices: along each spatial axis, the sum over taps `t` of `taps[t]` times the
    samples of `x` that tap reads (`ops.take` of their indices; the zero padding's
    samples get the weight 0). On JAX's CPU, padding first copies the input and fuses
    badly with the blur: this is 10-15x faster (BENCHMARKS.md, bench_layers_jax),
    and on torch 2x faster than Keras' depthwise convolution, which transposes.
    Needs the spatial sizes."""
    k = len(taps)
    for axis, stride in zip(spatial_axes(data_format), strides, strict=True):
        size = x.shape[axis]
        filters.check_pad_fits(size, pad, pad_mode, axis)
        if pad_mode == "zero":
            # The zero padding's samples read index -1, weighed 0 below.
            index = np.pad(np.arange(size), pad, constant_values=-1)
        else:
            index = np.pad(np.arange(size), pad, filters.NUMPY_PAD_MODE[pad_mode])
        out = (len(index) - k) // stride + 1
        shape = [1] * len(x.shape)
        shape[axis] = out
        y = None
        for t, tap in enumerate(taps):
            read = index[t : t + stride * (out - 1) + 1 : stride]
            weights = tap * (read >= 0)
            if not weights.any():
                continue
            term = ops.take(x, np.maximum(read, 0), axis=axis)
            if weights.all():
                term = term * float(tap)
            else:
                term = term * ops.convert_to_tensor(weights.reshape(shape), x.dtype)
            y = term if y is None else y + term
        x = y
    return x


def max_blur_pool2d(
    x, pool_size=2, filt_size=4, strides=2, pad_mode="reflect", data_format=None
):
    """Max pooling densely evaluated (stride 1, VALID), then `blur_pool2d`."""
    data_format = standardize_data_format(data_format)
    pool_size = standardize_pair(pool_size, "pool_size")
    if data_format == "channels_first" and _tf_fast_path(x, data_format):
        # One pair of transposes instead of one around each of the two steps.
        return _channels_last_call(
            max_blur_pool2d, x, pool_size, filt_size, strides, pad_mode
        )
    x = ops.max_pool(x, pool_size, strides=1, padding="valid", data_format=data_format)
    return blur_pool2d(x, filt_size, strides, pad_mode, data_format)


# Polyphase operations: offset subsampling, adaptive polyphase sampling (APS) and the
# learned shift-invariant downsampling module. Index `dy * strides[1] + dx` names the
# polyphase component `x[dy::strides[0], dx::strides[1]]` everywhere below.

POLYPHASE_CRITERIA = ("l2", "l1", "linf")
SHIFT_INVARIANT_BRANCHES = ("group", "conv3d")


def pad_to_multiple(x, strides=2, pad_mode="zero", data_format=None):
    """Pads the bottom/right of each spatial axis up to a multiple of its stride.

    Sizes unknown when traced are padded by `stride - 1` and cropped back, so the
    same values fill the new rows as with a known size.
    """
    data_format = standardize_data_format(data_format)
    strides = standardize_pair(strides, "strides")
    axes = spatial_axes(data_format)
    sizes = [x.shape[axis] for axis in axes]
    padding = [
        (0, s - 1 if size is None else -size % s)
        for size, s in zip(sizes, strides, strict=True)
    ]
    x = pad2d(x, padding, pad_mode, data_format)
    for axis, size, s in zip(axes, sizes, strides, strict=True):
        if size is None and s > 1:
            x = _slice_axis(x, axis, 0, ops.shape(x)[axis] // s * s)
    return x


def offset_subsample(x, strides=2, pad_mode="zero", data_format=None):
    """The polyphase components of each channel, stacked channel-major.

    See `keras_shiftinv.layers.OffsetSubsample` for the definition.
    """
    data_format = standardize_data_format(data_format)
    sy, sx = standardize_pair(strides, "strides")
    x = pad_to_multiple(x, (sy, sx), pad_mode, data_format)
    # (b, h, sy, w, sx, c) -> (b, h, w, c, sy, sx); (b, c, h, sy, w, sx) ->
    # (b, c, sy, sx, h, w): the same permutation for both layouts.
    x = ops.transpose(_phase_view(x, (sy, sx), data_format), (0, 1, 3, 5, 2, 4))
    if data_format == "channels_last":
        h, w, c = _sizes(x, (1, 2, 3))
        return ops.reshape(x, (-1, h, w, c * sy * sx))
    c, h, w = _sizes(x, (1, 4, 5))
    return ops.reshape(x, (-1, c * sy * sx, h, w))


def offset_subsample_inverse(y, strides=2, size=None, data_format=None):
    """Undoes `offset_subsample`: interleaves the components back into an image.

    Args:
        y: the output of `offset_subsample`.
        strides: the strides `y` was made with.
        size: (height, width) of the original input, to remove the padding that
            odd sizes received; None keeps every row and column.
        data_format: "channels_last" or "channels_first".
    """
    data_format = standardize_data_format(data_format)
    sy, sx = standardize_pair(strides, "strides")
    components = sy * sx
    channels = y.shape[channel_axis(data_format)]
    if channels is not None and channels % components:
        raise ValueError(
            f"offset_subsample_inverse needs a channel count divisible by "
            f"strides[0] * strides[1] = {components}. Received: {channels} channels"
        )
    if data_format == "channels_last":
        h, w, cs = _sizes(y, (1, 2, 3))
        y = ops.reshape(y, (-1, h, w, cs // components, sy, sx))
        y = ops.transpose(y, (0, 1, 4, 2, 5, 3))
        x = ops.reshape(y, (-1, h * sy, w * sx, cs // components))
    else:
        cs, h, w = _sizes(y, (1, 2, 3))
        y = ops.reshape(y, (-1, cs // components, sy, sx, h, w))
        y = ops.transpose(y, (0, 1, 4, 2, 5, 3))
        x = ops.reshape(y, (-1, cs // components, h * sy, w * sx))
    if size is None:
        return x
    for axis, stop in zip(spatial_axes(data_format), size, strict=True):
        x = _slice_axis(x, axis, 0, stop)
    return x


def _phase_view(x, strides, data_format):
    """`x` reshaped to (b, h/sy, sy, w/sx, sx, c) or (b, c, h/sy, sy, w/sx, sx)."""
    sy, sx = strides
    if data_format == "channels_last":
        h, w, c = _sizes(x, (1, 2, 3))
        return ops.reshape(x, (-1, h // sy, sy, w // sx, sx, c))
    c, h, w = _sizes(x, (1, 2, 3))
    return ops.reshape(x, (-1, c, h // sy, sy, w // sx, sx))


def polyphase_index(x, strides=2, criterion="l2", data_format=None):
    """Per sample, the index `dy * strides[1] + dx` of the component of largest norm.

    Norms are computed in float32 (the squared norm for "l2"). Exact ties are broken
    by the larger component sum, then by the lowest index: the sum follows the
    content under a shift where a fixed index would not (a +-1 checkerboard keeps
    its phase), and the last rule makes the choice deterministic. A NaN counts as
    the largest norm (and sum): a component with a NaN wins, so the index is always
    in `[0, strides[0] * strides[1])` and, like a large value, the NaN decides the
    choice wherever a shift moves it.

    Args:
        x: a 4D tensor whose spatial sizes are multiples of `strides` (see
            `pad_to_multiple`).
        strides: an int or a pair of ints.
        criterion: "l2", "l1" or "linf".
        data_format: "channels_last" or "channels_first".

    Returns:
        An int32 tensor of shape (batch,).
    """
    data_format = standardize_data_format(data_format)
    strides = standardize_pair(strides, "strides")
    criterion = standardize_choice(criterion, "criterion", POLYPHASE_CRITERIA)
    view = _phase_view(ops.cast(ops.stop_gradient(x), "float32"), strides, data_format)
    count = strides[0] * strides[1]

    def per_component(reduce, values):
        # Channels first, a contiguous reduction, then rows and columns of the
        # 1/C smaller rest: much faster than reducing (1, 3, 5) at once.
        values = reduce(values, axis=5 if data_format == "channels_last" else 1)
        return ops.reshape(reduce(values, axis=(1, 3)), (-1, count))

    if criterion == "linf":
        norms = per_component(ops.max, ops.abs(view))
    else:
        values = ops.square(view) if criterion == "l2" else ops.abs(view)
        norms = per_component(ops.sum, values)
    sums = per_component(ops.sum, view)
    # Without this, no component equals the max of NaN norms and the index would
    # be out of range (`ops.max` may also skip NaN; a sum never does).
    nan = ops.logical_or(ops.isnan(norms), ops.isnan(sums))
    norms = ops.where(nan, np.inf, norms)
    sums = ops.where(ops.isnan(sums), np.inf, sums)
    best = norms == ops.max(norms, axis=1, keepdims=True)
    sums = ops.where(best, sums, -np.inf)
    best = ops.logical_and(best, sums == ops.max(sums, axis=1, keepdims=True))
    order = ops.arange(count, dtype="int32")
    return ops.min(ops.where(best, order, count), axis=1)


def _select_component(x, index, strides, data_format):
    # One gather from the components stacked along the batch axis: its gradient
    # is one scatter, where masking the s*s strided slices costs s*s full-size
    # gradients (6-7x slower forward+backward at (16, 224, 224, 64) on TF's CPU).
    sy, sx = strides
    # (b, h, sy, w, sx, c) -> (b, sy, sx, h, w, c); (b, c, h, sy, w, sx) ->
    # (b, sy, sx, c, h, w).
    perm = (0, 2, 4, 1, 3, 5) if data_format == "channels_last" else (0, 3, 5, 1, 2, 4)
    stacked = ops.transpose(_phase_view(x, strides, data_format), perm)
    stacked = ops.reshape(stacked, (-1, *_sizes(stacked, (3, 4, 5))))
    rows = ops.arange(ops.shape(x)[0], dtype="int32") * (sy * sx)
    # Clipped so that no index, however wrong, reads another sample's components.
    index = ops.clip(ops.cast(index, "int32"), 0, sy * sx - 1)
    return ops.take(stacked, rows + index, axis=0)


def polyphase_gather(x, index, strides=2, data_format=None):
    """Samples each image of `x` at its polyphase component `index`.

    Odd sizes are first padded at the bottom/right by wrapping around; indices
    outside `[0, strides[0] * strides[1])` are clipped into it.
    See `keras_shiftinv.layers.PolyphaseGather2D`.
    """
    data_format = standardize_data_format(data_format)
    strides = standardize_pair(strides, "strides")
    x = pad_to_multiple(x, strides, "circular", data_format)
    return _select_component(x, index, strides, data_format)


def polyphase_down2d(
    x, strides=2, criterion="l2", filt_size=1, pad_mode="circular", data_format=None
):
    """Adaptive polyphase sampling; returns `(y, index)`.

    See `keras_shiftinv.layers.PolyphaseDown2D` for the definition.
    """
    data_format = standardize_data_format(data_format)
    strides = standardize_pair(strides, "strides")
    if standardize_filt_size(filt_size) > 1:
        x = blur_pool2d(
            x,
            filt_size=filt_size,
            strides=1,
            pad_mode=pad_mode,
            data_format=data_format,
        )
    x = pad_to_multiple(x, strides, pad_mode, data_format)
    index = polyphase_index(x, strides, criterion, data_format)
    return _select_component(x, index, strides, data_format), index


def _roll_back(x, shift, period, axis):
    # Each sample rolled by its own -shift: one candidate roll per possible shift,
    # picked with a mask, so that it stays differentiable on every backend. A
    # roll is two slices swapped: LiteRT's builtin ops have no roll (FlexRoll).
    y = x
    for a in range(1, period):
        rolled = ops.concatenate(
            [_slice_axis(x, axis, a, None), _slice_axis(x, axis, 0, a)], axis=axis
        )
        y = ops.where(shift == a, rolled, y)
    return y


def polyphase_roll(x, index, strides=2, data_format=None):
    """Rolls each image circularly by (-dy, -dx) of its component `index`, so that
    its chosen component becomes component 0."""
    data_format = standardize_data_format(data_format)
    sy, sx = standardize_pair(strides, "strides")
    index = ops.reshape(ops.cast(index, "int32"), (-1, 1, 1, 1))
    rows, cols = spatial_axes(data_format)
    x = _roll_back(x, index // sx, sy, rows)
    return _roll_back(x, index % sx, sx, cols)


def _image_kernel(kernel, strides):
    """A per-component kernel (kh, kw, sy, sx, ...) as a kernel of the image
    (sy * kh, sx * kw, ...) applied with stride s: a kxk conv of the components
    stacked by `offset_subsample` is an (s*k)x(s*k) conv of the image whose tap
    (s*ky + dy, s*kx + dx) is weight (ky, kx) of component (dy, dx)."""
    kh, kw, sy, sx, *rest = kernel.shape
    kernel = ops.transpose(kernel, (0, 2, 1, 3, *range(4, 4 + len(rest))))
    return ops.reshape(kernel, (kh * sy, kw * sx, *rest))


def _folded_kernel(kernel, pointwise_kernel, branch, strides, channels):
    """Step 2 and the 1x1 conv as one (s*kh, s*kw, C, filters) kernel of the
    image: both are linear, without bias, so they compose exactly."""
    return _image_kernel(
        _folded_component_kernel(kernel, pointwise_kernel, branch, strides, channels),
        strides,
    )


def _folded_component_kernel(kernel, pointwise_kernel, branch, strides, channels):
    """`_folded_kernel` per component: (kh, kw, sy, sx, C, filters)."""
    filters = pointwise_kernel.shape[-1]
    if branch == "group":
        kh, kw, _, width = kernel.shape
        kernel = ops.reshape(kernel, (kh, kw, *strides, channels, width // channels))
        pointwise = ops.reshape(pointwise_kernel, (channels, width // channels, -1))
        return ops.einsum("ijyxcm,cmf->ijyxcf", kernel, pointwise)
    depth, kh, kw, _, features = kernel.shape
    # Channel f * 2 + d is output depth d of Conv3D filter f, which applies
    # kernel depth a to component d + a.
    pointwise = ops.reshape(pointwise_kernel, (features, -1, filters))
    outputs = pointwise.shape[1]
    terms = ops.einsum("aijcf,fdg->adijcg", kernel, pointwise)
    folded = [
        sum(terms[a, o - a] for a in range(depth) if 0 <= o - a < outputs)
        for o in range(depth + outputs - 1)
    ]
    return ops.reshape(ops.stack(folded, axis=2), (kh, kw, 2, 2, channels, filters))


def _fold_is_cheaper(kernel, pointwise_kernel, channels, ratio=1):
    """Whether one dense conv with the folded kernel needs at most `ratio` times
    the multiply-adds of the grouped conv and the 1x1 conv (few input channels,
    as in a stem)."""
    kh, kw, components, width = kernel.shape
    filters = pointwise_kernel.shape[-1]
    taps = kh * kw * components
    return channels * filters * taps <= ratio * width * (taps + filters)


# Under XLA, a dense conv of the components does this many times the
# multiply-adds of the per-channel patch products in about the same time on the
# CPU: the crossover of rough side-by-side comparisons at the zoo's shapes
# (ResNet-18 at width 1/8, ratios 1.6 to 23). The bench_models sections per
# backend in BENCHMARKS.md time the models.
_XLA_FOLD_RATIO = 12


def _component_view(x, strides, channels_major):
    """The components of `x` (channels_last, sizes multiples of `strides`) as
    (b, h, w, sy * sx * C) in (dy, dx, c) order, or with `channels_major` as
    (C, b, h, w, sy * sx)."""
    sy, sx = strides
    view = _phase_view(x, strides, "channels_last")
    shape = ops.shape(view)
    channels = x.shape[-1]
    if channels_major:
        view = ops.transpose(view, (5, 0, 1, 3, 2, 4))
        return ops.reshape(view, (channels, -1, shape[1], shape[3], sy * sx))
    view = ops.transpose(view, (0, 1, 3, 2, 4, 5))
    return ops.reshape(view, (-1, shape[1], shape[3], sy * sx * channels))


def _same_component_padding(x, kernel_size, axes):
    """The zero "same" padding of a stride-s conv with an (s*kh) x (s*kw) kernel
    (odd kh, kw), done on the components: (k - 1) // 2 rows on each side."""
    widths = [[0, 0]] * len(x.shape)
    for axis, k in zip(axes, kernel_size, strict=True):
        widths[axis] = [(k - 1) // 2, k // 2]
    return ops.pad(x, widths)


def _components_conv(x, kernel, strides, padding):
    """`ops.conv(x, _image_kernel(kernel, strides), strides, padding)` for a
    component kernel (kh, kw, sy, sx, C, filters), as a stride-1 conv of the
    components stacked along the channels: XLA's CPU runs a large strided
    kernel on small maps several times slower."""
    kh, kw, sy, sx, channels, filters = kernel.shape
    x = _component_view(x, strides, channels_major=False)
    if padding == "same":
        x = _same_component_padding(x, (kh, kw), (1, 2))
    kernel = ops.reshape(kernel, (kh, kw, sy * sx * channels, filters))
    return ops.conv(x, kernel, 1, "valid", "channels_last")


def _patch_group_branch(x, kernel, pointwise_kernel, strides, padding):
    """The grouped conv and the 1x1 conv without a grouped or depthwise conv,
    which XLA's CPU runs one to two orders of magnitude slower than this (issue
    24): per input channel, a matrix product of its k x k patches of the
    components with its group's kernel, then the 1x1 conv as a matrix
    product."""
    kh, kw, components, width = kernel.shape
    channels = x.shape[-1]
    per_group = width // channels
    filters = pointwise_kernel.shape[-1]
    x = _component_view(x, strides, channels_major=True)
    if padding == "same":
        x = _same_component_padding(x, (kh, kw), (2, 3))
    # Each axis is k - 1 longer than the output: static stops, known sizes or not.
    patches = ops.concatenate(
        [
            x[:, :, i : i - kh + 1 or None, j : j - kw + 1 or None]
            for i in range(kh)
            for j in range(kw)
        ],
        axis=-1,
    )
    shape = ops.shape(patches)
    taps = kh * kw * components
    patches = ops.reshape(patches, (channels, -1, taps))
    # (kh, kw, S, C * M) -> (C, kh * kw * S, M): the order of the patches.
    kernel = ops.reshape(kernel, (kh, kw, components, channels, per_group))
    kernel = ops.reshape(ops.transpose(kernel, (3, 0, 1, 2, 4)), (channels, taps, -1))
    features = ops.transpose(ops.matmul(patches, kernel), (1, 0, 2))
    features = ops.reshape(features, (-1, width))
    y = ops.matmul(features, ops.reshape(pointwise_kernel, (width, filters)))
    return ops.reshape(y, (-1, shape[2], shape[3], filters))


def _depthwise_group_branch(x, kernel, pointwise_kernel, strides, padding):
    # The grouped conv as depthwise convs of the image (see `_image_kernel`),
    # which skips the channel shuffle and runs natively on every backend (a
    # grouped conv goes through XLA on TensorFlow's CPU).
    kh, kw, _, width = kernel.shape
    channels = x.shape[-1]
    per_group = width // channels
    kernel = ops.reshape(kernel, (kh, kw, *strides, channels, per_group))
    kernel = _image_kernel(kernel, strides)
    if channels < 32 or not 2 <= per_group <= 4:
        features = ops.depthwise_conv(x, kernel, strides, padding, "channels_last")
        return ops.conv(features, pointwise_kernel, 1, "valid", "channels_last")
    # On TensorFlow's CPU a few depthwise convs with channel multiplier 1 are
    # faster than one with a multiplier (BENCHMARKS.md). Their outputs come out
    # as m * C + c rather than c * M + m: permute the 1x1 kernel's rows instead.
    features = ops.concatenate(
        [
            ops.depthwise_conv(
                x, kernel[..., m : m + 1], strides, padding, "channels_last"
            )
            for m in range(per_group)
        ],
        axis=-1,
    )
    filters = pointwise_kernel.shape[-1]
    pointwise_kernel = ops.reshape(pointwise_kernel, (channels, per_group, filters))
    pointwise_kernel = ops.transpose(pointwise_kernel, (1, 0, 2))
    pointwise_kernel = ops.reshape(pointwise_kernel, (1, 1, width, filters))
    return ops.conv(features, pointwise_kernel, 1, "valid", "channels_last")


MODULE_METHODS = ("depthwise", "fold", "patches", "components")


def _module_method(kernel, pointwise_kernel, branch, channels):
    """How `module_conv` computes the module on this backend: under XLA (JAX,
    or TensorFlow with `jit_compile=True`) neither a depthwise conv nor a large
    strided kernel; elsewhere as measured on TensorFlow (BENCHMARKS.md)."""
    if not _keras_compat.compiling_with_xla():
        if branch == "group" and not _fold_is_cheaper(
            kernel, pointwise_kernel, channels
        ):
            return "depthwise"
        return "fold"
    if branch == "group" and not _fold_is_cheaper(
        kernel, pointwise_kernel, channels, _XLA_FOLD_RATIO
    ):
        return "patches"
    return "components"


def module_conv(x, kernel, pointwise_kernel, branch, strides, padding, method):
    """Step 2 and the 1x1 conv of `ShiftInvariantDown`, without the bias, on
    an image `x` (channels_last, sizes multiples of `strides`, padded for a
    "valid" conv unless `padding` is "same"), by one of `MODULE_METHODS`; all
    compute the same sums:
    - "depthwise": the grouped conv as depthwise convs of the image (see
      `_image_kernel`), then the 1x1 conv ("group" only);
    - "fold": one strided conv of the image with both kernels folded into one;
    - "components": the folded kernel as a stride-1 conv of the components;
    - "patches": per input channel, a matrix product of its patches ("group"
      only).
    """
    method = standardize_choice(method, "method", MODULE_METHODS)
    if branch != "group" and method in ("depthwise", "patches"):
        raise ValueError(
            f"method={method!r} computes the 'group' branch only. "
            f"Received: branch={branch!r}"
        )
    channels = x.shape[-1]
    if method == "depthwise":
        return _depthwise_group_branch(x, kernel, pointwise_kernel, strides, padding)
    if method == "patches":
        return _patch_group_branch(x, kernel, pointwise_kernel, strides, padding)
    kernel = _folded_component_kernel(
        kernel, pointwise_kernel, branch, strides, channels
    )
    if method == "components":
        return _components_conv(x, kernel, strides, padding)
    return ops.conv(x, _image_kernel(kernel, strides), strides, padding)


def check_branch_strides(branch, strides):
    """Raises unless `strides` (a pair) suits `branch`: "conv3d" needs (2, 2)."""
    if branch == "conv3d" and tuple(strides) != (2, 2):
        raise ValueError(
            "branch='conv3d' stacks the 4 components of a stride of 2. "
            f"Received: strides={strides!r}"
        )


def shift_invariant_down(
    x,
    kernel,
    pointwise_kernel,
    bias=None,
    branch="group",
    strides=2,
    polyphase_order="fixed",
    pad_mode="zero",
    data_format=None,
):
    """The learned shift-invariant downsampling module.

    See `keras_shiftinv.layers.ShiftInvariantDown` for the definition and the
    layouts of `kernel` (rank 4 for "group", rank 5 for "conv3d") and
    `pointwise_kernel` (1, 1, features, filters).
    """
    data_format = standardize_data_format(data_format)
    branch = standardize_choice(branch, "branch", SHIFT_INVARIANT_BRANCHES)
    strides = standardize_pair(strides, "strides")
    polyphase_order = standardize_choice(
        polyphase_order, "polyphase_order", POLYPHASE_ORDERS
    )
    pad_mode = standardize_choice(pad_mode, "pad_mode", CONV_PAD_MODES)
    check_branch_strides(branch, strides)
    if data_format == "channels_first":
        x = ops.transpose(x, (0, 2, 3, 1))
    x = pad_to_multiple(x, strides, pad_mode, "channels_last")
    if polyphase_order == "aps":
        index = polyphase_index(x, strides, "l2", "channels_last")
        x = polyphase_roll(x, index, strides, "channels_last")
    # "Same" padding of the components, done on the image: a row of a component
    # is `stride` rows of the image. With zeros and odd kernels it is the
    # strided conv's own "same" padding, which saves a copy of the input.
    kernel_size = kernel.shape[:2] if branch == "group" else kernel.shape[1:3]
    padding = "valid"
    if pad_mode == "zero" and all(k % 2 for k in kernel_size):
        padding = "same"
    else:
        widths = [
            (s * ((k - 1) // 2), s * (k // 2))
            for s, k in zip(strides, kernel_size, strict=True)
        ]
        x = pad2d(x, widths, pad_mode, "channels_last")
    method = _module_method(kernel, pointwise_kernel, branch, x.shape[-1])
    y = module_conv(x, kernel, pointwise_kernel, branch, strides, padding, method)
    if bias is not None:
        y = y + bias
    if data_format == "channels_first":
        y = ops.transpose(y, (0, 3, 1, 2))
    return y


def high_frequency_share(kernel, per_filter=False):
    """The share of a filter's energy outside `|wy|, |wx| < pi/2`, differentiable.

    What a subsampling by 2 folds back (see `keras_shiftinv.diagnostics`): `1 -`
    the energy in the band over the total energy, computed exactly as a quadratic
    form of the taps (Parseval; no frequency grid), in `kernel`'s float dtype.
    The diagnostics and `ShiftInvariantDown`'s `lowpass_penalty` both use it.

    Args:
        kernel: tensor `(kh, kw)` or `(kh, kw, ...)`, a filter over its first two
            axes; the trailing axes index filters whose energies are added.
        per_filter: False: one share, all energies added. True: one share per
            index of the last axis, the energies of the other trailing axes added
            (per output channel of a conv kernel `(kh, kw, in, out)`).

    Returns:
        A scalar tensor in [0, 1] (a vector with `per_filter`); 0 for a filter
        without energy.
    """
    kernel = ops.convert_to_tensor(kernel)
    if len(kernel.shape) < (3 if per_filter else 2):
        raise ValueError(
            f"`kernel` must have at least {3 if per_filter else 2} axes (kh, kw"
            f"{', ..., filters' if per_filter else ''}). Received: shape "
            f"{tuple(kernel.shape)}"
        )
    if not keras.backend.is_float_dtype(kernel.dtype):
        kernel = ops.cast(kernel, "float32")
    kh, kw = kernel.shape[:2]
    filters_axis = kernel.shape[-1] if per_filter else 1
    kernel = ops.reshape(kernel, (kh, kw, -1, filters_axis))
    rows = ops.convert_to_tensor(filters.passband_matrix(kh), kernel.dtype)
    cols = ops.convert_to_tensor(filters.passband_matrix(kw), kernel.dtype)
    passed = ops.einsum("ia,jb,abcf->ijcf", rows, cols, kernel)
    low = ops.sum(kernel * passed, axis=(0, 1, 2))
    total = ops.sum(ops.square(kernel), axis=(0, 1, 2))
    # Safe division: a filter without energy has share 0 and a finite gradient.
    has_energy = total > 0
    share = ops.where(has_energy, 1 - low / ops.where(has_energy, total, 1), 0)
    # The band's matrix has eigenvalues in [0, 1]: only rounding leaves [0, 1].
    share = ops.clip(share, 0, 1)
    return share if per_filter else share[0]
