import keras
import numpy as np
import pytest

import zoo
from keras_shiftinv import (
    BlurPool2D,
    CircularPadding2D,
    MaxBlurPool2D,
    PolyphaseDown2D,
    PolyphaseGather2D,
    ShiftInvariantDown,
    antialias,
)
from tests.helpers import dtype_policy

L = keras.layers


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _random(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def _all_layers(model):
    """Layers by name, those of nested functional/Sequential models included."""
    found = {}
    for layer in model.layers:
        found[layer.name] = layer
        if isinstance(layer, keras.Model):
            found.update(_all_layers(layer))
    return found


def _assert_weights_copied(original, converted):
    """Every layer of `original` that has weights has a namesake in `converted`
    with equal weights. Returns how many layers were compared."""
    new = _all_layers(converted)
    compared = 0
    for name, layer in _all_layers(original).items():
        if isinstance(layer, keras.Model) or not layer.weights:
            continue
        old_weights, new_weights = layer.get_weights(), new[name].get_weights()
        assert len(old_weights) == len(new_weights), name
        for a, b in zip(old_weights, new_weights, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=name)
        compared += 1
    return compared


def _copy_weights_by_name(source, target):
    """Sets every layer of `target` that has weights from its namesake in
    `source`; returns `target`."""
    for layer in target.layers:
        if layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())
    return target


def _producer(layer):
    """The layer whose output `layer` was called on (its first call)."""
    return layer.input._keras_history.operation


def _small_sequential():
    return keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            L.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="c1"),
            L.MaxPooling2D(2, name="p1"),
            L.Conv2D(6, 3, strides=2, name="c2"),
            L.BatchNormalization(name="bn2"),
            L.ReLU(name="r2"),
            L.AveragePooling2D(2, padding="same", name="p2"),
            L.Flatten(name="flat"),
            L.Dense(3, name="head"),
        ],
        name="small",
    )


def _graph_model():
    """Two inputs, two outputs, a shared strided layer and a nested model."""
    inner_in = keras.Input((8, 8, 4))
    h = L.Conv2D(6, 3, strides=2, padding="same", use_bias=False, name="in_conv")(
        inner_in
    )
    h = L.BatchNormalization(name="in_bn")(h)
    h = L.Activation("relu", name="in_relu")(h)
    inner = keras.Model(inner_in, h, name="inner")

    a, b = keras.Input((16, 16, 3), name="a"), keras.Input((16, 16, 3), name="b")
    stem = L.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="stem")
    fa, fb = stem(a), stem(b)
    mixed = L.Conv2D(4, 1, name="mix")(L.Concatenate(name="cat")([fa, fb]))
    shortcut = L.Conv2D(6, 1, strides=2, name="short")(mixed)
    added = L.Add(name="add")([inner(mixed), shortcut])
    logits = L.Dense(2, name="logits")(L.GlobalAveragePooling2D(name="gap")(added))
    pooled = L.MaxPooling2D(3, strides=2, padding="same", name="pool")(fa)
    return keras.Model({"a": a, "b": b}, {"logits": logits, "pooled": pooled})


def _graph_inputs():
    return {"a": _random((2, 16, 16, 3), 1), "b": _random((2, 16, 16, 3), 2)}


def test_sequential_rules_shapes_and_weights():
    model = _small_sequential()
    new, report = antialias(model, return_report=True)
    assert isinstance(new, keras.Sequential)
    assert new.output_shape == model.output_shape
    assert _assert_weights_copied(model, new) == 4
    assert [type(layer).__name__ for layer in new.layers] == [
        "Conv2D",
        "BlurPool2D",  # after the conv's own ReLU
        "MaxBlurPool2D",
        "Conv2D",
        "BatchNormalization",
        "ReLU",
        "BlurPool2D",  # after the first nonlinearity following the linear conv
        "AveragePooling2D",
        "BlurPool2D",
        "Flatten",
        "Dense",
    ]
    for name in ("c1", "c2", "p2"):
        assert new.get_layer(name).strides == (1, 1)
    assert [change.layer for change in report] == ["c1", "p1", "c2", "p2"]
    assert np.isfinite(_numpy(new(_random((2, 32, 32, 3))))).all()
    # Converting again changes nothing: the new layers are already antialiased.
    again, report = antialias(new, return_report=True)
    assert report == []
    assert [type(layer) for layer in again.layers] == [
        type(layer) for layer in new.layers
    ]


def test_functional_graph_shared_and_nested_layers():
    model = _graph_model()
    x = _graph_inputs()
    before = {k: _numpy(v) for k, v in model(x).items()}
    new, report = antialias(model, return_report=True)

    assert new.output_shape == model.output_shape
    assert _assert_weights_copied(model, new) == 6
    # Each of the two calls of the shared strided layer gets its own blur, and
    # the report says so once.
    stem = new.get_layer("stem")
    assert stem.strides == (1, 1) and len(stem._inbound_nodes) == 2
    assert len(new.get_layer("stem_blurpool")._inbound_nodes) == 2
    assert [c.layer for c in report].count("stem") == 1
    assert len(set(report)) == len(report)
    # Inside the nested model the blur follows conv, batch norm, ReLU.
    inner = new.get_layer("inner")
    assert _producer(inner.get_layer("in_conv_blurpool")).name == "in_relu"
    assert "inner/in_conv" in [c.layer for c in report]
    # The linear 1x1 shortcut conv (then Add) is blurred on its input.
    assert _producer(new.get_layer("short")).name == "short_blurpool"
    # A "same" strided max pool: max pool at stride 1, "same", then a blur.
    pool = new.get_layer("pool")
    assert (pool.strides, pool.padding) == ((1, 1), "same")
    assert _producer(new.get_layer("pool_blurpool")) is pool
    outputs = new(x)
    assert all(np.isfinite(_numpy(v)).all() for v in outputs.values())

    # The input model is untouched and shares no layer with the new one.
    for key, value in model(x).items():
        np.testing.assert_array_equal(_numpy(value), before[key])
    assert model.get_layer("stem").strides == (2, 2)
    old_ids = {id(layer) for layer in _all_layers(model).values()}
    assert not old_ids & {id(layer) for layer in _all_layers(new).values()}


def test_blur_rewrite_computes_conv_relu_blur():
    """The rewrite equals conv at stride 1, ReLU, BlurPool2D built by hand with
    the same weights; blurring a linear 1x1 conv on its input equals blurring it
    on its output (reflect padding)."""
    inputs = keras.Input((12, 12, 3))
    a = L.Conv2D(5, 3, strides=2, padding="same", activation="relu", name="c")(inputs)
    b = L.Conv2D(5, 1, strides=2, name="proj")(inputs)
    model = keras.Model(inputs, L.Add()([a, b]))
    new = antialias(model, filt_size=3)

    x = _random((2, 12, 12, 3))

    def conv(name, v):
        layer = model.get_layer(name)
        return keras.ops.conv(v, layer.kernel, 1, "same") + layer.bias

    blur = BlurPool2D(3)
    expected = blur(keras.ops.relu(conv("c", x))) + blur(conv("proj", x))
    np.testing.assert_allclose(_numpy(new(x)), _numpy(expected), atol=1e-5)


def test_converted_model_trains_a_step():
    new = antialias(_small_sequential())
    new.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = [_numpy(w) for w in new.trainable_weights]
    x, y = _random((4, 32, 32, 3)), _random((4, 3), 1)
    history = new.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    for w, old in zip(new.trainable_weights, before, strict=True):
        assert not np.allclose(_numpy(w), old), w.path


def test_converted_model_saves_and_loads(tmp_path):
    new = antialias(_graph_model())
    path = tmp_path / "converted.keras"
    new.save(path)
    loaded = keras.saving.load_model(path)
    x = _graph_inputs()
    for key, value in new(x).items():
        np.testing.assert_allclose(_numpy(loaded(x)[key]), _numpy(value), atol=1e-6)


def test_mixed_precision_model_stays_mixed():
    with dtype_policy("mixed_float16"):
        model = _small_sequential()
    new = antialias(model)
    assert new.get_layer("c1_blurpool").dtype_policy.name == "mixed_float16"
    assert _numpy(new(_random((2, 32, 32, 3)))).dtype == np.float16


def _tiny_strided_cnn(seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((24, 24, 3)),
            L.Conv2D(8, 3, padding="same", activation="relu"),
            L.Conv2D(16, 3, strides=2, padding="same", activation="relu"),
            L.MaxPooling2D(2),
            L.Conv2D(16, 3, padding="same", activation="relu"),
            L.GlobalAveragePooling2D(),
            L.Dense(8),
        ]
    )


def _shift_change(model, x):
    """Mean relative change of the outputs under a 1-pixel circular shift."""
    y = _numpy(model(x))
    shifted = _numpy(model(np.roll(x, 1, axis=2)))
    return np.abs(shifted - y).mean() / np.abs(y).mean()


def test_blur_conversion_is_more_shift_consistent():
    x = np.random.default_rng(0).random((16, 24, 24, 3)).astype("float32")
    for seed in range(3):
        model = _tiny_strided_cnn(seed)
        new = antialias(model, pad_mode="circular")
        assert _shift_change(new, x) < 0.3 * _shift_change(model, x), seed


@pytest.mark.parametrize(
    "name, size, kwargs, changes",
    [
        ("ResNet50", 64, {}, 8),
        ("VGG16", 64, {}, 5),
        ("MobileNetV2", 96, {"alpha": 0.35}, 5),
    ],
)
def test_keras_applications(name, size, kwargs, changes):
    model = getattr(keras.applications, name)(
        weights=None, input_shape=(size, size, 3), classes=10, **kwargs
    )
    x = _random((2, size, size, 3))
    new, report = antialias(model, return_report=True)
    assert len(report) == changes
    assert _assert_weights_copied(model, new) == sum(
        1 for layer in model.layers if layer.weights
    )
    for method in ("blur", "aps", "group"):
        if method != "blur":
            if name == "MobileNetV2" and method == "group":
                with pytest.raises(ValueError, match=r"\(DepthwiseConv2D\)"):
                    antialias(model, variant=method)
                continue
            new = antialias(model, variant=method)
        assert new.output_shape == model.output_shape == (None, 10)
        # Residual additions still see equal shapes: every stage kept its size
        # (ResNet50's stem pads, then convolves and pools "valid" with stride 2).
        for layer in model.layers:
            if isinstance(layer, L.Add):
                assert new.get_layer(layer.name).output.shape == layer.output.shape
        y = _numpy(new(x))
        assert np.isfinite(y).all()
        np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)


def test_exclude_keeps_a_layer_and_verbose_prints_the_report(capsys):
    new, report = antialias(
        _small_sequential(), exclude=["c1"], return_report=True, verbose=True
    )
    assert new.get_layer("c1").strides == (2, 2)
    assert report[0].action == "kept unchanged (excluded)"
    assert capsys.readouterr().out.splitlines() == [str(c) for c in report]
    with pytest.raises(ValueError, match="exclude.*'nope'"):
        antialias(_small_sequential(), exclude=["nope"])


def _with(layer, input_shape):
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, L.Flatten()(layer(inputs)))


@pytest.mark.parametrize(
    "layer, input_shape",
    [
        (L.Conv1D(4, 3, strides=2, name="odd"), (16, 3)),
        (L.Conv3D(4, 3, strides=2, name="odd"), (8, 8, 8, 1)),
        (L.MaxPooling1D(2, name="odd"), (16, 3)),
        (L.Conv2DTranspose(4, 3, strides=2, name="odd"), (8, 8, 3)),
    ],
)
def test_unsupported_strided_layers(layer, input_shape):
    model = _with(layer, input_shape)
    kind = type(layer).__name__
    with pytest.raises(ValueError, match=rf"'odd' \({kind}\): it subsamples"):
        antialias(model)
    with pytest.warns(UserWarning, match=rf"'odd' \({kind}\)"):
        new, report = antialias(model, on_unsupported="warn", return_report=True)
    assert new.get_layer("odd").get_config() == layer.get_config()
    assert report[0].action.startswith("kept unchanged")


class _Holder(L.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = L.Conv2D(2, 3, strides=2)

    def call(self, x):
        return self.conv(x)


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv = L.Conv2D(2, 3, strides=2)

    def call(self, x):
        return self.conv(x)


def test_unreachable_and_subclassed_models():
    with pytest.raises(ValueError, match=r"'holder' \(_Holder\): it holds the strided"):
        antialias(_with(_Holder(name="holder"), (8, 8, 3)))
    inner_in = keras.Input((8, 8, 3))
    inner = keras.Model(
        inner_in, L.Conv2DTranspose(2, 3, strides=2, name="odd")(inner_in), name="in"
    )
    outer_in = keras.Input((8, 8, 3))
    with pytest.raises(ValueError, match=r"'in/odd' \(Conv2DTranspose\)"):
        antialias(keras.Model(outer_in, inner(outer_in)))
    subclassed = _Subclassed()
    subclassed(_random((1, 8, 8, 3)))
    with pytest.raises(ValueError, match="subclassed _Subclassed"):
        antialias(subclassed)
    with pytest.raises(ValueError, match="built Sequential"):
        antialias(keras.Sequential([L.Conv2D(2, 3, strides=2)]))


def test_bad_arguments():
    model = _small_sequential()
    with pytest.raises(ValueError, match="variant.*'sharpen'"):
        antialias(model, variant="sharpen")
    with pytest.raises(ValueError, match="filt_size"):
        antialias(model, filt_size=0)
    with pytest.raises(ValueError, match="on_unsupported"):
        antialias(model, on_unsupported="ignore")
    with pytest.raises(ValueError, match="pad_mode.*'reflect'"):
        antialias(model, variant="group", pad_mode="reflect")
    depthwise = _with(L.DepthwiseConv2D(3, strides=2, name="dw"), (8, 8, 3))
    with pytest.raises(ValueError, match=r"'dw' \(DepthwiseConv2D\).*no Depthwise"):
        antialias(depthwise, variant="group")
    assert isinstance(antialias(depthwise).get_layer("dw_blurpool"), BlurPool2D)
    assert isinstance(antialias(_small_sequential()).layers[2], MaxBlurPool2D)


def _zoo_cases():
    """(model, variant, options): the ImageNet stem (blur keeps its conv
    strided), the CIFAR stem with circular padding ("aps"), every model slow."""
    fast = {("resnet18", "blur"), ("vgg11", "blur"), ("resnet18", "aps")}
    for variant in ("blur", "aps"):
        for name in zoo.list_models():
            options = dict(num_classes=10, width_multiplier=0.25, pad_mode="zero")
            if name.startswith("resnet") and variant == "blur":
                options["input_shape"] = (64, 64, 3)
            else:
                options["input_shape"] = (32, 32, 3)
            if variant == "aps":
                options["pad_mode"] = "circular"
                if name.startswith("resnet"):
                    options["stem"] = "cifar"
            marks = () if (name, variant) in fast else pytest.mark.slow
            yield pytest.param(name, variant, options, marks=marks)


@pytest.mark.parametrize("name, variant, options", _zoo_cases())
def test_zoo_baseline_converts_to_the_zoo_variant(name, variant, options):
    """antialias() of a zoo baseline computes what the zoo's own variant computes
    (built independently), once the baseline's weights are in both."""
    baseline = zoo.create_model(name, **options)
    reference = zoo.create_model(name, variant=variant, **options)
    strided_convs = [
        layer.name
        for layer in baseline.layers
        if isinstance(layer, L.Conv2D) and layer.strides == (2, 2)
    ]
    # The zoo's "blur" keeps the ImageNet stem conv strided; so must the conversion.
    exclude = strided_convs[:1] if variant == "blur" else []
    new = antialias(
        baseline, variant=variant, pad_mode=options["pad_mode"], exclude=exclude
    )
    assert new.count_params() == baseline.count_params() == reference.count_params()
    assert _assert_weights_copied(baseline, new) > 0
    _assert_weights_copied(baseline, _copy_weights_by_name(baseline, reference))
    x = 255 * np.random.default_rng(0).random((2, *options["input_shape"]))
    np.testing.assert_allclose(
        _numpy(new(x)), _numpy(reference(x)), rtol=1e-4, atol=1e-6
    )


@pytest.mark.parametrize("pad_mode", ["zero", "circular"])
def test_dense_lowpass_group_conversion_starts_as_the_blur_conversion(pad_mode):
    """placement="dense" keeps every layer where "blur" keeps it and puts a module
    where "blur" puts BlurPool2D; a low-pass start makes both the same function."""
    options = dict(
        num_classes=10,
        width_multiplier=0.25,
        input_shape=(32, 32, 3),
        stem="cifar",
        classifier_activation=None,  # logits: a softmax at init saturates
    )
    baseline = zoo.create_model("resnet18", pad_mode=pad_mode, **options)
    blur = antialias(baseline, pad_mode=pad_mode)
    dense, report = antialias(
        baseline,
        variant="group",
        placement="dense",
        module_initializer="lowpass",
        pad_mode=pad_mode,
        return_report=True,
    )
    # Every weight of the baseline is kept; the modules add their own.
    assert _assert_weights_copied(baseline, dense) > 0
    modules = [layer for layer in dense.layers if isinstance(layer, ShiftInvariantDown)]
    assert len(modules) == 6 and all(m.filters == m.input.shape[-1] for m in modules)
    assert all("ShiftInvariantDown" in change.action for change in report)
    x = np.random.default_rng(0).random((2, 32, 32, 3))
    np.testing.assert_allclose(_numpy(dense(x)), _numpy(blur(x)), rtol=1e-4, atol=1e-5)
    # Without the low-pass start the modules are random: another function.
    random = antialias(baseline, variant="conv3d", placement="dense", pad_mode=pad_mode)
    assert np.abs(_numpy(random(x)) - _numpy(blur(x))).max() > 1e-3


def test_dense_placement_converts_depthwise_convs():
    depthwise = _with(L.DepthwiseConv2D(3, strides=2, name="dw"), (8, 8, 3))
    new = antialias(depthwise, variant="conv3d", placement="dense")
    assert new.get_layer("dw").strides == (1, 1)
    module = new.get_layer("dw_shift_invariant_down")
    assert module.branch == "conv3d" and module.filters == 3
    assert new.output_shape == depthwise.output_shape


def test_dense_placement_bad_arguments():
    model = _small_sequential()
    with pytest.raises(ValueError, match="placement"):
        antialias(model, variant="group", placement="middle")
    with pytest.raises(ValueError, match="apply to the variants"):
        antialias(model, placement="dense")
    with pytest.raises(ValueError, match="apply to the variants"):
        antialias(model, variant="aps", module_initializer="lowpass")
    with pytest.raises(ValueError, match="polyphase_order='fixed'"):
        antialias(model, variant="group", placement="dense", polyphase_order="aps")
    with pytest.raises(ValueError, match="variant='aps', module_lowpass_penalty=1"):
        antialias(model, variant="aps", module_lowpass_penalty=1)
    with pytest.raises(ValueError, match="module_lowpass_penalty"):
        antialias(model, variant="group", module_lowpass_penalty=-0.5)


@pytest.mark.parametrize("placement", ["replace", "dense"])
def test_lowpass_penalty_reaches_every_module(placement):
    new = antialias(
        _small_sequential(),
        variant="conv3d",
        placement=placement,
        module_lowpass_penalty=0.3,
    )
    modules = [
        m for m in _all_layers(new).values() if isinstance(m, ShiftInvariantDown)
    ]
    assert modules and all(m.lowpass_penalty == 0.3 for m in modules)
    new(_random((2, 32, 32, 3)), training=True)
    expected = sorted(0.3 * float(_numpy(m.high_frequency_share())) for m in modules)
    assert sorted(float(_numpy(v)) for v in new.losses) == pytest.approx(expected)


def test_compiled_model_stays_compiled():
    model = _small_sequential()
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    new = antialias(model)
    x, y = _random((4, 32, 32, 3)), _random((4, 3), 1)
    assert set(new.evaluate(x, y, verbose=0, return_dict=True)) == {"loss", "mae"}
    assert not antialias(_small_sequential()).compiled


def _circular_residual_model():
    """A residual block with a strided conv and a strided 1x1 shortcut, and a
    strided max pool, every layer padded circularly: converted by "aps" (or
    ShiftInvariantDown with polyphase_order="aps"), it becomes exactly invariant
    to circular shifts."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = L.Conv2D(8, 3, activation="relu", name="stem")(CircularPadding2D(1)(inputs))
    h = L.Conv2D(16, 3, strides=2, use_bias=False, name="conv1")(
        CircularPadding2D(1)(x)
    )
    h = L.ReLU(name="relu1")(L.BatchNormalization(name="bn1")(h))
    h = L.Conv2D(16, 3, name="conv2")(CircularPadding2D(1)(h))
    shortcut = L.Conv2D(16, 1, strides=2, name="shortcut")(x)
    y = L.ReLU(name="out")(L.Add(name="add")([h, shortcut]))
    y = L.MaxPooling2D(2, name="pool")(CircularPadding2D(((0, 1), (0, 1)))(y))
    y = L.GlobalAveragePooling2D(name="gap")(y)
    return keras.Model(inputs, L.Dense(5, name="logits")(y))


def _circular_shift_error(model, x, shifts=8):
    """Largest change of the outputs over `shifts` random circular shifts."""
    y = _numpy(model(x))
    rng = np.random.default_rng(1)
    return max(
        np.abs(_numpy(model(np.roll(x, rng.integers(1, 16, 2), axis=(1, 2)))) - y).max()
        for _ in range(shifts)
    )


POLYPHASE_METHODS = [
    ("aps", {}),
    ("aps", {"filt_size": 1}),
    ("group", {"polyphase_order": "aps"}),
    ("conv3d", {"polyphase_order": "aps"}),
]


@pytest.mark.parametrize("method, options", POLYPHASE_METHODS)
def test_polyphase_methods_make_a_circular_model_exactly_invariant(method, options):
    model = _circular_residual_model()
    x = _random((4, 16, 16, 3))
    new, report = antialias(
        model, variant=method, pad_mode="circular", return_report=True, **options
    )
    assert new.output_shape == model.output_shape
    assert [c.layer for c in report] == ["conv1", "shortcut", "pool"]
    assert _circular_shift_error(model, x) > 1e-2
    assert _circular_shift_error(new, x) < 1e-4
    if method == "aps":
        # The shortcut samples the polyphase component its block chose.
        assert any(isinstance(layer, PolyphaseGather2D) for layer in new.layers)


@pytest.mark.parametrize("method", ["aps", "group", "conv3d"])
def test_polyphase_methods_copy_weights_and_train(method):
    model = _circular_residual_model()
    new = antialias(model, variant=method)
    replaced = ("conv1", "shortcut", "pool") if method != "aps" else ()
    for name in replaced:
        assert isinstance(new.get_layer(name), ShiftInvariantDown)
    kept = [layer for layer in model.layers if layer.weights]
    for layer in kept:
        if layer.name not in replaced:
            for a, b in zip(
                layer.get_weights(),
                new.get_layer(layer.name).get_weights(),
                strict=True,
            ):
                np.testing.assert_array_equal(a, b)
    new.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = [_numpy(w) for w in new.trainable_weights]
    new.fit(_random((4, 16, 16, 3)), _random((4, 5), 1), batch_size=4, verbose=0)
    for w, old in zip(new.trainable_weights, before, strict=True):
        assert not np.allclose(_numpy(w), old), w.path


def test_channels_first_matches_channels_last():
    def build(data_format):
        keras.utils.set_random_seed(0)
        shape = (16, 16, 3) if data_format == "channels_last" else (3, 16, 16)
        options = dict(data_format=data_format)
        return keras.Sequential(
            [
                keras.Input(shape),
                L.Conv2D(4, 3, strides=2, padding="same", name="c", **options),
                L.BatchNormalization(axis=-1 if data_format == "channels_last" else 1),
                L.ReLU(),
                L.MaxPooling2D(2, **options),
                L.AveragePooling2D(2, padding="same", **options),
            ]
        )

    x = _random((2, 16, 16, 3))
    for method in ("blur", "aps", "group"):
        last = antialias(build("channels_last"), variant=method)
        first = antialias(build("channels_first"), variant=method)
        first.set_weights(last.get_weights())
        np.testing.assert_allclose(
            _numpy(first(x.transpose(0, 3, 1, 2))).transpose(0, 2, 3, 1),
            _numpy(last(x)),
            atol=1e-5,
        )


@pytest.mark.parametrize("sequential", [False, True])
def test_max_pool_size_reads_the_unpadded_input(sequential):
    # antialiased-cnns' ResNet stem: a 2x2 max at stride 1 on the unpadded map
    # where torchvision pads by 1 for a 3x3 max at stride 2.
    layers = [
        L.Conv2D(4, 3, padding="same", activation="relu", name="conv"),
        L.ZeroPadding2D(1, name="pool_pad"),
        L.MaxPooling2D(3, strides=2, name="pool"),
    ]
    if sequential:
        model = keras.Sequential([keras.Input((16, 16, 3)), *layers])
    else:
        inputs = keras.Input((16, 16, 3))
        x = inputs
        for layer in layers:
            x = layer(x)
        model = keras.Model(inputs, x)
    converted, report = antialias(
        model, filt_size=3, max_pool_size=2, return_report=True
    )
    assert converted.output_shape == model.output_shape == (None, 8, 8, 4)
    assert "pool_pad" not in [layer.name for layer in converted.layers]
    pool = converted.get_layer("pool")
    assert isinstance(pool, MaxBlurPool2D) and pool.pool_size == (2, 2)
    assert any("on the unpadded input" in str(change) for change in report)
    x = _random((2, 16, 16, 3))
    features = _numpy(model.get_layer("conv")(x))
    expected = _numpy(MaxBlurPool2D(2, filt_size=3, pad_mode="reflect")(features))
    np.testing.assert_allclose(_numpy(converted(x)), expected, rtol=1e-6, atol=1e-6)


def test_max_pool_size_errors():
    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, L.MaxPooling2D(3, strides=2, name="pool")(inputs))
    with pytest.raises(ValueError, match="variant='blur'"):
        antialias(model, variant="aps", max_pool_size=2)
    with pytest.raises(ValueError, match="output shape of 'pool'"):
        antialias(model, max_pool_size=2)


def test_method_is_a_deprecated_name_of_variant():
    model = _graph_model()
    new = antialias(model, variant="aps")
    with pytest.warns(DeprecationWarning, match="use `variant`") as record:
        old = antialias(model, method="aps")
    # The warning points at the caller, here.
    assert [w.filename for w in record] == [__file__]
    assert old.get_config() == new.get_config()
    assert [w.shape for w in old.weights] == [w.shape for w in new.weights]
    assert any(isinstance(layer, PolyphaseDown2D) for layer in old.layers)
    with pytest.raises(ValueError, match="Received: method='aps', variant='blur'"):
        antialias(model, method="aps", variant="blur")


def test_padding_that_does_not_fit_a_small_map_is_refused_at_conversion():
    """Valid convs on a 9x9 input leave a 2x2 map at stride 1: a 4-tap reflect
    blur pads it by 2, which reflect cannot. antialias() says so, naming the
    layer, instead of returning a model that fails when called; replicate
    padding fits."""
    inputs = keras.Input((9, 9, 1))
    x = keras.layers.Conv2D(2, 3, strides=2, activation="relu", name="c1")(inputs)
    x = keras.layers.Conv2D(2, 3, strides=2, activation="relu", name="c2")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    with pytest.raises(ValueError, match="put in for 'c2'.*pad_mode='replicate'"):
        antialias(model)
    new = antialias(model, pad_mode="replicate")
    x = np.random.default_rng(0).random((2, 9, 9, 1)).astype("float32")
    assert _numpy(new(x)).shape == (2, 2)
    with pytest.raises(ValueError, match="c2.*exclude=\\['c2'\\]"):
        antialias(model, variant="aps")
    assert antialias(model, exclude=["c2"]).output_shape == (None, 2)
