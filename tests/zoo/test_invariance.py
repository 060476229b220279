"""Exact invariance to circular shifts, where the zoo promises it."""

import keras
import numpy as np
import pytest

from tests.zoo.utils import images, predict, slow_on_other_backends, small_model

EXACT = [
    {"variant": "aps"},
    {"variant": "group", "polyphase_order": "aps"},
    {"variant": "conv3d", "polyphase_order": "aps"},
]
CASES = [
    ("resnet18", {"stem": "cifar"}, 32),
    ("resnet18", {"stem": "imagenet"}, 64),
    ("resnet50", {"stem": "cifar"}, 32),
    ("vgg11", {}, 32),
]


def _logits(name, size, **kwargs):
    model = small_model(
        name,
        pad_mode="circular",
        input_shape=(size, size, 3),
        classifier_activation=None,
        **kwargs,
    )
    x = images(2, size)
    return x, predict(model, x), lambda v: predict(model, v)


def _shifts(size, count=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, size, size=(count, 2))


@pytest.mark.parametrize("exact", EXACT, ids=lambda e: "-".join(e.values()))
@pytest.mark.parametrize("name, kwargs, size", CASES, ids=lambda c: str(c))
def test_exactly_invariant_to_circular_shifts(name, kwargs, size, exact):
    x, logits, model = _logits(name, size, **kwargs, **exact)
    scale = np.abs(logits).max()
    assert scale > 0
    for dy, dx in _shifts(size):
        shifted = model(np.roll(x, (dy, dx), axis=(1, 2)))
        np.testing.assert_allclose(
            shifted, logits, rtol=1e-4, atol=1e-4 * scale, err_msg=f"shift {dy, dx}"
        )


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("resnet18", {"variant": "baseline", "stem": "cifar"}),
        ("vgg11", {"variant": "baseline"}),
        # Blurring reduces aliasing but keeps a fixed sampling grid.
        ("resnet18", {"variant": "blur", "stem": "cifar"}),
        ("vgg11", {"variant": "group"}),
    ],
)
def test_fixed_grid_variants_are_not_invariant(name, kwargs):
    x, logits, model = _logits(name, 32, **kwargs)
    scale = np.abs(logits).max()
    errors = [
        np.abs(model(np.roll(x, (dy, dx), axis=(1, 2))) - logits).max() / scale
        for dy, dx in _shifts(32)
        if (dy, dx) != (0, 0)
    ]
    # Ten times the tolerance the exact variants pass.
    assert max(errors) > 1e-3


@slow_on_other_backends
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("exact", EXACT[:2], ids=lambda e: "-".join(e.values()))
def test_exactly_invariant_in_reduced_precision(exact, policy):
    # Invariance to rounding in float32 would be 1e-2 in bfloat16: the polyphase
    # choice is made in float32 and every pixel is computed alike, so the logits
    # of a shifted image are the same numbers.
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        x, logits, model = _logits("resnet18", 32, stem="cifar", **exact)
        for dy, dx in _shifts(32, count=3):
            shifted = model(np.roll(x, (dy, dx), axis=(1, 2)))
            np.testing.assert_array_equal(shifted, logits, err_msg=f"{dy, dx}")
    finally:
        keras.config.set_dtype_policy(previous)
