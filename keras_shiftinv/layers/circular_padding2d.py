import keras

from keras_shiftinv import ops as si_ops
from keras_shiftinv.layers.base_layer import BaseLayer2D
from keras_shiftinv.validation import is_int, spatial_axes, standardize_pair


def _standardize_padding(padding):
    if is_int(padding) or (
        isinstance(padding, tuple | list) and all(is_int(p) for p in padding)
    ):
        rows, cols = standardize_pair(padding, "padding", minimum=0)
        return ((rows, rows), (cols, cols))
    try:
        pairs = tuple(padding)
    except TypeError:
        pairs = ()
    if len(pairs) != 2:
        raise ValueError(
            "`padding` must be an integer >= 0, a pair (rows, columns) or "
            f"((top, bottom), (left, right)). Received: padding={padding!r}"
        )
    return tuple(standardize_pair(p, "padding", minimum=0) for p in pairs)


@keras.saving.register_keras_serializable(package="keras_shiftinv")
class CircularPadding2D(BaseLayer2D):
    """Wrap-around padding of the two spatial axes.

    The rows added at the top are the last rows of the input, those at the bottom
    its first rows, and likewise for the columns: the image is treated as a torus.
    A convolution with `padding="valid"` after this layer is exactly equivariant to
    circular shifts of its input, which zero padding (Keras' "same") is not near
    the border; shift-invariance tests with circular shifts rely on it.

    Args:
        padding: an integer (the same on all four sides), a pair
            `(rows, columns)` (symmetric) or `((top, bottom), (left, right))`.
            A padding wider than the axis wraps around more than once (as
            `np.pad(..., mode="wrap")`); that needs the axis size known when
            the layer is traced.
        data_format: "channels_last" (default, from `keras.config`) or
            "channels_first".

    Input shape:
        4D tensor `(batch, height, width, channels)` for "channels_last" or
        `(batch, channels, height, width)` for "channels_first". Height and width
        may be `None`.

    Output shape:
        4D tensor with `height + top + bottom` rows and
        `width + left + right` columns.

    Example:

    >>> x = keras.random.normal((2, 8, 8, 16))
    >>> keras_shiftinv.layers.CircularPadding2D(1)(x).shape
    (2, 10, 10, 16)
    """

    config_names = ("padding",)

    def __init__(self, padding=1, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.padding = _standardize_padding(padding)

    def _compute(self, inputs):
        return si_ops.pad2d(inputs, self.padding, "circular", self.data_format)

    def output_shape_for(self, shape):
        for axis, pad in zip(spatial_axes(self.data_format), self.padding, strict=True):
            if shape[axis] is not None:
                shape[axis] += sum(pad)
        return shape
