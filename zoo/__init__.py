"""Model zoo: ResNet-18/34/50 and VGG-11/13/16 in every shift-invariance variant.

>>> import zoo
>>> zoo.list_models()
['resnet18', 'resnet34', 'resnet50', 'vgg11', 'vgg13', 'vgg16']
>>> model = zoo.create_model("resnet18", variant="group", num_classes=10,
...                          input_shape=(32, 32, 3), stem="cifar")

Every builder returns a functional `keras.Model` taking float32 images and returning
class probabilities (float32); `zoo.VARIANTS` lists the variants. With
`flavor="torchvision"` they are torchvision's and antialiased-cnns' networks, and
`zoo.load_torch_weights` loads those projects' checkpoints.
"""

import inspect

from zoo.blocks import VARIANTS
from zoo.resnet import resnet18, resnet34, resnet50
from zoo.torch_weights import (
    TORCHVISION_MEAN,
    TORCHVISION_STD,
    convert_checkpoint,
    load_torch_weights,
    torch_tensor_shapes,
    torchvision_classifier,
)
from zoo.vgg import vgg11, vgg13, vgg16

_MODELS = {
    builder.__name__: builder
    for builder in (resnet18, resnet34, resnet50, vgg11, vgg13, vgg16)
}


def list_models():
    """The names `create_model` accepts, sorted."""
    return sorted(_MODELS)


def create_model(name, **kwargs):
    """Builds the zoo model `name` (see `list_models()`) with the builder's keyword
    arguments, e.g. `create_model("vgg13", variant="blur", num_classes=10)`.

    Raises:
        ValueError: for an unknown name, an option the builder does not take, or a
            bad value (the message lists the valid choices).
    """
    if name not in _MODELS:
        raise ValueError(
            f"Unknown model {name!r}. Available models: {', '.join(list_models())}"
        )
    builder = _MODELS[name]
    options = list(inspect.signature(builder).parameters)
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        raise ValueError(
            f"{name} does not take the option(s) {', '.join(unknown)}. "
            f"Valid options: {', '.join(options)}"
        )
    return builder(**kwargs)


__all__ = [
    "TORCHVISION_MEAN",
    "TORCHVISION_STD",
    "VARIANTS",
    "convert_checkpoint",
    "create_model",
    "list_models",
    "load_torch_weights",
    "resnet18",
    "resnet34",
    "resnet50",
    "torch_tensor_shapes",
    "torchvision_classifier",
    "vgg11",
    "vgg13",
    "vgg16",
]
