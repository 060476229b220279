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


@keras.saving.register_keras_serializable(package="keras_shiftinv")
class RecordedModel(keras.Model):
    """A functional model that records what it is, as a KerasHub task records
    its backbone and preprocessor.

    `record` (a dict of JSON values) is saved with the model (`get_config`) and
    comes back when it is loaded, so loaders and commands read how the model
    was built instead of guessing it from layer names. The zoo's networks
    record `{"zoo": {"model": name, **builder options}}`; the train command's
    and `zoo.torchvision_classifier`'s models `{"input": {...}}`, their input
    contract (raw pixels in [0, 255] and what the model does with them).

    Args:
        inputs, outputs, name: as for a functional `keras.Model`.
        record: the dict to keep.
    """

    def __init__(self, inputs, outputs, name=None, **kwargs):
        # Keras revives a functional model whose constructor takes exactly
        # (inputs, outputs, name, **kwargs); the record is one of the kwargs.
        record = kwargs.pop("record", None)
        super().__init__(inputs, outputs, name=name, **kwargs)
        self.record = dict(record or {})

    def get_config(self):
        config = super().get_config()
        config["record"] = self.record
        return config


def find_record(model, key):
    """`record[key]` of `model` if it is a `RecordedModel` with one, else of the
    first such model among its layers (a zoo network inside a classifier), as
    `(the model holding it, the value)`; `(None, None)` when there is none."""
    for candidate in [model, *getattr(model, "layers", ())]:
        record = getattr(candidate, "record", None)
        if isinstance(candidate, RecordedModel) and key in record:
            return candidate, record[key]
    return None, None


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


def is_logits(model, from_logits=None, strict=False):
    """Whether a softmax must follow `model`'s output to give probabilities: the
    one decision about the output head that evaluate, export, predict and the
    converted checkpoints all take.

    Args:
        model: a `keras.Model` with one output.
        from_logits: True or False as the caller knows it; None reads it from
            the model's last layers (`outputs_probabilities`).
        strict: with `from_logits=None`, a model whose last layers do not tell
            is a `ValueError` (else its outputs are taken as they are).
    """
    if from_logits is not None:
        return bool(from_logits)
    probabilities = outputs_probabilities(model)
    if probabilities is None and strict:
        raise ValueError(
            f"Cannot tell whether model {model.name!r} outputs probabilities "
            "or logits from its last layer. Pass from_logits=True (export adds "
            "a softmax) or from_logits=False."
        )
    return probabilities is False


def probabilities_layer(name="probabilities"):
    """The softmax put after logits: float32, also under mixed precision."""
    return keras.layers.Softmax(dtype="float32", name=name)


def with_probabilities(model, from_logits=None, strict=False):
    """`model`, followed by `probabilities_layer()` when its output is logits
    (`is_logits`)."""
    if not is_logits(model, from_logits, strict):
        return model
    return keras.Model(model.inputs, probabilities_layer()(model.outputs[0]))
