"""The private Keras API stays in keras_shiftinv/_keras_compat.py, and its
MultiWorkerMirroredStrategy patch applies only where and while it is needed."""

import ast
import pathlib

import keras
import pytest

from keras_shiftinv import _keras_compat

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("keras_shiftinv", "zoo")
COMPAT = REPO / "keras_shiftinv" / "_keras_compat.py"
# Public methods of namedtuples, whose names start with an underscore.
NAMEDTUPLE_METHODS = {"_replace", "_asdict", "_fields", "_make"}
REFLECTION = {"getattr", "hasattr", "setattr", "delattr"}


def _is_private(name):
    return name.startswith("_") and not name.startswith("__")


def _own_modules(tree):
    """Names under which a module imports the project's own modules: their private
    functions are the project's, not Keras'."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(
                (alias.asname or alias.name).split(".")[0]
                for alias in node.names
                if alias.name.split(".")[0] in PACKAGES
            )
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in PACKAGES:
                names.update(alias.asname or alias.name for alias in node.names)
    return names


def _private_uses(path):
    tree = ast.parse(path.read_text(), str(path))
    own = {"self", "cls"} | _own_modules(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("keras.src") or (
                node.module == "keras" and any(a.name == "src" for a in node.names)
            ):
                yield node.lineno, f"from {node.module} import"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("keras.src"):
                    yield node.lineno, f"import {alias.name}"
        elif isinstance(node, ast.Attribute):
            if node.attr == "src" and ast.unparse(node.value) == "keras":
                yield node.lineno, "keras.src"
            elif (
                _is_private(node.attr)
                and node.attr not in NAMEDTUPLE_METHODS
                and not (isinstance(node.value, ast.Name) and node.value.id in own)
            ):
                yield node.lineno, ast.unparse(node)
        elif (
            isinstance(node, ast.Call)
            and ast.unparse(node.func) in REFLECTION | {"object.__setattr__"}
            and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _is_private(node.args[1].value)
        ):
            yield node.lineno, ast.unparse(node)


def test_private_keras_api_only_in_the_compat_module():
    sources = [p for package in PACKAGES for p in (REPO / package).rglob("*.py")]
    assert COMPAT in sources
    found = [
        f"{path.relative_to(REPO)}:{line}: {use}"
        for path in sources
        if path != COMPAT
        for line, use in _private_uses(path)
    ]
    assert not found, "Private Keras API outside _keras_compat.py:\n" + "\n".join(found)
    # The check does see them where they are.
    seen = "\n".join(use for _, use in _private_uses(COMPAT))
    assert "from keras.src.backend.tensorflow import" in seen
    assert "object.__setattr__(model, '_maybe_symbolic_build'" in seen


def _dense_model():
    inputs = keras.Input((2,))
    return keras.Model(inputs, keras.layers.Dense(1)(inputs))


@pytest.fixture
def trainer():
    """The Keras module whose function the patch replaces."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the patch is for the TensorFlow trainer")
    return pytest.importorskip("keras.src.backend.tensorflow.trainer")


@pytest.fixture
def multiworker_model(trainer, monkeypatch):
    """A model that sees a MultiWorkerMirroredStrategy (a real one must exist before
    TensorFlow runs any op, so one without a cluster stands in)."""
    import tensorflow as tf

    class Unstarted(tf.distribute.MultiWorkerMirroredStrategy):
        def __init__(self):
            pass

    model = _dense_model()
    strategy = Unstarted()
    monkeypatch.setattr(
        type(model), "distribute_strategy", property(lambda self: strategy)
    )
    return model


def _unpatched(model, trainer, reduce_per_replica):
    return (
        trainer.reduce_per_replica is reduce_per_replica
        and "_maybe_symbolic_build" not in vars(model)
    )


def test_multiworker_patch_is_undone_on_exit(multiworker_model, trainer):
    model = multiworker_model
    original = trainer.reduce_per_replica
    with _keras_compat.multiworker_fit(model):
        assert trainer.reduce_per_replica is not original
        assert "_maybe_symbolic_build" in vars(model)
    assert _unpatched(model, trainer, original)
    with pytest.raises(KeyError), _keras_compat.multiworker_fit(model):
        raise KeyError("a failed fit")
    assert _unpatched(model, trainer, original)


@pytest.mark.parametrize("version", ["3.16.0", "3.16.0.dev2026120200", "2.15.0"])
def test_multiworker_patch_skips_keras_versions_without_the_bugs(
    multiworker_model, trainer, monkeypatch, version
):
    model = multiworker_model
    original = trainer.reduce_per_replica
    monkeypatch.setattr(keras, "version", lambda: version)
    with _keras_compat.multiworker_fit(model):
        assert _unpatched(model, trainer, original)


def test_multiworker_patch_skips_other_strategies(trainer):
    model = _dense_model()
    original = trainer.reduce_per_replica
    with _keras_compat.multiworker_fit(model):
        assert _unpatched(model, trainer, original)


def test_a_missing_private_attribute_is_a_clear_error():
    inputs = keras.Input((2,))
    layer = keras.layers.Dense(1)
    tensor = layer(inputs)
    assert _keras_compat.producer(tensor) is layer
    assert _keras_compat.producing_node(tensor).operation is layer
    with pytest.raises(RuntimeError, match=r"`Dense._nodes_by_depth`.*Keras 3\."):
        _keras_compat.nodes_by_depth(layer)
