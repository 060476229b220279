"""VGG-11/13/16 (Simonyan & Zisserman, 2015) in every shift-invariance variant.

All convs are 3x3 at stride 1; the five 2x2/2 max pools are the layers that halve the
feature map (total stride 32), and each variant replaces them as
`zoo.blocks.Builder` describes: "blur" -> `MaxBlurPool2D`, "group"/"conv3d" ->
`ShiftInvariantDown(kernel_size=3)` (and BN if `batch_norm`), "aps" -> dense max
pool then `PolyphaseDown2D`.
With `pad_mode="circular"` and `head="gap"`, "aps" and "group"/"conv3d" with
`polyphase_order="aps"` are exactly invariant to circular shifts of the input (in
inference mode) whose height and width are multiples of 32; the "fc" head flattens
the map, which no shift-invariant backbone can make invariant.

`flavor="torchvision"` (variants "baseline" and "blur") is torchvision's and
antialiased-cnns' VGG instead, for their checkpoints (`zoo.load_torch_weights`).
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

HEADS = ("gap", "fc")
# The five max pools divide the height and width by 32.
TOTAL_STRIDE = 32
FC_UNITS = 4096
# Configurations A, B and D of the paper: conv widths, "M" for a max pool.
VGGS = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg13": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (
        *(64, 64, "M", 128, 128, "M", 256, 256, 256, "M"),
        *(512, 512, 512, "M", 512, 512, 512, "M"),
    ),
}


def vgg(
    arch,
    variant="baseline",
    num_classes=1000,
    input_shape=(224, 224, 3),
    include_top=True,
    width_multiplier=1.0,
    filt_size=4,
    pad_mode=None,
    polyphase_order="fixed",
    placement="replace",
    module_initializer=None,
    batch_norm=True,
    head=None,
    classifier_activation="softmax",
    name=None,
    flavor="keras",
    module_lowpass_penalty=0.0,
    padding=None,
):
    """Builds the VGG `arch` (a key of `VGGS`); see `vgg11`."""
    # The builder's options, recorded in the model (without the deprecated name).
    options = {
        k: v for k, v in locals().items() if k not in ("arch", "name", "padding")
    }
    # Called by vgg11/13/16: stacklevel 4 blames their caller.
    pad_mode = renamed_argument(
        "padding", padding, "pad_mode", pad_mode, "zero", stacklevel=4
    )
    # torchvision's VGG keeps the convs' bias under batch normalization.
    builder = make_builder(
        flavor,
        variant,
        filt_size,
        pad_mode,
        polyphase_order,
        placement,
        module_initializer,
        module_lowpass_penalty,
        conv_bias=True,
    )
    if isinstance(builder, TorchvisionBuilder):
        if head not in (None, "fc"):
            raise ValueError(
                "flavor='torchvision' has torchvision's head, 'fc'. "
                f"Received: head={head!r}"
            )
        head = "fc"
    else:
        head = "gap" if head is None else head
    check_sizes(width_multiplier, num_classes)
    standardize_choice(head, "head", HEADS)
    if not isinstance(batch_norm, bool):
        raise ValueError(
            f"`batch_norm` must be True or False. Received: batch_norm={batch_norm!r}"
        )
    input_shape = check_input_shape(input_shape, TOTAL_STRIDE, builder.policy)
    if include_top and head == "fc" and None in input_shape:
        raise ValueError(
            "head='fc' flattens the last feature map, so it needs a known height and "
            f"width. Received: input_shape={input_shape!r}; use head='gap'."
        )

    inputs = keras.Input(input_shape, name="images")
    x = inputs
    block, conv = 1, 1
    for layer in VGGS[arch]:
        if layer == "M":
            x = builder.max_pool(x, 2, f"block{block}_pool", batch_norm=batch_norm)
            block, conv = block + 1, 1
        else:
            x, _ = builder.conv_unit(
                x,
                scale_width(layer, width_multiplier),
                3,
                f"block{block}",
                str(conv),
                batch_norm=batch_norm,
            )
            conv += 1

    if include_top:
        hidden = (scale_width(FC_UNITS, width_multiplier),) * 2 if head == "fc" else ()
        x = classifier(
            x, num_classes, classifier_activation, hidden, flatten=head == "fc"
        )
    options.update(pad_mode=pad_mode, head=head, input_shape=input_shape)
    return zoo_model(inputs, x, arch, name, options)


_DOC = """{title} in the shift-invariance variant `variant`.

    The paper's configuration {config}. With `batch_norm=False` and `head="fc"` it
    is the original network ({params} parameters with 1000 classes and 224x224
    inputs); the default is batch normalization after every conv (the convs then
    have no bias) and a global-average-pooling head. See the module docstring of
    `zoo.vgg` for what each variant replaces.

    Args:
        variant: "baseline", "blur", "group", "conv3d" or "aps".
        num_classes: number of classes of the classifier.
        input_shape: (height, width, channels) of the float32 images (any scale:
            the caller rescales). Height and width may be None with head="gap".
        include_top: False returns the last feature map (no pooling, no classifier).
        width_multiplier: scales every width (64 to 512, and the 4096 units of the
            "fc" head), e.g. 1/16 for small models that train on a CPU.
        filt_size: blur taps of "blur" and "aps" (1: no blur).
        pad_mode: "zero" (the default) or "circular" (every conv, pool and blur
            wraps around).
        polyphase_order: "fixed" or "aps", the offset order of "group"/"conv3d".
        placement: "replace" (the module replaces the strided layer) or "dense"
            (the layer runs at stride 1, the module replaces only the
            subsampling) for "group"/"conv3d"; see `zoo.blocks.Builder`.
        module_initializer: None or "lowpass" (every module starts as
            `BlurPool2D(filt_size)`) for "group"/"conv3d".
        batch_norm: batch normalization after every conv.
        head: "gap" (global average pooling, then the classifier; the default) or
            "fc" (flatten, two 4096-unit ReLU layers with dropout 0.5, then the
            classifier; the torchvision flavor's head).
        classifier_activation: activation of the "predictions" layer (float32),
            None for logits.
        name: model name; default "{arch}_<variant>" ("_torchvision" appended
            with that flavor).
        flavor: "keras" (the networks above) or "torchvision": torchvision's VGG
            ("baseline"; "{arch}_bn" with `batch_norm=True`) or antialiased-cnns'
            ("blur": MaxPool 2x2/1 + `BlurPool2D` reflecting), to float rounding,
            for their checkpoints (`zoo.load_torch_weights`): the "fc" head, convs
            with a bias, zero padding. torchvision average-pools the last map to
            7x7, which the "fc" head reads as it is: use 224x224 inputs
            normalized with torchvision's mean and std (`zoo.TORCHVISION_MEAN`,
            `zoo.TORCHVISION_STD`).
        module_lowpass_penalty: for "group"/"conv3d", a float >= 0 (default 0:
            none): while training, every module adds this weight times the
            high-frequency share of its effective filters to the loss (see
            `ShiftInvariantDown`'s `lowpass_penalty`).
        padding: deprecated name of `pad_mode` (a `DeprecationWarning`).

    Returns:
        A functional `keras.Model`.

    Example:

    >>> model = zoo.{arch}(variant="blur", num_classes=10, input_shape=(32, 32, 3),
    ...                    width_multiplier=1 / 8)
    >>> model.output_shape
    (None, 10)
    """


def vgg11(
    variant="baseline",
    num_classes=1000,
    input_shape=(224, 224, 3),
    include_top=True,
    width_multiplier=1.0,
    filt_size=4,
    pad_mode=None,
    polyphase_order="fixed",
    placement="replace",
    module_initializer=None,
    batch_norm=True,
    head=None,
    classifier_activation="softmax",
    name=None,
    flavor="keras",
    module_lowpass_penalty=0.0,
    *,
    padding=None,
):
    return vgg(
        "vgg11",
        variant=variant,
        num_classes=num_classes,
        input_shape=input_shape,
        include_top=include_top,
        width_multiplier=width_multiplier,
        filt_size=filt_size,
        pad_mode=pad_mode,
        polyphase_order=polyphase_order,
        placement=placement,
        module_initializer=module_initializer,
        batch_norm=batch_norm,
        head=head,
        classifier_activation=classifier_activation,
        name=name,
        flavor=flavor,
        module_lowpass_penalty=module_lowpass_penalty,
        padding=padding,
    )


def vgg13(
    variant="baseline",
    num_classes=1000,
    input_shape=(224, 224, 3),
    include_top=True,
    width_multiplier=1.0,
    filt_size=4,
    pad_mode=None,
    polyphase_order="fixed",
    placement="replace",
    module_initializer=None,
    batch_norm=True,
    head=None,
    classifier_activation="softmax",
    name=None,
    flavor="keras",
    module_lowpass_penalty=0.0,
    *,
    padding=None,
):
    return vgg(
        "vgg13",
        variant=variant,
        num_classes=num_classes,
        input_shape=input_shape,
        include_top=include_top,
        width_multiplier=width_multiplier,
        filt_size=filt_size,
        pad_mode=pad_mode,
        polyphase_order=polyphase_order,
        placement=placement,
        module_initializer=module_initializer,
        batch_norm=batch_norm,
        head=head,
        classifier_activation=classifier_activation,
        name=name,
        flavor=flavor,
        module_lowpass_penalty=module_lowpass_penalty,
        padding=padding,
    )


def vgg16(
    variant="baseline",
    num_classes=1000,
    input_shape=(224, 224, 3),
    include_top=True,
    width_multiplier=1.0,
    filt_size=4,
    pad_mode=None,
    polyphase_order="fixed",
    placement="replace",
    module_initializer=None,
    batch_norm=True,
    head=None,
    classifier_activation="softmax",
    name=None,
    flavor="keras",
    module_lowpass_penalty=0.0,
    *,
    padding=None,
):
    return vgg(
        "vgg16",
        variant=variant,
        num_classes=num_classes,
        input_shape=input_shape,
        include_top=include_top,
        width_multiplier=width_multiplier,
        filt_size=filt_size,
        pad_mode=pad_mode,
        polyphase_order=polyphase_order,
        placement=placement,
        module_initializer=module_initializer,
        batch_norm=batch_norm,
        head=head,
        classifier_activation=classifier_activation,
        name=name,
        flavor=flavor,
        module_lowpass_penalty=module_lowpass_penalty,
        padding=padding,
    )


vgg11.__doc__ = _DOC.format(
    title="VGG-11", config="A", params="132,863,336", arch="vgg11"
)
vgg13.__doc__ = _DOC.format(
    title="VGG-13", config="B", params="133,047,848", arch="vgg13"
)
vgg16.__doc__ = _DOC.format(
    title="VGG-16", config="D", params="138,357,544", arch="vgg16"
)
