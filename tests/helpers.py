"""Checks every layer of the package must pass, shared by the layer tests."""

import contextlib
import os

import keras
import numpy as np


@contextlib.contextmanager
def dtype_policy(name):
    """Keras' global dtype policy set to `name` inside the block, then restored."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def input_gradient(fn, x):
    """d(sum(fn(x)))/dx on the active backend."""
    return gradients(fn, x)[0]


def gradients(fn, *args, jit=False):
    """[d(sum(fn(*args)))/d(arg) for each arg] on the active backend, as NumPy
    arrays; with `jit`, in one compiled function on JAX (one compilation instead
    of one per op)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        args = [tf.convert_to_tensor(a) for a in args]
        with tf.GradientTape() as tape:
            tape.watch(args)
            y = keras.ops.sum(fn(*args))
        return [keras.ops.convert_to_numpy(g) for g in tape.gradient(y, args)]
    if backend == "jax":
        import jax

        grad = jax.grad(
            lambda *v: keras.ops.sum(fn(*v)), argnums=tuple(range(len(args)))
        )
        return [np.asarray(g) for g in (compiled(grad) if jit else grad)(*args)]
    if backend == "torch":
        import torch

        args = [torch.tensor(np.asarray(a), requires_grad=True) for a in args]
        keras.ops.sum(fn(*args)).backward()
        return [a.grad.numpy() for a in args]
    raise NotImplementedError(f"no gradient helper for backend {backend!r}")


def compiled(fn):
    """`fn` compiled as one function on JAX (one compilation instead of one per
    op); `fn` itself on the other backends."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(fn)
    return fn


def _model(layer, input_shape):
    inputs = keras.Input(input_shape[1:], batch_size=None)
    return keras.Model(inputs, layer(inputs))


def _outputs(outputs):
    return [keras.ops.convert_to_numpy(o) for o in keras.tree.flatten(outputs)]


def run_layer_test(
    layer_cls,
    init_kwargs,
    input_shape,
    expected_output_shape,
    tmp_path,
    check_mixed_precision=True,
    rtol=1e-5,
    atol=1e-5,
):
    """Config round trip, shapes (static and None), `.keras` round trip, a fit step
    and mixed precision. Returns the layer built on `input_shape`."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(input_shape).astype("float32")

    layer = layer_cls(**init_kwargs)
    config = layer.get_config()
    for key, value in init_kwargs.items():
        stored = config[key]
        if isinstance(stored, tuple | list) and not isinstance(value, tuple | list):
            assert all(v == value for v in stored), (key, stored, value)
        elif not isinstance(value, dict):
            assert stored == value or tuple(stored) == tuple(value), (key, stored)
    assert layer_cls.from_config(config).get_config() == config

    model = _model(layer, input_shape)
    y = _outputs(model(x))
    expected = keras.tree.flatten(expected_output_shape)
    if isinstance(expected[0], int | type(None)):
        expected = [tuple(expected_output_shape)]
    assert [tuple(o.shape) for o in y] == [tuple(s) for s in expected]
    static = keras.tree.flatten(layer.compute_output_shape(input_shape))
    if isinstance(static[0], int | type(None)):
        static = [layer.compute_output_shape(input_shape)]
    assert [tuple(s) for s in static] == [tuple(s) for s in expected]

    # Unknown spatial sizes in a functional model: same numbers as the static model.
    dynamic_shape = list(input_shape)
    data_format = getattr(layer, "data_format", "channels_last")
    for axis in (1, 2) if data_format == "channels_last" else (2, 3):
        dynamic_shape[axis] = None
    inputs = keras.Input(tuple(dynamic_shape[1:]))
    dynamic = keras.Model(inputs, layer(inputs))
    for a, b in zip(_outputs(dynamic.predict(x, verbose=0)), y, strict=True):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)

    path = os.path.join(tmp_path, f"{layer_cls.__name__}.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    for a, b in zip(_outputs(loaded(x)), y, strict=True):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)

    _fit_step(layer_cls, init_kwargs, x)
    if check_mixed_precision:
        _check_mixed_precision(layer_cls, init_kwargs, x, y)
    return layer


def _fit_step(layer_cls, init_kwargs, x):
    """One `fit` step through the layer: the loss is finite and every trainable
    weight of the layer moves."""
    layer = layer_cls(**init_kwargs)
    inputs = keras.Input(x.shape[1:])
    features = keras.tree.flatten(layer(inputs))[0]
    outputs = keras.layers.Dense(3)(keras.layers.Flatten()(features))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = [keras.ops.convert_to_numpy(w) for w in layer.trainable_weights]
    target = np.ones((len(x), 3), "float32")
    history = model.fit(x, target, epochs=1, batch_size=len(x), verbose=0)
    assert np.isfinite(history.history["loss"][0])
    for w, old in zip(layer.trainable_weights, before, strict=True):
        assert not np.allclose(keras.ops.convert_to_numpy(w), old), w.path


def _check_mixed_precision(layer_cls, init_kwargs, x, reference):
    for policy, tol in (("mixed_float16", 2e-2), ("mixed_bfloat16", 1e-1)):
        with dtype_policy(policy):
            layer = layer_cls(**init_kwargs)
            outputs = keras.tree.flatten(layer(x))
        float_outputs = [
            (o, r)
            for o, r in zip(outputs, reference, strict=True)
            if "float" in str(r.dtype)
        ]
        for o, r in float_outputs:
            assert keras.backend.standardize_dtype(o.dtype) == policy.split("_")[1]
            if not layer.trainable_weights:
                scale = max(1.0, float(np.abs(r).max()))
                got = keras.ops.convert_to_numpy(keras.ops.cast(o, "float32"))
                np.testing.assert_allclose(got, r, atol=tol * scale)
