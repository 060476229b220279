"""The layers every zoo model is made of, and the one place that decides how a
variant downsamples.

ResNet and VGG only say where the feature map halves (a strided conv, a max pool, a
strided shortcut); `Builder` turns each of those places into the layers of the chosen
variant, so both families share one implementation of every variant.
"""

import keras

from keras_shiftinv import layers as si_layers
from keras_shiftinv.models import RecordedModel
from keras_shiftinv.validation import (
    CONV_PAD_MODES,
    standardize_choice,
    standardize_int,
)
from keras_shiftinv.variants import VariantPolicy

# Every model is channels_last, whatever keras.config says: the zoo's contract is
# (height, width, channels) images, and TensorFlow's CPU convs need NHWC.
DATA_FORMAT = "channels_last"


def scale_width(channels, width_multiplier):
    """`channels * width_multiplier`, rounded, at least 1."""
    return max(1, round(channels * width_multiplier))


def zoo_model(inputs, outputs, arch, name, options):
    """The zoo model `arch` built with the builder options `options` (its
    arguments but the name), named `name` or after the model, variant and
    flavor; it records `{"zoo": {"model": arch, **options}}` (`RecordedModel`)."""
    if name is None:
        flavor = "_torchvision" if options["flavor"] == "torchvision" else ""
        name = f"{arch}_{options['variant']}{flavor}"
    activation = options.get("classifier_activation")
    if activation is not None and not isinstance(activation, str):
        # A function given as the activation: recorded by its name.
        activation = getattr(activation, "__name__", repr(activation))
    record = {
        "model": arch,
        **options,
        "input_shape": list(options["input_shape"]),
        "classifier_activation": activation,
    }
    return RecordedModel(inputs, outputs, name=name, record={"zoo": record})


def check_sizes(width_multiplier, num_classes):
    """Validates the sizes every zoo builder takes (clear `ValueError`s)."""
    if (
        isinstance(width_multiplier, bool)
        or not isinstance(width_multiplier, int | float)
        or not width_multiplier > 0
    ):
        raise ValueError(
            "`width_multiplier` must be a number > 0. "
            f"Received: width_multiplier={width_multiplier!r}"
        )
    standardize_int(num_classes, "num_classes")


def check_input_shape(input_shape, total_stride, policy):
    """A (height, width, channels) shape; with circular padding, the polyphase
    variants (`policy.keeps_components`) need sizes divisible by `total_stride`,
    or the wrap-around would join rows that are not neighbours and the exact
    invariance would be lost."""
    try:
        input_shape = tuple(input_shape)
    except TypeError:
        input_shape = ()
    if len(input_shape) != 3 or input_shape[-1] is None:
        raise ValueError(
            "`input_shape` must be (height, width, channels) with a known number of "
            f"channels. Received: input_shape={input_shape!r}"
        )
    if policy.pad_mode == "circular" and policy.keeps_components:
        for size in input_shape[:2]:
            if size is not None and size % total_stride:
                raise ValueError(
                    f"With pad_mode='circular' and variant={policy.variant!r}, the "
                    f"input height and width must be multiples of the model's total "
                    f"stride {total_stride}. Received: input_shape={input_shape!r}; "
                    f"resize or pad the images to a multiple of {total_stride}."
                )
    return input_shape


class Builder:
    """Makes the layers of one model in one variant.

    Where the baseline halves the feature map, the variants put:

    - a strided conv (k x k, stride 2, then BN and ReLU): "blur": the conv at
      stride 1, BN, ReLU, `BlurPool2D`; "group"/"conv3d": `ShiftInvariantDown`
      (kernel_size=k), BN, ReLU; "aps": the conv at stride 1, BN, ReLU,
      `PolyphaseDown2D`.
    - a max pool (p x p, stride 2): "blur": `MaxBlurPool2D(p)`; "group"/"conv3d":
      `ShiftInvariantDown(kernel_size=3)` and BN (without it the linear module's
      output scale is free, and VGG13 "conv3d" diverged); "aps": a dense (stride 1)
      max pool, then `PolyphaseDown2D`.
    - a strided 1x1 shortcut (then BN): "blur": `BlurPool2D`, the 1x1 conv at
      stride 1; "group"/"conv3d": `ShiftInvariantDown(kernel_size=1)`; "aps": the
      blur (stride 1) and `PolyphaseGather2D` at the index the block's
      `PolyphaseDown2D` chose, then the 1x1 conv at stride 1.

    That is `placement="replace"` for "group"/"conv3d": the module replaces the
    strided layer (the seed paper's text). `placement="dense"` reads the paper's
    slides ("offsetted operations", "why not learn the aggregation?"): the
    layer runs densely and the module replaces only the subsampling, where
    "blur" puts its `BlurPool2D`: the conv at stride 1, BN, ReLU, then
    `ShiftInvariantDown(channels, kernel_size=3)`; a dense max pool, then the
    module and BN; the module (kernel_size=3), then the 1x1 conv at stride 1.
    `module_initializer="lowpass"` starts every module as `BlurPool2D(filt_size)`
    (a 1x1 module as the 2-tap blur, the largest it holds; see
    `keras_shiftinv.initializers.LowPass`). `module_lowpass_penalty=w` makes
    every module add `w` times the high-frequency share of its effective filters
    to the training loss (`ShiftInvariantDown`'s `lowpass_penalty`).

    With `pad_mode="circular"` every conv, pool and blur wraps around: a
    `CircularPadding2D` then a "valid" layer. With zero padding, the convs use
    "same" padding and the blurs pad with zeros (reflection would not fit the 1x1
    and 2x2 maps of small models).

    The variant's rules and the layers it puts in are `self.policy`'s (a
    `keras_shiftinv.variants.VariantPolicy`, shared with `antialias()`).

    Args:
        variant: one of `VARIANTS`.
        pad_mode: "zero" or "circular".
        filt_size: taps of the blur filter of "blur" and "aps" (1: no blur).
        polyphase_order: "fixed" or "aps", the offset order of
            `ShiftInvariantDown` in "group" and "conv3d".
        placement: "replace" or "dense", where "group"/"conv3d" put the module.
        module_initializer: None (the module's default, "he_normal") or
            "lowpass".
        module_lowpass_penalty: the `lowpass_penalty` of every module, a float
            >= 0 (0: none).
    """

    def __init__(
        self,
        variant,
        pad_mode="zero",
        filt_size=4,
        polyphase_order="fixed",
        placement="replace",
        module_initializer=None,
        module_lowpass_penalty=0.0,
    ):
        # Every conv and pool pads with zeros or wraps around.
        self.policy = VariantPolicy.create(
            variant, filt_size, pad_mode, polyphase_order, placement,
            module_initializer, module_lowpass_penalty, pad_modes=CONV_PAD_MODES,
        )  # fmt: skip
        self.variant = self.policy.variant
        self.pad_mode = self.policy.pad_mode

    @property
    def adaptive(self):
        """Whether every downsampling picks its sampling grid from the data (APS)."""
        return self.policy.adaptive

    def pad(self, x, padding, name):
        """Pads both spatial axes: `padding` is ((top, bottom), (left, right))."""
        if all(p == (0, 0) for p in padding):
            return x
        if self.pad_mode == "circular":
            layer = si_layers.CircularPadding2D(
                padding, data_format=DATA_FORMAT, name=name
            )
        else:
            layer = keras.layers.ZeroPadding2D(
                padding, data_format=DATA_FORMAT, name=name
            )
        return layer(x)

    def conv(self, x, filters, kernel_size, name, strides=1, use_bias=False):
        """A Conv2D whose output has ceil(size / strides) rows and columns."""
        if self.pad_mode == "circular":
            pad = ((kernel_size - 1) // 2, kernel_size // 2)
            x = self.pad(x, (pad, pad), f"{name}_pad")
        return keras.layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding="valid" if self.pad_mode == "circular" else "same",
            use_bias=use_bias,
            kernel_initializer="he_normal",
            data_format=DATA_FORMAT,
            name=name,
        )(x)

    def batch_norm(self, x, name):
        return keras.layers.BatchNormalization(
            axis=-1, momentum=0.9, epsilon=1e-5, name=name
        )(x)

    def conv_unit(
        self,
        x,
        filters,
        kernel_size,
        prefix,
        suffix="",
        strides=1,
        batch_norm=True,
        relu=True,
        antialias=True,
    ):
        """Conv, batch normalization (optional) and ReLU (optional), named
        `{prefix}_conv{suffix}`, `_bn{suffix}`, `_relu{suffix}`.

        With `strides=2` the unit halves the map in the builder's variant (the
        downsampling layer is `{prefix}_down`), unless `antialias=False`, which
        keeps the plain strided conv. Returns `(output, index)`: `index` is the
        polyphase component "aps" kept (for the block's shortcut), else None.
        """
        downsample = strides != 1 and antialias and self.variant != "baseline"
        if downsample and self.policy.replaces:
            x = self._shift_invariant_down(x, filters, kernel_size, f"{prefix}_down")
        else:
            x = self.conv(
                x,
                filters,
                kernel_size,
                f"{prefix}_conv{suffix}",
                strides=1 if downsample else strides,
                use_bias=not batch_norm,
            )
        if batch_norm:
            x = self.batch_norm(x, f"{prefix}_bn{suffix}")
        if relu:
            x = keras.layers.Activation("relu", name=f"{prefix}_relu{suffix}")(x)
        index = None
        if downsample and not self.policy.replaces:
            x, index = self._subsample(x, f"{prefix}_down")
        return x, index

    def max_pool(self, x, pool_size, name, batch_norm=True):
        """Halves a map of ReLU outputs the way a `pool_size` max pool with
        stride 2 would. "blur" zero-pads before its max pool (which is "valid"):
        the inputs are >= 0, so zeros never win. `batch_norm=False` leaves out the
        BN after the module of "group"/"conv3d" (for models without BN)."""
        pad = ((pool_size - 1) // 2, pool_size // 2)
        if self.policy.replaces:
            x = self._shift_invariant_down(x, x.shape[-1], 3, name)
            return self.batch_norm(x, f"{name}_bn") if batch_norm else x
        if self.variant == "blur":
            x = self.pad(x, (pad, pad), f"{name}_pad")
            return self.policy.max_blur_pool(
                pool_size, data_format=DATA_FORMAT, name=name
            )(x)
        # "baseline" pools with the stride; "aps" and the dense modules pool
        # densely, then sample.
        if self.pad_mode == "circular":
            x = self.pad(x, (pad, pad), f"{name}_pad")
        x = keras.layers.MaxPooling2D(
            pool_size,
            strides=2 if self.variant == "baseline" else 1,
            padding="valid" if self.pad_mode == "circular" else "same",
            data_format=DATA_FORMAT,
            name=name,
        )(x)
        if self.variant == "baseline":
            return x
        x = self._subsample(x, f"{name}_down")[0]
        if self.variant == "aps" or not batch_norm:
            return x
        return self.batch_norm(x, f"{name}_down_bn")

    def shortcut(self, x, filters, strides, prefix, index=None):
        """The projection shortcut of a residual block: 1x1 conv and batch
        normalization, halving the map like the block when `strides=2`. `index`
        is the block's polyphase index in the "aps" variant."""
        name = f"{prefix}_shortcut"
        if strides != 1 and self.policy.replaces:
            x = self._shift_invariant_down(x, filters, 1, f"{name}_down")
            return self.batch_norm(x, f"{name}_bn")
        if strides != 1 and self.variant != "baseline":
            if self.variant != "aps":
                x = self._subsample(x, f"{name}_down")[0]
            else:
                x = self._blur(x, 1, f"{name}_blur")
                x = si_layers.PolyphaseGather2D(
                    strides, data_format=DATA_FORMAT, name=f"{name}_down"
                )([x, index])
            strides = 1
        x = self.conv(x, filters, 1, f"{name}_conv", strides=strides)
        return self.batch_norm(x, f"{name}_bn")

    def _blur(self, x, strides, name):
        if self.policy.filt_size == 1 and strides == 1:
            return x
        return self.policy.blur_pool(strides, data_format=DATA_FORMAT, name=name)(x)

    def _subsample(self, x, name):
        """The stride of "blur", "aps" and the dense modules: returns `(output,
        index or None)`."""
        if self.variant == "blur":
            return self._blur(x, 2, name), None
        if self.policy.uses_modules:
            return self._shift_invariant_down(x, x.shape[-1], 3, name), None
        return self.policy.polyphase_down(
            2, return_indices=True, data_format=DATA_FORMAT, name=name
        )(x)

    def _shift_invariant_down(self, x, filters, kernel_size, name):
        # No bias: a batch normalization follows, or the layer replaces a pool.
        return self.policy.shift_invariant_down(
            filters, kernel_size, use_bias=False, data_format=DATA_FORMAT, name=name
        )(x)


def classifier(
    x, num_classes, classifier_activation, hidden_units=(), flatten=False, dropout=0.5
):
    """Global average pooling (or flatten), optional hidden Dense+ReLU+Dropout
    layers, the logits, then `classifier_activation` in float32 even under mixed
    precision (layer "predictions")."""
    if flatten:
        x = keras.layers.Flatten(data_format=DATA_FORMAT, name="flatten")(x)
    else:
        x = keras.layers.GlobalAveragePooling2D(
            data_format=DATA_FORMAT, name="avg_pool"
        )(x)
    for i, units in enumerate(hidden_units, start=1):
        x = keras.layers.Dense(units, activation="relu", name=f"fc{i}")(x)
        x = keras.layers.Dropout(dropout, name=f"fc{i}_dropout")(x)
    x = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.layers.Activation(
        classifier_activation or "linear", dtype="float32", name="predictions"
    )(x)


FLAVORS = ("keras", "torchvision")
TORCHVISION_VARIANTS = ("baseline", "blur")


def check_flavor(flavor, variant, **keras_only):
    """Validates `flavor`; the torchvision flavor is torchvision's and
    antialiased-cnns' networks, so it takes none of the options in `keras_only`
    (name -> (value, default)) away from their defaults."""
    flavor = standardize_choice(flavor, "flavor", FLAVORS)
    if flavor == "torchvision":
        if variant not in TORCHVISION_VARIANTS:
            raise ValueError(
                "flavor='torchvision' builds the variants 'baseline' (torchvision) "
                f"and 'blur' (antialiased-cnns). Received: variant={variant!r}"
            )
        for option, (value, default) in keras_only.items():
            if value != default:
                raise ValueError(
                    f"`{option}` must stay {default!r} with flavor='torchvision' "
                    f"(the PyTorch networks have no such option). "
                    f"Received: {option}={value!r}"
                )
    return flavor


class TorchvisionBuilder(Builder):
    """The layers of torchvision's networks ("baseline") and of antialiased-cnns'
    ("blur", Zhang 2019), to float rounding, so that their checkpoints load.

    What differs from `Builder`:

    - Strided convs and pools pad like PyTorch, by k // 2 on every side
      (`ZeroPadding2D`, then "valid"): Keras' "same" pads only the bottom and right
      of an even-sized map at stride 2, which samples another grid.
    - "blur" follows antialiased-cnns: every max pool, the 3x3 stem pool too,
      becomes a 2x2 max at stride 1 without padding, then `BlurPool2D`; every blur
      reflects at the border.
    - `conv_bias=True` keeps the convs' bias under batch normalization (torchvision's
      VGG with BN has one).

    Args:
        variant: "baseline" or "blur".
        filt_size: taps of the blur filter of "blur" (1 to 7).
        conv_bias: whether every conv has a bias.
    """

    def __init__(self, variant, filt_size=4, conv_bias=False):
        standardize_choice(variant, "variant", TORCHVISION_VARIANTS)
        super().__init__(variant, "zero", filt_size)
        self.conv_bias = conv_bias

    def conv(self, x, filters, kernel_size, name, strides=1, use_bias=False):
        use_bias = use_bias or self.conv_bias
        if strides == 1:
            return super().conv(x, filters, kernel_size, name, use_bias=use_bias)
        pad = kernel_size // 2
        x = self.pad(x, ((pad, pad), (pad, pad)), f"{name}_pad")
        return keras.layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding="valid",
            use_bias=use_bias,
            kernel_initializer="he_normal",
            data_format=DATA_FORMAT,
            name=name,
        )(x)

    def max_pool(self, x, pool_size, name, batch_norm=True):
        if self.variant == "blur":
            return self.policy.max_blur_pool(
                2, pad_mode="reflect", data_format=DATA_FORMAT, name=name
            )(x)
        # Zero padding is -inf padding here: the inputs are ReLU outputs.
        pad = (pool_size - 1) // 2
        x = self.pad(x, ((pad, pad), (pad, pad)), f"{name}_pad")
        return keras.layers.MaxPooling2D(
            pool_size, strides=2, padding="valid", data_format=DATA_FORMAT, name=name
        )(x)

    def _blur(self, x, strides, name):
        return self.policy.blur_pool(
            strides, pad_mode="reflect", data_format=DATA_FORMAT, name=name
        )(x)


def make_builder(
    flavor,
    variant,
    filt_size,
    pad_mode,
    polyphase_order,
    placement,
    module_initializer,
    module_lowpass_penalty=0.0,
    conv_bias=False,
    **keras_only,
):
    """The `Builder` of a zoo model, or its `TorchvisionBuilder` (with
    `conv_bias`) for flavor "torchvision", which refuses the `Builder` options and
    the model's own `keras_only` ones (name -> (value, default)) away from their
    defaults."""
    options = {
        "pad_mode": (pad_mode, "zero"),
        "polyphase_order": (polyphase_order, "fixed"),
        "placement": (placement, "replace"),
        "module_initializer": (module_initializer, None),
        "module_lowpass_penalty": (module_lowpass_penalty, 0.0),
    }
    if check_flavor(flavor, variant, **options, **keras_only) == "torchvision":
        return TorchvisionBuilder(variant, filt_size, conv_bias=conv_bias)
    return Builder(
        variant, filt_size=filt_size, **{k: v for k, (v, _) in options.items()}
    )
