import keras

from keras_shiftinv import ops as si_ops
from keras_shiftinv.layers.base_layer import BaseLayer2D
from keras_shiftinv.validation import (
    PAD_MODES,
    channel_axis,
    standardize_choice,
    standardize_pair,
)


@keras.saving.register_keras_serializable(package="keras_shiftinv")
class OffsetSubsample(BaseLayer2D):
    """Lossless downsampling: every offset of a stride, stacked along the channels.

    A stride `s` keeps one of the `s * s` polyphase components `x[dy::s, dx::s]` of
    each channel and drops the rest. This layer keeps all of them, stacked
    channel-major: output channel `c * s * s + dy * s + dx` is `x[dy::s, dx::s, c]`
    (for strides 2, RGB becomes RRRRGGGGBBBB). Nothing is lost, so the layer has an
    exact inverse, `invert`. Odd sizes are first padded at the bottom/right to a
    multiple of `strides` with `pad_mode`. With a pair of strides `(sy, sx)` the
    channel is `c * sy * sx + dy * sx + dx`. The first stage of
    `ShiftInvariantDown`; no weights.

    Args:
        strides: an integer or a pair of integers >= 1.
        pad_mode: how odd sizes are padded at the bottom/right: "zero",
            "reflect", "replicate" or "circular" (see `BlurPool2D`).
        data_format: "channels_last" (default, from `keras.config`) or
            "channels_first".

    Input shape:
        4D tensor `(batch, height, width, channels)` for "channels_last" or
        `(batch, channels, height, width)` for "channels_first". Height and width
        may be `None`.

    Output shape:
        4D tensor with `ceil(height / strides[0])` rows,
        `ceil(width / strides[1])` columns and
        `channels * strides[0] * strides[1]` channels.

    Example:

    >>> x = keras.random.normal((2, 32, 32, 3))
    >>> layer = keras_shiftinv.layers.OffsetSubsample(strides=2)
    >>> y = layer(x)
    >>> y.shape
    (2, 16, 16, 12)
    >>> bool(keras.ops.all(layer.invert(y) == x))
    True

    Reference:
        - Making CNN Shift Invariant Again and Again, section 3.2
          ("Sub-sampling and Rearranging").
    """

    config_names = ("strides", "pad_mode")

    def __init__(self, strides=2, pad_mode="zero", data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.strides = standardize_pair(strides, "strides")
        self.pad_mode = standardize_choice(pad_mode, "pad_mode", PAD_MODES)

    def _compute(self, inputs):
        return si_ops.offset_subsample(
            inputs, self.strides, self.pad_mode, self.data_format
        )

    def invert(self, outputs, size=None):
        """The input back from the layer's output.

        Args:
            outputs: a tensor the layer produced.
            size: `(height, width)` of the input, needed to drop the padding
                when a size was not a multiple of `strides`; None keeps it.
        """
        if size is not None:
            size = standardize_pair(size, "size")
        return si_ops.offset_subsample_inverse(
            outputs, self.strides, size, self.data_format
        )

    def output_shape_for(self, shape):
        shape = super().output_shape_for(shape)
        axis = channel_axis(self.data_format)
        if shape[axis] is not None:
            shape[axis] *= self.strides[0] * self.strides[1]
        return shape
