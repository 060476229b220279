"""Functional forms of the package's operations, written with `keras.ops`.

The layers in `keras_shiftinv.layers` are thin wrappers around these functions, so the
same code serves a layer, a custom `call` and a test.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_shiftinv.layers.utils import (
    PAD_MODES,
    channel_axis,
    spatial_axes,
    standardize_choice,
    standardize_data_format,
    standardize_int,
    standardize_pair,
)


def binomial_filter(filt_size):
    """Row `filt_size` of Pascal's triangle, normalised to sum to 1 (float64)."""
    standardize_int(filt_size, "filt_size")
    row = np.array([math.comb(filt_size - 1, k) for k in range(filt_size)], "float64")
    return row / row.sum()


def blur_padding(filt_size):
    """(before, after) padding of a `filt_size`-tap blur: (k-1)//2, ceil((k-1)/2)."""
    return (filt_size - 1) // 2, filt_size // 2


def _check_pad_fits(size, pad, mode, axis):
    if size is None:
        return
    if mode == "reflect" and max(pad) >= size:
        raise ValueError(
            "pad_mode='reflect' needs a spatial size larger than the padding "
            f"{max(pad)} on axis {axis}. Received: a size of {size}; use a smaller "
            "`filt_size` or pad_mode='replicate'."
        )
    if mode == "circular" and max(pad) > size:
        raise ValueError(
            f"pad_mode='circular' cannot wrap a padding of {max(pad)} around a size "
            f"of {size} on axis {axis}."
        )


def _slice_axis(x, axis, start, stop):
    index = [slice(None)] * len(x.shape)
    index[axis] = slice(start, stop)
    return x[tuple(index)]


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
        _check_pad_fits(x.shape[axis], pad, pad_mode, axis)
    if pad_mode in ("zero", "reflect"):
        widths = [[0, 0]] * 4
        for axis, pad in zip(axes, padding, strict=True):
            widths[axis] = list(pad)
        return ops.pad(x, widths, mode="constant" if pad_mode == "zero" else "reflect")
    for axis, (before, after) in zip(axes, padding, strict=True):
        if pad_mode == "circular":
            head = _slice_axis(x, axis, -before, None) if before else None
            tail = _slice_axis(x, axis, 0, after) if after else None
        else:
            head = ops.repeat(_slice_axis(x, axis, 0, 1), before, axis=axis)
            tail = ops.repeat(_slice_axis(x, axis, -1, None), after, axis=axis)
        parts = [p for p in (head, x, tail) if p is not None]
        x = ops.concatenate(parts, axis=axis)
    return x


def _tf_fast_path(x, data_format):
    """Whether `keras_shiftinv._blur_tf` serves this input: a tensor (not a symbolic
    `keras.KerasTensor`) on the TensorFlow backend, with both spatial sizes known at
    trace time."""
    return (
        keras.backend.backend() == "tensorflow"
        and not isinstance(x, keras.KerasTensor)
        and all(x.shape[axis] is not None for axis in spatial_axes(data_format))
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
    standardize_int(filt_size, "filt_size")
    if filt_size == 1:
        rows, cols = strides
        if data_format == "channels_last":
            return x[:, ::rows, ::cols, :]
        return x[:, :, ::rows, ::cols]
    if _tf_fast_path(x, data_format):
        # TensorFlow's CPU depthwise convolution is channels_last only.
        if data_format == "channels_first":
            return _channels_last_call(blur_pool2d, x, filt_size, strides, pad_mode)
        # Imported here: the JAX backend needs no TensorFlow.
        from keras_shiftinv import _blur_tf

        return _blur_tf.blur_pool2d(x, filt_size, strides, pad_mode)
    return _blur_pool2d_portable(x, filt_size, strides, pad_mode, data_format)


def _blur_pool2d_portable(x, filt_size, strides, pad_mode, data_format):
    """`blur_pool2d` with `keras.ops` only (standardized arguments, filt_size > 1)."""
    taps = binomial_filter(filt_size)
    pad = blur_padding(filt_size)
    x = pad2d(x, (pad, pad), pad_mode, data_format)
    channels = x.shape[channel_axis(data_format)]
    kernel = np.outer(taps, taps)[:, :, None, None] * np.ones((1, 1, channels, 1))
    kernel = ops.convert_to_tensor(kernel, dtype=x.dtype)
    return ops.depthwise_conv(x, kernel, strides, "valid", data_format)


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
