import keras

from keras_shiftinv import ops as si_ops
from keras_shiftinv.layers.base_layer import BaseLayer2D
from keras_shiftinv.validation import (
    PAD_MODES,
    standardize_choice,
    standardize_filt_size,
    standardize_pair,
)


@keras.saving.register_keras_serializable(package="keras_shiftinv")
class BlurPool2D(BaseLayer2D):
    """Anti-aliased downsampling: a binomial low-pass filter, then a stride.

    Each channel is blurred with the outer product of row `filt_size` of Pascal's
    triangle (normalised to sum to 1) and then subsampled by `strides`. Blurring
    before subsampling removes the frequencies that would alias, so a shift of the
    input changes the output far less than plain strided pooling does (Zhang, 2019).
    The input is padded by `(filt_size - 1) // 2` rows and columns on the top/left
    and `ceil((filt_size - 1) / 2)` on the bottom/right, so the output has
    `ceil(size / strides)` rows and columns. The filter is a constant: the layer has
    no weights.

    Args:
        filt_size: number of filter taps per axis, an integer >= 1. 1 is plain
            subsampling, 2 a box filter `[1, 1]`, 3 `[1, 2, 1]`, 4 `[1, 3, 3, 1]`,
            5 `[1, 4, 6, 4, 1]` and so on.
        strides: an integer or a pair of integers >= 1; 1 blurs without
            subsampling.
        pad_mode: how the border is filled: "reflect" (mirror without repeating
            the edge), "replicate" (repeat the edge), "zero" or "circular"
            (wrap around; with it a circular shift of the input by `strides` is a
            circular shift of the output by one).
        data_format: "channels_last" (default, from `keras.config`) or
            "channels_first".

    Input shape:
        4D tensor `(batch, height, width, channels)` for "channels_last" or
        `(batch, channels, height, width)` for "channels_first". Height and width
        may be `None`.

    Output shape:
        4D tensor with `ceil(height / strides[0])` rows and
        `ceil(width / strides[1])` columns.

    Example:

    >>> x = keras.random.normal((2, 32, 32, 16))
    >>> keras_shiftinv.layers.BlurPool2D(filt_size=4)(x).shape
    (2, 16, 16, 16)

    Reference:
        - [Zhang, Making Convolutional Networks Shift-Invariant Again,
          ICML 2019](https://arxiv.org/abs/1904.11486)
    """

    config_names = ("filt_size", "strides", "pad_mode")
    requires_channels = True

    def __init__(
        self, filt_size=4, strides=2, pad_mode="reflect", data_format=None, **kwargs
    ):
        super().__init__(data_format=data_format, **kwargs)
        self.filt_size = standardize_filt_size(filt_size)
        self.strides = standardize_pair(strides, "strides")
        self.pad_mode = standardize_choice(pad_mode, "pad_mode", PAD_MODES)

    def _compute(self, inputs):
        return si_ops.blur_pool2d(
            inputs, self.filt_size, self.strides, self.pad_mode, self.data_format
        )
