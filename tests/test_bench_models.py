"""benchmarks/bench_models.py at a tiny size: the rows with PyTorch references and
peak memory, and the APS layer of the PyTorch reference
(`tests.zoo.torch_reference`)."""

import numpy as np
import pytest

pytest.importorskip("tensorflow")
torch = pytest.importorskip("torch")
pytest.importorskip("antialiased_cnns")

from tests.benchmark_scripts import load_script  # noqa: E402
from tests.zoo import torch_reference  # noqa: E402

pytestmark = pytest.mark.tf_only


def _batch(shape=(3, 4, 8, 6), seed=0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.standard_normal(shape).astype("float32"))


def test_aps_keeps_the_component_of_largest_norm():
    x = _batch()
    y, index = torch_reference.APS(4, filt_size=1).select(x)
    a = x.numpy()
    components = np.stack([a[:, :, i::2, j::2] for i in (0, 1) for j in (0, 1)], 1)
    norms = np.sqrt((components.reshape(len(a), 4, -1) ** 2).sum(-1))
    expected = norms.argmax(1)
    np.testing.assert_array_equal(index.numpy(), expected)
    np.testing.assert_array_equal(y.numpy(), components[np.arange(len(a)), expected])
    # The forward pass is the output of `select`; `gather` samples another tensor
    # at the same component.
    aps = torch_reference.APS(4, filt_size=1)
    np.testing.assert_array_equal(aps(x).numpy(), y.numpy())
    np.testing.assert_array_equal(aps.gather(x, index).numpy(), y.numpy())


@pytest.mark.parametrize("shift", [(1, 0), (0, 1), (1, 1)])
def test_aps_output_shifts_with_a_circular_shift_of_its_input(shift):
    x = _batch(seed=1)
    aps = torch_reference.APS(4, filt_size=1)
    y = aps(x)
    y_shifted = aps(torch.roll(x, shift, dims=(2, 3)))
    for n in range(len(x)):
        # Each image's output is its unshifted output, rolled by 0 or 1 row and
        # column of the subsampled grid, whichever component won.
        rolls = [(a, b) for a in (0, 1) for b in (0, 1)]
        assert any(
            torch.equal(y_shifted[n], torch.roll(y[n], roll, dims=(1, 2)))
            for roll in rolls
        ), f"image {n}: APS(roll(x)) is no circular shift of APS(x)"


@pytest.mark.parametrize("name", ["resnet18", "vgg13"])
def test_reference_models_run_at_the_zoo_shapes(name):
    bench_models = load_script("bench_models")
    for variant in bench_models.REFERENCES:
        model = bench_models.reference_model(name, variant, {"stem": "cifar"}, 3)
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 3)
    assert bench_models.reference_model(name, "group", {}, 3) is None


@pytest.mark.slow  # ~50 s: a TF model, its reference and a fresh process
def test_bench_rows_with_references_and_memory():
    bench_models = load_script("bench_models")
    rows = bench_models.bench(
        "resnet18",
        "cifar",
        ["aps"],
        steps=1,
        warmup=0,
        num_classes=3,
        size=32,
        batch=2,
        references=True,
        memory=True,
    )
    assert len(rows) == 1
    row = rows[0]
    assert row["model"] == "resnet18"
    assert row["config"] == "cifar, 32x32, batch 2"
    assert row["variant"] == "aps"
    assert row["reference"] == bench_models.REFERENCES["aps"]
    for key in ("train_step_ms", "infer_ms", "ref_train_ms", "ref_infer_ms"):
        assert row[key] > 0
    assert row["train_vs_ref"] == pytest.approx(
        row["train_step_ms"] / row["ref_train_ms"]
    )
    assert row["vs_baseline"] == row["peak_vs_baseline"] == 1.0
    assert 0 < row["peak_mib"] < row["peak_rss_mib"]
    lines = bench_models.table(rows).splitlines()
    assert len(lines) == 3
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header[:3] == ["model", "config, input, batch", "variant"]
    for column in ("train vs ref.", "peak above imports (MiB)", "peak vs baseline"):
        assert column in header
    assert len(lines[2].strip("|").split("|")) == len(header)


def test_forward_flops_counts_a_convolution_and_a_dense_layer():
    """The --flops count of a model is the arithmetic of its layers: a 3x3 "same"
    conv without bias makes 2 * H * W * 9 * C_in * C_out operations, global
    pooling H * W * C, a dense layer 2 * inputs * outputs plus its bias."""
    import keras

    bench = load_script("bench_models")
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(5)(x)
    model = keras.Model(inputs, outputs)
    conv = 2 * 8 * 8 * 9 * 3 * 4
    pooling = 8 * 8 * 4  # the mean: one add per input value
    dense = 2 * 4 * 5 + 5
    assert bench.forward_flops(model, 8) == conv + pooling + dense


@pytest.mark.parametrize("variant", ["group-aps", "conv3d-aps"])
def test_aps_ordered_module_variants_build_the_zoo_model_with_that_order(variant):
    from keras_shiftinv.layers import ShiftInvariantDown

    bench_models = load_script("bench_models")
    model = bench_models.build("resnet18", variant, 32, {"stem": "cifar"}, 3)
    modules = [
        layer
        for layer in model._flatten_layers()
        if isinstance(layer, ShiftInvariantDown)
    ]
    assert modules
    for module in modules:
        assert module.polyphase_order == "aps"
        assert module.branch == variant.split("-")[0]


def test_group_dense_lowpass_variant_and_the_jit_compile_option():
    from keras_shiftinv.initializers import LowPass
    from keras_shiftinv.layers import ShiftInvariantDown

    bench_models = load_script("bench_models")
    size, batch, options = bench_models.setting("cifar-w8")
    assert (size, batch) == (32, 32)
    model = bench_models.build(
        "resnet18", "group-dense-lowpass", 32, options, 3, jit_compile=True
    )
    assert model.jit_compile
    modules = {
        layer.name: layer
        for layer in model._flatten_layers()
        if isinstance(layer, ShiftInvariantDown)
    }
    assert all(isinstance(m.kernel_initializer, LowPass) for m in modules.values())
    # Dense placement: the block's conv runs at stride 1, then the module keeps
    # its channels (width 1/8: 16).
    down = modules["stage2_block1_down"]
    assert down.input.shape[-1] == down.filters == 16
    assert bench_models.backend_name(True) == "tensorflow+XLA"
    assert bench_models.backend_name(False) == "tensorflow"
    assert not bench_models.build("resnet18", "group", 32, options, 3).jit_compile
