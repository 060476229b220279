import keras

from keras_shiftinv.validation import (
    call_on_batch,
    check_input_shape,
    downsampled_shape,
    standardize_data_format,
)


class BaseLayer2D(keras.layers.Layer):
    """The skeleton every layer of the package shares, as Keras' pooling layers
    share `BasePooling`: `data_format`, the input check, `call` on a batch, the
    output shape and the config. A layer file says only what differs:

    - `__init__` standardises the layer's own arguments, then passes
      `data_format` and the rest to this class;
    - `_compute(inputs)` is the computation on a batch (with `keras.ops`);
    - `output_shape_for(shape)` maps the input shape (a list) to the output shape;
      by default each spatial size `n` becomes `ceil(n / strides)`, which
      subsampling layers output;
    - `config_names` lists the arguments `get_config` stores, in order;
      `data_format` always comes last;
    - `requires_channels`: whether `build` needs the channel count.

    The input must be a rank-4 tensor; a wrong rank is a `ValueError` naming the
    layer, its `data_format` and the shape received. Integer and bool inputs are
    cast to the compute dtype, and an empty batch gives an empty output (see
    `keras_shiftinv.validation.call_on_batch`).

    Args:
        data_format: "channels_last" (default, from `keras.config`) or
            "channels_first".
        **kwargs: arguments of `keras.layers.Layer` (`name`, `dtype`, ...).
    """

    config_names = ()
    requires_channels = False

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = standardize_data_format(data_format)

    def _image_shape(self, input_shape, need_channels):
        """The shape of the image input, checked: rank 4 and, with
        `need_channels`, a known channel count."""
        check_input_shape(self, input_shape, need_channels=need_channels)
        return input_shape

    def build(self, input_shape):
        self._image_shape(input_shape, self.requires_channels)

    def call(self, inputs):
        return call_on_batch(self, self._compute, inputs)

    def _compute(self, inputs):
        raise NotImplementedError

    def output_shape_for(self, shape):
        return downsampled_shape(shape, self.strides, self.data_format)

    def compute_output_shape(self, input_shape):
        # Known before the channels are.
        shape = self._image_shape(input_shape, need_channels=False)
        return tuple(self.output_shape_for(list(shape)))

    def get_config(self):
        config = super().get_config()
        config.update({name: getattr(self, name) for name in self.config_names})
        config["data_format"] = self.data_format
        return config
