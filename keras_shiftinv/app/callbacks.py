"""Keras callbacks: shift consistency during training, and the train command's
per-epoch CSV log."""

import csv
import os

import keras

from keras_shiftinv.app import metrics
from keras_shiftinv.validation import standardize_choice, standardize_int


class ShiftConsistency(keras.callbacks.Callback):
    """Logs the shift consistency of the model at the end of every epoch.

    Computes `keras_shiftinv.app.metrics.shift_consistency` on `data` and stores it in
    the epoch's `logs` under `name`, so `History`, `CSVLogger`, `TensorBoard`,
    `ModelCheckpoint(monitor=name)` and the progress bar see it. Keras calls
    callbacks in list order and `History` and the progress bar come last, so put
    this callback *before* `CSVLogger`, `TensorBoard`, `ModelCheckpoint` and
    `EarlyStopping` in `callbacks=[...]`.

    The same `seed` is used every epoch: the shift pairs are the same each time (for
    data in a fixed order), so the numbers of different epochs compare. Under a
    `tf.distribute` strategy every worker computes the value over all of `data`
    locally (no collective ops), so all workers log the same number.

    Args:
        data: `tf.data.Dataset` (batched or not) or numpy arrays, e.g. the
            validation data; labels are not needed.
        mode: "circular" or "crop" (see `keras_shiftinv.app.metrics`).
        max_shift: dy and dx of each shift are drawn from `[0, max_shift)`.
        samples: shift pairs per image (int), or "all".
        seed: int seeding the shift draws.
        name: the key in `logs`.
        pad_mode: "reflect" or "zero", for `mode="crop"`.
        batch_size: batch size for unbatched data.
        max_batches: use at most this many batches of `data` per epoch (None: all).

    Example:

    ```python
    callbacks = [
        ShiftConsistency(val_ds, mode="circular", max_shift=8),
        keras.callbacks.CSVLogger("log.csv"),
    ]
    history = model.fit(train_ds, validation_data=val_ds, callbacks=callbacks)
    history.history["val_consistency"]
    ```
    """

    def __init__(
        self,
        data,
        mode="circular",
        max_shift=8,
        samples=1,
        seed=0,
        name="val_consistency",
        pad_mode="reflect",
        batch_size=128,
        max_batches=None,
    ):
        super().__init__()
        standardize_choice(mode, "mode", metrics.MODES)
        standardize_choice(pad_mode, "pad_mode", metrics.PAD_MODES)
        standardize_int(max_shift, "max_shift")
        if samples != "all":
            standardize_int(samples, "samples")
        if not isinstance(name, str) or not name:
            raise ValueError(f"Invalid name={name!r}: expected a non-empty string.")
        self.data = data
        self.mode = mode
        self.max_shift = max_shift
        self.samples = samples
        self.seed = seed
        self.name = name
        self.pad_mode = pad_mode
        self.batch_size = batch_size
        self.max_batches = max_batches

    def on_epoch_end(self, epoch, logs=None):
        value = metrics.shift_consistency(
            self.model,
            self.data,
            mode=self.mode,
            max_shift=self.max_shift,
            samples=self.samples,
            seed=self.seed,
            pad_mode=self.pad_mode,
            batch_size=self.batch_size,
            max_batches=self.max_batches,
        )
        if logs is not None:
            logs[self.name] = value


def read_log(path):
    """The rows of a run's log.csv as a list of dicts (empty if there is none)."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class EpochCSVLogger(keras.callbacks.Callback):
    """Writes one CSV row per finished epoch, keyed by the epoch number.

    Unlike `keras.callbacks.CSVLogger(append=True)`, a restarted run first drops the
    rows of the epochs it is about to redo (those finished after the last backup), so
    the log holds every epoch exactly once. Each row is flushed to disk when written.

    Args:
        path: the CSV file.
    """

    def __init__(self, path):
        super().__init__()
        self.path = path
        self._first_epoch = True

    def on_epoch_begin(self, epoch, logs=None):
        if not self._first_epoch:
            return
        self._first_epoch = False
        rows = read_log(self.path)
        kept = [row for row in rows if int(row["epoch"]) < epoch]
        if len(kept) < len(rows):
            self._write(kept, list(rows[0]), mode="w")

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch, **(logs or {})}
        row["learning_rate"] = float(
            keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
        )
        rows = read_log(self.path)
        fields = list(rows[0]) if rows else ["epoch", *sorted(set(row) - {"epoch"})]
        self._write([row], fields, mode="a", header=not rows)

    def _write(self, rows, fields, mode, header=True):
        tmp = self.path + ".tmp" if mode == "w" else self.path
        with open(tmp, mode, newline="") as f:
            writer = csv.DictWriter(f, fields, restval="", extrasaction="ignore")
            if header:
                writer.writeheader()
            writer.writerows(rows)
            f.flush()
            os.fsync(f.fileno())
        if tmp != self.path:
            os.replace(tmp, self.path)
