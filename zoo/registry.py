"""The zoo's registry: what callers ask of a model before building it.

One `ModelSpec` per model, made from the table below; `zoo.list_models`,
`zoo.model_spec` and `zoo.create_model` read it.
"""

import dataclasses
from collections.abc import Callable

from keras_shiftinv.validation import renamed_argument
from zoo import resnet, vgg

# The options of the builders, in their order.
RESNET_OPTIONS = (
    "variant",
    "num_classes",
    "input_shape",
    "include_top",
    "stem",
    "width_multiplier",
    "filt_size",
    "pad_mode",
    "polyphase_order",
    "placement",
    "module_initializer",
    "antialias_stem",
    "classifier_activation",
    "name",
    "flavor",
    "module_lowpass_penalty",
)
VGG_OPTIONS = (
    "variant",
    "num_classes",
    "input_shape",
    "include_top",
    "width_multiplier",
    "filt_size",
    "pad_mode",
    "polyphase_order",
    "placement",
    "module_initializer",
    "batch_norm",
    "head",
    "classifier_activation",
    "name",
    "flavor",
    "module_lowpass_penalty",
)
# Deprecated option -> the option that replaced it (every builder takes both).
RENAMED_OPTIONS = {"padding": "pad_mode"}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A zoo model, as the registry describes it.

    Attributes:
        name: the name `zoo.create_model` takes.
        builder: the function that builds it, e.g. `zoo.resnet18`.
        options: the keyword arguments of `builder`, in its order (without the
            deprecated ones).
        total_stride: how many times the network divides the input's height and
            width by its last feature map, with the default (ImageNet) stem.
        has_stem: whether `builder` takes `stem` ("imagenet" or "cifar").
        cifar_total_stride: the total stride with `stem="cifar"`; None when the
            model has no `stem` option.
    """

    name: str
    builder: Callable
    options: tuple[str, ...]
    total_stride: int
    has_stem: bool
    cifar_total_stride: int | None = None


def _resnet(builder):
    return ModelSpec(
        builder.__name__,
        builder,
        RESNET_OPTIONS,
        total_stride=resnet.TOTAL_STRIDES["imagenet"],
        has_stem=True,
        cifar_total_stride=resnet.TOTAL_STRIDES["cifar"],
    )


def _vgg(builder):
    return ModelSpec(
        builder.__name__, builder, VGG_OPTIONS, vgg.TOTAL_STRIDE, has_stem=False
    )


MODELS = {
    spec.name: spec
    for spec in (
        _resnet(resnet.resnet18),
        _resnet(resnet.resnet34),
        _resnet(resnet.resnet50),
        _vgg(vgg.vgg11),
        _vgg(vgg.vgg13),
        _vgg(vgg.vgg16),
    )
}


def list_models():
    """The names `create_model` accepts, sorted."""
    return sorted(MODELS)


def model_spec(name):
    """The `ModelSpec` of the zoo model `name` (see `list_models()`).

    Raises:
        ValueError: for an unknown name (the message lists the models).
    """
    if name not in MODELS:
        raise ValueError(
            f"Unknown model {name!r}. Available models: {', '.join(list_models())}"
        )
    return MODELS[name]


def create_model(name, **kwargs):
    """Builds the zoo model `name` (see `list_models()`) with the builder's keyword
    arguments, e.g. `create_model("vgg13", variant="blur", num_classes=10)`.

    Raises:
        ValueError: for an unknown name, an option the builder does not take, or a
            bad value (the message lists the valid choices).
    """
    spec = model_spec(name)
    unknown = sorted(set(kwargs) - set(spec.options) - set(RENAMED_OPTIONS))
    if unknown:
        raise ValueError(
            f"{name} does not take the option(s) {', '.join(unknown)}. "
            f"Valid options: {', '.join(spec.options)}"
        )
    for old, new in RENAMED_OPTIONS.items():
        if old in kwargs:
            # stacklevel 3 blames the caller of create_model.
            kwargs[new] = renamed_argument(
                old, kwargs.pop(old), new, kwargs.get(new), None
            )
    return spec.builder(**kwargs)
