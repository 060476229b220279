"""The predict, models and --version commands, and a light --help."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from keras_shiftinv.app import cli
from tests.tiny_classifier import CLASSES, SHAPE, images, tiny_model
from tests.training_helpers import run_python, subprocess_env

pytestmark = pytest.mark.tf_only

NAMES = ["circle", "square", "star"]


def _parse(line):
    """`PATH: class K (NAME) probability P` -> (path, K, NAME, P)."""
    path, rest = line.rsplit(": class ", 1)
    words = rest.split()
    name = words[1].strip("()") if len(words) == 4 else None
    return path, int(words[0]), name, float(words[-1])


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    model = tiny_model()
    model.save(folder / "best.keras")
    (folder / "config.json").write_text(json.dumps({"class_names": NAMES}))
    pixels = images(4, 7)
    paths = []
    for i, image in enumerate(pixels):
        paths.append(str(folder / f"{i}.png"))
        Image.fromarray(image).save(paths[-1])
    return model, folder, pixels, paths


def test_predict_prints_class_and_probability(run_folder, capsys):
    model, folder, pixels, paths = run_folder
    assert cli.main(["predict", "--model", str(folder / "best.keras"), *paths]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    expected = model.predict(pixels.astype("float32"), verbose=0)
    assert len(set(expected.argmax(-1))) > 1  # otherwise the classes prove little
    for line, path, row in zip(lines, paths, expected, strict=True):
        got_path, index, name, probability = _parse(line)
        assert (got_path, index, name) == (path, row.argmax(), NAMES[row.argmax()])
        assert probability == pytest.approx(row.max(), abs=1e-4)


def test_predict_reads_a_saved_model_export(run_folder, capsys):
    from keras_shiftinv.app.export import export_for_serving

    model, folder, pixels, paths = run_folder
    base = folder / "models"
    export_for_serving(model, base, version=1)
    export_for_serving(model, base, version=2)
    # The base folder (its highest version) and a version folder.
    for target in (base, base / "1"):
        assert cli.main(["predict", "--model", str(target), *paths]) == 0
        lines = capsys.readouterr().out.strip().splitlines()
        expected = model.predict(pixels.astype("float32"), verbose=0)
        for line, row in zip(lines, expected, strict=True):
            _, index, name, probability = _parse(line)
            assert (index, name) == (row.argmax(), None)
            assert probability == pytest.approx(row.max(), abs=1e-4)


def test_predict_fits_other_sizes_and_channels(run_folder, tmp_path, capsys):
    from keras_shiftinv.app import predict

    model, folder, pixels, _ = run_folder
    colour = np.array([200, 30, 90], np.uint8)
    Image.fromarray(np.tile(colour, (24, 20, 1))).save(tmp_path / "large.png")
    Image.fromarray(pixels[1][..., 0]).save(tmp_path / "gray.png")
    mnist = np.random.default_rng(0).integers(1, 256, (28, 28), dtype=np.uint8)
    Image.fromarray(mnist).save(tmp_path / "mnist.png")
    # Resized to the model's size: a plain colour stays that colour.
    fitted = predict._fitted(str(tmp_path / "large.png"), SHAPE)
    assert fitted.shape == SHAPE and fitted.dtype == np.uint8
    np.testing.assert_array_equal(fitted, np.tile(colour, (*SHAPE[:2], 1)))
    # Grayscale into an RGB model: the gray level in every channel.
    gray = predict._fitted(str(tmp_path / "gray.png"), SHAPE)
    np.testing.assert_array_equal(gray, np.repeat(pixels[1][..., :1], 3, axis=-1))
    # 28x28 into a 32x32 model: zero-padded by 2, as the train command does.
    padded = predict._fitted(str(tmp_path / "mnist.png"), (32, 32, 1))
    np.testing.assert_array_equal(padded, np.pad(mnist, 2)[..., None])
    model_path = str(folder / "best.keras")
    results = predict.predict(model_path, [str(tmp_path / "large.png")])
    assert results[0][1] < CLASSES


def test_predict_bad_input_is_one_error_line(run_folder, tmp_path, capsys):
    _, folder, _, paths = run_folder
    (tmp_path / "notes.png").write_text("not an image")
    model = str(folder / "best.keras")
    for argv, message in [
        (["--model", model, str(tmp_path / "missing.png")], "No image file"),
        (["--model", model, str(tmp_path / "notes.png")], "Cannot read the image"),
        (["--model", str(tmp_path), *paths], "without a SavedModel"),
        (["--model", str(tmp_path / "none.keras"), *paths], "No model file"),
    ]:
        assert cli.main(["predict", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_models_lists_every_model_and_variant(capsys):
    import zoo

    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    for name in (*zoo.list_models(), *zoo.VARIANTS):
        assert name in out


def _run(*args):
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "keras_shiftinv", *args],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["models", "--help"]])
def test_help_and_version_import_neither_keras_nor_tensorflow(args):
    result = _run(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "keras_shiftinv" in imported
    assert not imported & {"keras", "tensorflow", "jax"}
    if args == ["--version"]:
        assert result.stdout.strip() == f"keras-shiftinv {keras_version()}"


def keras_version():
    import keras_shiftinv

    return keras_shiftinv.__version__


def test_importing_the_package_still_registers_its_layers():
    # A program that imports Keras and the package can load models with its
    # layers.
    code = (
        "import keras, keras_shiftinv; "
        "print(keras.saving.get_registered_object('keras_shiftinv>BlurPool2D'))"
    )
    result = run_python(code)
    assert "BlurPool2D" in result.stdout, result.stderr[-2000:]
    assert keras.saving.get_registered_object("keras_shiftinv>BlurPool2D")


def test_exported_model_resizes_and_names_classes_as_the_keras_file(
    run_folder, tmp_path, capsys
):
    """A SavedModel exported from a run folder whose images were fitted (8x8
    padded to 12x12: its signature takes two sizes) is given other sizes resized
    to the model's, as the .keras file is, and prints the run's class names."""
    model, folder, _, _ = run_folder
    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "best.keras")
    fit = {"image_shape": [8, 8, 3], "pad_to": [12, 12]}
    (run / "config.json").write_text(
        json.dumps({"class_names": NAMES, "input_fit": fit})
    )
    rng = np.random.default_rng(3)
    paths = []
    for i, size in enumerate([(20, 24), (8, 8), (12, 12), (30, 17)]):
        colour = rng.integers(1, 256, (1, 1, 3))
        pixels = (rng.random((*size, 3)) * colour).astype(np.uint8)
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(pixels).save(paths[-1])
    keras_lines = cli_lines(["--model", str(run / "best.keras"), *paths], capsys)
    assert (
        cli.main(
            ["export", "--model", str(run / "best.keras"), "--out", str(run / "s")]
        )
        == 0
    )
    capsys.readouterr()
    saved_lines = cli_lines(["--model", str(run / "s"), *paths], capsys)
    for keras_line, saved_line in zip(keras_lines, saved_lines, strict=True):
        path, index, name, probability = _parse(saved_line)
        assert (path, index, name) == _parse(keras_line)[:3]
        assert name == NAMES[index]
        assert probability == pytest.approx(_parse(keras_line)[3], abs=1e-4)


def cli_lines(argv, capsys):
    status = cli.main(["predict", *argv])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return captured.out.strip().splitlines()


def test_unreadable_images_are_reported_and_the_others_classified(
    run_folder, tmp_path, capsys
):
    _, folder, _, paths = run_folder
    (tmp_path / "notes.png").write_text("not an image")
    bad = [str(tmp_path / "notes.png"), str(tmp_path / "missing.png")]
    status = cli.main(
        ["predict", "--model", str(folder / "best.keras"), bad[0], *paths, bad[1]]
    )
    captured = capsys.readouterr()
    assert status == 2
    assert [_parse(line)[0] for line in captured.out.strip().splitlines()] == paths
    assert captured.err.count("\n") == 1
    assert "2 of 6 images could not be classified" in captured.err
    assert f"Cannot read the image {bad[0]!r}" in captured.err
    assert f"No image file at {bad[1]!r}" in captured.err
