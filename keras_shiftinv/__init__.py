"""Shift-invariant convolutional networks for Keras 3."""

import importlib
import os
import sys

__version__ = "0.1.0"

# Public names and where they live (None: the module itself).
_EXPORTS = {
    "layers": ("keras_shiftinv.layers", None),
    "ops": ("keras_shiftinv.ops", None),
    "initializers": ("keras_shiftinv.initializers", None),
    "diagnostics": ("keras_shiftinv.diagnostics", None),
    "antialias": ("keras_shiftinv.convert", "antialias"),
    "BlurPool2D": ("keras_shiftinv.layers", "BlurPool2D"),
    "MaxBlurPool2D": ("keras_shiftinv.layers", "MaxBlurPool2D"),
    "CircularPadding2D": ("keras_shiftinv.layers", "CircularPadding2D"),
    "OffsetSubsample": ("keras_shiftinv.layers", "OffsetSubsample"),
    "PolyphaseDown2D": ("keras_shiftinv.layers", "PolyphaseDown2D"),
    "PolyphaseGather2D": ("keras_shiftinv.layers", "PolyphaseGather2D"),
    "ShiftInvariantDown": ("keras_shiftinv.layers", "ShiftInvariantDown"),
    # Registered for loading saved models, as the layers are.
    "CyclicLR": ("keras_shiftinv.schedules", "CyclicLR"),
}
# These need TensorFlow (tf.data, tf.distribute, SavedModel): they are imported on
# first use, so `import keras_shiftinv` stays light on the JAX backend.
_LAZY_SUBMODULES = (
    "callbacks",
    "data",
    "evaluate",
    "export",
    "metrics",
    "predict",
    "training",
)


def _export(name):
    module_name, attribute = _EXPORTS[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __getattr__(name):
    if name in _EXPORTS:
        return _export(name)
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"keras_shiftinv.{name}")
    raise AttributeError(f"module 'keras_shiftinv' has no attribute {name!r}")


def _run_as_command_line():
    """Whether this process is `python -m keras_shiftinv` or `keras-shiftinv`.

    Both import this package before the command line is parsed: importing Keras
    here (and with it TensorFlow, seconds) would make `--help` slow. The commands
    import what they run."""
    argv = getattr(sys, "orig_argv", sys.argv)
    module_run = any(
        a == "-m" and b == __name__ for a, b in zip(argv, argv[1:], strict=False)
    )
    return module_run or os.path.basename(sys.argv[0]) == "keras-shiftinv"


# Anywhere else, importing the package registers its layers for loading saved
# models, as it always has.
if not _run_as_command_line():
    from keras_shiftinv._install import check_backend

    check_backend()
    for _name in _EXPORTS:
        _export(_name)


__all__ = [
    "BlurPool2D",
    "MaxBlurPool2D",
    "CircularPadding2D",
    "OffsetSubsample",
    "PolyphaseDown2D",
    "PolyphaseGather2D",
    "ShiftInvariantDown",
    "antialias",
    "diagnostics",
    "initializers",
    "layers",
    "ops",
    "__version__",
]
