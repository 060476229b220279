"""Every layer, in every pad mode, compiled by XLA (`tf.function(jit_compile=True)`,
what Keras' `jit_compile=True` and its GPU default use) against TensorFlow without
XLA: outputs and gradients (of the input and of the weights) within 1e-5, float32
rounding of differently ordered sums. Also: the TensorFlow graphs traced without a
gradient tape (inference, every `model.export` format) hold no op that only
TensorFlow's runtime runs."""

import numpy as np
import pytest

from tests.layers.cases import LAYER_GROUPS

tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.tf_only

# Ops XLA, tf2onnx, LiteRT's builtin set or OpenVINO reject.
TF_ONLY_OPS = {"InplaceAdd", "InplaceUpdate", "InplaceSub", "Roll"}


LAYER_CASES = {n: f for group in LAYER_GROUPS.values() for n, f in group.items()}


def _step(layers, jit_compile, tape=True):
    """The outputs of `layers` and, with `tape`, the gradients of a fixed linear
    loss with respect to the input and the weights, as a traced `tf.function`."""

    def step(x, upstreams):
        if not tape:
            return [layer(x) for layer in layers], []
        weights = [w for layer in layers for w in layer.trainable_variables]
        with tf.GradientTape() as g:
            g.watch(x)
            ys = [layer(x) for layer in layers]
            loss = sum(tf.reduce_sum(y * u) for y, u in zip(ys, upstreams, strict=True))
        return ys, g.gradient(loss, [x, *weights])

    return tf.function(step, jit_compile=jit_compile)


@pytest.mark.parametrize("group", list(LAYER_GROUPS))
def test_xla_matches_tensorflow_without_xla(group):
    rng = np.random.default_rng(0)
    # Odd width: the layers pad to a multiple of the stride.
    x = tf.constant(rng.standard_normal((2, 10, 9, 4)).astype("float32"))
    layers = [factory() for factory in LAYER_GROUPS[group].values()]
    upstreams = [
        tf.constant(rng.standard_normal(layer(x).shape).astype("float32"))
        for layer in layers
    ]
    want, want_grads = _step(layers, False)(x, upstreams)
    got, grads = _step(layers, True)(x, upstreams)
    plain, _ = _step(layers, False, tape=False)(x, upstreams)
    for name, a, b, c in zip(LAYER_GROUPS[group], got, want, plain, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(c, b, rtol=1e-5, atol=1e-5, err_msg=name)
    # The input's gradient sums every layer's; each weight's is its layer's own.
    assert (
        len(grads)
        == len(want_grads)
        == 1 + sum(len(layer.trainable_variables) for layer in layers)
    )
    for a, b in zip(grads, want_grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def _op_types(layer, tape):
    spec = tf.TensorSpec((None, 10, 9, 4))
    out = tf.TensorSpec((None, *layer.compute_output_shape((None, 10, 9, 4))[1:]))
    graph = _step([layer], False, tape).get_concrete_function(spec, [out]).graph
    return {op.type for op in graph.get_operations()}


@pytest.mark.parametrize("name", [n for n in LAYER_CASES if "Blur" in n])
def test_inference_graphs_hold_only_portable_ops(name):
    layer = LAYER_CASES[name]()
    assert not _op_types(layer, tape=False) & TF_ONLY_OPS
    if "zero" not in name:
        # A training step without XLA keeps the faster in-place border update.
        assert "InplaceAdd" in _op_types(layer, tape=True)
