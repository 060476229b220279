import json

import keras
import numpy as np
import pytest

pytest.importorskip("tensorflow")
if keras.backend.backend() != "tensorflow":
    pytest.skip("training needs the TensorFlow backend", allow_module_level=True)

import keras_shiftinv  # noqa: E402, F401  (registers the package's classes)
from keras_shiftinv.app import callbacks, cli, data, run_folder, training  # noqa: E402
from tests.shift_reference import predictions  # noqa: E402
from tests.training_helpers import run_cli, tiny_args  # noqa: E402

pytestmark = pytest.mark.tf_only

RUN_FILES = [
    "best.keras",
    "config.json",
    "curves.png",
    "final.keras",
    "initial.weights.h5",
    "log.csv",
    "summary.json",
    "tensorboard",
]


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--epochs", "two"], "invalid int value: 'two'"),
        (["train", "--model", "alexnet"], "invalid choice: 'alexnet'"),
        (["train", "--schedule", "linear"], "invalid choice: 'linear'"),
        (["train", "--strategy", "tpu"], "invalid choice: 'tpu'"),
        (["train", "--no-such-option"], "unrecognized arguments"),
        (["fly"], "invalid choice: 'fly'"),
        ([], "required: COMMAND"),
    ],
)
def test_argparse_errors(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "0"], "`epochs` must be an integer >= 1"),
        (["--lr", "-1"], "`lr` must be a number"),
        (["--validation-split", "1.5"], "`validation_split`"),
        (["--dataset", "folder"], "needs `data_dir`"),
        (["--dataset", "mnist"], "MNIST IDX files need a folder"),
        (["--dataset", "folder", "--data-dir", "/no/such/dir"], "/no/such/dir"),
        (["--strategy", "multiworker"], "TF_CONFIG"),
        (["--test-split", "train[90%:]"], "--test-split train[90%:]"),
        (["--filt-size", "16"], "Received: filt_size=16"),
    ],
)
def test_bad_values_are_one_line_errors(args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    status = cli.main(["train", "--out", str(tmp_path / "run"), *args])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_module_entry_point_exits_cleanly_on_bad_options(tmp_path):
    result = run_cli(["train", "--epochs", "-3", "--out", str(tmp_path)])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: `epochs`")
    assert "Traceback" not in result.stderr
    result = run_cli(["train", "--help"])
    assert result.returncode == 0
    for option in ("--strategy", "--mixed-precision", "--schedule", "--out"):
        assert option in result.stdout


def test_every_train_option_is_on_the_command_line():
    parser = cli.build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    dests = {action.dest for action in train._actions}
    assert set(cli.train_defaults()) <= dests


def check_test_numbers(summary, model_path, data_dir):
    """The summary's test numbers, recomputed from the best model's predictions on
    the test images rolled in NumPy."""
    model = keras.saving.load_model(model_path)
    test, _ = data.load("folder", "test", data_dir)
    x, y = test.batch(64).get_single_element()  # all six images
    x, y = x.numpy().astype("float32"), y.numpy()
    accuracy = np.mean(model.predict(x, verbose=0).argmax(-1) == y)
    assert summary["test_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    # The pair of shifts per image that the consistency draws from its seed (0),
    # in [0, --max-shift): the six test images are one batch.
    pairs = np.random.default_rng(0).integers(0, 4, (len(x), 2, 2))
    classes = predictions(model, x, pairs).argmax(-1)
    assert summary["test_consistency"] == np.mean(classes[:, 0] == classes[:, 1])


def test_tiny_train_run_writes_the_run_folder(image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    args = tiny_args(image_folder, out, 2, "--mixed-precision", "mixed_bfloat16")
    assert cli.main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == RUN_FILES
    assert keras.mixed_precision.global_policy().name == "float32"  # restored

    last_line = capsys.readouterr().out.strip().splitlines()[-1]
    with open(out / "summary.json") as f:
        summary = json.load(f)
    assert last_line == training.summary_line(summary)
    check_test_numbers(summary, out / "best.keras", image_folder)
    with open(out / "config.json") as f:
        config = json.load(f)
    assert config["options"]["epochs"] == 2 and config["input_shape"] == [8, 8, 1]
    assert config["input_fit"] == {"image_shape": [8, 8, 1]}  # nothing to fit
    assert config["class_names"] == ["class_0", "class_1", "class_2"]
    log = callbacks.read_log(str(out / "log.csv"))
    assert [row["epoch"] for row in log] == ["0", "1"]
    assert {"loss", "accuracy", "val_accuracy", "val_consistency"} <= set(log[0])

    # The saved model takes raw pixels and gives probabilities by itself.
    model = keras.saving.load_model(out / "best.keras")
    pixels = np.full((2, 8, 8, 1), 255.0, "float32")
    probs = keras.ops.convert_to_numpy(model(pixels))
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-5)
    assert any(isinstance(layer, keras.layers.Rescaling) for layer in model.layers)

    # Running the same command again does not train again...
    assert cli.main(args) == 0
    assert "holds a finished run" in capsys.readouterr().out
    assert len(callbacks.read_log(str(out / "log.csv"))) == 2
    # ...and other options may not continue this run folder.
    assert cli.main([*args, "--epochs", "3"]) == 2
    assert "other options (epochs: 2 -> 3)" in capsys.readouterr().err


def _listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_a_folder_without_a_run_is_never_trained_into_nor_deleted(tmp_path, capsys):
    out = tmp_path / "thesis"
    (out / "chapters").mkdir(parents=True)
    (out / "chapters" / "one.tex").write_text("\\chapter{One}")
    (out / "thesis.txt").write_text("years of work")
    (out / "log.csv").write_text("date,words\n2026-12-01,1200\n")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    # The data folder does not exist: the refusal comes before any data is read.
    args = ["train", "--out", str(out), "--dataset", "folder"]
    args += ["--data-dir", str(tmp_path / "no-data")]
    for extra in (["--overwrite"], []):
        assert cli.main([*args, *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: --out") and "not a run folder" in err
        assert err.count("\n") == 1
        assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert _listing(out) == ["chapters", "chapters/one.tex", "log.csv", "thesis.txt"]


def test_overwrite_deletes_only_what_train_wrote(tmp_path):
    out = tmp_path / "run"
    (out / "backup").mkdir(parents=True)
    (out / "tensorboard" / "train").mkdir(parents=True)
    # The weights before training too: a new run must save its own.
    written = ("log.csv", "best.keras", "summary.json", "log.csv.tmp")
    for name in (*written, run_folder.INITIAL_WEIGHTS):
        (out / name).write_text("x")
    config = {"options": {"epochs": 1}, "input_shape": [8, 8, 1]}
    (out / "config.json").write_text(json.dumps(config))
    (out / "notes.txt").write_text("mine")
    (out / "worker-1").mkdir()
    assert run_folder.is_run_folder(out)
    run_folder.prepare(str(out), overwrite=True)
    assert _listing(out) == ["notes.txt", "worker-1"]
    # Another program's config.json does not make a run folder.
    (out / "config.json").write_text(json.dumps({"name": "my settings"}))
    assert not run_folder.is_run_folder(out)
    with pytest.raises(ValueError, match="not a run folder"):
        run_folder.prepare(str(out), overwrite=True)
    assert _listing(out) == ["config.json", "notes.txt", "worker-1"]


@pytest.mark.parametrize("where", ["file", "under_a_file", "unwritable"])
@pytest.mark.parametrize(
    "command",
    [
        ["train", "--dataset", "folder", "--data-dir", "/no/such/data"],
        ["evaluate", "--model", "/no/such/model.keras"],
        ["export", "--model", "/no/such/model.keras"],
    ],
    ids=["train", "evaluate", "export"],
)
def test_an_out_that_cannot_be_written_fails_before_any_work(
    command, where, tmp_path, capsys
):
    (tmp_path / "file").write_text("")
    out = {
        "file": tmp_path / "file",
        "under_a_file": tmp_path / "file" / "out",
        # /proc takes no new files, even from root.
        "unwritable": "/proc/no-such-folder/out",
    }[where]
    # The missing data or model would be the error if the work started first.
    assert cli.main([*command, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "output folder" in err and str(out) in err


def _converted(tmp_path):
    """A random antialiased-cnns-style ResNet-18 checkpoint (lpf3, 10 classes), a
    folder of RGB test images and the convert-weights arguments."""
    from PIL import Image

    import zoo

    reference = zoo.resnet18(
        variant="blur", filt_size=3, num_classes=10, flavor="torchvision"
    )
    rng = np.random.default_rng(0)
    checkpoint = {}
    for name, shape in zoo.torch_tensor_shapes(reference).items():
        value = rng.uniform(0.5, 1.5, shape) if "running_var" in name else None
        if name.endswith(".filt"):
            value = np.tile(np.outer([1, 2, 1], [1, 2, 1]) / 16, (shape[0], 1, 1, 1))
        if value is None:
            value = rng.standard_normal(shape) * 0.05
        checkpoint[name] = value.astype("float32")
    np.savez(tmp_path / "resnet18_lpf3.npz", **checkpoint)
    for k in range(2):
        folder = tmp_path / "images" / "test" / f"class_{k}"
        folder.mkdir(parents=True)
        for i in range(2):
            pixels = rng.integers(0, 256, (64, 64, 3)).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    out = tmp_path / "models" / "resnet18-lpf3.keras"
    args = ["convert-weights", "--from", str(tmp_path / "resnet18_lpf3.npz")]
    args += ["--model", "resnet18", "--image-size", "64", "--out", str(out)]
    args += ["--image", str(tmp_path / "images" / "test" / "class_0" / "0.png")]
    return args, out


def test_convert_weights_then_export(tmp_path, capsys):
    args, out = _converted(tmp_path)
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "resnet18_lpf3" in printed and "top-1 class of" in printed
    assert cli.main(args) == 2  # it exists: --overwrite replaces it
    assert "--overwrite" in capsys.readouterr().err

    from keras_shiftinv.models import load_model, outputs_probabilities

    model = load_model(out)
    assert outputs_probabilities(model) and model.output_shape == (None, 10)
    network = model.get_layer("resnet18_blur_torchvision")
    assert network.get_layer("stem_pool").filt_size == 3
    assert cli.main(["export", "--model", str(out), "--out", str(tmp_path / "s")]) == 0
    assert (tmp_path / "s" / "1" / "saved_model.pb").exists()


@pytest.mark.slow
def test_converted_model_evaluates(tmp_path):
    args, out = _converted(tmp_path)
    assert cli.main(args) == 0
    evaluation = run_cli(
        ["evaluate", "--model", str(out), "--dataset", "folder", "--data-dir"]
        + [str(tmp_path / "images"), "--image-size", "64", "--images", "4"]
        + ["--detail-images", "2", "--max-shift", "2", "--out", str(tmp_path / "ev")]
        + ["--verbose", "0"]
    )
    assert evaluation.returncode == 0, evaluation.stderr
    assert (tmp_path / "ev" / "report.json").exists()


def _modules(model):
    return [
        m
        for m in model.layers[-1].layers
        if isinstance(m, keras_shiftinv.layers.ShiftInvariantDown)
    ]


def test_lowpass_penalty_from_the_command_line(capsys, tmp_path):
    parser = cli.build_parser()
    args = parser.parse_args(["train", "--variant", "group", "--lowpass-penalty", "2"])
    assert args.module_lowpass_penalty == 2.0
    config = training.TrainConfig(
        **{name: getattr(args, name) for name in cli.train_defaults()}
    )
    model = training.build_model(config, (32, 32, 1), 3)
    assert _modules(model) and all(m.lowpass_penalty == 2.0 for m in _modules(model))
    status = cli.main(["train", "--out", str(tmp_path), "--lowpass-penalty", "1"])
    assert status == 2
    assert "variant='blur', module_lowpass_penalty=1.0" in capsys.readouterr().err


@pytest.mark.slow
def test_lowpass_penalty_run_records_it(image_folder, tmp_path):
    out = tmp_path / "run"
    extra = ("--variant", "group", "--lowpass-penalty", "0.5")
    assert cli.main(tiny_args(image_folder, out, 1, *extra)) == 0
    with open(out / "config.json") as f:
        assert json.load(f)["options"]["module_lowpass_penalty"] == 0.5
    model = keras.saving.load_model(out / "final.keras")
    assert _modules(model) and all(m.lowpass_penalty == 0.5 for m in _modules(model))
