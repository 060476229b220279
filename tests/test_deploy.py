"""Keras' own `model.export(format=...)` of every layer and zoo variant, run in
each format's runtime (TensorFlow, onnxruntime, the LiteRT interpreter, OpenVINO
with an f32 hint): the logits within 1e-4 of Keras' (relative to their largest)
at batch sizes 1 and 3, one model output only, and for the exactly invariant
variants the runtime's logits unchanged by circular shifts (to float rounding,
the same 1e-4). By default each zoo variant runs in one runtime and the layer
families once in each; `-m slow` runs every combination."""

import keras
import numpy as np
import pytest

from keras_shiftinv.app import deploy
from keras_shiftinv.layers import (
    BlurPool2D,
    CircularPadding2D,
    MaxBlurPool2D,
    OffsetSubsample,
    PolyphaseDown2D,
    ShiftInvariantDown,
)
from tests.layers.cases import LAYER_GROUPS
from tests.zoo.cases import ZOO_CASES, zoo_model

pytest.importorskip("tensorflow")
pytestmark = pytest.mark.tf_only

KERAS_FORMATS = {
    "saved_model": "tf_saved_model",
    "onnx": "onnx",
    "litert": "litert",
    "openvino": "openvino",
}
TOLERANCE = 1e-4


# Each variant once, the runtimes in turn; where an export failed before, the
# format it failed in.
ZOO_DEFAULT = {
    "baseline-zero": "saved_model",
    "blur": "onnx",
    "blur-circular": "openvino",
    "group-zero": "litert",
    "conv3d-circular": "onnx",
    "aps-circular": "openvino",
    "group-aps-circular": "litert",
    "torchvision-blur": "litert",
    "antialias": "saved_model",
}


def _layer_model(factories):
    """The layers side by side on one input, their outputs flattened into one
    vector."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 10, 4))
    outputs = [keras.layers.Flatten()(factory()(inputs)) for factory in factories]
    return keras.Model(inputs, keras.layers.Concatenate()(outputs))


# One of each family, the pad modes mixed: the default run.
LAYER_FAMILIES = [
    lambda: BlurPool2D(pad_mode="reflect"),
    lambda: MaxBlurPool2D(pad_mode="replicate"),
    lambda: OffsetSubsample(pad_mode="circular"),
    lambda: PolyphaseDown2D(filt_size=3, pad_mode="circular"),
    lambda: CircularPadding2D(2),
    lambda: ShiftInvariantDown(6, "group", polyphase_order="aps", pad_mode="circular"),
    lambda: ShiftInvariantDown(6, "conv3d", pad_mode="zero"),
]


def _runtime(model, format, directory):
    """Keras' export of `model` in `format`, loaded in its runtime: a function
    of a batch returning the model's single output."""
    for module in deploy.PACKAGES[format]:
        pytest.importorskip(module, reason=f"the {format} runtime is not installed")
    path = directory / ("model" + deploy.SUFFIXES.get(format, ""))
    model.export(str(path), format=KERAS_FORMATS[format], verbose=False)
    if format == "openvino":
        import openvino

        # Not the dangling ops of the graph too (they were 16 on an aps model).
        assert len(openvino.Core().read_model(str(path)).outputs) == 1
    run = deploy.load_runtime(path, format)

    def single_output(x):
        outputs = run(x)
        assert len(outputs) == 1, list(outputs)
        return np.asarray(next(iter(outputs.values())))

    return single_output


def _check(model, format, directory, exact):
    x = _images(model)
    # Also builds the model's call, which Keras' ONNX export needs.
    want = keras.ops.convert_to_numpy(model(x, training=False))
    run = _runtime(model, format, directory)
    scale = np.abs(want).max()
    assert scale > 0
    for batch in (3, 1):
        np.testing.assert_allclose(
            run(x[:batch]), want[:batch], rtol=0, atol=TOLERANCE * scale
        )
    if exact:
        size = x.shape[1]
        for dy, dx in [(1, 0), (3, 7), (size - 1, size // 2)]:
            shifted = run(np.roll(x, (dy, dx), axis=(1, 2)))
            np.testing.assert_allclose(
                shifted, want, rtol=0, atol=TOLERANCE * scale, err_msg=(dy, dx)
            )


def _images(model, batch=3):
    shape = tuple(model.inputs[0].shape[1:])
    return np.random.default_rng(1).standard_normal((batch, *shape)).astype("float32")


def _zoo_test(name, format, tmp_path):
    _check(zoo_model(name), format, tmp_path, ZOO_CASES[name][1])


@pytest.mark.parametrize("name, format", list(ZOO_DEFAULT.items()))
def test_zoo_export_runs_in_runtime(name, format, tmp_path):
    _zoo_test(name, format, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("format", list(KERAS_FORMATS))
@pytest.mark.parametrize("name", list(ZOO_CASES))
def test_zoo_export_runs_in_every_runtime(name, format, tmp_path):
    _zoo_test(name, format, tmp_path)


@pytest.mark.parametrize("format", list(KERAS_FORMATS))
def test_layer_families_export_to_every_runtime(format, tmp_path):
    _check(_layer_model(LAYER_FAMILIES), format, tmp_path, exact=False)


@pytest.mark.slow
@pytest.mark.parametrize("format", list(KERAS_FORMATS))
@pytest.mark.parametrize("group", list(LAYER_GROUPS))
def test_every_layer_exports_to_every_runtime(group, format, tmp_path):
    model = _layer_model(list(LAYER_GROUPS[group].values()))
    _check(model, format, tmp_path, exact=False)
