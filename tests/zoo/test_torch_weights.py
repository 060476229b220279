"""zoo.load_torch_weights and the torchvision flavor, without torch (the parity with
the PyTorch networks is in test_torch_parity)."""

import json
import struct

import keras
import numpy as np
import pytest

import zoo

SMALL = {"width_multiplier": 1 / 16, "num_classes": 5, "input_shape": (64, 64, 3)}


def _model(name="resnet18", variant="blur", filt_size=3, **kwargs):
    return zoo.create_model(
        name,
        variant=variant,
        filt_size=filt_size,
        flavor="torchvision",
        **SMALL,
        **kwargs,
    )


def _state_dict(model, seed=0):
    """A random checkpoint of `model` in PyTorch's layout (blur filters exact)."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, shape in zoo.torch_tensor_shapes(model).items():
        if name.endswith(".filt"):
            taps = np.array([1.0, 2.0, 1.0]) if shape[-1] == 3 else np.ones(shape[-1])
            if shape[-1] not in (2, 3):
                pytest.fail("the tests use filt_size 2 or 3")
            filt = np.outer(taps, taps) / taps.sum() ** 2
            state[name] = np.tile(filt, shape[:2] + (1, 1)).astype("float32")
        elif name.endswith("running_var"):
            state[name] = rng.uniform(0.5, 2.0, shape).astype("float32")
        else:
            state[name] = rng.standard_normal(shape).astype("float32")
        if name.endswith("bn1.weight"):
            state[name.replace("weight", "num_batches_tracked")] = np.array(7)
    return state


def _weights(model):
    return [np.array(w) for w in model.get_weights()]


def _write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, value in tensors.items():
        value = np.ascontiguousarray(value)
        dtype = {"float32": "F32", "int64": "I64"}[str(value.dtype)]
        header[name] = {
            "dtype": dtype,
            "shape": list(value.shape),
            "data_offsets": [offset, offset + value.nbytes],
        }
        offset += value.nbytes
        blobs.append(value.tobytes())
    encoded = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))


def test_weights_land_where_pytorch_has_them():
    model = _model("resnet18", variant="blur")
    state = _state_dict(model)
    assert zoo.load_torch_weights(model, state) is model
    np.testing.assert_array_equal(
        model.get_layer("stem_conv").kernel, state["conv1.weight"].transpose(2, 3, 1, 0)
    )
    # antialiased-cnns: the blur of a strided block is conv2.0, its conv conv2.1.
    np.testing.assert_array_equal(
        model.get_layer("stage2_block1_conv2").kernel,
        state["layer2.0.conv2.1.weight"].transpose(2, 3, 1, 0),
    )
    np.testing.assert_array_equal(
        model.get_layer("stage3_block1_shortcut_bn").moving_variance,
        state["layer3.0.downsample.2.running_var"],
    )
    np.testing.assert_array_equal(
        model.get_layer("logits").kernel, state["fc.weight"].T
    )


def test_resnet50_and_vgg_names():
    names = zoo.torch_tensor_shapes(_model("resnet50", variant="baseline"))
    assert "layer1.0.downsample.0.weight" in names
    assert names["layer2.0.conv2.weight"] == (8, 8, 3, 3)  # the stride is on the 3x3
    names = zoo.torch_tensor_shapes(_model("vgg11", variant="blur", batch_norm=True))
    # conv, BN, ReLU, MaxPool, BlurPool, conv ...
    assert {"features.0.bias", "features.1.running_var", "features.4.filt"} <= set(
        names
    )
    assert "features.5.weight" in names and "classifier.6.weight" in names


def test_vgg_first_fc_reads_pytorch_flattening():
    model = _model("vgg11", variant="baseline", batch_norm=False)
    state = _state_dict(model)
    zoo.load_torch_weights(model, state)
    # 64x64 inputs: a 2x2x32 map before the flatten.
    features = keras.Model(model.input, model.get_layer("flatten").input)
    fc1 = keras.Model(model.input, model.get_layer("fc1").output)
    x = np.random.default_rng(1).standard_normal((2, 64, 64, 3)).astype("float32")
    nchw = keras.ops.convert_to_numpy(features(x)).transpose(0, 3, 1, 2)
    expected = np.maximum(
        nchw.reshape(2, -1) @ state["classifier.0.weight"].T
        + state["classifier.0.bias"],
        0,
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(fc1(x)), expected, rtol=1e-4, atol=1e-4
    )


def test_file_formats(tmp_path):
    model = _model()
    state = _state_dict(model)
    zoo.load_torch_weights(model, state)
    expected = _weights(model)
    np.savez(tmp_path / "w.npz", **state)
    _write_safetensors(tmp_path / "w.safetensors", state)
    sources = [tmp_path / "w.npz", str(tmp_path / "w.safetensors")]
    try:  # the reference writer, when installed
        from safetensors.numpy import save_file

        save_file(state, str(tmp_path / "ref.safetensors"))
        sources.append(tmp_path / "ref.safetensors")
    except ImportError:
        pass
    wrapped = {"state_dict": {f"module.{k}": v for k, v in state.items()}}
    sources.append(wrapped)  # a training checkpoint of nn.DataParallel
    for source in sources:
        other = _model()
        zoo.load_torch_weights(other, source)
        for a, b in zip(_weights(other), expected, strict=True):
            np.testing.assert_array_equal(a, b)


def test_pth_files(tmp_path):
    torch = pytest.importorskip("torch")
    model = _model()
    state = _state_dict(model)
    torch.save(
        {k: torch.from_numpy(np.asarray(v)) for k, v in state.items()},
        tmp_path / "w.pth",
    )
    zoo.load_torch_weights(model, tmp_path / "w.pth")
    np.testing.assert_array_equal(model.get_layer("logits").bias, state["fc.bias"])


def _refused(model, state, match):
    before = _weights(model)
    with pytest.raises(ValueError, match=match):
        zoo.load_torch_weights(model, state)
    for a, b in zip(_weights(model), before, strict=True):
        np.testing.assert_array_equal(a, b)  # nothing was loaded


def test_mismatching_checkpoints_are_refused_whole():
    model = _model()
    state = _state_dict(model)
    missing = {k: v for k, v in state.items() if k != "layer3.1.bn2.running_mean"}
    _refused(model, missing, "no tensor 'layer3.1.bn2.running_mean'")
    _refused(model, state | {"layer5.0.conv1.weight": np.zeros(3)}, "'layer5.0")
    misshaped = state | {"layer4.1.conv1.weight": np.zeros((32, 32, 1, 1), "float32")}
    _refused(model, misshaped, r"'layer4.1.conv1.weight' has shape \(32, 32, 1, 1\)")
    other_blur = _state_dict(_model(filt_size=2))
    _refused(model, other_blur, "filter_size=2; build the model with filt_size=2")
    baseline = _state_dict(_model(variant="baseline"))
    _refused(model, baseline, "no tensor")


@pytest.mark.parametrize(
    "model, source, match",
    [
        (None, {}, "takes a keras.Model"),
        ("keras", {}, "not built with flavor='torchvision'"),
        ("mlp", {}, "not a zoo ResNet or VGG"),
        ("ok", 3, "`source` must be a path"),
        ("ok", "/no/such/file.pth", "No checkpoint file"),
        ("ok", "txt", "Unknown checkpoint format"),
        ("ok", "bad.safetensors", "not a readable safetensors file"),
        ("ok", "huge.safetensors", "header size 9223372036854775808 is larger"),
        ("ok", "past.safetensors", "lies at bytes 0..400 of a 8-byte"),
        ("ok", {"conv1.weight": object()}, "not an array of numbers"),
    ],
)
def test_bad_input(model, source, match, tmp_path):
    models = {
        "keras": lambda: zoo.resnet18(variant="blur", **SMALL),
        "mlp": lambda: keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]),
        "ok": _model,
    }
    model = models[model]() if model else model
    if source == "txt":
        source = tmp_path / "w.txt"
        source.write_text("")
    elif source == "bad.safetensors":
        source = tmp_path / source
        source.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00nojsn")
    elif source == "huge.safetensors":
        # A readable header, of a size that takes the rest of any file.
        source = tmp_path / source
        source.write_bytes(struct.pack("<Q", 2**63) + b"{}")
    elif source == "past.safetensors":
        source = tmp_path / source
        header = {"fc.bias": {"dtype": "F32", "shape": [100], "data_offsets": [0, 400]}}
        encoded = json.dumps(header).encode()
        source.write_bytes(struct.pack("<Q", len(encoded)) + encoded + bytes(8))
    with pytest.raises(ValueError, match=match):
        zoo.load_torch_weights(model, source)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"variant": "group"}, "flavor='torchvision' builds the variants"),
        ({"pad_mode": "circular"}, "`pad_mode` must stay 'zero'"),
        ({"stem": "cifar"}, "`stem` must stay 'imagenet'"),
        ({"flavor": "timm"}, "`flavor` must be one of"),
    ],
)
def test_torchvision_flavor_options(kwargs, match):
    kwargs = {"variant": "blur", "flavor": "torchvision", **kwargs}
    with pytest.raises(ValueError, match=match):
        zoo.resnet18(**SMALL, **kwargs)


def test_torchvision_flavor_vgg_head():
    with pytest.raises(ValueError, match="torchvision's head"):
        zoo.vgg11(flavor="torchvision", head="gap", **SMALL)
    model = _model("vgg11", variant="baseline", batch_norm=True)
    assert model.name == "vgg11_baseline_torchvision"
    assert model.get_layer("block1_conv1").use_bias  # torchvision's BN VGG keeps it
    assert model.get_layer("fc2").units == 256
    keras_flavor = zoo.vgg11(variant="baseline", **SMALL)
    assert "fc1" not in [layer.name for layer in keras_flavor.layers]


class _Pickled:
    """Any class: torch.load(weights_only=True) does not load its objects."""


def test_pth_with_python_objects_is_refused_without_unsafe_advice(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({"fc.bias": torch.zeros(5), "extra": _Pickled()}, tmp_path / "w.pth")
    with pytest.raises(ValueError, match="holds Python objects besides") as error:
        zoo.load_torch_weights(_model(), tmp_path / "w.pth")
    assert "weights_only=False" not in str(error.value)
    assert "_Pickled" in str(error.value) and "state_dict()" in str(error.value)
