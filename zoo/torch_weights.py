"""PyTorch checkpoints of torchvision's and antialiased-cnns' ResNets and VGGs in the
zoo's `flavor="torchvision"` models.

>>> model = zoo.resnet50(variant="blur", filt_size=3, flavor="torchvision")
>>> zoo.load_torch_weights(model, "resnet50_lpf3.pth")

The checkpoint is a state dict (tensor name -> array). Each Keras weight has one
tensor, found by the Keras layer's name (`TORCH_NAMES` for ResNet, the position in
`features` for VGG); each blur has its filter buffer ("filt"), which is checked,
not loaded (it is the layer's constant). Only the user's file is read: the package
ships no weights.
"""

import json
import os
import pickle
import re
import struct

import keras
import numpy as np

from keras_shiftinv import layers as si_layers
from keras_shiftinv._keras_compat import producer
from keras_shiftinv.filters import binomial_filter
from keras_shiftinv.models import (
    RecordedModel,
    find_record,
    is_logits,
    probabilities_layer,
)

# torchvision's ImageNet normalization of RGB images scaled to [0, 1].
TORCHVISION_MEAN = (0.485, 0.456, 0.406)
TORCHVISION_STD = (0.229, 0.224, 0.225)

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".pth.tar", ".safetensors", ".npz")

# ResNet: Keras layer name -> torch module. "{s}" is the stage, "{b}" the block
# index from 0. antialiased-cnns puts each blur of a strided block in front of a
# conv as an `nn.Sequential` (the blur, then the conv): `_resnet_prefix` shifts
# those indices.
TORCH_NAMES = (
    (r"stem_conv", "conv1"),
    (r"stem_bn", "bn1"),
    (r"stem_pool", "maxpool.1"),
    (r"stage(\d)_block(\d+)_(conv|bn)(\d)", "layer{s}.{b}.{kind}{i}"),
    (r"stage(\d)_block(\d+)_down", "layer{s}.{b}.conv{last}.0"),
    (r"stage(\d)_block(\d+)_shortcut_down", "layer{s}.{b}.downsample.0"),
    (r"stage(\d)_block(\d+)_shortcut_conv", "layer{s}.{b}.downsample.{conv}"),
    (r"stage(\d)_block(\d+)_shortcut_bn", "layer{s}.{b}.downsample.{bn}"),
    (r"logits", "fc"),
)
# VGG's classifier: Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear.
VGG_CLASSIFIER = {
    "fc1": "classifier.0",
    "fc2": "classifier.3",
    "logits": "classifier.6",
}
# Buffers that hold no weight of the Keras model.
IGNORED_SUFFIXES = (".num_batches_tracked",)

_SAFETENSORS_DTYPES = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "BF16": "<u2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U8": "u1",
    "BOOL": "?",
}


def load_torch_weights(model, source):
    """Sets every weight of a `flavor="torchvision"` zoo model from a PyTorch
    checkpoint of the same network.

    Supported: torchvision's `resnet18/34/50`, `vgg11/13/16` and `vgg*_bn`
    (`variant="baseline"`, VGG with `batch_norm` as the checkpoint) and
    antialiased-cnns' same models with `filter_size=k` (`variant="blur",
    filt_size=k`). Conv kernels are transposed to Keras' layout, the first fully
    connected layer of VGG is permuted from PyTorch's (channels, height, width)
    flattening to Keras' (height, width, channels), batch norms get their running
    mean and variance.

    The checkpoint must match the model exactly: every model weight is set once,
    and nothing is set unless everything matches (the model is unchanged after an
    error). Each blur's "filt" buffer must be the layer's filter (a checkpoint of
    another `filter_size` is refused); "num_batches_tracked" is ignored.

    Args:
        model: a zoo model built with `flavor="torchvision"`, or a model wrapping
            one (such as the output of `python -m keras_shiftinv convert-weights`).
        source: a path to a `.pth`/`.pt` file (read with `torch.load`, which needs
            torch), a `.safetensors` or `.npz` file (no torch needed), or a dict
            of tensor name -> array. A dict under "state_dict" or "model" and the
            "module." prefix of `nn.DataParallel` are unwrapped.

    Returns:
        `model`, with its weights set.

    Raises:
        ValueError: for an unreadable source, a model this function does not know,
            or a checkpoint that does not match: the message names the first
            missing, unexpected or mis-shaped tensor.
    """
    network, model_name = _zoo_network(model)
    tensors = read_checkpoint(source)
    plan, filters = _plan(network, model_name)
    assignments = []
    for variable, name, to_keras in plan:
        value = _tensor(tensors, name, variable.path)
        expected = _torch_shape(variable, to_keras)
        if value.shape != expected:
            raise ValueError(
                f"Checkpoint tensor {name!r} has shape {value.shape}; the model's "
                f"{variable.path!r} needs {expected} (PyTorch layout). Build the "
                "model with the checkpoint's architecture and options."
            )
        assignments.append((variable, to_keras(value).astype(variable.dtype)))
    for name, (layer, expected) in filters.items():
        value = _tensor(tensors, name, layer.name)
        if value.shape != expected.shape or not np.allclose(value, expected):
            taps = value.shape[-1] if value.ndim == 4 else "?"
            raise ValueError(
                f"Checkpoint tensor {name!r} (shape {value.shape}) is not the "
                f"{layer.filt_size}-tap binomial filter of layer {layer.name!r}: the "
                f"checkpoint was trained with filter_size={taps}; build the model "
                f"with filt_size={taps}."
            )
    used = {name for _, name, _ in plan} | set(filters)
    for name in tensors:
        if name not in used and not name.endswith(IGNORED_SUFFIXES):
            raise ValueError(
                f"Checkpoint tensor {name!r} has no counterpart in the model "
                f"{network.name!r}: the checkpoint is of another network (check the "
                "model, variant, batch_norm and filt_size)."
            )
    for variable, value in assignments:
        variable.assign(value)
    return model


def read_checkpoint(source):
    """A state dict (tensor name -> NumPy array) from a path or a dict; see
    `load_torch_weights`."""
    if isinstance(source, dict):
        tensors = source
    elif isinstance(source, str | os.PathLike):
        tensors = _read_file(os.fspath(source))
    else:
        raise ValueError(
            "`source` must be a path to a .pth, .pt, .safetensors or .npz file, or a "
            f"dict of tensor name -> array. Received: source={source!r}"
        )
    for key in ("state_dict", "model"):
        if isinstance(tensors.get(key), dict):
            tensors = tensors[key]
    arrays = {}
    for name, value in tensors.items():
        if not isinstance(name, str):
            raise ValueError(
                f"A state dict maps tensor names (str) to arrays. Received the key "
                f"{name!r}."
            )
        if hasattr(value, "detach"):  # a torch.Tensor
            value = value.detach().cpu().float().numpy()
        try:
            value = np.asarray(value)
        except (TypeError, ValueError):
            value = np.asarray(None)
        if value.dtype.kind not in "biuf":
            raise ValueError(
                f"Tensor {name!r} of the state dict is not an array of numbers "
                f"(dtype {value.dtype})."
            )
        arrays[name.removeprefix("module.")] = value
    return arrays


def _read_file(path):
    if not os.path.isfile(path):
        raise ValueError(f"No checkpoint file at {path!r}.")
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as data:
            return dict(data)
    if path.endswith(".safetensors"):
        return _read_safetensors(path)
    if path.endswith((".pth", ".pt", ".pth.tar")):
        try:
            import torch
        except ImportError as error:
            raise ValueError(
                f"Reading {path!r} needs PyTorch (pip install "
                "'keras-shiftinv[interop]'); a .safetensors or .npz copy of the "
                "state dict loads without it."
            ) from error
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            # torch's message suggests weights_only=False, which runs whatever
            # code the file holds: never right for a file from elsewhere.
            found = re.search(r"Unsupported global: [^\n]*?(?=\. |\n|$)", str(error))
            raise ValueError(
                f"{path!r} holds Python objects besides tensors"
                f"{f' ({found.group(0)})' if found else ''}, which torch.load "
                "does not load because loading them can run code. Load the file "
                "where it was made and save its state dict alone "
                "(torch.save(model.state_dict(), PATH), or a .safetensors copy)."
            ) from None
        except Exception as error:  # torch raises many types for a bad file.
            raise ValueError(
                f"torch.load could not read {path!r}: {type(error).__name__}: {error}"
            ) from error
    raise ValueError(
        f"Unknown checkpoint format {path!r}: the name must end with one of "
        f"{', '.join(CHECKPOINT_SUFFIXES)}."
    )


def _read_safetensors(path):
    """The safetensors format (an 8-byte header size, a JSON header, the raw
    little-endian data), read with NumPy so that no torch is needed."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        (size,) = struct.unpack("<Q", data[:8])
        if size > len(data) - 8:
            raise ValueError(
                f"its header size {size} is larger than the file ({len(data)} bytes)"
            )
        header = json.loads(data[8 : 8 + size])
        body = data[8 + size :]
        tensors = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            start, stop = info["data_offsets"]
            if not 0 <= start <= stop <= len(body):
                raise ValueError(
                    f"tensor {name!r} lies at bytes {start}..{stop} of a "
                    f"{len(body)}-byte data section"
                )
            value = np.frombuffer(
                body[start:stop], _SAFETENSORS_DTYPES[info["dtype"]]
            ).reshape(info["shape"])
            if info["dtype"] == "BF16":  # the high half of a float32
                value = (value.astype("<u4") << 16).view("<f4")
            tensors[name] = value
    except (struct.error, ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"{path!r} is not a readable safetensors file: {type(error).__name__}: "
            f"{error}"
        ) from error
    return tensors


def _tensor(tensors, name, needed_by):
    if name not in tensors:
        raise ValueError(
            f"The checkpoint has no tensor {name!r} (needed by {needed_by!r}): it is "
            "of another network (check the model, variant, batch_norm and "
            "filt_size)."
        )
    return tensors[name]


def _zoo_network(model):
    """`model`, or the one zoo network a wrapper model holds, read from what the
    zoo recorded in it (its model and flavor)."""
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"load_torch_weights() takes a keras.Model. Received: model={model!r}"
        )
    network, options = find_record(model, "zoo")
    if network is None:
        raise ValueError(
            f"Model {model.name!r} is not a zoo ResNet or VGG: build it with "
            "zoo.<name>(variant=..., flavor='torchvision')."
        )
    if options["flavor"] != "torchvision":
        # Its weights would load but compute another function (other padding,
        # other grids).
        raise ValueError(
            f"Model {network.name!r} is not built with flavor='torchvision' (its "
            "padding differs from PyTorch's): build it with "
            "zoo.<name>(variant=..., flavor='torchvision')."
        )
    return network, options["model"]


def _plan(network, model_name):
    """[(Keras variable, torch name, torch -> Keras array)] and {torch name of a
    blur filter: (layer, expected filter)}."""
    if model_name.startswith("resnet"):
        prefixes = _resnet_prefixes(network)
    else:
        prefixes = _vgg_prefixes(network)
    plan, filters = [], {}
    for layer in network.layers:
        prefix = prefixes.get(layer.name)
        if isinstance(layer, si_layers.BlurPool2D | si_layers.MaxBlurPool2D):
            channels = layer.input.shape[-1]
            taps = binomial_filter(layer.filt_size)
            expected = np.tile(np.outer(taps, taps), (channels, 1, 1, 1))
            filters[f"{prefix}.filt"] = (layer, expected)
            continue
        if not layer.weights:
            continue
        if prefix is None:
            raise ValueError(
                f"Layer {layer.name!r} ({type(layer).__name__}) of model "
                f"{network.name!r} has no PyTorch counterpart: only the "
                "'baseline' and 'blur' variants of flavor='torchvision' load."
            )
        plan.extend(_layer_plan(layer, prefix))
    return plan, filters


def _layer_plan(layer, prefix):
    if isinstance(layer, keras.layers.BatchNormalization):
        pairs = (
            (layer.gamma, "weight"),
            (layer.beta, "bias"),
            (layer.moving_mean, "running_mean"),
            (layer.moving_variance, "running_var"),
        )
        return [(v, f"{prefix}.{n}", _same) for v, n in pairs]
    if isinstance(layer, keras.layers.Conv2D):
        kernel = _conv_kernel
    elif isinstance(layer, keras.layers.Dense):
        kernel = _dense_kernel(layer)
    else:
        raise ValueError(
            f"Layer {layer.name!r} ({type(layer).__name__}) has weights with no "
            "PyTorch counterpart."
        )
    plan = [(layer.kernel, f"{prefix}.weight", kernel)]
    if layer.use_bias:
        plan.append((layer.bias, f"{prefix}.bias", _same))
    return plan


def _same(value):
    return value


def _conv_kernel(value):
    # (out, in, height, width) -> (height, width, in, out)
    return np.transpose(value, (2, 3, 1, 0))


def _dense_kernel(layer):
    """(out, in) -> (in, out); after a Flatten, PyTorch's NCHW order of the inputs
    becomes Keras' NHWC."""
    source = producer(layer.input)
    if not isinstance(source, keras.layers.Flatten):
        return np.transpose
    height, width, channels = source.input.shape[1:]

    def kernel(value):
        value = value.reshape(-1, channels, height, width)
        return np.transpose(value, (2, 3, 1, 0)).reshape(-1, value.shape[0])

    return kernel


def _torch_shape(variable, to_keras):
    """The PyTorch shape of the tensor `to_keras` turns into `variable`."""
    shape = tuple(variable.shape)
    if to_keras is _same:
        return shape
    if to_keras is _conv_kernel:
        return (shape[3], shape[2], shape[0], shape[1])
    return (shape[1], shape[0])


def _resnet_prefixes(network):
    names = [layer.name for layer in network.layers]
    last = 3 if "stage1_block1_conv3" in names else 2
    prefixes = {}
    for name in names:
        for pattern, template in TORCH_NAMES:
            match = re.fullmatch(pattern, name)
            if match:
                prefixes[name] = _resnet_prefix(template, match, last, set(names))
                break
    return prefixes


def _resnet_prefix(template, match, last, names):
    if not match.groups():
        return template
    stage, block = match.group(1), int(match.group(2))
    block_name = f"stage{stage}_block{block}"
    fields = {"s": stage, "b": block - 1, "last": last}
    if len(match.groups()) == 4:
        kind, i = match.group(3), match.group(4)
        fields.update(kind=kind, i=i)
        if kind == "conv" and int(i) == last and f"{block_name}_down" in names:
            fields["i"] = f"{i}.1"
    blurred = int(f"{block_name}_shortcut_down" in names)
    fields.update(conv=blurred, bn=blurred + 1)
    return template.format(**fields)


def _vgg_prefixes(network):
    """torchvision's `features` is one `nn.Sequential`: each conv, batch norm,
    ReLU and pool takes an index; antialiased-cnns' pool is two (the max, then
    the blur with the filter)."""
    prefixes, index = {}, 0
    for layer in network.layers:
        if layer.name in VGG_CLASSIFIER:
            prefixes[layer.name] = VGG_CLASSIFIER[layer.name]
        elif not layer.name.startswith("block"):
            continue
        elif isinstance(layer, si_layers.MaxBlurPool2D):
            prefixes[layer.name] = f"features.{index + 1}"
            index += 2
        elif isinstance(
            layer,
            keras.layers.Conv2D
            | keras.layers.BatchNormalization
            | keras.layers.Activation
            | keras.layers.MaxPooling2D,
        ):
            prefixes[layer.name] = f"features.{index}"
            index += 1
    return prefixes


def torchvision_classifier(network, name=None):
    """`network` (logits or probabilities) behind torchvision's preprocessing:
    raw RGB pixels in [0, 255] in, probabilities out, as the package's saved
    models take them (`evaluate`, `export` and `predict` use it as it is).

    The images are normalized with `TORCHVISION_MEAN` and `TORCHVISION_STD` (of
    pixels scaled to [0, 1]) inside the model; resize or crop them to the
    network's input size first (torchvision's ImageNet evaluation: resize the
    shorter side to 256, center crop 224).
    """
    inputs = keras.Input(network.input_shape[1:], name="image")
    x = keras.layers.Normalization(
        mean=[255.0 * m for m in TORCHVISION_MEAN],
        variance=[(255.0 * s) ** 2 for s in TORCHVISION_STD],
        name="torchvision_normalization",
    )(inputs)
    x = network(x)
    if is_logits(network):
        x = probabilities_layer()(x)
    contract = {"pixels": [0, 255], "mean": TORCHVISION_MEAN, "std": TORCHVISION_STD}
    return RecordedModel(
        inputs, x, name=name or network.name, record={"input": contract}
    )


def torch_tensor_shapes(model):
    """The tensors `load_torch_weights` needs for `model`: {name: PyTorch shape},
    weights and blur filters, in the model's order."""
    plan, filters = _plan(*_zoo_network(model))
    shapes = {
        name: _torch_shape(variable, to_keras) for variable, name, to_keras in plan
    }
    shapes.update({name: expected.shape for name, (_, expected) in filters.items()})
    return shapes


def convert_checkpoint(
    source,
    model_name,
    variant=None,
    filt_size=None,
    batch_norm=None,
    image_size=224,
):
    """A checkpoint as a ready-to-use classifier: the torchvision-flavor zoo model
    `model_name` with the checkpoint's weights, behind `torchvision_classifier`
    (raw RGB pixels in [0, 255] in, probabilities out).

    Options left None are read from the checkpoint: `variant` ("blur" when it has
    blur filters), `filt_size` (their size), `batch_norm` (VGG: whether it has
    batch norms); the number of classes is always the checkpoint's.

    Args:
        source: as for `load_torch_weights`.
        model_name: "resnet18", "resnet34", "resnet50", "vgg11", "vgg13" or "vgg16".
        variant: "baseline" or "blur".
        filt_size: blur taps (1 to 7) of "blur".
        batch_norm: VGG only: whether the checkpoint is of a "vgg*_bn".
        image_size: height and width of the inputs (VGG's "fc" head needs 224).

    Returns:
        The `keras.Model`.
    """
    from zoo.registry import create_model

    tensors = read_checkpoint(source)
    filters = [value for name, value in tensors.items() if name.endswith(".filt")]
    if variant is None:
        variant = "blur" if filters else "baseline"
    if filt_size is None:
        filt_size = int(filters[0].shape[-1]) if filters else 4
    vgg = model_name.startswith("vgg")
    last = VGG_CLASSIFIER["logits"] if vgg else "fc"
    logits = tensors.get(f"{last}.weight")
    options = {
        "variant": variant,
        "filt_size": filt_size,
        "num_classes": 1000 if logits is None else int(logits.shape[0]),
        "input_shape": (image_size, image_size, 3),
        "classifier_activation": None,
        "flavor": "torchvision",
    }
    if vgg:
        options["batch_norm"] = (
            "features.1.running_mean" in tensors if batch_norm is None else batch_norm
        )
    elif batch_norm is not None:
        raise ValueError(
            f"`batch_norm` is an option of the VGGs; {model_name} always has batch "
            f"norms. Received: batch_norm={batch_norm!r}"
        )
    network = create_model(model_name, **options)
    load_torch_weights(network, tensors)
    suffix = f"_lpf{filt_size}" if variant == "blur" else ""
    bn = "_bn" if vgg and options["batch_norm"] else ""
    return torchvision_classifier(network, name=f"{model_name}{bn}{suffix}")
