import os

import keras
import numpy as np
import pytest

from keras_shiftinv import diagnostics
from tests.zoo.utils import small_model


def _dft_share(kernel, n=256):
    """Independent estimate on a fine frequency grid: the energy at |w| >= pi/2 on
    either axis over the total, summed over the trailing (filter) axes."""
    kernel = np.asarray(kernel, float)
    kernel = kernel.reshape(kernel.shape[0], kernel.shape[1], -1)
    power = np.sum(np.abs(np.fft.fft2(kernel, (n, n), axes=(0, 1))) ** 2, axis=-1)
    w = np.abs(np.fft.fftfreq(n)) * 2 * np.pi
    high = (w[:, None] > np.pi / 2) | (w[None, :] > np.pi / 2)
    # Grid points exactly on the band edge count half to each side.
    edge = (np.isclose(w[:, None], np.pi / 2) & (w[None, :] <= np.pi / 2)) | (
        np.isclose(w[None, :], np.pi / 2) & (w[:, None] <= np.pi / 2)
    )
    return (power[high].sum() + 0.5 * power[edge].sum()) / power.sum()


@pytest.mark.parametrize(
    "kernel",
    [
        np.ones((1, 1)),
        np.outer([1, 3, 3, 1], [1, 3, 3, 1]),
        np.outer([1, 2, 1], [1, 1]),
        np.random.default_rng(0).standard_normal((3, 3, 4, 5)),
        np.random.default_rng(1).standard_normal((6, 6, 2)),
        np.array([[1.0, -1.0]]),
    ],
)
def test_high_frequency_share_matches_a_fine_dft(kernel):
    assert diagnostics.high_frequency_share(kernel) == pytest.approx(
        _dft_share(kernel), abs=2e-3
    )


def test_reference_values():
    assert diagnostics.high_frequency_share(np.ones((1, 1))) == pytest.approx(0.75)
    shares = [diagnostics.reference_share(k) for k in range(1, 8)]
    assert shares == sorted(shares, reverse=True)
    assert diagnostics.high_frequency_share(np.zeros((3, 3))) == 0.0
    with pytest.raises(ValueError, match="kernel"):
        diagnostics.high_frequency_share(np.ones(3))


def test_report_lists_every_downsampling_layer():
    blur = small_model("resnet18", "blur", stem="imagenet", input_shape=(64, 64, 3))
    report = {e["layer"]: e for e in diagnostics.downsampling_report(blur)}
    # The stem conv stays strided; every other place is a blur.
    assert report["stem_conv"]["kind"] == "strided conv"
    assert report["stem_pool"]["class"] == "MaxBlurPool2D"
    for stage in (2, 3, 4):
        for name in (f"stage{stage}_block1_down", f"stage{stage}_block1_shortcut_down"):
            assert report[name]["high_frequency_share"] == pytest.approx(
                diagnostics.reference_share(4)
            )
    assert len(report) == 8
    baseline = small_model("resnet18", "baseline", stem="imagenet")
    kinds = {e["layer"]: e["kind"] for e in diagnostics.downsampling_report(baseline)}
    assert kinds["stem_pool"] == "max pool"
    assert kinds["stage2_block1_shortcut_conv"] == "strided conv"


def test_module_share_is_its_folded_kernels():
    model = small_model("resnet18", "group", module_initializer="lowpass")
    entries = {e["layer"]: e for e in diagnostics.downsampling_report(model)}
    entry = entries["stage2_block1_down"]
    assert entry["kind"] == "learned"
    # The low-pass start: exactly the 4-tap blur (the 1x1 shortcut: 2 taps).
    assert entry["high_frequency_share"] == pytest.approx(
        diagnostics.reference_share(4)
    )
    assert entries["stage2_block1_shortcut_down"][
        "high_frequency_share"
    ] == pytest.approx(diagnostics.reference_share(2))


def test_weight_change_against_a_model_and_a_weights_file(tmp_path):
    model = small_model("resnet18", "group")
    path = os.path.join(tmp_path, "initial.weights.h5")
    model.save_weights(path)
    layer = model.get_layer("stage3_block1_down")
    layer.set_weights([1.1 * w for w in layer.get_weights()])
    for initial in (path, small_model("resnet18", "group")):
        entries = {
            e["layer"]: e
            for e in diagnostics.downsampling_report(model, initial_weights=initial)
        }
        assert entries["stage3_block1_down"]["weight_change"] == pytest.approx(0.1)
        assert entries["stage2_block1_down"]["weight_change"] == pytest.approx(0.0)
        # Scaling every weight keeps the filter's shape and so its share.
        assert entries["stage3_block1_down"]["high_frequency_share"] == pytest.approx(
            entries["stage3_block1_down"]["initial_high_frequency_share"]
        )
    summary = diagnostics.summarize(list(entries.values()))
    assert summary["learned"]["layers"] == 6
    changes = [e["weight_change"] for e in entries.values() if e["kind"] == "learned"]
    assert summary["learned"]["weight_change"] == pytest.approx(np.mean(changes))


def test_nested_models_and_bad_initial_weights(tmp_path):
    inner = small_model("vgg11", "blur")
    inputs = keras.Input((32, 32, 3))
    outer = keras.Model(inputs, inner(keras.layers.Rescaling(1 / 255)(inputs)))
    layers = [e["layer"] for e in diagnostics.downsampling_report(outer)]
    assert layers == [f"{inner.name}/block{b}_pool" for b in range(1, 6)]
    wrong = os.path.join(tmp_path, "wrong.weights.h5")
    small_model("resnet18", "baseline").save_weights(wrong)
    with pytest.raises(ValueError, match="initial_weights"):
        diagnostics.downsampling_report(outer, initial_weights=wrong)
    with pytest.raises(ValueError, match="initial_weights"):
        diagnostics.downsampling_report(outer, initial_weights=3)
