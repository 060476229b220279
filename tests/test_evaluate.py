"""The evaluate command: report fields, plots, per-layer equivariance, bad inputs."""

import gzip
import json

import keras
import numpy as np
import pytest

from keras_shiftinv import ops as si_ops
from tests.shift_reference import grid, predictions

pytestmark = pytest.mark.tf_only

SIZE = 16
MAX_SHIFT = 4
IMAGES = 24
DETAIL = 8
SAMPLES = 2
CLASSES = 10


@keras.saving.register_keras_serializable(package="tests")
class WrapPad(keras.layers.Layer):
    """Circular padding by one pixel: a 3x3 VALID conv after it is exactly
    equivariant to circular shifts."""

    def call(self, x):
        return si_ops.pad2d(x, ((1, 1), (1, 1)), "circular")

    def compute_output_shape(self, shape):
        return (shape[0], shape[1] + 2, shape[2] + 2, shape[3])


def equivariant_model():
    """Circular-padded stride-1 convolutions, global pooling: every layer commutes
    with circular shifts, so the output is invariant."""
    inputs = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    for filters in (4, 6):
        x = WrapPad()(x)
        x = keras.layers.Conv2D(filters, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(CLASSES, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="equivariant")


def strided_model():
    """Pointwise convolutions and 2x2 pooling at stride 2, outputting logits: exactly
    equivariant to shifts that are multiples of each layer's stride, not to others."""
    inputs = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 1, activation="relu")(x)
    x = keras.layers.AveragePooling2D(2, name="average_pooling2d")(x)
    x = keras.layers.Conv2D(6, 1, activation="relu")(x)
    x = keras.layers.MaxPooling2D(2, name="max_pooling2d")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(CLASSES)(x)
    return keras.Model(inputs, outputs, name="strided")


def write_idx(folder, images, labels):
    """Test split of an IDX data set (as MNIST is distributed) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in (
        ("t10k-images-idx3-ubyte.gz", images),
        ("t10k-labels-idx1-ubyte.gz", labels),
    ):
        header = bytes([0, 0, 8, array.ndim]) + b"".join(
            int(d).to_bytes(4, "big") for d in array.shape
        )
        with gzip.open(folder / name, "wb") as f:
            f.write(header + array.astype(np.uint8).tobytes())


def random_images(count, size, seed=0):
    """Smooth random blobs: structure at several scales, like small photographs."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((count, size // 4, size // 4))
    images = np.kron(coarse, np.ones((4, 4))) + 0.5 * rng.random((count, size, size))
    return (255 * images / images.max()).astype(np.uint8)


def run_cli(argv, capsys):
    from keras_shiftinv.app.cli import main

    status = main(argv)
    return status, capsys.readouterr()


def test_report_on_two_models(tmp_path):
    """One evaluation (the expensive part) checked from several sides."""
    from keras_shiftinv.app.cli import main

    root = tmp_path
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images, labels = random_images(IMAGES, SIZE), rng.integers(0, 10, IMAGES)
    write_idx(root / "data", images, labels)
    models = (equivariant_model(), strided_model())
    for model in models:
        model.save(root / f"{model.name}.keras")
    argv = ["evaluate", "--dataset", "mnist", "--data-dir", str(root / "data")]
    argv += ["--model", str(root / "equivariant.keras")]
    argv += ["--model", str(root / "strided.keras")]
    argv += ["--max-shift", str(MAX_SHIFT), "--samples", str(SAMPLES)]
    argv += ["--images", str(IMAGES), "--detail-images", str(DETAIL)]
    argv += ["--batch-size", "16", "--out", str(root / "report"), "--verbose", "0"]
    assert main(argv) == 0
    report = json.loads((root / "report" / "report.json").read_text())
    check_fields(report, (root / "report" / "report.md").read_text())
    for entry, model in zip(report["models"], models, strict=True):
        check_numbers(entry, model, images[..., None].astype("float32"), labels)
    check_plots(root / "report")
    check_equivariant(report["models"][0])
    check_strided(report["models"][1])


def check_fields(report, markdown):
    assert report["shift"] == "circular" and report["max_shift"] == MAX_SHIFT
    assert (report["images"], report["detail_images"]) == (IMAGES, DETAIL)
    assert [m["name"] for m in report["models"]] == ["equivariant", "strided"]
    for entry in report["models"]:
        stability = entry["stability"]
        assert stability["shifts"] == list(range(MAX_SHIFT + 1))
        assert entry["parameters"] > 0 and entry["seconds"] >= 0
        for layer in entry["equivariance"]:
            grid = np.array(layer["distance"])
            assert grid.shape == (MAX_SHIFT + 1, MAX_SHIFT + 1)
            assert ((grid >= 0) & (grid <= 2)).all()
            assert grid[0, 0] == pytest.approx(0, abs=1e-6)
            assert layer["mean"] == pytest.approx(grid.mean())
    assert "| equivariant |" in markdown and "| strided |" in markdown
    assert "| strided | average_pooling2d | average pool | 0.330 | - | - |" in markdown


def _probabilities(model, images, shifts):
    """`[N, S, classes]`: the model's probabilities on the shifted images; logits get
    a softmax, as evaluate adds one."""
    out = predictions(model, images, shifts)
    if model.layers[-1].activation is keras.activations.linear:
        out = np.exp(out - out.max(-1, keepdims=True))
        out /= out.sum(-1, keepdims=True)
    return out


def _random_shifts(count):
    """The shifts the report's random numbers use: `count` per image, drawn batch by
    batch (--batch-size 16) from the generator of --seed 0."""
    rng = np.random.default_rng(0)
    return np.concatenate(
        [rng.integers(0, MAX_SHIFT, (n, count, 2)) for n in (16, IMAGES - 16)]
    )


def check_numbers(entry, model, images, labels):
    """The report's numbers, recomputed from the model's predictions on images
    shifted in NumPy."""
    probs = _probabilities(model, images, np.zeros((IMAGES, 1, 2), int))
    assert entry["accuracy"] == np.mean(probs[:, 0].argmax(-1) == labels)
    probs = _probabilities(model, images, _random_shifts(SAMPLES))
    assert entry["shifted_accuracy"] == np.mean(probs.argmax(-1) == labels[:, None])
    classes = _probabilities(model, images, _random_shifts(2 * SAMPLES))
    classes = classes.argmax(-1)
    assert entry["consistency"] == np.mean(classes[:, 0::2] == classes[:, 1::2])

    detail, n = images[:DETAIL], np.arange(DETAIL)
    every_shift = grid(DETAIL, MAX_SHIFT)
    label_probs = _probabilities(model, detail, every_shift)[n, :, labels[n]]
    variation = label_probs.var(axis=1).mean()
    assert entry["variation"] == pytest.approx(variation, rel=1e-4, abs=1e-9)
    diagonal = np.repeat(np.arange(MAX_SHIFT + 1)[None, :, None], 2, axis=2)
    diagonal = np.broadcast_to(diagonal, (DETAIL, MAX_SHIFT + 1, 2))
    curves = _probabilities(model, detail, diagonal)[n, :, labels[n]]
    np.testing.assert_allclose(entry["stability"]["images"], curves, atol=1e-6)
    np.testing.assert_allclose(entry["stability"]["mean"], curves.mean(0), atol=1e-6)


def check_plots(report_dir):
    names = ["stability", "equivariance_layers", "consistency_accuracy"]
    names += ["downsampling"]
    names += ["equivariance_equivariant", "equivariance_strided"]
    for name in names:
        data = (report_dir / f"{name}.png").read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000, name


def check_equivariant(entry):
    layers = entry["equivariance"]
    assert [layer["stride"] for layer in layers[:2]] == [[1, 1], [1, 1]]
    for layer in layers:
        np.testing.assert_allclose(layer["distance"], 0, atol=1e-5, err_msg=layer)
    # An invariant output: the same class and probability under every shift.
    assert entry["consistency"] == 1
    assert entry["variation"] == pytest.approx(0, abs=1e-10)
    curves = np.array(entry["stability"]["images"])
    np.testing.assert_allclose(
        curves, curves[:, :1].repeat(MAX_SHIFT + 1, 1), atol=1e-5
    )


def check_strided(entry):
    """Exactly equivariant at shifts that are multiples of a layer's stride only."""
    layers = {layer["name"]: layer for layer in entry["equivariance"]}
    pool = layers["average_pooling2d"]
    assert pool["stride"] == [2, 2] and layers["max_pooling2d"]["stride"] == [4, 4]
    for layer in (pool, layers["max_pooling2d"]):
        stride = layer["stride"][0]
        grid = np.array(layer["distance"])
        np.testing.assert_allclose(grid[::stride, ::stride], 0, atol=1e-5)
        assert grid[1, 1] > 1e-3 and layer["mean"] > 1e-3
        assert layer["mean_divisible"] == pytest.approx(0, abs=1e-5)
    # Logits get a softmax: the last measured layer is the added one.
    assert entry["equivariance"][-1]["shape"] == [CLASSES]
    down = {layer["layer"]: layer for layer in entry["downsampling"]}
    assert sorted(down) == ["average_pooling2d", "max_pooling2d"]
    # The 2x2 box: 1 - (1/2 + 1/pi)^2 of its energy is above pi/2 (analytically).
    box = down["average_pooling2d"]
    assert box["high_frequency_share"] == pytest.approx(1 - (0.5 + 1 / np.pi) ** 2)
    assert down["max_pooling2d"]["high_frequency_share"] is None
    # Not saved by the train command: nothing to compare with.
    assert box["weight_change"] is None


def test_nested_model_is_measured_inside():
    """A network behind a Rescaling layer (what the train command saves) is measured
    layer by layer, with the same numbers as the network on rescaled images."""
    from keras_shiftinv.app.evaluate import layer_equivariance

    network = strided_model()
    inputs = keras.Input((SIZE, SIZE, 1))
    wrapped = keras.Model(inputs, network(keras.layers.Rescaling(255.0)(inputs)))
    x = random_images(4, SIZE, seed=1)[..., None].astype("float32") / 255
    outer = layer_equivariance(wrapped, x, max_shift=2)
    inner = layer_equivariance(network, 255 * x, max_shift=2)
    assert [layer["name"] for layer in outer] == [layer["name"] for layer in inner]
    for a, b in zip(outer, inner, strict=True):
        np.testing.assert_allclose(a["distance"], b["distance"], atol=1e-5)


def test_cli_errors(tmp_path, capsys):
    strided_model().save(tmp_path / "strided.keras")
    model = str(tmp_path / "strided.keras")
    write_idx(tmp_path / "data", random_images(4, SIZE), np.zeros(4, np.int64))
    common = ["--dataset", "mnist", "--out", str(tmp_path / "out"), "--verbose", "0"]
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model")
    status, output = run_cli(
        ["evaluate", "--model", str(notes), "--data-dir", str(tmp_path / "data")]
        + common,
        capsys,
    )
    assert status == 2 and "is not a Keras model file" in output.err

    write_idx(tmp_path / "small", random_images(4, 12), np.zeros(4, np.int64))
    status, output = run_cli(
        ["evaluate", "--model", model, "--data-dir", str(tmp_path / "small")] + common,
        capsys,
    )
    assert status == 2 and "are 12x12" in output.err and "takes 16x16" in output.err

    status, output = run_cli(
        ["evaluate", "--model", model, "--data-dir", str(tmp_path / "none")] + common,
        capsys,
    )
    assert status == 2 and "IDX files not found" in output.err
    assert not (tmp_path / "out").exists()


def test_measure_loss_and_protocols():
    """`measure`, which train, evaluate and reproduce share: the loss is the mean
    cross-entropy of the probabilities (of the softmax added to logits), the
    consistency of the `shift` argument is that protocol's own number, and an
    unknown name is refused."""
    import tensorflow as tf

    from keras_shiftinv.app import evaluate

    keras.utils.set_random_seed(1)
    model = strided_model()
    images = random_images(IMAGES, SIZE)[..., None].astype("float32")
    labels = np.arange(IMAGES) % CLASSES
    data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(16)
    names = ("loss", "consistency", "consistency_crop", "consistency_circular")
    crop = evaluate.measure(model, data, names=names, shift="crop", max_shift=3)
    assert list(crop) == list(names)
    probs = _probabilities(model, images, np.zeros((IMAGES, 1, 2), int))[:, 0]
    loss = -np.mean(np.log(np.clip(probs[np.arange(IMAGES), labels], 1e-7, 1)))
    assert crop["loss"] == pytest.approx(loss, rel=1e-5)
    assert crop["consistency"] == crop["consistency_crop"]
    circular = evaluate.measure(model, data, names=("consistency",), max_shift=3)
    assert circular["consistency"] == crop["consistency_circular"]
    with pytest.raises(ValueError, match="names.*'accuracies'"):
        evaluate.measure(model, data, names=("accuracies",))


# A run's classes and the grey level of their images: the model of
# `brightness_run` tells them apart by mean brightness alone, so it is right on
# every image, shifted or not.
BRIGHTNESS = {"a_dark": 25, "b_mid": 128, "c_bright": 230}


def brightness_run(folder, size=8):
    """A run folder as `train` leaves it (best.keras, config.json with the class
    names) whose model classifies images by their mean brightness m in [0, 1]:
    logit_k = 2 c_k m - c_k^2 = -(m - c_k)^2 + m^2, nearest centre c_k wins."""
    centres = np.array([v / 255 for v in BRIGHTNESS.values()])
    inputs = keras.Input((size, size, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(len(centres), activation="softmax")
    outputs = dense(x)
    dense.set_weights([2 * centres[None].astype("float32"), -(centres**2)])
    model = keras.Model(inputs, outputs, name="brightness")
    folder.mkdir(parents=True)
    model.save(folder / "best.keras")
    config = {
        "class_names": list(BRIGHTNESS),
        "input_fit": {"image_shape": [size, size, 1]},
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder / "best.keras"


def brightness_folder(root, classes, size=8, per_class=3, rgb=()):
    """`root/test/<class>/*.png` with the grey level of each class (+ noise); the
    classes in `rgb` as RGB files (the same grey in each channel)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in classes:
        (root / "test" / name).mkdir(parents=True)
        for i in range(per_class):
            level = BRIGHTNESS.get(name, 128)
            image = (level + rng.integers(-10, 11, (size, size))).astype(np.uint8)
            if name in rgb:
                image = np.repeat(image[..., None], 3, axis=-1)
            Image.fromarray(image).save(root / "test" / name / f"{i}.png")
    return root


def evaluate_folder(model_path, data_dir, out):
    from keras_shiftinv.app.evaluate import evaluate

    return evaluate(
        [model_path],
        dataset="folder",
        data_dir=str(data_dir),
        split="test",
        out_dir=str(out),
        max_shift=1,
        images=16,
        detail_images=2,
        verbose=0,
    )["models"][0]


def test_folder_classes_are_matched_by_name(tmp_path):
    """Evaluated against a run, a folder's labels are the run's classes: the same
    classes score as in training, a subset of them is mapped by name (labels by
    sorted folder index would put c_bright at b_mid's index: accuracy 0.5), and a
    class the model does not know is refused, named. Colour files in a gray
    model's folder are read as gray."""
    model_path = brightness_run(tmp_path / "run")
    whole = brightness_folder(tmp_path / "whole", BRIGHTNESS)
    assert evaluate_folder(model_path, whole, tmp_path / "r1")["accuracy"] == 1.0
    # Some RGB files among gray ones: read with the model's one channel.
    subset = brightness_folder(
        tmp_path / "subset", ["a_dark", "c_bright"], rgb=["c_bright"]
    )
    entry = evaluate_folder(model_path, subset, tmp_path / "r2")
    assert entry["accuracy"] == 1.0 and entry["shifted_accuracy"] == 1.0
    other = brightness_folder(tmp_path / "other", ["a_dark", "d_grey"])
    with pytest.raises(ValueError, match="'d_grey' unknown to it") as error:
        evaluate_folder(model_path, other, tmp_path / "r3")
    assert "'a_dark', 'b_mid', 'c_bright'" in str(error.value)
    assert not (tmp_path / "r3").exists()
