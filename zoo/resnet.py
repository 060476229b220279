"""ResNet-18/34/50 (He et al., 2016) in every shift-invariance variant.

The layers that halve the feature map are, with the ImageNet stem: the 7x7/2 stem
conv, the 3x3/2 stem max pool, and in the first block of stages 2-4 the strided conv
(the first 3x3 conv of a basic block, the first 1x1 conv of a bottleneck block, as in
the original ResNet and `keras.applications.ResNet50`) and its 1x1/2 projection
shortcut. The CIFAR stem is a 3x3/1 conv without max pool, so only the stages halve.
Each variant replaces them as `zoo.blocks.Builder` describes:

- "blur" (Zhang, 2019): the strided block conv runs at stride 1 and is followed by
  BN, ReLU and `BlurPool2D`; the max pool becomes `MaxBlurPool2D`; the shortcut is
  `BlurPool2D` then the 1x1 conv at stride 1. The stem conv stays strided unless
  `antialias_stem=True` (then: conv at stride 1, BN, ReLU, `BlurPool2D`).
- "group" / "conv3d" (the seed paper, Figure 8): the strided block conv, the stem
  max pool and the strided shortcut each become a `ShiftInvariantDown` with that
  branch (kernel sizes 3 or 1 as the conv they replace, 3 for the max pool), followed
  by the BN (and ReLU) the conv had; the max pool's by a BN. The shortcut's module
  downsamples the block input itself; with `polyphase_order="aps"` it picks the
  same polyphase component as the block's own module, because the strided conv is
  the block's first layer and both see the same input. The stem conv stays strided
  unless `antialias_stem=True` (then: `ShiftInvariantDown(64, kernel_size=7)`, BN,
  ReLU).
- "aps" (Chaman & Dokmanic, 2021): the strided conv runs at stride 1, then BN, ReLU
  and `PolyphaseDown2D`, which keeps the polyphase component of largest norm; the
  max pool is a dense max pool then `PolyphaseDown2D`; the shortcut blurs (when
  `filt_size > 1`) and takes the block input at the same component with
  `PolyphaseGather2D`, then the 1x1 conv at stride 1.

Variants that choose the sampling grid from the data ("aps", and "group"/"conv3d"
with `polyphase_order="aps"`) always downsample the ImageNet stem conv their way: one
plain stride would undo what they are for. With `pad_mode="circular"` these are
exactly invariant to circular shifts of the input (in inference mode), for inputs
whose height and width are multiples of the total stride (32 with the ImageNet stem,
8 with the CIFAR stem).

`flavor="torchvision"` (variants "baseline" and "blur") is torchvision's and
antialiased-cnns' ResNet instead, for their checkpoints (`zoo.load_torch_weights`):
`zoo.blocks.TorchvisionBuilder` lists how it differs.
"""

import keras

from keras_shiftinv.validation import renamed_argument, standardize_choice
from zoo.blocks import (
    TorchvisionBuilder,
    check_input_shape,
    check_sizes,
    classifier,
    make_builder,
    scale_width,
    zoo_model,
)

STEMS = ("imagenet", "cifar")
# How many times each stem and the stages divide the height and width.
TOTAL_STRIDES = {"imagenet": 32, "cifar": 8}
STAGE_WIDTHS = (64, 128, 256, 512)
BOTTLENECK_EXPANSION = 4
# name: (block type, number of blocks in each of the four stages)
RESNETS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}


def _residual(builder, x, h, filters, strides, prefix, index):
    if strides != 1 or x.shape[-1] != filters:
        x = builder.shortcut(x, filters, strides, prefix, index)
    h = keras.layers.Add(name=f"{prefix}_add")([h, x])
    return keras.layers.Activation("relu", name=f"{prefix}_out")(h)


def basic_block(builder, x, filters, strides, prefix):
    """Two 3x3 convs; the first one carries the stride."""
    h, index = builder.conv_unit(x, filters, 3, prefix, "1", strides=strides)
    h, _ = builder.conv_unit(h, filters, 3, prefix, "2", relu=False)
    return _residual(builder, x, h, filters, strides, prefix, index)


def bottleneck_block(builder, x, filters, strides, prefix):
    """1x1 (with the stride), 3x3, then 1x1 to `4 * filters` channels. The
    torchvision flavor strides the 3x3 instead (torchvision's "ResNet v1.5")."""
    stride_on_3x3 = isinstance(builder, TorchvisionBuilder)
    h, index = builder.conv_unit(
        x, filters, 1, prefix, "1", strides=1 if stride_on_3x3 else strides
    )
    h, _ = builder.conv_unit(
        h, filters, 3, prefix, "2", strides=strides if stride_on_3x3 else 1
    )
    out = BOTTLENECK_EXPANSION * filters
    h, _ = builder.conv_unit(h, out, 1, prefix, "3", relu=False)
    return _residual(builder, x, h, out, strides, prefix, index)


BLOCKS = {"basic": basic_block, "bottleneck": bottleneck_block}


def resnet(
    arch,
    variant="baseline",
    num_classes=1000,
    input_shape=(224, 224, 3),
    include_top=True,
    stem="imagenet",
    width_multiplier=1.0,
    filt_size=4,
    pad_mode=None,
    polyphase_order="fixed",
    placement="replace",
    module_initializer=None,
    antialias_stem=False,
    classifier_activation="softmax",
    name=None,
    flavor="keras",
    module_lowpass_penalty=0.0,
    padding=None,
):
    """Builds the ResNet `arch` (a key of `RESNETS`); see `resnet18`."""
    # The builder's options, recorded in the model (without the deprecated name).
    options = {
        k: v for k, v in locals().items() if k not in ("arch", "name", "padding")
    }
    # Called by resnet18/34/50: stacklevel 4 blames their caller.
    pad_mode = renamed_argument(
        "padding", padding, "pad_mode", pad_mode, "zero", stacklevel=4
    )
    block_type, stage_blocks = RESNETS[arch]
    builder = make_builder(
        flavor,
        variant,
        filt_size,
        pad_mode,
        polyphase_order,
        placement,
        module_initializer,
        module_lowpass_penalty,
        stem=(stem, "imagenet"),
        antialias_stem=(antialias_stem, False),
    )
    check_sizes(width_multiplier, num_classes)
    standardize_choice(stem, "stem", STEMS)
    if not isinstance(antialias_stem, bool):
        raise ValueError(
            "`antialias_stem` must be True or False. "
            f"Received: antialias_stem={antialias_stem!r}"
        )
    if antialias_stem and (variant == "baseline" or stem == "cifar"):
        raise ValueError(
            "`antialias_stem=True` needs a variant other than 'baseline' and "
            f"stem='imagenet'. Received: variant={variant!r}, stem={stem!r}"
        )
    input_shape = check_input_shape(input_shape, TOTAL_STRIDES[stem], builder.policy)

    inputs = keras.Input(input_shape, name="images")
    width = scale_width(STAGE_WIDTHS[0], width_multiplier)
    if stem == "imagenet":
        x, _ = builder.conv_unit(
            inputs,
            width,
            7,
            "stem",
            strides=2,
            antialias=antialias_stem or builder.adaptive,
        )
        x = builder.max_pool(x, 3, "stem_pool")
    else:
        x, _ = builder.conv_unit(inputs, width, 3, "stem")

    block = BLOCKS[block_type]
    for stage, (channels, blocks) in enumerate(
        zip(STAGE_WIDTHS, stage_blocks, strict=True), start=1
    ):
        filters = scale_width(channels, width_multiplier)
        for i in range(blocks):
            strides = 2 if stage > 1 and i == 0 else 1
            x = block(builder, x, filters, strides, f"stage{stage}_block{i + 1}")

    if include_top:
        x = classifier(x, num_classes, classifier_activation)
    options.update(pad_mode=pad_mode, input_shape=input_shape)
    return zoo_model(inputs, x, arch, name, options)


_DOC = """{title} in the shift-invariance variant `variant`.

    The standard ImageNet configuration by default ({params} trainable
    parameters with 1000 classes). See the module docstring of `zoo.resnet` for
    exactly which layers each variant replaces.

    Args:
        variant: "baseline", "blur", "group", "conv3d" or "aps".
        num_classes: number of classes of the classifier.
        input_shape: (height, width, channels) of the float32 images (any scale:
            the caller rescales). Height and width may be None.
        include_top: False returns the last feature map (no pooling, no classifier).
        stem: "imagenet" (7x7/2 conv, 3x3/2 max pool: total stride 32) or "cifar"
            (3x3/1 conv, no max pool: total stride 8) for small images.
        width_multiplier: scales every width (64-128-256-512), e.g. 1/16 for
            small models that train on a CPU.
        filt_size: blur taps of "blur" and "aps" (1: no blur).
        pad_mode: "zero" (the default) or "circular" (every conv, pool and blur
            wraps around).
        polyphase_order: "fixed" or "aps", the offset order of "group"/"conv3d".
        placement: "replace" (the module replaces the strided layer) or "dense"
            (the layer runs at stride 1, the module replaces only the
            subsampling) for "group"/"conv3d"; see `zoo.blocks.Builder`.
        module_initializer: None or "lowpass" (every module starts as
            `BlurPool2D(filt_size)`) for "group"/"conv3d".
        antialias_stem: also downsample the ImageNet stem conv the variant's way
            in "blur" and fixed-order "group"/"conv3d" (adaptive variants always do).
        classifier_activation: activation of the "predictions" layer (float32),
            None for logits.
        name: model name; default "{arch}_<variant>" ("_torchvision" appended
            with that flavor).
        flavor: "keras" (the networks above) or "torchvision": torchvision's
            ResNet ("baseline", the bottleneck's stride on its 3x3 conv) or
            antialiased-cnns' ("blur": MaxPool 2x2/1 + `BlurPool2D` in the stem,
            blurs reflecting), to float rounding, for their checkpoints
            (`zoo.load_torch_weights`). It takes the ImageNet stem, zero padding
            and no `antialias_stem`; inputs are normalized with torchvision's
            mean and std (`zoo.TORCHVISION_MEAN`, `zoo.TORCHVISION_STD`).
        module_lowpass_penalty: for "group"/"conv3d", a float >= 0 (default 0:
            none): while training, every module adds this weight times the
            high-frequency share of its effective filters to the loss (see
            `ShiftInvariantDown`'s `lowpass_penalty`).
        padding: deprecated name of `pad_mode` (a `DeprecationWarning`).

    Returns:
        A functional `keras.Model`.

    Example:

    >>> model = zoo.{arch}(variant="aps", num_classes=10, input_shape=(32, 32, 3),
    ...                    stem="cifar", width_multiplier=1 / 8, pad_mode="circular")
    >>> model.output_shape
    (None, 10)
    """


def resnet18(
    variant="baseline",
    num_classes=1000,
    input_shape=(224, 224, 3),
    include_top=True,
    stem="imagenet",
    width_multiplier=1.0,
    filt_size=4,
    pad_mode=None,
    polyphase_order="fixed",
    placement="replace",
    module_initializer=None,
    antialias_stem=False,
    classifier_activation="softmax",
    name=None,
    flavor="keras",
    module_lowpass_penalty=0.0,
    *,
    padding=None,
):
    return resnet(
        "resnet18",
        variant=variant,
        num_classes=num_classes,
        input_shape=input_shape,
        include_top=include_top,
        stem=stem,
        width_multiplier=width_multiplier,
        filt_size=filt_size,
        pad_mode=pad_mode,
        polyphase_order=polyphase_order,
        placement=placement,
        module_initializer=module_initializer,
        antialias_stem=antialias_stem,
        classifier_activation=classifier_activation,
        name=name,
        flavor=flavor,
        module_lowpass_penalty=module_lowpass_penalty,
        padding=padding,
    )


def resnet34(
    variant="baseline",
    num_classes=1000,
    input_shape=(224, 224, 3),
    include_top=True,
    stem="imagenet",
    width_multiplier=1.0,
    filt_size=4,
    pad_mode=None,
    polyphase_order="fixed",
    placement="replace",
    module_initializer=None,
    antialias_stem=False,
    classifier_activation="softmax",
    name=None,
    flavor="keras",
    module_lowpass_penalty=0.0,
    *,
    padding=None,
):
    return resnet(
        "resnet34",
        variant=variant,
        num_classes=num_classes,
        input_shape=input_shape,
        include_top=include_top,
        stem=stem,
        width_multiplier=width_multiplier,
        filt_size=filt_size,
        pad_mode=pad_mode,
        polyphase_order=polyphase_order,
        placement=placement,
        module_initializer=module_initializer,
        antialias_stem=antialias_stem,
        classifier_activation=classifier_activation,
        name=name,
        flavor=flavor,
        module_lowpass_penalty=module_lowpass_penalty,
        padding=padding,
    )


def resnet50(
    variant="baseline",
    num_classes=1000,
    input_shape=(224, 224, 3),
    include_top=True,
    stem="imagenet",
    width_multiplier=1.0,
    filt_size=4,
    pad_mode=None,
    polyphase_order="fixed",
    placement="replace",
    module_initializer=None,
    antialias_stem=False,
    classifier_activation="softmax",
    name=None,
    flavor="keras",
    module_lowpass_penalty=0.0,
    *,
    padding=None,
):
    return resnet(
        "resnet50",
        variant=variant,
        num_classes=num_classes,
        input_shape=input_shape,
        include_top=include_top,
        stem=stem,
        width_multiplier=width_multiplier,
        filt_size=filt_size,
        pad_mode=pad_mode,
        polyphase_order=polyphase_order,
        placement=placement,
        module_initializer=module_initializer,
        antialias_stem=antialias_stem,
        classifier_activation=classifier_activation,
        name=name,
        flavor=flavor,
        module_lowpass_penalty=module_lowpass_penalty,
        padding=padding,
    )


resnet18.__doc__ = _DOC.format(title="ResNet-18", params="11,689,512", arch="resnet18")
resnet34.__doc__ = _DOC.format(title="ResNet-34", params="21,797,672", arch="resnet34")
resnet50.__doc__ = _DOC.format(title="ResNet-50", params="25,557,032", arch="resnet50")
