"""Shift-invariant convolutional networks for Keras 3.

The library: layers, ops, filters, initializers, `antialias` (model surgery),
diagnostics, the variant policy and saved-model helpers, on every Keras backend
(keras and numpy only). The TensorFlow application (the commands, training,
data, evaluation, export, predict) is `keras_shiftinv.app`, which the library
never imports; the model zoo is the `zoo` package, above the library.
"""

import importlib
import importlib.abc
import importlib.util
import sys

from keras_shiftinv._install import check_backend

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


def _export(name):
    module_name, attribute = _EXPORTS[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __getattr__(name):
    if name in _EXPORTS:
        return _export(name)
    raise AttributeError(f"module 'keras_shiftinv' has no attribute {name!r}")


# The modules that register classes with Keras (for loading saved models).
_REGISTERING = ("layers", "initializers", "schedules", "models")


def _register():
    for name in _REGISTERING:
        importlib.import_module(f"{__name__}.{name}")


class _RegisterWithKeras(importlib.abc.MetaPathFinder):
    """Runs `_register` once Keras is imported and no module of the package is
    half-imported.

    The layers are Keras classes: registering them imports Keras (and with it
    TensorFlow, seconds). A process that has not imported Keras has nothing to
    load a model with yet, so the registration waits for Keras' own import, and
    the command line's `--help` and `--version` stay light. When a module of the
    package is what imports Keras, the registration waits until that module and
    those importing it are complete, as the layers import them."""

    def __init__(self):
        self.importing = 0

    def find_spec(self, name, path=None, target=None):
        tracked = name.startswith(f"{__name__}.") and not name.endswith("__main__")
        if name != "keras" and not tracked:
            return None
        if name == "keras":
            # Keras' backend missing: one line saying what to install, not the
            # backend's ModuleNotFoundError deep inside Keras.
            check_backend()
        # The other finders answer (TensorFlow also asks, only to look).
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is not None and spec.loader is not None:
            spec.loader = _Watched(spec.loader, self, tracked)
        return spec

    def imported(self):
        if not self.importing and "keras" in sys.modules and self in sys.meta_path:
            sys.meta_path.remove(self)
            _register()


class _Watched(importlib.abc.Loader):
    def __init__(self, loader, finder, tracked):
        self.loader = loader
        self.finder = finder
        self.tracked = tracked

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = module.__spec__.loader = self.loader
        self.finder.importing += self.tracked
        try:
            self.loader.exec_module(module)
        finally:
            self.finder.importing -= self.tracked
        self.finder.imported()


# Importing the package registers its layers with Keras: now if Keras is loaded,
# else as soon as it is.
if "keras" in sys.modules:
    _register()
else:
    sys.meta_path.insert(0, _RegisterWithKeras())


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
