"""SavedModel export: served by plain TensorFlow, same answers as the Keras model."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from tests.tiny_classifier import CLASSES, images, tiny_model

pytestmark = pytest.mark.tf_only

# Runs in a fresh interpreter where keras_shiftinv and zoo cannot be imported: loads
# the export with plain TensorFlow and saves its answers for every batch in the input
# file. (Keras itself cannot be blocked: `import tensorflow` imports it.)
SERVING_SCRIPT = textwrap.dedent(
    """
    import importlib.abc
    import sys

    BLOCKED = ("keras_shiftinv", "zoo")


    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"{name} is blocked")
            return None


    sys.meta_path.insert(0, Blocker())
    for name in BLOCKED:
        try:
            __import__(name)
        except ImportError:
            continue
        sys.exit(f"{name} is importable")

    import numpy as np
    import tensorflow as tf

    serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
    inputs = np.load(sys.argv[2])
    outputs = {}
    for key in inputs.files:
        result = serve(images=tf.constant(inputs[key]))
        for name, value in result.items():
            outputs[f"{key}/{name}"] = value.numpy()
    np.savez(sys.argv[3], **outputs)
    """
)


def run(args, **kwargs):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    result = subprocess.run(args, capture_output=True, text=True, env=env, **kwargs)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from keras_shiftinv.app.export import export_for_serving

    model = tiny_model()
    base = tmp_path_factory.mktemp("export") / "tiny"
    return model, export_for_serving(model, base)


def test_plain_tensorflow_serves_same_answers(exported, tmp_path):
    model, path = exported
    assert path.endswith(os.path.join("tiny", "1"))
    batches = {"b1": images(1, 0), "b7": images(7, 1)}
    np.savez(tmp_path / "in.npz", **batches)
    script = tmp_path / "serve.py"
    script.write_text(SERVING_SCRIPT)
    run(
        [sys.executable, str(script), path, "in.npz", "out.npz"],
        cwd=tmp_path,
    )
    served = np.load(tmp_path / "out.npz")
    for key, batch in batches.items():
        expected = model.predict(batch.astype("float32"), verbose=0)
        probabilities = served[f"{key}/probabilities"]
        assert probabilities.dtype == np.float32
        assert probabilities.shape == (len(batch), CLASSES)
        np.testing.assert_allclose(probabilities, expected, rtol=1e-5, atol=1e-6)
        assert served[f"{key}/classes"].dtype == np.int64
        np.testing.assert_array_equal(served[f"{key}/classes"], expected.argmax(-1))
    # Otherwise the class comparison would be vacuous.
    assert len(set(served["b7/classes"])) > 1


def test_signature_rejects_other_image_shapes(exported, tmp_path):
    _, path = exported
    # Smaller, larger, one pixel, other channels, rank 3, rank 5. In a subprocess:
    # a rank-3 batch used to abort the whole process.
    shapes = [(2, 8, 8, 3), (2, 24, 24, 3), (1, 1, 1, 3), (2, 12, 12, 1)]
    shapes += [(12, 12, 3), (1, 2, 12, 12, 3)]
    script = tmp_path / "call.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import tensorflow as tf

            serve = tf.saved_model.load({path!r}).signatures["serving_default"]
            for shape in {shapes!r}:
                try:
                    serve(images=tf.zeros(shape, tf.uint8))
                    print("accepted", shape)
                except tf.errors.InvalidArgumentError as error:
                    print("rejected:", " ".join(error.message.split()))
            """
        )
    )
    result = run([sys.executable, str(script)], timeout=300)
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(shapes), result.stdout
    for line in lines:
        assert line.startswith("rejected: ")
        assert "not compatible with expected shape [?,12,12,3]" in line


def test_saved_model_cli_shows_and_runs(exported, tmp_path):
    model, path = exported
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = run([cli, "show", "--all", "--dir", path]).stdout
    assert "signature_def['serving_default']" in shown
    assert "inputs['images']" in shown and "DT_UINT8" in shown
    assert "outputs['probabilities']" in shown and "outputs['classes']" in shown
    # Python ops cannot run in the C++ model server.
    assert "PyFunc" not in shown
    batch = images(2, 2)
    np.save(tmp_path / "x.npy", batch)
    run(
        [cli, "run", "--dir", path, "--tag_set", "serve"]
        + ["--signature_def", "serving_default", "--inputs", "images=x.npy"]
        + ["--outdir", "out"],
        cwd=tmp_path,
    )
    expected = model.predict(batch.astype("float32"), verbose=0)
    got = np.load(tmp_path / "out" / "probabilities.npy")
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(
        np.load(tmp_path / "out" / "classes.npy"), expected.argmax(-1)
    )


def test_versions_are_never_overwritten_silently(tmp_path):
    from keras_shiftinv.app.export import export_for_serving

    model = tiny_model()
    base = tmp_path / "m"
    assert export_for_serving(model, base, version=3).endswith("3")
    assert export_for_serving(model, base).endswith("4")
    marker = base / "4" / "marker"
    marker.write_text("keep")
    with pytest.raises(ValueError, match="Version 4 already exists"):
        export_for_serving(model, base, version=4)
    with pytest.raises(ValueError, match="Version 4 already exists"):
        export_for_serving(model, base / "4")
    assert marker.read_text() == "keep"
    # DESIGN.md's form: the version directory itself.
    assert export_for_serving(model, base / "5") == str(base / "5")
    export_for_serving(model, base, version=4, overwrite=True)
    assert not marker.exists()
    assert (base / "4" / "saved_model.pb").exists()
    # Nothing but version directories is left behind for TF Serving to look at.
    assert sorted(os.listdir(base)) == ["3", "4", "5"]


def test_bad_arguments(tmp_path):
    from keras_shiftinv.app.export import export_for_serving

    model = tiny_model()
    with pytest.raises(ValueError, match="names version 1, but version=2"):
        export_for_serving(model, tmp_path / "m" / "1", version=2)
    with pytest.raises(ValueError, match="version"):
        export_for_serving(model, tmp_path / "m", version=0)
    with pytest.raises(ValueError, match="from_logits"):
        export_for_serving(tiny_model(activation="sigmoid"), tmp_path / "m")
    with pytest.raises(ValueError, match="no defined inputs"):
        export_for_serving(keras.Sequential([keras.layers.Dense(2)]), tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_logits_get_a_softmax(tmp_path):
    import tensorflow as tf

    from keras_shiftinv.app.export import export_for_serving

    model = tiny_model(activation="linear")
    path = export_for_serving(model, tmp_path / "m")
    batch = images(5, 3)
    served = tf.saved_model.load(path).signatures["serving_default"](
        images=tf.constant(batch)
    )
    logits = model.predict(batch.astype("float32"), verbose=0)
    expected = keras.ops.convert_to_numpy(keras.ops.softmax(logits))
    np.testing.assert_allclose(served["probabilities"], expected, rtol=1e-5, atol=1e-6)


def test_load_model_rejects_non_keras_files(tmp_path):
    from keras_shiftinv.models import load_model

    text = tmp_path / "notes.txt"
    text.write_text("not a model")
    fake = tmp_path / "fake.keras"
    fake.write_text("not a zip")
    with pytest.raises(ValueError, match="No model file"):
        load_model(tmp_path / "missing.keras")
    with pytest.raises(ValueError, match="not a Keras model file.*does not end"):
        load_model(text)
    with pytest.raises(ValueError, match="not a Keras model file.*zip"):
        load_model(fake)
    with pytest.raises(ValueError, match="not a Keras model file.*directory"):
        load_model(tmp_path)
    model = tiny_model()
    model.save(tmp_path / "tiny.keras")
    loaded = load_model(tmp_path / "tiny.keras")
    x = images(2, 4).astype("float32")
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0)
    )


def test_export_command(tmp_path, capsys):
    from keras_shiftinv.app.cli import main

    tiny_model().save(tmp_path / "tiny.keras")
    argv = ["export", "--model", str(tmp_path / "tiny.keras")]
    argv += ["--out", str(tmp_path / "models" / "tiny")]
    assert main(argv) == 0
    assert (tmp_path / "models" / "tiny" / "1" / "saved_model.pb").exists()
    assert "--model_base_path=" in capsys.readouterr().out
    assert main(argv + ["--version", "1"]) == 2
    assert "Version 1 already exists" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("not a model")
    assert main(["export", "--model", str(tmp_path / "notes.txt"), "--out", "x"]) == 2
    assert "is not a Keras model file" in capsys.readouterr().err


def test_recorded_input_fit_serves_the_training_size(tmp_path):
    """A model trained on 8x8 images zero-padded to its 12x12 input is served 8x8
    images, fitted in the graph as training fitted them, and 12x12 ones as before."""
    import tensorflow as tf

    from keras_shiftinv.app.export import export_for_serving

    model = tiny_model()
    fit = ((8, 8, 3), {"pad_to": (12, 12)})
    path = export_for_serving(model, tmp_path / "m", input_fit=fit)
    serve = tf.saved_model.load(path).signatures["serving_default"]
    small = images(4, 5)[:, :8, :8]
    padded = np.pad(small, [(0, 0), (2, 2), (2, 2), (0, 0)]).astype("float32")
    expected = model.predict(padded, verbose=0)
    served = serve(images=tf.constant(small))["probabilities"].numpy()
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)
    full = images(3, 6)
    np.testing.assert_allclose(
        serve(images=tf.constant(full))["probabilities"].numpy(),
        model.predict(full.astype("float32"), verbose=0),
        rtol=1e-5,
        atol=1e-6,
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="8x8 or 12x12"):
        serve(images=tf.constant(images(2, 7)[:, :10, :10]))
    with pytest.raises(tf.errors.InvalidArgumentError):
        serve(images=tf.constant(small[0]))
    with pytest.raises(ValueError, match="input_fit"):
        export_for_serving(
            model, tmp_path / "bad", input_fit=((8, 8, 3), {"pad_to": (16, 16)})
        )
