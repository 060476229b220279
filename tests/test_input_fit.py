"""The input contract: one rule gives images a model's input size, and the data
pipeline and the serving graph fit images with the same function."""

import json

import numpy as np
import pytest
import tensorflow as tf

from keras_shiftinv.app import data, input_fit

pytestmark = pytest.mark.tf_only


@pytest.mark.parametrize(
    "image_shape, model_shape, kwargs, expected",
    [
        # The train command: the model is built for the fitted images.
        ((28, 28, 1), None, {}, {"pad_to": (32, 32)}),
        ((32, 32, 3), None, {}, {}),
        ((28, 28, 1), None, {"image_size": 64}, {"image_size": (64, 64)}),
        ((64, 64, 3), None, {"image_size": 64}, {}),
        # evaluate and predict: the model's input size is known.
        ((28, 28, 1), (32, 32, 1), {}, {"pad_to": (32, 32)}),
        ((28, 28, 1), (28, 28, 1), {}, {}),
        ((20, 24, 3), (32, 32, 3), {"resize": True}, {"image_size": (32, 32)}),
        ((None, None, 3), (32, 32, 3), {"resize": True}, {"image_size": (32, 32)}),
        ((None, None, 3), (32, 32, 3), {"image_size": 32}, {"image_size": (32, 32)}),
        ((20, 24, 3), (None, None, 3), {}, {}),
    ],
)
def test_rule(image_shape, model_shape, kwargs, expected):
    options = input_fit.fit_options(image_shape, model_shape, **kwargs)
    assert options == expected
    if model_shape is not None and None not in model_shape:
        assert input_fit.fitted_shape(image_shape, options) == model_shape


@pytest.mark.parametrize(
    "image_shape, model_shape, kwargs, match",
    [
        ((28, 28, 1), (32, 32, 3), {}, "1 channel.*takes 3"),
        ((20, 24, 3), (32, 32, 3), {}, "are 20x24.*--image-size 32"),
        ((28, 28, 1), (32, 32, 1), {"image_size": 64}, "image_size=64.*32x32"),
        ((None, None, 3), None, {}, "differ in size.*image_size"),
        ((28, 28, 1), None, {"image_size": 0}, "image_size"),
    ],
)
def test_rule_errors_name_the_argument(image_shape, model_shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        input_fit.fit_options(image_shape, model_shape, **kwargs)


@pytest.mark.parametrize("batched", [False, True])
def test_fit_images_pads_centred_like_numpy(batched):
    images = np.random.default_rng(0).random((2, 5, 6, 3)).astype("float32")
    x = images if batched else images[0]
    padded = data.fit_images(tf.constant(x), pad_to=(9, 9)).numpy()
    # (9 - 5) // 2 = 2 rows above, (9 - 6) // 2 = 1 column on the left.
    spatial = [(2, 2), (1, 2), (0, 0)]
    expected = np.pad(x, ([(0, 0)] if batched else []) + spatial)
    np.testing.assert_array_equal(padded, expected)


def test_fit_images_resizes_like_tf_image():
    images = np.random.default_rng(1).random((2, 7, 5, 1)).astype("float32")
    resized = data.fit_images(tf.constant(images), image_size=(4, 4)).numpy()
    for image, result in zip(images, resized, strict=True):
        # Per image, as the pipeline resizes images before batching them.
        single = data.fit_images(tf.constant(image), image_size=(4, 4)).numpy()
        np.testing.assert_allclose(result, single, rtol=1e-6, atol=1e-6)
    # A constant image stays that constant: the resize interpolates.
    flat = data.fit_images(tf.fill((1, 7, 5, 1), 3.0), image_size=(4, 4))
    np.testing.assert_allclose(flat.numpy(), 3.0, rtol=1e-6)


def test_record_round_trips_through_config_json(tmp_path):
    options = input_fit.fit_options((28, 28, 1))
    with open(tmp_path / "config.json", "w") as f:
        json.dump({"input_fit": input_fit.record((28, 28, 1), options)}, f)
    assert input_fit.recorded(tmp_path / "best.keras") == ((28, 28, 1), options)
    # Another file, or a config.json of an older run: no record.
    assert input_fit.recorded(tmp_path / "sub" / "best.keras") is None
    (tmp_path / "config.json").write_text("{}")
    assert input_fit.recorded(tmp_path / "best.keras") is None
