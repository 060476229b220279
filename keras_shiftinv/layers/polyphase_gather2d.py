import keras

from keras_shiftinv import ops as si_ops
from keras_shiftinv.layers.base_layer import BaseLayer2D
from keras_shiftinv.validation import (
    call_on_batch,
    check_input_shape,
    standardize_pair,
)


@keras.saving.register_keras_serializable(package="keras_shiftinv")
class PolyphaseGather2D(BaseLayer2D):
    """Samples each image at a given polyphase component.

    Called as `layer([x, indices])`, it returns `x[dy::s, dx::s]` for each image,
    where `indices` (int, shape `(batch,)`) holds `dy * strides[1] + dx`, as
    returned by `PolyphaseDown2D(return_indices=True)`. In a residual block whose
    main path downsamples with `PolyphaseDown2D`, the shortcut must keep the same
    component, or the two paths would be misaligned and the block would lose its
    shift invariance. Odd sizes are padded at the bottom/right by wrapping around,
    as `PolyphaseDown2D` does by default. No weights.

    Args:
        strides: an integer or a pair of integers >= 1, those of the
            `PolyphaseDown2D` that chose the indices.
        data_format: "channels_last" (default, from `keras.config`) or
            "channels_first".

    Input shape:
        A list `[x, indices]`: `x` a 4D tensor `(batch, height, width, channels)`
        for "channels_last" or `(batch, channels, height, width)` for
        "channels_first" (height and width may be `None`), `indices` an integer
        tensor `(batch,)` with values in `[0, strides[0] * strides[1])`. An
        index outside that range is clipped into it, so each image is always
        sampled from its own pixels: a compiled function cannot raise on a
        value, and an index past the end would otherwise read the next image.

    Output shape:
        4D tensor with `ceil(height / strides[0])` rows and
        `ceil(width / strides[1])` columns.

    Example:

    >>> x = keras.random.normal((2, 32, 32, 16))
    >>> shortcut = keras.random.normal((2, 32, 32, 64))
    >>> y, index = keras_shiftinv.layers.PolyphaseDown2D(return_indices=True)(x)
    >>> keras_shiftinv.layers.PolyphaseGather2D()([shortcut, index]).shape
    (2, 16, 16, 64)

    Reference:
        - [Chaman & Dokmanic, Truly Shift-Invariant Convolutional Neural
          Networks, CVPR 2021](https://arxiv.org/abs/2011.14214)
    """

    config_names = ("strides",)

    def __init__(self, strides=2, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.strides = standardize_pair(strides, "strides")

    def _image_shape(self, input_shape, need_channels):
        if not (
            isinstance(input_shape, list | tuple)
            and len(input_shape) == 2
            and all(isinstance(s, list | tuple) for s in input_shape)
        ):
            raise ValueError(
                "PolyphaseGather2D is called on a list [x, indices]. "
                f"Received: input_shape={input_shape}"
            )
        shape, index_shape = input_shape
        check_input_shape(self, shape, need_channels=need_channels)
        if len(index_shape) != 1:
            raise ValueError(
                "PolyphaseGather2D expects indices of shape (batch,). "
                f"Received: indices shape {tuple(index_shape)}"
            )
        return shape

    def call(self, inputs):
        x, indices = inputs
        return call_on_batch(self, self._compute, x, indices)

    def _compute(self, x, indices):
        return si_ops.polyphase_gather(x, indices, self.strides, self.data_format)
