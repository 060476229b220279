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
class PolyphaseDown2D(BaseLayer2D):
    """Adaptive polyphase sampling: per image, keep the component of largest norm.

    A stride `s` keeps the polyphase component `x[0::s, 0::s]`; shifting the input
    by one pixel makes it keep another component, which is why strided layers are
    not shift-invariant. This layer keeps, for each image, the component
    `x[dy::s, dx::s]` (all channels) whose norm is largest. A circular shift of the
    input permutes the components and rolls each of them, so the same one wins and
    the output is a circular shift of the unshifted output: after global pooling a
    network built from such layers (and circular padding) is exactly invariant to
    circular shifts (Chaman & Dokmanic, 2021).

    The input is first blurred at stride 1 when `filt_size > 1` (see `BlurPool2D`),
    and odd sizes are padded at the bottom/right to a multiple of `strides`, both
    with `pad_mode`. Norms are computed in float32. Exact ties are broken by the
    larger component sum, then by the lowest index: deterministic, and following
    the content under shifts where a fixed order would not. A NaN counts as the
    largest norm: an image with NaNs gets the first component holding one (its
    own, with the NaN in the output), never another image's. Integer and bool
    inputs are cast to the compute dtype (as in every layer of the package), and
    an empty batch gives an empty output. No weights.

    Args:
        strides: an integer or a pair of integers >= 1.
        criterion: the norm compared: "l2", "l1" or "linf".
        filt_size: binomial blur taps applied before sampling; 1 (default) is
            no blur.
        pad_mode: border mode of the blur and of the odd-size padding:
            "circular" (default, needed for exact invariance), "zero",
            "reflect" or "replicate".
        return_indices: also return the chosen component's index, an int32
            tensor of shape `(batch,)` equal to `dy * strides[1] + dx`, to sample
            another tensor at the same component with `PolyphaseGather2D`.
        data_format: "channels_last" (default, from `keras.config`) or
            "channels_first".

    Input shape:
        4D tensor `(batch, height, width, channels)` for "channels_last" or
        `(batch, channels, height, width)` for "channels_first". Height and width
        may be `None`.

    Output shape:
        4D tensor with `ceil(height / strides[0])` rows and
        `ceil(width / strides[1])` columns; with `return_indices`, a tuple
        `(outputs, indices)` with indices of shape `(batch,)`.

    Example:

    >>> x = keras.random.normal((2, 32, 32, 16))
    >>> y, index = keras_shiftinv.layers.PolyphaseDown2D(return_indices=True)(x)
    >>> y.shape, index.shape
    ((2, 16, 16, 16), (2,))

    Reference:
        - [Chaman & Dokmanic, Truly Shift-Invariant Convolutional Neural
          Networks, CVPR 2021](https://arxiv.org/abs/2011.14214)
    """

    config_names = ("strides", "criterion", "filt_size", "pad_mode", "return_indices")

    def __init__(
        self,
        strides=2,
        criterion="l2",
        filt_size=1,
        pad_mode="circular",
        return_indices=False,
        data_format=None,
        **kwargs,
    ):
        super().__init__(data_format=data_format, **kwargs)
        self.strides = standardize_pair(strides, "strides")
        self.criterion = standardize_choice(
            criterion, "criterion", si_ops.POLYPHASE_CRITERIA
        )
        self.filt_size = standardize_filt_size(filt_size)
        self.pad_mode = standardize_choice(pad_mode, "pad_mode", PAD_MODES)
        self.return_indices = standardize_choice(
            return_indices, "return_indices", (False, True)
        )

    def call(self, inputs):
        outputs, indices = super().call(inputs)
        return (outputs, indices) if self.return_indices else outputs

    def _compute(self, inputs):
        return si_ops.polyphase_down2d(
            inputs,
            self.strides,
            self.criterion,
            self.filt_size,
            self.pad_mode,
            self.data_format,
        )

    def compute_output_shape(self, input_shape):
        shape = super().compute_output_shape(input_shape)
        return (shape, (input_shape[0],)) if self.return_indices else shape

    def compute_output_spec(self, inputs):
        shape = self.compute_output_shape(inputs.shape)
        if not self.return_indices:
            return keras.KerasTensor(shape, dtype=self.compute_dtype)
        return (
            keras.KerasTensor(shape[0], dtype=self.compute_dtype),
            keras.KerasTensor(shape[1], dtype="int32"),
        )
