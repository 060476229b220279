"""The run folder of the train command: what it holds, whether a folder is one,
and which runs may continue in it. Every file name of a run is here (`RunFolder`
gives their paths); the commands and the benchmarks name no file of a run."""

import dataclasses
import json
import os
import shutil

from keras_shiftinv.app._files import LOCK_NAME, temporary_path
from keras_shiftinv.app._paths import check_writable_dir

# The options of the run, its classes and input contract (`input_fit`).
CONFIG = "config.json"
# One row per finished epoch.
LOG = "log.csv"
# The model of the best validation epoch, and of the last one.
BEST_MODEL = "best.keras"
FINAL_MODEL = "final.keras"
TENSORBOARD = "tensorboard"
CURVES = "curves.png"
# Test accuracy and consistency of best.keras: the run is finished.
SUMMARY = "summary.json"
# BackupAndRestore's state while the run is unfinished.
BACKUP = "backup"
# The weights before training (for `keras_shiftinv.diagnostics`).
INITIAL_WEIGHTS = "initial.weights.h5"
# The best epoch's weights while training runs; best.keras is written from them.
BEST_WEIGHTS = "best.weights.h5"


def _entry(name):
    return property(lambda self: os.path.join(self.path, name))


class RunFolder:
    """The paths of a run folder's files.

    Args:
        path: the run folder.
    """

    def __init__(self, path):
        self.path = os.fspath(path)

    @classmethod
    def of_model(cls, model_path):
        """The run folder holding the model file `model_path`."""
        return cls(os.path.dirname(os.fspath(model_path)))

    config = _entry(CONFIG)
    log = _entry(LOG)
    best_model = _entry(BEST_MODEL)
    final_model = _entry(FINAL_MODEL)
    tensorboard = _entry(TENSORBOARD)
    curves = _entry(CURVES)
    summary = _entry(SUMMARY)
    backup = _entry(BACKUP)
    initial_weights = _entry(INITIAL_WEIGHTS)
    best_weights = _entry(BEST_WEIGHTS)


# Options a restart may change: they do not touch the training itself.
RESUMABLE_CHANGES = ("out", "verbose", "install_data")


def check_options(run_dir, config_dict, config_class):
    """A run folder holds one run: refuse to continue one made with other options
    (`config_dict`, the fields of the dataclass `config_class`)."""
    path = RunFolder(run_dir).config
    if not os.path.exists(path):
        return
    with open(path) as f:
        previous = json.load(f)["options"]
    # Options added since the folder was written had their default then.
    for field in dataclasses.fields(config_class):
        previous.setdefault(field.name, field.default)
    changed = sorted(
        key
        for key in config_dict
        if key not in RESUMABLE_CHANGES and previous.get(key) != config_dict[key]
    )
    if changed:
        diffs = ", ".join(
            f"{k}: {previous.get(k)!r} -> {config_dict[k]!r}" for k in changed
        )
        raise ValueError(
            f"{run_dir} holds a run made with other options ({diffs}); continue it "
            "with the same options, or give another --out (or --overwrite)."
        )


# What `train` writes in a run folder (and the temporary files it renames into
# place): `--overwrite` deletes these and nothing else (not the lock file of the
# run that overwrites).
RUN_ENTRIES = (
    CONFIG,
    LOG,
    BEST_MODEL,
    FINAL_MODEL,
    TENSORBOARD,
    CURVES,
    SUMMARY,
    BACKUP,
    INITIAL_WEIGHTS,
    BEST_WEIGHTS,
)


def is_run_folder(path):
    """Whether the folder `path` holds a run of `train`: its config.json as `train`
    writes it."""
    try:
        with open(RunFolder(path).config) as f:
            config = json.load(f)
    except (OSError, ValueError):
        return False
    return (
        isinstance(config, dict)
        and isinstance(config.get("options"), dict)
        and "input_shape" in config
    )


def _is_worker_dir(entry):
    return entry.is_dir() and entry.name.startswith("worker-")


def prepare(run_dir, overwrite):
    """Checks, before any data is read, that `run_dir` may receive this run.

    It must be writable, and new, empty or a run folder of `train`: a folder of
    anything else is refused, with `overwrite` too, so that no user file is ever
    written into or deleted. The folders of other workers (`worker-<index>`) and a
    config.json being written do not count. With `overwrite`, a run folder loses
    the files `train` wrote (`RUN_ENTRIES`); other files stay.
    """
    check_writable_dir(run_dir, "--out")
    if not os.path.isdir(run_dir):
        return
    if is_run_folder(run_dir):
        if overwrite:
            clear(run_dir)
        return
    foreign = sorted(
        entry.name
        for entry in os.scandir(run_dir)
        if not _is_worker_dir(entry) and entry.name not in (f"{CONFIG}.tmp", LOCK_NAME)
    )
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise ValueError(
            f"--out {run_dir!r} is not empty ({shown}) and is not a run folder of "
            "`train` (it has no config.json of a run), so it is left as it is"
            f"{', --overwrite included' if overwrite else ''}: give a new or empty "
            "folder to --out."
        )


def clear(run_dir):
    """Deletes what `train` wrote in a run folder, but not the folders of other
    workers (which they clear themselves, maybe at this very moment)."""
    for name in RUN_ENTRIES:
        entry = os.path.join(run_dir, name)
        for path in (entry, entry + ".tmp", temporary_path(entry)):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            elif os.path.lexists(path):
                os.remove(path)


def write_json(path, obj):
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(path + ".tmp", path)
