"""The torchvision flavor is the PyTorch network: with the same weights, Keras'
logits equal torchvision's (written in plain torch.nn in `torch_reference`) and
antialiased-cnns', on random 224x224 images, in inference mode.

The default run covers each family, both variants and every filter size once at
the cheapest depth; `-m slow` runs every model, batch-norm option and filter size.
"""

import gc
import time

import keras
import numpy as np
import pytest

import keras_shiftinv
import zoo

torch = pytest.importorskip("torch")
antialiased_cnns = pytest.importorskip("antialiased_cnns")

from tests.zoo import torch_reference  # noqa: E402

RTOL = 1e-4
SIZE = 224
RESNETS = ("resnet18", "resnet34", "resnet50")
VGGS = ("vgg11", "vgg13", "vgg16")
FILTER_SIZES = (2, 3, 4, 5)
# (model, batch_norm) pairs: ResNets always have batch norm.
ARCHS = [(name, True) for name in RESNETS] + [
    (name, bn) for name in VGGS for bn in (False, True)
]
# The default run on TensorFlow: each family, variant and filter size once, on the
# smallest models (ResNet-18's baseline has the padded strided layers); on JAX
# and PyTorch, ResNet-18 only (CI runs the zoo tests on the three backends). The
# rest is `slow`.
DEFAULT_BASELINE = {("resnet18", True)}
DEFAULT_BLUR = {
    ("resnet18", True, 2),
    ("resnet18", True, 5),
    ("resnet50", True, 3),
    ("vgg11", True, 4),
}
if keras.backend.backend() != "tensorflow":
    DEFAULT_BASELINE = {case for case in DEFAULT_BASELINE if case[0] == "resnet18"}
    DEFAULT_BLUR = {case for case in DEFAULT_BLUR if case[0] == "resnet18"}


@pytest.fixture(autouse=True)
def _free_memory():
    # A VGG with its fc head is over 500 MB per copy: free each test's models.
    yield
    keras.backend.clear_session()
    gc.collect()


def _images(batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, SIZE, SIZE, 3)).astype("float32")


def _keras_model(name, variant, batch_norm, filt_size=4):
    kwargs = {"variant": variant, "flavor": "torchvision", "filt_size": filt_size}
    if name.startswith("vgg"):
        kwargs["batch_norm"] = batch_norm
    return zoo.create_model(name, classifier_activation=None, **kwargs)


def _torchvision(name, batch_norm):
    if name.startswith("vgg"):
        return torch_reference.VGG(name, batch_norm)
    return torch_reference.ResNet(name)


def _antialiased_cnns(name, batch_norm, filt_size):
    vgg_bn = name.startswith("vgg") and batch_norm
    builder = getattr(antialiased_cnns, name + ("_bn" if vgg_bn else ""))
    return builder(filter_size=filt_size)


def relative_error(got, expected):
    """max |got - expected| over max |expected|: logits near 0 make an element-wise
    ratio meaningless."""
    return float(np.max(np.abs(got - expected)) / np.max(np.abs(expected)))


def _check_parity(torch_model, keras_model):
    torch_reference.randomize(torch_model)
    start = time.perf_counter()
    zoo.load_torch_weights(keras_model, torch_model.state_dict())
    images = _images()
    expected = torch_reference.logits(torch_model, images)
    got = keras.ops.convert_to_numpy(keras_model(images, training=False))
    error = relative_error(got, expected)
    print(
        f"{keras_model.name}: max relative error {error:.2e} "
        f"(load and run {time.perf_counter() - start:.1f} s)"
    )
    assert error < RTOL, error
    # The tolerance resolves what the input changes: the two images' logits differ
    # by more than ten times it (deep random networks map random images to nearly
    # the same logits, so this is not a given).
    spread = np.abs(expected[0] - expected[1]).max()
    assert spread > 10 * RTOL * np.abs(expected).max()
    return got


def _marks(default):
    return () if default else (pytest.mark.slow,)


@pytest.mark.parametrize(
    "name, batch_norm",
    [
        pytest.param(n, bn, marks=_marks((n, bn) in DEFAULT_BASELINE), id=f"{n}-bn{bn}")
        for n, bn in ARCHS
    ],
)
def test_baseline_matches_torchvision(name, batch_norm):
    torch_model = _torchvision(name, batch_norm)
    _check_parity(torch_model, _keras_model(name, "baseline", batch_norm))


@pytest.mark.parametrize(
    "name, batch_norm, filt_size",
    [
        pytest.param(
            n,
            bn,
            k,
            marks=_marks((n, bn, k) in DEFAULT_BLUR),
            id=f"{n}-bn{bn}-lpf{k}",
        )
        for n, bn in ARCHS
        for k in FILTER_SIZES
    ],
)
def test_blur_matches_antialiased_cnns(name, batch_norm, filt_size):
    torch_model = _antialiased_cnns(name, batch_norm, filt_size)
    _check_parity(torch_model, _keras_model(name, "blur", batch_norm, filt_size))


@pytest.mark.parametrize(
    "name, batch_norm",
    [
        pytest.param("vgg11", True, id="vgg11-bnTrue", marks=pytest.mark.slow),
        pytest.param("resnet18", True, id="resnet18-bnTrue"),
        pytest.param("resnet50", True, id="resnet50-bnTrue", marks=pytest.mark.slow),
    ],
)
def test_antialias_of_the_baseline_is_the_blur_flavor(name, batch_norm):
    # Zhang's recipe applied to torchvision's network by `antialias` gives
    # antialiased-cnns' network: the same weights compute the same function.
    baseline = _keras_model(name, "baseline", batch_norm)
    torch_model = torch_reference.randomize(_torchvision(name, batch_norm))
    zoo.load_torch_weights(baseline, torch_model.state_dict())
    converted = keras_shiftinv.antialias(
        baseline,
        filt_size=3,
        pad_mode="reflect",
        exclude=["stem_conv"] if name.startswith("resnet") else (),
        max_pool_size=2,
    )
    blur = _keras_model(name, "blur", batch_norm, filt_size=3)
    for layer in baseline.layers:
        if layer.weights:
            blur.get_layer(layer.name).set_weights(layer.get_weights())
    images = _images()
    expected = keras.ops.convert_to_numpy(blur(images, training=False))
    got = keras.ops.convert_to_numpy(converted(images, training=False))
    assert relative_error(got, expected) < RTOL
