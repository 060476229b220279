"""placement="dense", module_initializer="lowpass" and module_lowpass_penalty of
the group/conv3d variants."""

import keras
import numpy as np
import pytest

from keras_shiftinv.layers import ShiftInvariantDown
from tests.zoo.utils import (
    check_model,
    images,
    layer_types,
    predict,
    slow_on_other_backends,
    small_model,
)


def _copy_weights(source, target):
    """Sets every layer of `target` that `source` has (by name) to its weights."""
    for layer in source.layers:
        if layer.weights:
            target.get_layer(layer.name).set_weights(layer.get_weights())


@pytest.mark.parametrize("pad_mode", ["zero", "circular"])
@pytest.mark.parametrize("filt_size", [2, 4])
def test_dense_lowpass_group_resnet_starts_as_the_blur_variant(filt_size, pad_mode):
    # Same convs, BNs and classifier: the modules are then the only difference, and
    # at initialisation each computes BlurPool2D(filt_size).
    options = {"pad_mode": pad_mode, "filt_size": filt_size}
    blur = small_model("resnet18", "blur", **options)
    group = small_model(
        "resnet18",
        "group",
        placement="dense",
        module_initializer="lowpass",
        **options,
    )
    _copy_weights(blur, group)
    x = images()
    np.testing.assert_allclose(predict(group, x), predict(blur, x), atol=1e-5)


@pytest.mark.parametrize("variant", ["group", "conv3d"])
def test_dense_resnet_layers(variant):
    model = small_model(
        "resnet18", variant, placement="dense", stem="imagenet", input_shape=(64, 64, 3)
    )
    types = {name: cls.__name__ for name, cls in layer_types(model).items()}
    for stage in (2, 3, 4):
        prefix = f"stage{stage}_block1"
        conv = model.get_layer(f"{prefix}_conv1")
        assert tuple(conv.strides) == (1, 1)
        down = model.get_layer(f"{prefix}_down")
        # The module only subsamples: as many channels out as in.
        assert type(down).__name__ == "ShiftInvariantDown"
        assert down.filters == conv.filters
        assert model.get_layer(f"{prefix}_relu1").output is down.input
        shortcut = model.get_layer(f"{prefix}_shortcut_down")
        assert type(shortcut).__name__ == "ShiftInvariantDown"
        assert tuple(model.get_layer(f"{prefix}_shortcut_conv").strides) == (1, 1)
    assert types["stem_pool"] == "MaxPooling2D"
    assert tuple(model.get_layer("stem_pool").strides) == (1, 1)
    assert types["stem_pool_down"] == "ShiftInvariantDown"
    assert types["stem_pool_down_bn"] == "BatchNormalization"


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("resnet18", {"variant": "group", "placement": "dense"}),
        ("resnet50", {"variant": "conv3d", "placement": "dense"}),
        ("vgg11", {"variant": "group", "placement": "dense", "batch_norm": False}),
        ("vgg13", {"variant": "conv3d", "module_initializer": "lowpass"}),
        (
            "resnet18",
            {"variant": "group", "placement": "dense", "module_initializer": "lowpass"},
        ),
    ],
)
@slow_on_other_backends
def test_dense_and_lowpass_models_train_and_round_trip(name, kwargs, tmp_path):
    check_model(small_model(name, **kwargs), images(), tmp_path)


def test_lowpass_shortcut_module_holds_two_taps():
    model = small_model("resnet18", "group", module_initializer="lowpass")
    shortcut = model.get_layer("stage2_block1_shortcut_down")
    assert shortcut.kernel_size == (1, 1)
    assert shortcut.kernel_initializer.filt_size == 2
    assert model.get_layer("stage2_block1_down").kernel_initializer.filt_size == 4


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"variant": "blur", "placement": "dense"}, "apply to the variants"),
        ({"variant": "aps", "module_initializer": "lowpass"}, "apply to the variants"),
        ({"variant": "group", "placement": "middle"}, "placement"),
        ({"variant": "group", "module_initializer": "zeros"}, "module_initializer"),
        (
            {"variant": "blur", "module_lowpass_penalty": 0.1},
            "module_lowpass_penalty.* apply to the variants 'group' and 'conv3d'.*"
            "variant='blur', module_lowpass_penalty=0.1",
        ),
        ({"variant": "group", "module_lowpass_penalty": -1}, "module_lowpass_penalty"),
        (
            {
                "variant": "baseline",
                "flavor": "torchvision",
                "module_lowpass_penalty": 1,
            },
            "module_lowpass_penalty",
        ),
        (
            {"variant": "group", "placement": "dense", "polyphase_order": "aps"},
            "polyphase_order='fixed'",
        ),
    ],
)
def test_bad_placement_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        small_model("resnet18", **kwargs)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("resnet18", {"variant": "group", "placement": "dense"}),
        ("vgg11", {"variant": "conv3d", "module_initializer": "lowpass"}),
    ],
)
@slow_on_other_backends
def test_lowpass_penalty_reaches_every_module(name, kwargs):
    model = small_model(name, module_lowpass_penalty=0.25, **kwargs)
    modules = [layer for layer in model.layers if isinstance(layer, ShiftInvariantDown)]
    assert modules and all(m.lowpass_penalty == 0.25 for m in modules)
    x = images(batch=2)
    model(x)
    assert model.losses == []
    model(x, training=True)
    expected = sorted(
        0.25 * float(keras.ops.convert_to_numpy(m.high_frequency_share()))
        for m in modules
    )
    losses = sorted(float(keras.ops.convert_to_numpy(v)) for v in model.losses)
    np.testing.assert_allclose(losses, expected, rtol=1e-6)
