"""Model zoo: ResNet-18/34/50 and VGG-11/13/16 in every shift-invariance variant.

>>> import zoo
>>> zoo.list_models()
['resnet18', 'resnet34', 'resnet50', 'vgg11', 'vgg13', 'vgg16']
>>> model = zoo.create_model("resnet18", variant="group", num_classes=10,
...                          input_shape=(32, 32, 3), stem="cifar")

Every builder returns a functional `keras.Model` taking float32 images and returning
class probabilities (float32); `zoo.VARIANTS` lists the variants, and
`zoo.model_spec(name)` the options and total stride of a model without building it.
With `flavor="torchvision"` they are torchvision's and antialiased-cnns' networks,
and `zoo.load_torch_weights` loads those projects' checkpoints.
"""

from keras_shiftinv.variants import VARIANTS
from zoo.registry import ModelSpec, create_model, list_models, model_spec
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

__all__ = [
    "ModelSpec",
    "TORCHVISION_MEAN",
    "TORCHVISION_STD",
    "VARIANTS",
    "convert_checkpoint",
    "create_model",
    "list_models",
    "load_torch_weights",
    "model_spec",
    "resnet18",
    "resnet34",
    "resnet50",
    "torch_tensor_shapes",
    "torchvision_classifier",
    "vgg11",
    "vgg13",
    "vgg16",
]
