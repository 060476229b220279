import math

import keras
from keras import ops

from keras_shiftinv import initializers
from keras_shiftinv import ops as si_ops
from keras_shiftinv.layers.base_layer import BaseLayer2D
from keras_shiftinv.validation import (
    CONV_PAD_MODES,
    POLYPHASE_ORDERS,
    channel_axis,
    standardize_choice,
    standardize_int,
    standardize_pair,
    standardize_weight,
)


@keras.saving.register_keras_serializable(package="keras_shiftinv")
class ShiftInvariantDown(BaseLayer2D):
    """Learned downsampling that keeps every offset: a drop-in for a strided conv.

    The module of "Making CNN Shift Invariant Again and Again" (sections 3.2-3.5):
    1. `OffsetSubsample`: the `S = strides[0] * strides[1]` polyphase components
       of each input channel are stacked (4 for strides 2: nothing is dropped);
    2. branch "group": a `kernel_size` convolution with `groups = C_in` over the
       `S * C_in` stacked channels, one group per input channel, with
       `L = lcm(C_in, filters)` output channels (`L / C_in` per group); or branch
       "conv3d" (strides 2 only): the stack seen as `(4 offsets, H/2, W/2, C_in)`
       and a Conv3D with kernel `(3, kernel_size, kernel_size)`, valid along the
       offsets (depth 4 -> 2) and "same" spatially, giving `2 * filters` channels;
    3. a 1x1 convolution to `filters` channels, plus the bias.
    There is no activation inside. Spatial padding of the convolution is that of
    the components ("same": `(k - 1) // 2` before, `k // 2` after) with zeros or,
    with `pad_mode="circular"`, by wrapping around. Odd sizes are first padded at
    the bottom/right with `pad_mode`.

    `polyphase_order="aps"` first rolls each image circularly by `(-a, -b)`, where
    `x[a::s, b::s]` is its component of largest L2 norm (ties as in
    `PolyphaseDown2D`), so the stack starts at that component and the components
    stay spatially aligned. With `pad_mode="circular"` the module is then exactly
    equivariant to circular shifts of its input: shifting the input shifts the
    output, and global pooling after it is invariant. `"fixed"` keeps the order
    of step 1 and is not.

    Weights, in a fixed layout (with `kh, kw = kernel_size`, `M = L // C_in`):
    - `kernel`: for "group" `(kh, kw, S, L)`, the kernel of a Keras
      `Conv2D(L, kernel_size, groups=C_in)` applied to step 1's output:
      `kernel[i, j, dy * strides[1] + dx, g * M + m]` weights component
      `(dy, dx)` of input channel `g` for output channel `g * M + m`. For "conv3d"
      `(3, kh, kw, C_in, filters)`, a Keras Conv3D kernel whose depth runs over
      the components in the order `dy * 2 + dx`; output depth `d` of filter `f`
      becomes channel `f * 2 + d`.
    - `pointwise_kernel`: `(1, 1, L or 2 * filters, filters)`; `bias`:
      `(filters,)` when `use_bias`. A bias on step 2 would be absorbed by the
      1x1 convolution, so there is none.

    The same sums are computed without stacking the components: a kxk conv of
    the components is an `(s * k) x (s * k)` conv of the image at stride `s`. The
    group branch runs as depthwise convs of the image then the 1x1 conv (grouped
    convs go through XLA on TensorFlow's CPU); the conv3d branch, and the group
    branch when it is cheaper (few input channels), as one strided conv with
    step 2 and the 1x1 conv folded into its kernel. Under XLA (JAX, or
    TensorFlow with `jit_compile=True`), whose CPU backend runs depthwise convs
    slowly, the same sums are matrix products of each channel's patches, or the
    folded kernel as a stride-1 conv of the stacked components. See
    BENCHMARKS.md.

    Args:
        filters: number of output channels, an integer >= 1.
        branch: "group" (default) or "conv3d".
        kernel_size: an integer or a pair, the spatial size of the step-2
            kernel.
        strides: an integer or a pair of integers >= 1; "conv3d" needs 2.
        polyphase_order: "fixed" (default) or "aps".
        pad_mode: "zero" (default) or "circular".
        use_bias: whether the 1x1 convolution has a bias.
        kernel_initializer: initializer of both kernels (default "he_normal"),
            or "lowpass" / `keras_shiftinv.initializers.LowPass(filt_size)`:
            the module starts as `BlurPool2D(filt_size)` (4 taps for the
            string) followed by a 1x1 convolution (see `LowPass`).
        kernel_regularizer: regularizer of both kernels.
        lowpass_penalty: a float >= 0 (default 0: none). While training, the
            layer adds `lowpass_penalty *` the mean over its output channels of
            the high-frequency share of their effective stride-2 filters (the
            energy outside `|wy|, |wx| < pi/2`, where subsampling folds it
            back; see `keras_shiftinv.diagnostics` and `effective_kernel`) to
            the model's losses (`model.losses`, part of `fit`'s loss). Each
            output channel counts alike, whatever its scale: a batch
            normalization after the module rescales every channel, so a
            high-pass channel must not escape by shrinking.
        data_format: "channels_last" (default, from `keras.config`) or
            "channels_first".

    Input shape:
        4D tensor `(batch, height, width, channels)` for "channels_last" or
        `(batch, channels, height, width)` for "channels_first". Height and width
        may be `None`; the channels must be known.

    Output shape:
        4D tensor with `ceil(height / strides[0])` rows,
        `ceil(width / strides[1])` columns and `filters` channels.

    Example:

    >>> x = keras.random.normal((2, 32, 32, 64))
    >>> keras_shiftinv.layers.ShiftInvariantDown(128)(x).shape
    (2, 16, 16, 128)

    Reference:
        - Making CNN Shift Invariant Again and Again (sections 3.2 to 3.5).
        - [Chaman & Dokmanic, Truly Shift-Invariant Convolutional Neural
          Networks, CVPR 2021](https://arxiv.org/abs/2011.14214) for "aps".
    """

    config_names = (
        "filters",
        "branch",
        "kernel_size",
        "strides",
        "polyphase_order",
        "pad_mode",
        "use_bias",
        "kernel_initializer",
        "kernel_regularizer",
        "lowpass_penalty",
    )
    requires_channels = True

    def __init__(
        self,
        filters,
        branch="group",
        kernel_size=3,
        strides=2,
        polyphase_order="fixed",
        pad_mode="zero",
        use_bias=True,
        kernel_initializer="he_normal",
        kernel_regularizer=None,
        lowpass_penalty=0.0,
        data_format=None,
        **kwargs,
    ):
        super().__init__(data_format=data_format, **kwargs)
        self.filters = standardize_int(filters, "filters")
        self.branch = standardize_choice(
            branch, "branch", si_ops.SHIFT_INVARIANT_BRANCHES
        )
        self.kernel_size = standardize_pair(kernel_size, "kernel_size")
        self.strides = standardize_pair(strides, "strides")
        si_ops.check_branch_strides(self.branch, self.strides)
        self.polyphase_order = standardize_choice(
            polyphase_order, "polyphase_order", POLYPHASE_ORDERS
        )
        self.pad_mode = standardize_choice(pad_mode, "pad_mode", CONV_PAD_MODES)
        self.use_bias = standardize_choice(use_bias, "use_bias", (False, True))
        self.kernel_initializer = initializers.get(kernel_initializer)
        if isinstance(self.kernel_initializer, initializers.LowPass):
            self.kernel_initializer.check_fits(self.kernel_size, self.strides)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.lowpass_penalty = standardize_weight(lowpass_penalty, "lowpass_penalty")

    def build(self, input_shape):
        super().build(input_shape)
        channels = input_shape[channel_axis(self.data_format)]
        self._input_channels = channels
        kh, kw = self.kernel_size
        if self.branch == "group":
            features = math.lcm(channels, self.filters)
            shape = (kh, kw, self.strides[0] * self.strides[1], features)
        else:
            features = 2 * self.filters
            shape = (3, kh, kw, channels, self.filters)
        kernel_init = pointwise_init = self.kernel_initializer
        if isinstance(self.kernel_initializer, initializers.LowPass):
            # Both kernels together make the filter: computed once, here.
            kernel, pointwise = self.kernel_initializer.module_weights(
                self.branch, self.kernel_size, self.strides, channels, self.filters
            )
            kernel_init = keras.initializers.Constant(kernel)
            pointwise_init = keras.initializers.Constant(pointwise)
        self.kernel = self.add_weight(
            name="kernel",
            shape=shape,
            initializer=kernel_init,
            regularizer=self.kernel_regularizer,
        )
        self.pointwise_kernel = self.add_weight(
            name="pointwise_kernel",
            shape=(1, 1, features, self.filters),
            initializer=pointwise_init,
            regularizer=self.kernel_regularizer,
        )
        self.bias = (
            self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")
            if self.use_bias
            else None
        )

    def call(self, inputs, training=None):
        if training and self.lowpass_penalty:
            self.add_loss(self.lowpass_penalty * self.high_frequency_share())
        return super().call(inputs)

    def effective_kernel(self):
        """The image kernel `(s * kh, s * kw, input channels, filters)` that the
        step-2 convolution and the 1x1 convolution make together: the module is
        this kernel applied at stride `strides` (after `polyphase_order`'s roll),
        plus the bias. Differentiable in the weights; the layer must be built."""
        return si_ops._folded_kernel(
            self.kernel,
            self.pointwise_kernel,
            self.branch,
            self.strides,
            self._input_channels,
        )

    def high_frequency_share(self):
        """The mean over output channels of the high-frequency share of their
        effective filters (`keras_shiftinv.ops.high_frequency_share`, per
        filter, computed in float32): what `lowpass_penalty` weighs."""
        kernel = ops.cast(self.effective_kernel(), "float32")
        return ops.mean(si_ops.high_frequency_share(kernel, per_filter=True))

    def _compute(self, inputs):
        return si_ops.shift_invariant_down(
            inputs,
            self.kernel,
            self.pointwise_kernel,
            self.bias,
            self.branch,
            self.strides,
            self.polyphase_order,
            self.pad_mode,
            self.data_format,
        )

    def output_shape_for(self, shape):
        shape = super().output_shape_for(shape)
        shape[channel_axis(self.data_format)] = self.filters
        return shape

    def get_config(self):
        config = super().get_config()
        config["kernel_initializer"] = keras.initializers.serialize(
            self.kernel_initializer
        )
        config["kernel_regularizer"] = keras.regularizers.serialize(
            self.kernel_regularizer
        )
        return config
