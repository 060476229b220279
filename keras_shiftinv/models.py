"""Saved Keras models: loading them with clear errors, reading their structure."""

import os
import zipfile

import keras

from keras_shiftinv._keras_compat import is_functional, producer

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def _not_a_model(path, why):
    return ValueError(
        f"{path!r} is not a Keras model file: {why}. Expected a model saved with "
        "`model.save('NAME.keras')` (for example RUN_DIR/best.keras from "
        "`python -m keras_shiftinv train`)."
    )


def load_model(path, compile=False):
    """Loads a `.keras` (or legacy `.h5`) model, with the package's custom layers.

    Args:
        path: path of the saved model file.
        compile: whether to restore the training configuration; evaluation and
            export only need the forward pass.

    Returns:
        The `keras.Model`.

    Raises:
        ValueError: `path` does not exist or is not a loadable Keras model file
            (a ValueError, like every error a user can fix: the command line
            prints it without a traceback).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"No model file at {path!r}.")
    if os.path.isdir(path):
        raise _not_a_model(path, "it is a directory")
    if not path.endswith(KERAS_SUFFIXES):
        raise _not_a_model(path, f"its name does not end with {KERAS_SUFFIXES}")
    if path.endswith(".keras") and not zipfile.is_zipfile(path):
        raise _not_a_model(path, "a .keras file is a zip archive and this is not one")
    try:
        model = keras.saving.load_model(path, compile=compile)
    except Exception as err:  # Keras raises many types for a corrupt file.
        raise _not_a_model(
            path, f"loading failed with {type(err).__name__}: {err}"
        ) from err
    if not isinstance(model, keras.Model):
        raise _not_a_model(path, f"it holds a {type(model).__name__}, not a model")
    return model


# Layers that pass their input through unchanged, maybe cast (a float32 output layer
# under mixed precision): the activation that matters is the one before them.
_PASS_THROUGH = (keras.layers.Activation, keras.layers.Identity)


def _activation_name(layer):
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    return getattr(getattr(layer, "activation", None), "__name__", None)


def outputs_probabilities(model):
    """Whether `model`'s output ends in a softmax (True), is linear logits (False),
    or cannot be told from its last layers (None).

    Looks through pass-through layers (a linear `Activation`, `Identity`) and into
    nested functional models (a zoo network behind a Rescaling layer)."""
    layer = producer(model.outputs[0])
    while True:
        if is_functional(layer):
            layer = producer(layer.outputs[0])
            continue
        name = _activation_name(layer)
        if name == "softmax":
            return True
        if isinstance(layer, _PASS_THROUGH) and name in (None, "linear"):
            layer = producer(layer.input)
            continue
        return False if name == "linear" else None
