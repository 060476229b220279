"""What each part of the package needs installed, told in one line before any work.

`pip install "keras-shiftinv[tf]"` (or `[tf-cpu]`) installs what every command
needs; a bare `pip install keras-shiftinv` gives Keras without a backend. The checks
look modules up without importing them (`importlib.util.find_spec`), so they cost
nothing when all is there.
"""

import importlib.util
import json
import os

TF_EXTRA = 'pip install "keras-shiftinv[tf]" (or "keras-shiftinv[tf-cpu]")'
# Module -> how to install it.
INSTALL = {
    "tensorflow": TF_EXTRA,
    "matplotlib": TF_EXTRA + ' or pip install "keras-shiftinv[plot]"',
    "jax": 'pip install "jax[cpu]"',
    "torch": 'pip install "keras-shiftinv[interop]"',
}
# The modules of each command beyond Keras' backend: training, data, evaluation,
# export and prediction are TensorFlow code; reports and curves are matplotlib.
COMMAND_MODULES = {
    "train": ("tensorflow", "matplotlib"),
    "evaluate": ("tensorflow", "matplotlib"),
    "export": ("tensorflow",),
    "predict": ("tensorflow",),
    "convert-weights": (),
    "models": (),
}


def keras_backend():
    """The backend Keras will use: $KERAS_BACKEND, else keras.json's, else
    "tensorflow" (Keras' own rule, read without importing Keras)."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = os.environ.get("KERAS_HOME") or os.path.join(
        os.path.expanduser("~"), ".keras"
    )
    try:
        with open(os.path.join(home, "keras.json")) as f:
            return json.load(f).get("backend", "tensorflow")
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def _installed(module):
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing(modules):
    """The modules among `modules`, and Keras' backend, that are not installed."""
    backend = keras_backend()
    wanted = [m for m in (backend, *modules) if m != "numpy"]
    return [m for m in dict.fromkeys(wanted) if not _installed(m)]


def message(modules, what):
    """One line: `what` needs `modules`, and how to install them."""
    ways = dict.fromkeys(INSTALL.get(m, f"pip install {m}") for m in modules)
    backend = keras_backend()
    note = ""
    if backend in modules:
        note = f" (Keras' backend is {backend!r}: KERAS_BACKEND picks another)"
    return (
        f"{what} needs {', '.join(modules)}, not installed{note}: "
        + "; ".join(ways)
        + "."
    )


def check_backend():
    """Raises an ImportError saying what to install when Keras' backend is
    missing (instead of the backend's ModuleNotFoundError deep in Keras)."""
    absent = missing(())
    if absent:
        raise ImportError(message(absent, "keras_shiftinv"))
