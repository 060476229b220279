"""Argument standardisation shared by the layers.

Every check raises a `ValueError` that names the argument and the value it got, so a
mistake is reported where it is made, not deep inside a backend kernel.
"""

import math

import keras

PAD_MODES = ("reflect", "replicate", "zero", "circular")


def standardize_data_format(data_format):
    if data_format is None:
        return keras.config.image_data_format()
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(
            "`data_format` must be 'channels_last' or 'channels_first'. "
            f"Received: data_format={data_format!r}"
        )
    return data_format


def standardize_int(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            f"`{name}` must be an integer >= {minimum}. Received: {name}={value!r}"
        )
    return value


def standardize_number(value, name, low, high=math.inf, closed=False):
    """A number in the open interval (low, high), or [low, high] when `closed`."""
    inside = (low <= value <= high) if closed else (low < value < high)
    if isinstance(value, bool) or not isinstance(value, int | float) or not inside:
        bounds = f"[{low}, {high}]" if closed else f"({low}, {high})"
        raise ValueError(
            f"`{name}` must be a number in {bounds}. Received: {name}={value!r}"
        )
    return value


def standardize_pair(value, name, minimum=1):
    """An int or a pair of ints, each >= `minimum`, as a tuple of two ints."""
    pair = (value, value) if isinstance(value, int) else value
    try:
        pair = tuple(pair)
    except TypeError:
        pair = ()
    if len(pair) != 2 or any(
        isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in pair
    ):
        raise ValueError(
            f"`{name}` must be an integer >= {minimum} or a pair of them. "
            f"Received: {name}={value!r}"
        )
    return pair


def standardize_choice(value, name, choices):
    if value not in choices:
        raise ValueError(
            f"`{name}` must be one of {', '.join(map(repr, choices))}. "
            f"Received: {name}={value!r}"
        )
    return value


def spatial_axes(data_format):
    return (1, 2) if data_format == "channels_last" else (2, 3)


def channel_axis(data_format):
    return -1 if data_format == "channels_last" else 1


def check_input_shape(layer, input_shape, need_channels=True):
    """Rank 4 and, where the layer needs it, a known channel count."""
    if len(input_shape) != 4:
        raise ValueError(
            f"{type(layer).__name__} expects a rank-4 input (batch, height, width, "
            f"channels) in data_format={layer.data_format!r}. "
            f"Received: input_shape={tuple(input_shape)}"
        )
    channels = input_shape[channel_axis(layer.data_format)]
    if need_channels and channels is None:
        raise ValueError(
            f"{type(layer).__name__} needs a known number of channels. "
            f"Received: input_shape={tuple(input_shape)}"
        )
    return channels


def downsampled_shape(input_shape, strides, data_format):
    """`input_shape` (as a list) with each spatial size `n` replaced by
    `ceil(n / stride)`, the length a layer that keeps every `stride`-th sample
    outputs; `None` sizes stay `None`."""
    shape = list(input_shape)
    for axis, stride in zip(spatial_axes(data_format), strides, strict=True):
        if shape[axis] is not None:
            shape[axis] = math.ceil(shape[axis] / stride)
    return shape
