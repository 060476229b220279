import dataclasses
import functools
import inspect
import re

import keras
import pytest

import keras_shiftinv
import zoo


def _trainable_params(model):
    # PyTorch's and the papers' counts: batch-norm moving statistics are not
    # parameters.
    return sum(int(keras.ops.size(w)) for w in model.trainable_weights)


def test_list_models_and_variants():
    assert zoo.list_models() == [
        "resnet18",
        "resnet34",
        "resnet50",
        "vgg11",
        "vgg13",
        "vgg16",
    ]
    assert zoo.VARIANTS == ("baseline", "blur", "group", "conv3d", "aps")


def test_create_model_calls_the_builder():
    kwargs = {"variant": "blur", "num_classes": 5, "input_shape": (32, 32, 3)}
    a = zoo.create_model("vgg11", width_multiplier=1 / 16, **kwargs)
    b = zoo.vgg11(width_multiplier=1 / 16, **kwargs)
    assert a.get_config() == b.get_config()
    assert a.name == "vgg11_blur"


@pytest.mark.parametrize(
    "name, params",
    [("resnet18", 11_689_512), ("resnet34", 21_797_672), ("resnet50", 25_557_032)],
)
def test_resnet_parameter_counts(name, params):
    assert _trainable_params(zoo.create_model(name)) == params


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, params",
    [("vgg11", 132_863_336), ("vgg13", 133_047_848), ("vgg16", 138_357_544)],
)
def test_vgg_parameter_counts(name, params):
    model = zoo.create_model(name, batch_norm=False, head="fc")
    assert _trainable_params(model) == params
    # With batch normalization the convs lose their bias and gain a scale and an
    # offset: one more parameter per conv channel.
    conv_channels = sum(c for c in zoo.vgg.VGGS[name] if c != "M")
    model = zoo.create_model(name, batch_norm=True, head="fc")
    assert _trainable_params(model) == params + conv_channels


def test_vgg16_gap_head_parameter_count():
    # The convs of configuration D (14,714,688 with biases), 2 batch-norm
    # parameters per conv channel instead of the biases, and a 512 -> 1000 Dense.
    convs = 14_714_688 + 4224
    assert _trainable_params(zoo.vgg16()) == convs + 512 * 1000 + 1000


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("resnet101", {}, "Available models: resnet18, resnet34, resnet50, vgg11"),
        ("vgg11", {"stem": "cifar"}, "Valid options: variant, num_classes"),
        ("resnet18", {"head": "fc"}, "does not take the option(s) head"),
        (
            "resnet18",
            {"variant": "lpf"},
            "'baseline', 'blur', 'group', 'conv3d', 'aps'",
        ),
        (
            "vgg13",
            {"pad_mode": "reflect"},
            "`pad_mode` must be one of 'zero', 'circular'",
        ),
        ("resnet18", {"stem": "tiny"}, "`stem` must be one of 'imagenet', 'cifar'"),
        ("vgg16", {"head": "none"}, "`head` must be one of 'gap', 'fc'"),
        ("resnet18", {"polyphase_order": "random"}, "one of 'fixed', 'aps'"),
        ("resnet18", {"polyphase_order": "aps"}, "applies to the variants 'group'"),
        ("resnet18", {"antialias_stem": True}, "variant other than 'baseline'"),
        (
            "resnet18",
            {"variant": "blur", "stem": "cifar", "antialias_stem": True},
            "stem='imagenet'",
        ),
        ("resnet18", {"antialias_stem": "yes"}, "True or False"),
        ("vgg11", {"batch_norm": 1}, "True or False"),
        ("resnet50", {"width_multiplier": 0}, "`width_multiplier` must be a number"),
        ("vgg11", {"num_classes": 0}, "`num_classes` must be an integer >= 1"),
        ("resnet18", {"filt_size": 0}, "`filt_size` must be an integer in [1, 15]"),
        ("resnet18", {"input_shape": (32, 32)}, "(height, width, channels)"),
        (
            "resnet34",
            {"variant": "aps", "pad_mode": "circular", "input_shape": (200, 200, 3)},
            "multiples of the model's total stride 32",
        ),
        (
            "resnet18",
            {
                "variant": "group",
                "pad_mode": "circular",
                "stem": "cifar",
                "input_shape": (28, 28, 1),
            },
            "multiples of the model's total stride 8",
        ),
        ("vgg11", {"head": "fc", "input_shape": (None, None, 3)}, "use head='gap'"),
    ],
)
def test_errors_list_the_valid_choices(name, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        zoo.create_model(name, **kwargs)


@pytest.mark.parametrize("name", zoo.list_models())
def test_model_spec_describes_the_builder(name):
    spec = zoo.model_spec(name)
    assert isinstance(spec, zoo.ModelSpec)
    assert spec.name == name and spec.builder is getattr(zoo, name)
    # The registry lists the builder's options (not the deprecated `padding`).
    parameters = list(inspect.signature(spec.builder).parameters)
    assert list(spec.options) == [p for p in parameters if p != "padding"]
    assert spec.has_stem == ("stem" in spec.options)
    assert (spec.cifar_total_stride is None) == (not spec.has_stem)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.total_stride = 2


def _stems():
    for name in zoo.list_models():
        yield name, "imagenet"
        if zoo.model_spec(name).has_stem:
            yield name, "cifar"


@pytest.mark.parametrize("name, stem", _stems())
def test_total_stride_is_that_of_the_built_model(name, stem):
    spec = zoo.model_spec(name)
    options = {"stem": stem} if spec.has_stem else {}
    size = 64
    model = zoo.create_model(
        name,
        input_shape=(size, size, 3),
        include_top=False,
        width_multiplier=1 / 16,
        **options,
    )
    height, width = model.output_shape[1:3]
    assert height == width
    stride = spec.cifar_total_stride if stem == "cifar" else spec.total_stride
    assert size / height == stride


def test_model_spec_of_an_unknown_model():
    with pytest.raises(ValueError, match="Available models: resnet18, resnet34"):
        zoo.model_spec("resnet101")


def _structure(model):
    return model.get_config(), [tuple(w.shape) for w in model.weights]


@pytest.mark.parametrize("name", ["resnet18", "vgg11"])
def test_padding_is_a_deprecated_name_of_pad_mode(name):
    kwargs = {"variant": "aps", "width_multiplier": 1 / 16, "input_shape": (32, 32, 3)}
    if zoo.model_spec(name).has_stem:
        kwargs["stem"] = "cifar"
    new = zoo.create_model(name, pad_mode="circular", **kwargs)
    for build in (getattr(zoo, name), functools.partial(zoo.create_model, name)):
        with pytest.warns(DeprecationWarning, match="use `pad_mode`") as record:
            old = build(padding="circular", **kwargs)
        # The warning points at the caller, here.
        assert [w.filename for w in record] == [__file__]
        assert _structure(old) == _structure(new)
        assert any(
            isinstance(layer, keras_shiftinv.CircularPadding2D) for layer in old.layers
        )


@pytest.mark.parametrize("build", [zoo.resnet34, zoo.vgg13, zoo.create_model])
def test_padding_and_pad_mode_together_is_an_error(build):
    args = ("vgg13",) if build is zoo.create_model else ()
    with pytest.raises(ValueError, match="Received: padding='zero', pad_mode='zero'"):
        build(*args, padding="zero", pad_mode="zero")
