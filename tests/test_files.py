"""No lost file: artifacts are renamed into place whole, and a folder has one writer
(a second `train`, `export`, `evaluate` or `convert-weights` gets a clear error; the
lock of a killed one is taken over)."""

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from keras_shiftinv.app import _files

FILES_MODULE = _files.__file__

# A writer that takes the lock of argv[2] (a folder, or with argv[3] == "file" a
# lock file) and waits to be killed; keras_shiftinv's module is loaded by path so
# the child starts in a blink (the package imports Keras).
LOCKER = textwrap.dedent(
    """
    import importlib.util, sys, time
    spec = importlib.util.spec_from_file_location("files", sys.argv[1])
    files = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(files)
    kind = files.FileLock if sys.argv[3] == "file" else files.FolderLock
    kind(sys.argv[2], "it", "--out").__enter__()
    print("locked", flush=True)
    time.sleep(300)
    """
)

# Writes through atomic_path and is killed (kill -9) halfway.
KILLED_WRITER = textwrap.dedent(
    """
    import importlib.util, os, signal, sys
    spec = importlib.util.spec_from_file_location("files", sys.argv[1])
    files = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(files)
    with files.atomic_path(sys.argv[2]) as path, open(path, "w") as f:
        f.write("half")
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    """
)


class Writer:
    """Another process holding the lock of `target` until `kill()` (kill -9: the
    lock file stays, stale)."""

    def __init__(self, target, kind="folder"):
        self.process = subprocess.Popen(
            [sys.executable, "-c", LOCKER, FILES_MODULE, str(target), kind],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout.readline().strip() == "locked"

    def kill(self):
        self.process.kill()
        self.process.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


def test_lock_refuses_a_second_writer_and_takes_over_a_stale_one(tmp_path):
    folder = tmp_path / "out"
    with Writer(folder) as writer:
        with pytest.raises(ValueError, match=f"pid {writer.process.pid} ") as error:
            with _files.FolderLock(folder, "The folder", "--out"):
                pass
        assert "(--out) is being written by another process" in str(error.value)
    # Killed: its lock file is left, with a pid that runs no more.
    lock = folder / _files.LOCK_NAME
    assert lock.exists()
    with _files.FolderLock(folder, "The folder", "--out"):
        assert lock.read_text().split()[0] == str(os.getpid())
    assert not lock.exists() and folder.is_dir()


def test_a_lock_that_created_its_folder_leaves_no_empty_folder(tmp_path):
    with _files.FolderLock(tmp_path / "a" / "b", "it", "--out"):
        assert (tmp_path / "a" / "b").is_dir()
    assert list(tmp_path.iterdir()) == []
    with _files.FolderLock(tmp_path / "c", "it", "--out"):
        (tmp_path / "c" / "report.json").write_text("{}")
    assert os.listdir(tmp_path / "c") == ["report.json"]


def test_atomic_path_keeps_the_previous_file_when_killed(tmp_path):
    target = tmp_path / "model.keras"
    target.write_text("the good model")
    done = subprocess.run([sys.executable, "-c", KILLED_WRITER, FILES_MODULE, target])
    assert done.returncode == -signal.SIGKILL
    assert target.read_text() == "the good model"
    # Its half-written file has another name (the next write replaces it).
    assert (tmp_path / "model.tmp.keras").read_text() == "half"
    with pytest.raises(OSError, match="No space"):
        with _files.atomic_path(target) as path:
            open(path, "w").write("trunc")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert target.read_text() == "the good model"
    assert os.listdir(tmp_path) == ["model.keras"]
    _files.write_text(target, "new")
    assert target.read_text() == "new"


pytestmark = pytest.mark.tf_only


def _cli(argv, capsys):
    from keras_shiftinv.app import cli

    status = cli.main([str(a) for a in argv])
    return status, capsys.readouterr().err


def test_second_train_on_a_run_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--dataset", "folder", "--data-dir", tmp_path / "no-data"]
    with Writer(out):
        status, err = _cli([*args, "--out", out, "--overwrite"], capsys)
    assert status == 2 and err.count("\n") == 1
    assert f"The run folder '{out}' (--out) is being written by another" in err
    assert os.listdir(out) == [_files.LOCK_NAME]  # the first writer's, untouched


def test_second_export_is_refused_and_a_killed_ones_folder_removed(tmp_path):
    from keras_shiftinv.app.export import export_for_serving
    from tests.tiny_classifier import tiny_model

    model, base = tiny_model(), tmp_path / "models"
    with Writer(base):
        with pytest.raises(ValueError, match="The export base .* another process"):
            export_for_serving(model, base)
    # The killed export's lock and its half-written hidden version folder.
    (base / ".export-1-abc123" / "new").mkdir(parents=True)
    assert export_for_serving(model, base).endswith("1")
    assert export_for_serving(model, base).endswith("2")
    assert sorted(os.listdir(base)) == ["1", "2"]


def test_evaluate_keeps_an_earlier_report_and_has_one_writer(tmp_path, capsys):
    out = tmp_path / "evaluation"
    out.mkdir()
    (out / "report.json").write_text(json.dumps({"models": []}))
    # The model does not exist: the refusal comes before any work.
    args = ["evaluate", "--model", tmp_path / "no.keras", "--out", out]
    status, err = _cli(args, capsys)
    assert status == 2 and "holds the report of an earlier evaluation" in err
    assert "--overwrite" in err
    with Writer(out):
        status, err = _cli([*args, "--overwrite"], capsys)
    assert status == 2 and "is being written by another process" in err
    status, err = _cli([*args, "--overwrite"], capsys)
    assert status == 2 and "No model file" in err
    assert json.loads((out / "report.json").read_text()) == {"models": []}


def _convert_args(tmp_path, out):
    return ["convert-weights", "--from", tmp_path / "none.npz"] + [
        "--model",
        "resnet18",
        "--out",
        out,
    ]


def test_convert_weights_writes_whole_files_or_none(tmp_path, capsys, monkeypatch):
    """A full disk while saving leaves the previous model and no blocking file; a
    folder that cannot take the file, or a second writer, fail before any work."""
    import keras

    import zoo

    out = tmp_path / "models" / "r18.keras"
    out.parent.mkdir()
    out.write_bytes(b"the previous good model")
    inputs = keras.Input((4, 4, 3))
    tiny = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    monkeypatch.setattr(zoo, "convert_checkpoint", lambda *args, **kwargs: tiny)

    def full_disk(self, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"PK\x03\x04trunc")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    with monkeypatch.context() as patch:
        patch.setattr(keras.Model, "save", full_disk)
        with pytest.raises(OSError, match="No space"):
            _cli([*_convert_args(tmp_path, out), "--overwrite"], capsys)
    assert out.read_bytes() == b"the previous good model"
    assert sorted(os.listdir(out.parent)) == ["r18.keras"]

    # The checkpoint does not exist: these refusals come before reading it.
    (tmp_path / "file").write_text("")
    status, err = _cli(_convert_args(tmp_path, tmp_path / "file" / "m.keras"), capsys)
    assert status == 2 and "output folder" in err
    with Writer(f"{out}.lock", kind="file"):
        status, err = _cli([*_convert_args(tmp_path, out), "--overwrite"], capsys)
    assert status == 2 and "is being written by another process" in err
