"""Deployment formats besides TF Serving's SavedModel: ONNX, LiteRT and OpenVINO,
each run in its own runtime to check it before it is reported written.

`export_artifact` writes the SavedModel of `keras_shiftinv.app.export` (uint8 images
in, the model's float input cast inside, a softmax added to logits) and converts
that same graph to the format, so every format has the same inputs and outputs:
`images` in, `probabilities` and `classes` out. `load_runtime` runs any of them,
and also the files of Keras' own `model.export(..., format=...)`.

The runtimes are the `deploy` extra: `pip install "keras-shiftinv[deploy]"`
(onnxruntime and tf2onnx, ai-edge-litert, openvino). OpenVINO runs with an f32
inference precision hint: its CPU default computes in bfloat16 where the CPU has
it, which changes the outputs by far more than rounding and breaks the exact
shift invariance of the aps models.
"""

import importlib
import logging
import os
import shutil
import tempfile

import numpy as np

FORMATS = ("saved_model", "onnx", "litert", "openvino")
SUFFIXES = {"onnx": ".onnx", "litert": ".tflite", "openvino": ".xml"}
# The modules each format needs, to write it and to run it.
PACKAGES = {
    "saved_model": ("tensorflow",),
    "onnx": ("tf2onnx", "onnxruntime"),
    "litert": ("tensorflow", "ai_edge_litert"),
    "openvino": ("openvino",),
}
# Probabilities of the artifact against Keras': float32 rounding of differently
# ordered sums stays far below.
TOLERANCE = 1e-4
OPENVINO_CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}


class ExportCheckError(RuntimeError):
    """An exported model that does not run in its runtime, or does not give
    Keras' outputs there."""


def check_format(format):
    if format not in FORMATS:
        raise ValueError(
            f"Invalid format={format!r}. Expected one of: {', '.join(FORMATS)}"
        )
    return format


def require(format):
    """Imports the modules `format` needs; a clear `ImportError` if one is
    missing."""
    modules = []
    for name in PACKAGES[check_format(format)]:
        try:
            modules.append(importlib.import_module(name))
        except ImportError as error:
            raise ImportError(
                f"The {format} format needs the Python package {name!r}, which is "
                'not installed: pip install "keras-shiftinv[deploy]"'
            ) from error
    return modules


def load_runtime(path, format):
    """Loads the artifact at `path` in its format's own runtime (TensorFlow for a
    SavedModel's `serving_default` signature, onnxruntime, the LiteRT interpreter,
    OpenVINO on CPU with an f32 precision hint).

    Args:
        path: a SavedModel directory, a `.onnx`, `.tflite` or OpenVINO `.xml` file.
        format: one of `FORMATS`.

    Returns:
        A function of one NumPy batch (the artifact's single input) returning a
        dict {output name: NumPy array}.
    """
    require(format)
    path = os.fspath(path)
    if format == "saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(path)
        name = _single(list(_signature(loaded).structured_input_signature[1]), path)
        # `loaded` holds the variables the signature reads: kept alive with it.
        return lambda x: {
            k: v.numpy()
            for k, v in _signature(loaded)(**{name: tf.constant(x)}).items()
        }
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        name = _single([i.name for i in session.get_inputs()], path)
        names = [o.name for o in session.get_outputs()]
        return lambda x: dict(zip(names, session.run(None, {name: x}), strict=True))
    if format == "litert":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=path)
        key = _single(list(interpreter.get_signature_list()), path)
        runner = interpreter.get_signature_runner(key)
        name = _single(interpreter.get_signature_list()[key]["inputs"], path)
        # The runner resizes its input to each batch.
        return lambda x: runner(**{name: x})
    import openvino

    compiled = openvino.Core().compile_model(path, "CPU", OPENVINO_CONFIG)
    _single(compiled.inputs, path)
    return lambda x: {
        output.get_any_name(): value for output, value in compiled(x).items()
    }


def _signature(loaded):
    return loaded.signatures["serving_default"]


def _single(names, path):
    if len(names) != 1:
        raise ValueError(
            f"{path!r} has {len(names)} inputs; only single-input models run here."
        )
    return names[0]


def _convert(saved_model, path, format):
    """Converts the `serving_default` signature of `saved_model` to `format`."""
    if format == "onnx":
        import tensorflow as tf
        import tf2onnx

        loaded = tf.saved_model.load(saved_model)
        (name, spec), *_ = _signature(loaded).structured_input_signature[1].items()
        function = tf.function(
            lambda x: _signature(loaded)(**{name: x}),
            input_signature=[tf.TensorSpec(spec.shape, spec.dtype, name=name)],
        )
        # tf2onnx logs every graph rewrite at INFO.
        logging.getLogger("tf2onnx").setLevel(logging.WARNING)
        tf2onnx.convert.from_function(
            function, input_signature=function.input_signature, output_path=path
        )
    elif format == "litert":
        import tensorflow as tf

        converter = tf.lite.TFLiteConverter.from_saved_model(
            saved_model, signature_keys=["serving_default"]
        )
        # Builtin ops only: the stock LiteRT runtimes have no Flex (TensorFlow)
        # delegate, so an op outside them fails here rather than on the device.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        with open(path, "wb") as f:
            f.write(converter.convert())
    else:
        import openvino

        # Not compressed to float16 (OpenVINO's default when saving).
        openvino.save_model(
            openvino.convert_model(saved_model), path, compress_to_fp16=False
        )


def _files(path, format):
    """The files an artifact at `path` consists of (OpenVINO: the .xml and .bin)."""
    if format == "openvino":
        return [path, os.path.splitext(path)[0] + ".bin"]
    return [path]


def check_path(path, format, overwrite=False):
    """`path` made absolute after checking that `format` may be written there:
    the format's suffix, an existing directory, no existing file unless
    `overwrite`."""
    path = os.path.abspath(os.fspath(path))
    suffix = SUFFIXES[check_format(format)]
    if not path.endswith(suffix):
        raise ValueError(
            f"The {format} format is written to a '{suffix}' file. Received: "
            f"--out / path={path!r}"
        )
    if not os.path.isdir(os.path.dirname(path)):
        raise ValueError(
            f"--out / path={path!r}: the directory {os.path.dirname(path)!r} "
            "does not exist."
        )
    existing = [f for f in _files(path, format) if os.path.exists(f)]
    if existing and not overwrite:
        raise ValueError(
            f"{existing[0]!r} already exists. Pass overwrite=True (--overwrite) "
            "to replace it."
        )
    return path


def keras_probabilities(model, images, from_logits):
    """What an exported signature returns for `images`, computed by Keras: the
    model's output on the images cast to its input dtype, softmax-ed if
    `from_logits`."""
    import keras

    x = keras.ops.cast(images, model.inputs[0].dtype)
    y = keras.ops.cast(model(x, training=False), "float32")
    if from_logits:
        y = keras.ops.softmax(y, axis=-1)
    return keras.ops.convert_to_numpy(y)


def verify(run, model, from_logits, format, seed=0):
    """Checks that `run` (from `load_runtime`) gives Keras' probabilities within
    `TOLERANCE` and their argmax as classes, on random uint8 images at batch
    sizes 3 and 1.

    Returns:
        The largest difference of the probabilities.

    Raises:
        ExportCheckError: the runtime fails on the images or its outputs differ.
    """
    shape = tuple(model.inputs[0].shape[1:])
    images = np.random.default_rng(seed).integers(0, 256, (3, *shape), "uint8")
    want = keras_probabilities(model, images, from_logits)
    largest = 0.0
    for batch in (3, 1):
        try:
            outputs = run(images[:batch])
            probabilities = np.asarray(outputs["probabilities"])
            classes = np.asarray(outputs["classes"])
        except Exception as error:
            raise ExportCheckError(
                f"The exported {format} model does not run in its runtime on a "
                f"batch of {batch}: {type(error).__name__}: {error}"
            ) from error
        difference = float(np.abs(probabilities - want[:batch]).max())
        if not difference <= TOLERANCE or not np.array_equal(
            classes, probabilities.argmax(-1)
        ):
            raise ExportCheckError(
                f"The exported {format} model does not match Keras on a batch of "
                f"{batch}: probabilities differ by up to {difference:.3g} "
                f"(tolerance {TOLERANCE:g}), classes {classes.tolist()} for "
                f"{probabilities.argmax(-1).tolist()}."
            )
        largest = max(largest, difference)
    return largest


def export_artifact(
    model, path, format, overwrite=False, from_logits=None, input_name="images"
):
    """Writes `model` to the file `path` in `format` ("onnx", "litert" or
    "openvino"), with the inputs and outputs of `export.export_for_serving` (at
    the model's own image size), after running it in its runtime and comparing it
    with Keras (`verify`). Nothing is left at `path` when that fails.

    Returns:
        The written path.

    Raises:
        ValueError: a bad argument or path; ImportError: a missing runtime;
        ExportCheckError: the artifact does not run or does not match Keras.
    """
    from keras_shiftinv.app.export import export_for_serving
    from keras_shiftinv.models import is_logits

    if format == "saved_model":
        raise ValueError(
            "format='saved_model' is written by export.export_for_serving."
        )
    path = check_path(path, format, overwrite)
    require(format)
    from_logits = is_logits(model, from_logits, strict=True)
    directory, name = os.path.split(path)
    staging = tempfile.mkdtemp(prefix=f".{name}-", dir=directory)
    try:
        saved_model = export_for_serving(
            model,
            os.path.join(staging, "saved_model"),
            version=1,
            from_logits=from_logits,
            input_name=input_name,
        )
        written = os.path.join(staging, name)
        _convert(saved_model, written, format)
        verify(load_runtime(written, format), model, from_logits, format)
        for source, target in zip(
            _files(written, format), _files(path, format), strict=True
        ):
            os.replace(source, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path
