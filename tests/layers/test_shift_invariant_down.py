import math

import keras
import numpy as np
import pytest

from keras_shiftinv import ops as si_ops
from keras_shiftinv.layers import ShiftInvariantDown
from tests.helpers import compiled, gradients, input_gradient, run_layer_test
from tests.layers import reference, reference_polyphase

SHIFTS = [(dy, dx) for dy in range(4) for dx in range(4)]
# Random initializers compile anew for every kernel shape on JAX (seconds each):
# the tests build with constant kernels and then assign NumPy random values.
ONES = keras.initializers.serialize(keras.initializers.Ones())


def _weights(layer):
    weights = [keras.ops.convert_to_numpy(w) for w in layer.weights]
    return weights if layer.use_bias else [*weights, None]


def _randomize(layer, seed):
    rng = np.random.default_rng(seed)
    for w in layer.weights:
        w.assign(rng.standard_normal(w.shape).astype("float32"))


def _check_against_numpy(x, data_format="channels_last", seed=0, **kwargs):
    layer = ShiftInvariantDown(
        kernel_initializer=ONES, data_format=data_format, **kwargs
    )
    x_in = reference.to_format(x, data_format)
    layer.build(x_in.shape)
    _randomize(layer, seed)
    y = reference.to_last(keras.ops.convert_to_numpy(layer(x_in)), data_format)
    expected = reference_polyphase.shift_invariant_down(
        x,
        *_weights(layer),
        layer.branch,
        layer.strides,
        layer.polyphase_order,
        layer.pad_mode,
    )
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "channels, filters, kernel_size, strides, size",
    [
        # lcm(3, 4) = 12, 4 outputs per group; computed as one folded conv
        (3, 4, 3, (2, 2), (8, 8)),
        # 6 components, lcm(2, 5) = 10, a 1x3 kernel; folded
        (2, 5, (1, 3), (3, 2), (9, 6)),
        # 4 divides 8: 1 output per group; odd sizes; one depthwise conv
        (8, 4, 3, (2, 2), (7, 9)),
        # lcm(8, 12) = 24: a depthwise conv with channel multiplier 3
        (8, 12, 3, (2, 2), (6, 8)),
        # 3 outputs per group on 32 channels: three multiplier-1 depthwise convs
        (32, 48, 3, (2, 2), (6, 6)),
    ],
)
@pytest.mark.parametrize("pad_mode", ["zero", "circular"])
@pytest.mark.parametrize("polyphase_order", ["fixed", "aps"])
def test_group_branch_matches_numpy(
    channels, filters, kernel_size, strides, size, pad_mode, polyphase_order
):
    x = np.random.default_rng(1).standard_normal((3, *size, channels))
    _check_against_numpy(
        x.astype("float32"),
        filters=filters,
        branch="group",
        kernel_size=kernel_size,
        strides=strides,
        polyphase_order=polyphase_order,
        pad_mode=pad_mode,
    )


@pytest.mark.parametrize(
    "channels, filters, kernel_size, size",
    [(3, 4, 3, (8, 6)), (2, 3, (2, 1), (5, 7))],
)
@pytest.mark.parametrize("pad_mode", ["zero", "circular"])
@pytest.mark.parametrize("polyphase_order", ["fixed", "aps"])
def test_conv3d_branch_matches_numpy(
    channels, filters, kernel_size, size, pad_mode, polyphase_order
):
    x = np.random.default_rng(2).standard_normal((3, *size, channels))
    _check_against_numpy(
        x.astype("float32"),
        filters=filters,
        branch="conv3d",
        kernel_size=kernel_size,
        polyphase_order=polyphase_order,
        pad_mode=pad_mode,
    )


@pytest.mark.parametrize("branch", ["group", "conv3d"])
def test_channels_first_matches_numpy(branch):
    x = np.random.default_rng(3).standard_normal((2, 7, 6, 3)).astype("float32")
    _check_against_numpy(
        x, "channels_first", filters=4, branch=branch, polyphase_order="aps"
    )


@pytest.mark.parametrize("branch", ["group", "conv3d"])
def test_weight_layout(branch):
    layer = ShiftInvariantDown(
        10, branch, kernel_size=(3, 1), use_bias=False, kernel_initializer=ONES
    )
    layer.build((None, 8, 8, 4))
    features = math.lcm(4, 10) if branch == "group" else 20
    kernel = (3, 1, 4, features) if branch == "group" else (3, 3, 1, 4, 10)
    assert [tuple(w.shape) for w in layer.trainable_weights] == [
        kernel,
        (1, 1, features, 10),
    ]


@pytest.mark.parametrize("branch", ["group", "conv3d"])
def test_aps_with_circular_padding_is_exactly_invariant(branch):
    x = np.random.default_rng(4).standard_normal((2, 12, 12, 3)).astype("float32")
    layer = ShiftInvariantDown(
        4,
        branch,
        polyphase_order="aps",
        pad_mode="circular",
        use_bias=False,
        kernel_initializer=ONES,
    )
    layer.build(x.shape)
    _randomize(layer, 4)
    pooled = keras.ops.convert_to_numpy(layer(x)).mean(axis=(1, 2))
    for dy, dx in SHIFTS:
        y = keras.ops.convert_to_numpy(layer(np.roll(x, (dy, dx), axis=(1, 2))))
        np.testing.assert_allclose(y.mean(axis=(1, 2)), pooled, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("branch", ["group", "conv3d"])
def test_fixed_order_is_not_invariant(branch):
    x = np.random.default_rng(4).standard_normal((2, 12, 12, 3)).astype("float32")
    layer = ShiftInvariantDown(
        4, branch, pad_mode="circular", use_bias=False, kernel_initializer=ONES
    )
    layer.build(x.shape)
    _randomize(layer, 4)
    pooled = keras.ops.convert_to_numpy(layer(x)).mean(axis=(1, 2))
    changes = [
        np.abs(
            keras.ops.convert_to_numpy(layer(np.roll(x, shift, axis=(1, 2)))).mean(
                axis=(1, 2)
            )
            - pooled
        ).max()
        for shift in SHIFTS
    ]
    # Even shifts only roll the components: invariant. Odd ones reorder them.
    assert max(changes[0], changes[2], changes[8], changes[10]) < 1e-4
    assert min(changes[1], changes[4], changes[5]) > 1e-2


@pytest.mark.parametrize("branch", ["group", "conv3d"])
@pytest.mark.parametrize("polyphase_order", ["fixed", "aps"])
def test_gradient_reaches_every_input_element(branch, polyphase_order):
    x = np.random.default_rng(5).standard_normal((2, 7, 8, 3)).astype("float32")
    layer = ShiftInvariantDown(
        4, branch, polyphase_order=polyphase_order, kernel_initializer=ONES
    )
    layer.build(x.shape)
    _randomize(layer, 5)
    grad = input_gradient(layer, x)
    assert grad.shape == x.shape
    assert np.all(np.abs(grad) > 1e-6)


@pytest.mark.parametrize(
    "kwargs, data_format",
    [
        (
            {"branch": "group", "polyphase_order": "aps", "pad_mode": "circular"},
            "channels_last",
        ),
        ({"branch": "conv3d"}, "channels_first"),
    ],
)
def test_layer_contract(kwargs, data_format, tmp_path):
    shape = (2, 9, 8, 3) if data_format == "channels_last" else (2, 3, 9, 8)
    expected = (2, 5, 4, 4) if data_format == "channels_last" else (2, 4, 5, 4)
    run_layer_test(
        ShiftInvariantDown,
        {
            "filters": 4,
            "kernel_size": 3,
            "kernel_initializer": ONES,
            "data_format": data_format,
            **kwargs,
        },
        shape,
        expected,
        tmp_path,
    )


def test_regularizer_and_initializer_apply_to_both_kernels():
    layer = ShiftInvariantDown(
        4, kernel_initializer="ones", kernel_regularizer=keras.regularizers.L2(0.5)
    )
    layer.build((None, 8, 8, 2))
    kernels = [keras.ops.convert_to_numpy(w) for w in layer.weights[:2]]
    assert all(np.all(k == 1) for k in kernels)
    expected = sum(0.5 * k.size for k in kernels)
    np.testing.assert_allclose(sum(float(v) for v in layer.losses), expected)
    config = ShiftInvariantDown.from_config(layer.get_config()).get_config()
    assert config == layer.get_config()


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"filters": 0}, "filters"),
        ({"filters": 4, "branch": "dense"}, "branch"),
        ({"filters": 4, "kernel_size": 0}, "kernel_size"),
        ({"filters": 4, "strides": 0}, "strides"),
        ({"filters": 4, "branch": "conv3d", "strides": 3}, "strides"),
        ({"filters": 4, "polyphase_order": "random"}, "polyphase_order"),
        ({"filters": 4, "pad_mode": "reflect"}, "pad_mode"),
        ({"filters": 4, "use_bias": "yes"}, "use_bias"),
        ({"filters": 4, "data_format": "NHWC"}, "data_format"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ShiftInvariantDown(**kwargs)


def test_bad_inputs_give_clear_errors():
    with pytest.raises(ValueError, match="rank-4"):
        ShiftInvariantDown(4)(np.zeros((2, 8, 8), "float32"))
    with pytest.raises(ValueError, match="channels"):
        ShiftInvariantDown(4).build((None, 8, 8, None))


@pytest.mark.parametrize("branch", ["group", "conv3d"])
def test_circular_kernel_wider_than_the_components(branch):
    # 5x5 kernels over 1x4 components: the circular padding wraps more than once.
    x = np.random.default_rng(7).standard_normal((2, 2, 8, 2)).astype("float32")
    _check_against_numpy(
        x, filters=3, branch=branch, kernel_size=5, pad_mode="circular"
    )


@pytest.mark.tf_only
@pytest.mark.parametrize("branch", ["group", "conv3d"])
@pytest.mark.parametrize("pad_mode", ["zero", "circular"])
def test_unknown_sizes_in_a_traced_function(branch, pad_mode):
    # A serving signature leaves height and width unknown until run time; odd
    # sizes then take the padding path that does not know them.
    import tensorflow as tf

    layer = ShiftInvariantDown(
        4, branch, polyphase_order="aps", pad_mode=pad_mode, kernel_initializer=ONES
    )
    x = np.random.default_rng(6).standard_normal((2, 9, 7, 3)).astype("float32")
    layer.build(x.shape)
    _randomize(layer, 6)
    traced = tf.function(
        layer, input_signature=[tf.TensorSpec((None, None, None, 3), "float32")]
    )
    np.testing.assert_allclose(traced(x).numpy(), layer(x).numpy(), atol=1e-5)


# (branch, channels, filters, kernel_size, size, pad_mode, polyphase_order,
# data_format): odd and even kernels (the components' "same" padding and the
# padded "valid" path), 1 and 3 outputs per group, odd sizes.
METHOD_CASES = [
    ("group", 4, 6, 3, (7, 8), "zero", "fixed", "channels_last"),
    ("group", 3, 3, 2, (6, 6), "circular", "aps", "channels_first"),
    ("conv3d", 3, 4, 3, (6, 7), "circular", "aps", "channels_last"),
    ("conv3d", 2, 3, 2, (6, 6), "zero", "fixed", "channels_first"),
]


@pytest.mark.parametrize("case", METHOD_CASES, ids=lambda c: f"{c[0]}-k{c[3]}-{c[6]}")
def test_every_method_matches_numpy_and_the_tensorflow_method(case, monkeypatch):
    # Each backend runs the methods it chooses (XLA: "patches" or "components");
    # here every method runs everywhere, forced. The gradients are compared with
    # those of TensorFlow's method without XLA, the first one.
    branch, channels, filters, kernel_size, size, pad_mode, order, data_format = case
    methods = ["depthwise", "fold", "patches", "components"]
    if branch == "conv3d":
        methods = ["fold", "components"]
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, *size, channels)).astype("float32")
    layer = ShiftInvariantDown(
        filters,
        branch,
        kernel_size=kernel_size,
        polyphase_order=order,
        pad_mode=pad_mode,
        kernel_initializer=ONES,
        data_format=data_format,
    )
    x_in = reference.to_format(x, data_format)
    layer.build(x_in.shape)
    _randomize(layer, 8)
    kernel, pointwise, bias = _weights(layer)
    expected = reference_polyphase.shift_invariant_down(
        x, kernel, pointwise, bias, branch, (2, 2), order, pad_mode
    )
    cotangent = reference.to_format(
        rng.standard_normal(expected.shape).astype("float32"), data_format
    )
    cotangent, bias = map(keras.ops.convert_to_tensor, (cotangent, bias))

    def module(x, kernel, pointwise):
        return si_ops.shift_invariant_down(
            x, kernel, pointwise, bias, branch, 2, order, pad_mode, data_format
        )

    reference_gradients = None
    for method in methods:
        monkeypatch.setattr(si_ops, "_module_method", lambda *_, m=method: m)
        y = keras.ops.convert_to_numpy(compiled(module)(x_in, kernel, pointwise))
        y = reference.to_last(y, data_format)
        np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4, err_msg=method)
        grads = gradients(
            lambda *args: module(*args) * cotangent, x_in, kernel, pointwise, jit=True
        )
        if reference_gradients is None:
            reference_gradients = grads
        for got, want in zip(grads, reference_gradients, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=method)


def test_module_conv_rejects_a_group_method_for_conv3d():
    kernel = np.ones((3, 3, 3, 2, 4), "float32")
    with pytest.raises(ValueError, match="method='patches'"):
        si_ops.module_conv(
            np.ones((1, 4, 4, 2), "float32"),
            kernel,
            np.ones((1, 1, 8, 4), "float32"),
            "conv3d",
            (2, 2),
            "same",
            "patches",
        )


@pytest.mark.tf_only
def test_jit_compile_takes_the_xla_method_and_matches(monkeypatch):
    import tensorflow as tf

    from keras_shiftinv import _keras_compat

    # 64 -> 64 channels: "patches" under XLA, a depthwise conv without.
    layer = ShiftInvariantDown(64, polyphase_order="aps", kernel_initializer=ONES)
    x = np.random.default_rng(9).standard_normal((2, 6, 6, 64)).astype("float32")
    layer.build(x.shape)
    _randomize(layer, 9)
    chosen = []
    choose = si_ops._module_method

    def recording(*args):
        chosen.append(choose(*args))
        return chosen[-1]

    monkeypatch.setattr(si_ops, "_module_method", recording)

    cotangent = np.random.default_rng(10).standard_normal((2, 3, 3, 64))

    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * cotangent.astype("float32"))
        return [y, *tape.gradient(loss, [x, *layer.trainable_weights])]

    plain = tf.function(step)(x)
    compiled = tf.function(step, jit_compile=True)(x)
    assert chosen == ["depthwise", "patches"]
    for a, b in zip(compiled, plain, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)
    assert not _keras_compat.compiling_with_xla()
