import keras

from keras_shiftinv import ops as si_ops
from keras_shiftinv.layers.base_layer import BaseLayer2D
from keras_shiftinv.validation import (
    PAD_MODES,
    spatial_axes,
    standardize_choice,
    standardize_filt_size,
    standardize_pair,
)


@keras.saving.register_keras_serializable(package="keras_shiftinv")
class MaxBlurPool2D(BaseLayer2D):
    """Anti-aliased max pooling: max pooling at stride 1, then `BlurPool2D`.

    Strided max pooling is dense max pooling followed by naive subsampling; the
    subsampling is what aliases. This layer keeps the dense max (stride 1, VALID
    padding) and replaces the naive subsampling by a binomial blur and a stride
    (Zhang, 2019). It drops in where `keras.layers.MaxPooling2D(pool_size)` was.

    Args:
        pool_size: an integer or a pair of integers >= 1, the max-pooling window.
        filt_size: number of blur taps per axis (see `BlurPool2D`).
        strides: an integer or a pair of integers >= 1, the subsampling factor.
        pad_mode: border mode of the blur: "reflect", "replicate", "zero" or
            "circular" (see `BlurPool2D`).
        data_format: "channels_last" (default, from `keras.config`) or
            "channels_first".

    Input shape:
        4D tensor `(batch, height, width, channels)` for "channels_last" or
        `(batch, channels, height, width)` for "channels_first". Height and width
        may be `None`.

    Output shape:
        4D tensor with `ceil((height - pool_size[0] + 1) / strides[0])` rows and
        likewise for the columns.

    Example:

    >>> x = keras.random.normal((2, 32, 32, 16))
    >>> keras_shiftinv.layers.MaxBlurPool2D()(x).shape
    (2, 16, 16, 16)

    Reference:
        - [Zhang, Making Convolutional Networks Shift-Invariant Again,
          ICML 2019](https://arxiv.org/abs/1904.11486)
    """

    config_names = ("pool_size", "filt_size", "strides", "pad_mode")
    requires_channels = True

    def __init__(
        self,
        pool_size=2,
        filt_size=4,
        strides=2,
        pad_mode="reflect",
        data_format=None,
        **kwargs,
    ):
        super().__init__(data_format=data_format, **kwargs)
        self.pool_size = standardize_pair(pool_size, "pool_size")
        self.filt_size = standardize_filt_size(filt_size)
        self.strides = standardize_pair(strides, "strides")
        self.pad_mode = standardize_choice(pad_mode, "pad_mode", PAD_MODES)

    def build(self, input_shape):
        super().build(input_shape)
        for axis, pool in zip(
            spatial_axes(self.data_format), self.pool_size, strict=True
        ):
            size = input_shape[axis]
            if size is not None and size < pool:
                raise ValueError(
                    f"`pool_size`={self.pool_size} is larger than the input "
                    f"(input_shape={tuple(input_shape)})."
                )

    def _compute(self, inputs):
        return si_ops.max_blur_pool2d(
            inputs,
            self.pool_size,
            self.filt_size,
            self.strides,
            self.pad_mode,
            self.data_format,
        )

    def output_shape_for(self, shape):
        # The dense max pool (stride 1, VALID) comes first.
        for axis, pool in zip(
            spatial_axes(self.data_format), self.pool_size, strict=True
        ):
            if shape[axis] is not None:
                shape[axis] -= pool - 1
        return super().output_shape_for(shape)
