"""Every Python snippet of README.md runs as written, with smaller sizes.

The snippets are read from README.md, so an edit that breaks one fails here. The
few size substitutions below are checked to apply: a snippet that changes under
them fails rather than silently running at full size.
"""

import http.server
import json
import pathlib
import re
import threading

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.tf_only

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
FASHION_MNIST = pathlib.Path("/usr/share/datasets/fashion-mnist")

# A unique line of each snippet -> (name, substitutions for small sizes).
SNIPPETS = {
    "from keras_shiftinv import MaxBlurPool2D, BlurPool2D": ("layers", []),
    "zoo.list_models()": ("zoo", []),
    "keras_shiftinv.antialias(base, return_report=True)": ("antialias", []),
    "tf.saved_model.load(": ("serving", []),
    "zoo.load_torch_weights(model,": (
        "torch_weights",
        [
            ("zoo.resnet50(", "zoo.resnet18("),
            ('"resnet50_lpf3.pth.tar"', '"resnet18_lpf3.npz"'),
        ],
    ),
    "data.load(": (
        "data",
        [
            ('"train[:90%]"', '"train[:256]"'),
            ('"train[90%:]"', '"train[-128:]"'),
            ("width_multiplier=1 / 4", "width_multiplier=1 / 16"),
            ("epochs=3", "epochs=1"),
        ],
    ),
}


def _snippets():
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def _snippet(name):
    for code in _snippets():
        for marker, (snippet_name, substitutions) in SNIPPETS.items():
            if snippet_name == name and marker in code:
                for old, new in substitutions:
                    assert code.count(old) == 1, f"README snippet {name}: {old!r}"
                    code = code.replace(old, new)
                return code
    raise AssertionError(f"README.md has no {name} snippet")


def test_every_snippet_is_tested():
    names = []
    for code in _snippets():
        found = [n for marker, (n, _) in SNIPPETS.items() if marker in code]
        assert len(found) == 1, f"untested or ambiguous README snippet:\n{code}"
        names.extend(found)
    assert sorted(names) == sorted(name for name, _ in SNIPPETS.values())


def _run(code, folder, monkeypatch):
    monkeypatch.chdir(folder)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})


# ResNet-50's conversion takes 20 s to a minute on 2 busy cores.
@pytest.mark.parametrize(
    "name", ["layers", "zoo", pytest.param("antialias", marks=pytest.mark.slow)]
)
def test_snippet_runs(name, tmp_path, monkeypatch):
    _run(_snippet(name), tmp_path, monkeypatch)


def test_torch_weights_snippet_runs(tmp_path, monkeypatch):
    # A checkpoint with antialiased-cnns' names and shapes (random weights, the
    # 3-tap blur buffers) where the snippet reads its file.
    import zoo

    model = zoo.resnet18(variant="blur", filt_size=3, flavor="torchvision")
    rng = np.random.default_rng(0)
    checkpoint = {}
    for name, shape in zoo.torch_tensor_shapes(model).items():
        if name.endswith(".filt"):
            taps = np.outer([1, 2, 1], [1, 2, 1]) / 16
            checkpoint[name] = np.tile(taps, (shape[0], 1, 1, 1)).astype("float32")
        else:
            checkpoint[name] = (0.05 * rng.standard_normal(shape)).astype("float32")
            if "running_var" in name:
                checkpoint[name] = np.abs(checkpoint[name]) + 1
    np.savez(tmp_path / "resnet18_lpf3.npz", **checkpoint)
    _run(_snippet("torch_weights"), tmp_path, monkeypatch)


class _FakeServing(http.server.BaseHTTPRequestHandler):
    """TF Serving's REST predict (columnar "inputs" in, "outputs" out), answered
    by the exported SavedModel."""

    serve = None

    def do_POST(self):
        import tensorflow as tf

        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        images = tf.constant(np.array(body["inputs"]["images"], np.uint8))
        outputs = {k: v.numpy().tolist() for k, v in self.serve(images=images).items()}
        payload = json.dumps({"outputs": outputs}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def test_serving_snippet_runs(tmp_path, monkeypatch):
    import tensorflow as tf

    from keras_shiftinv.app.export import export_for_serving

    inputs = keras.Input((32, 32, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(x))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    path = export_for_serving(model, tmp_path / "models" / "fmnist")
    _FakeServing.serve = tf.saved_model.load(path).signatures["serving_default"]
    try:
        server = http.server.HTTPServer(("localhost", 8501), _FakeServing)
    except OSError:
        pytest.skip("port 8501 is taken")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _run(_snippet("serving"), tmp_path, monkeypatch)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
@pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="needs dataset-fashion-mnist")
def test_data_snippet_runs(tmp_path, monkeypatch):
    _run(_snippet("data"), tmp_path, monkeypatch)
    assert (tmp_path / "log.csv").read_text().count("\n") == 2  # header, 1 epoch
