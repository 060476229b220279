"""What a saved model knows about itself (`RecordedModel`), the one decision about
its output head, and the run folder's file names."""

import os

import keras
import numpy as np
import pytest

import zoo
from keras_shiftinv.app import run_folder
from keras_shiftinv.models import (
    RecordedModel,
    find_record,
    is_logits,
    with_probabilities,
)

OPTIONS = {"num_classes": 3, "input_shape": (32, 32, 3), "width_multiplier": 1 / 16}


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("resnet18", {"variant": "group", "stem": "cifar", "placement": "dense"}),
        ("vgg11", {"variant": "blur", "flavor": "torchvision", "filt_size": 3}),
    ],
)
def test_zoo_model_records_its_options_through_save_and_load(name, kwargs, tmp_path):
    model = zoo.create_model(name, **OPTIONS, **kwargs)
    record = model.record["zoo"]
    spec = zoo.model_spec(name)
    # Every option of the builder, as given or as defaulted.
    assert set(record) == {"model", *spec.options} - {"name"}
    assert record["model"] == name
    for key, value in {**OPTIONS, **kwargs}.items():
        expected = list(value) if key == "input_shape" else value
        assert record[key] == expected, key
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, RecordedModel)
    assert loaded.record == model.record
    # Found inside a model that wraps it, as the train command's models do.
    inputs = keras.Input(OPTIONS["input_shape"])
    wrapper = keras.Model(inputs, loaded(inputs))
    assert find_record(wrapper, "zoo") == (loaded, record)
    assert find_record(wrapper, "input") == (None, None)


def test_torch_weights_read_the_flavor_from_the_record():
    model = zoo.create_model("resnet18", **OPTIONS, variant="blur")
    model.record["zoo"]["flavor"] = "torchvision"
    # Recorded as torchvision: accepted, and the tensors planned as a ResNet's.
    assert "conv1.weight" in zoo.torch_tensor_shapes(model)
    model.record["zoo"]["flavor"] = "keras"
    with pytest.raises(ValueError, match="not built with flavor='torchvision'"):
        zoo.torch_tensor_shapes(model)


def _dense(activation):
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(3, activation=activation)(inputs))


def test_output_head_is_decided_once():
    x = np.random.default_rng(0).standard_normal((5, 4)).astype("float32")
    logits = _dense(None)
    assert is_logits(logits) and not is_logits(_dense("softmax"))
    probabilities = with_probabilities(logits)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(probabilities(x)),
        keras.ops.convert_to_numpy(keras.ops.softmax(logits(x))),
        rtol=1e-6,
    )
    softmax = _dense("softmax")
    assert with_probabilities(softmax) is softmax
    # Told otherwise, the caller wins; a head that does not tell is refused only
    # when asked to.
    assert with_probabilities(softmax, from_logits=True) is not softmax
    unknown = _dense("sigmoid")
    assert with_probabilities(unknown) is unknown
    with pytest.raises(ValueError, match="from_logits=True"):
        with_probabilities(unknown, strict=True)


def test_run_folder_names_every_file(tmp_path):
    files = run_folder.RunFolder(tmp_path)
    paths = {
        name: getattr(files, name)
        for name in (
            "config",
            "log",
            "best_model",
            "final_model",
            "tensorboard",
            "curves",
            "summary",
            "backup",
            "initial_weights",
            "best_weights",
        )
    }
    assert {os.path.dirname(p) for p in paths.values()} == {str(tmp_path)}
    assert sorted(os.path.basename(p) for p in paths.values()) == sorted(
        run_folder.RUN_ENTRIES
    )
    best = run_folder.RunFolder.of_model(paths["best_model"])
    assert best.config == paths["config"]
