"""Argument standardisation shared by the whole package (layers, ops, zoo, data,
training, metrics).

Every check raises a `ValueError` that names the argument and the value it got, so a
mistake is reported where it is made, not deep inside a backend kernel.
"""

import math
import numbers
import warnings

import keras
from keras import ops

# Each set of choices is named once, here, for the layers, ops, zoo builders,
# antialias() and the commands.
PAD_MODES = ("reflect", "replicate", "zero", "circular")
# Convolutions and ShiftInvariantDown: zeros or wrap-around.
CONV_PAD_MODES = ("zero", "circular")
POLYPHASE_ORDERS = ("fixed", "aps")
# The largest blur: up to 15 taps the k x k binomial kernel (products of binomial
# coefficients over 4**(k - 1)) is exact in float32; from 16 on it rounds, and far
# beyond, the coefficients overflow or take minutes to build.
MAX_FILT_SIZE = 15


def standardize_data_format(data_format):
    if data_format is None:
        return keras.config.image_data_format()
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(
            "`data_format` must be 'channels_last' or 'channels_first'. "
            f"Received: data_format={data_format!r}"
        )
    return data_format


def is_int(value):
    # NumPy integers too (`np.int64(2)`); bools are not integers here.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def standardize_int(value, name, minimum=1, maximum=None):
    """`value` as a Python int in [minimum, maximum]."""
    if (
        not is_int(value)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        bounds = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(
            f"`{name}` must be an integer {bounds}. Received: {name}={value!r}"
        )
    return int(value)


def standardize_filt_size(filt_size):
    """A number of binomial taps, 1 to `MAX_FILT_SIZE`."""
    return standardize_int(filt_size, "filt_size", maximum=MAX_FILT_SIZE)


def standardize_number(value, name, low, high=math.inf, closed=False):
    """A number in the open interval (low, high), or [low, high] when `closed`."""
    inside = (low <= value <= high) if closed else (low < value < high)
    if isinstance(value, bool) or not isinstance(value, int | float) or not inside:
        bounds = f"[{low}, {high}]" if closed else f"({low}, {high})"
        raise ValueError(
            f"`{name}` must be a number in {bounds}. Received: {name}={value!r}"
        )
    return value


def standardize_weight(value, name):
    """A finite number >= 0 (the weight of a loss term), as a float."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 <= value < math.inf
    ):
        raise ValueError(
            f"`{name}` must be a finite number >= 0. Received: {name}={value!r}"
        )
    return float(value)


def standardize_pair(value, name, minimum=1):
    """An int or a pair of ints, each >= `minimum`, as a tuple of two ints."""
    pair = (value, value) if is_int(value) else value
    try:
        pair = tuple(pair)
    except TypeError:
        pair = ()
    if len(pair) != 2 or any(not is_int(v) or v < minimum for v in pair):
        raise ValueError(
            f"`{name}` must be an integer >= {minimum} or a pair of them. "
            f"Received: {name}={value!r}"
        )
    return tuple(int(v) for v in pair)


def standardize_choice(value, name, choices):
    if value not in choices:
        raise ValueError(
            f"`{name}` must be one of {', '.join(map(repr, choices))}. "
            f"Received: {name}={value!r}"
        )
    return value


def renamed_argument(old_name, old_value, new_name, new_value, default, stacklevel=3):
    """The value of an argument renamed from `old_name` to `new_name`.

    Both keywords default to None. The old one still works, with a
    `DeprecationWarning`; giving both is a `ValueError` naming both.

    Args:
        old_name: the deprecated keyword.
        old_value: its value (None: not given).
        new_name: the keyword that replaces it.
        new_value: its value (None: not given).
        default: the value when neither is given.
        stacklevel: as in `warnings.warn`; the default 3 blames the caller of the
            function that calls `renamed_argument`.

    Returns:
        `new_value`, else `old_value`, else `default`.
    """
    if old_value is None:
        return default if new_value is None else new_value
    if new_value is not None:
        raise ValueError(
            f"`{old_name}` is the deprecated name of `{new_name}`: give only "
            f"`{new_name}`. Received: {old_name}={old_value!r}, "
            f"{new_name}={new_value!r}"
        )
    warnings.warn(
        f"`{old_name}` is deprecated; use `{new_name}` instead "
        f"({new_name}={old_value!r}).",
        DeprecationWarning,
        stacklevel=stacklevel,
    )
    return old_value


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


def call_on_batch(layer, fn, inputs, *others):
    """`fn(inputs, *others)` for a layer's `call`, with two input cases settled.

    - Integer and bool `inputs` are cast to the layer's compute dtype (Keras casts
      only floats), so every layer takes uint8 images as they are read.
    - A batch known to be empty is computed as one sample of zeros, then dropped:
      TensorFlow's kernels given an empty batch return wrong shapes (a convolution
      returns its input) or fail (mirror padding, the max of the norms).

    Args:
        layer: the calling layer.
        fn: the computation, on tensors with a batch axis first.
        inputs: the image tensor.
        *others: further tensors with the same batch (indices), not cast.
    """
    if not keras.backend.is_float_dtype(inputs.dtype):
        inputs = ops.cast(inputs, layer.compute_dtype)
    tensors = (inputs, *others)
    if inputs.shape[0] != 0:
        return fn(*tensors)
    padded = [ops.pad(t, [[0, 1]] + [[0, 0]] * (len(t.shape) - 1)) for t in tensors]
    return keras.tree.map_structure(lambda y: y[:0], fn(*padded))
