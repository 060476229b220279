"""Small zoo models for the tests: 32x32 inputs, 1/16 of the widths, 3 classes."""

import os

import keras
import numpy as np
import pytest

import zoo

SIZE = 32
NUM_CLASSES = 3

# CI runs the zoo tests on TensorFlow, JAX and PyTorch. On JAX and PyTorch a model
# test costs 3-5x TensorFlow's (eager fit steps), so there the option combinations
# run only when asked (`-m slow`); every variant of each block type still runs.
OTHER_BACKEND = keras.backend.backend() != "tensorflow"


def slow_on_other_backends(test):
    return pytest.mark.slow(test) if OTHER_BACKEND else test


def small_model(name, variant="baseline", **kwargs):
    kwargs = {
        "variant": variant,
        "num_classes": NUM_CLASSES,
        "input_shape": (SIZE, SIZE, 3),
        "width_multiplier": 1 / 16,
        **kwargs,
    }
    if zoo.model_spec(name).has_stem:
        kwargs.setdefault("stem", "cifar")
    keras.utils.set_random_seed(0)
    return zoo.create_model(name, **kwargs)


def images(batch=4, size=SIZE, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, size, size, 3)).astype("float32")


def predict(model, x):
    """Inference-mode outputs, eagerly (tracing `predict` costs more than it saves
    for a handful of calls)."""
    return keras.ops.convert_to_numpy(model(x, training=False))


def check_model(model, x, tmp_path):
    """Output shape, finite probabilities, `.keras` round trip, then one training
    step that moves every trainable weight."""
    y = predict(model, x)
    assert y.shape == (len(x), NUM_CLASSES)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-5)

    path = os.path.join(tmp_path, f"{model.name}.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert [layer.name for layer in loaded.layers] == [
        layer.name for layer in model.layers
    ]
    np.testing.assert_allclose(predict(loaded, x), y, rtol=1e-5, atol=1e-6)

    # Eager: one traced step of these graphs costs seconds and proves nothing more.
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss="sparse_categorical_crossentropy",
        run_eagerly=True,
    )
    before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    labels = np.arange(len(x)) % NUM_CLASSES
    history = model.fit(x, labels, batch_size=len(x), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    unchanged = [
        w.path
        for w, old in zip(model.trainable_weights, before, strict=True)
        if np.allclose(keras.ops.convert_to_numpy(w), old)
    ]
    assert not unchanged


def layer_types(model):
    return {layer.name: type(layer) for layer in model.layers}
