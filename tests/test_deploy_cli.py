"""`export --format onnx|litert|openvino` and the check of what it wrote: the file
runs in its runtime with the SavedModel's inputs and outputs (uint8 images in,
probabilities and classes out), and a model that does not run or does not match
Keras makes the command fail and leaves nothing behind."""

import os

import numpy as np
import pytest

from keras_shiftinv.app import deploy
from keras_shiftinv.app.cli import main
from tests.tiny_classifier import images, tiny_model

pytestmark = pytest.mark.tf_only


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    model = tiny_model()
    model.save(path)
    return model, str(path)


@pytest.mark.parametrize(
    # OpenVINO's first compile in a process takes 20-30 s: tests/test_deploy.py
    # runs it by default, this under -m slow.
    "format",
    ["onnx", "litert", pytest.param("openvino", marks=pytest.mark.slow)],
)
def test_export_format_writes_a_checked_model(saved, format, tmp_path, capsys):
    for module in deploy.PACKAGES[format]:
        pytest.importorskip(module, reason=f"the {format} runtime is not installed")
    model, path = saved
    out = tmp_path / ("tiny" + deploy.SUFFIXES[format])
    argv = ["export", "--model", path, "--out", str(out), "--format", format]
    assert main(argv) == 0
    assert "checked in" in capsys.readouterr().out
    x = images(3, 7)
    outputs = deploy.load_runtime(out, format)(x)
    # Preprocessing and the probabilities are inside, as in the SavedModel.
    np.testing.assert_allclose(
        outputs["probabilities"],
        model.predict(x.astype("float32"), verbose=0),
        rtol=0,
        atol=1e-5,
    )
    np.testing.assert_array_equal(
        outputs["classes"], outputs["probabilities"].argmax(-1)
    )
    # Only the artifact: no staging directory left beside it.
    files = {out.name} | ({"tiny.bin"} if format == "openvino" else set())
    assert set(os.listdir(tmp_path)) == files
    assert main(argv) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(argv + ["--overwrite"]) == 0


def _wrong(x):
    return {"probabilities": np.full((len(x), 3), 1 / 3), "classes": np.zeros(len(x))}


def _failing(x):
    raise RuntimeError("INVALID_GRAPH")


@pytest.mark.parametrize(
    "run, message",
    [(_wrong, "does not match Keras"), (_failing, "does not run in its runtime")],
)
@pytest.mark.parametrize("format", ["onnx", "saved_model"])
def test_a_model_that_fails_its_check_is_an_error(
    saved, format, run, message, tmp_path, capsys, monkeypatch
):
    for module in deploy.PACKAGES[format]:
        pytest.importorskip(module, reason=f"the {format} runtime is not installed")
    monkeypatch.setattr(deploy, "load_runtime", lambda path, format: run)
    _, path = saved
    out = tmp_path / ("m" + deploy.SUFFIXES.get(format, ""))
    argv = ["export", "--model", path, "--out", str(out), "--format", format]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and format in err
    # Nothing to deploy by mistake: no file, no version directory.
    assert os.listdir(out if format == "saved_model" else tmp_path) == []


def test_bad_format_arguments(saved, tmp_path, capsys, monkeypatch):
    _, path = saved
    base = ["export", "--model", path]
    assert main([*base, "--out", str(tmp_path / "m.onnx"), "--format", "litert"]) == 2
    assert "'.tflite' file" in capsys.readouterr().err
    argv = [*base, "--out", str(tmp_path / "m.onnx"), "--format", "onnx"]
    assert main([*argv, "--version", "2"]) == 2
    assert "--version" in capsys.readouterr().err
    monkeypatch.setitem(deploy.PACKAGES, "onnx", ("no_such_runtime_module",))
    assert main(argv) == 2
    assert "keras-shiftinv[deploy]" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []
