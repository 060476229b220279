"""The evidence protocol (BENCHMARKS.md "Evidence protocol", written before its
runs): which runs, how each is measured, and what each keeps.

Every run is ResNet-18 (CIFAR stem, width 1/8, circular padding) trained on the
decisive schedule (57,000 Fashion-MNIST images, 2,376 SGD steps) and measured on
all 10,000 test images, under a fixed set of circular shifts and a fixed set of
symmetric zero-filled crop shifts, the same sets for every run and seed. A run
keeps, in `runs/<name>/`:

    record.json       options, commit, summary numbers, diagnostics, timings
    predictions.npz   labels [N]; classes [N] (unshifted); shifts_circular [S, 2],
                      classes_circular [N, S]; shifts_crop [S2, 2], classes_crop
                      [N, S2]; variant, augment, seed (0-d arrays)
    model.keras       the trained model (best validation epoch)

A run whose record exists is skipped, so an interrupted invocation continues where
it stopped (the training folder, `train/<name>/`, resumes mid-run too)."""

import dataclasses
import datetime
import os
import shutil
import subprocess
import time

import keras
import numpy as np

from keras_shiftinv import diagnostics
from keras_shiftinv.app import data, input_fit, metrics, run_folder, training
from keras_shiftinv.models import load_model

from . import plan
from .plan import MODES, VARIANTS, write_json
from .statistics import per_image

# The schedule and model of the decisive mode (plan.MODES["decisive"]).
SETTINGS = MODES["decisive"]
MODEL = "resnet18"
TEST_IMAGES = 10000
# The shift sets: drawn once, without replacement, by this seed, from the 64
# circular shifts in [0, 8)^2 and the 81 crop shifts in [-4, 4]^2 (zero fill: the
# range of the +-4 px zero-padded crops the models train on).
SHIFT_SEED = 21
SHIFT_COUNT = 16
CIRCULAR_MAX_SHIFT = 8
CROP_MAX_SHIFT = 4
# The variants of every training setting (issue 22 asks for its chosen penalty
# in both).
REPORTED_VARIANTS = (
    "baseline",
    "blur4",
    "group",
    "group-dense-lowpass",
    # issue 22's penalty, its weight chosen by the sweep (section evidence-sweep
    # of BENCHMARKS.md) before these runs started
    "group-dense-lowpass-penalty10",
)
# (augment, seeds, variants) of the runs.
RUNS = (
    ("shift", (0, 1, 2, 3, 4), REPORTED_VARIANTS),
    ("none", (0, 1, 2), REPORTED_VARIANTS),
)
# The weight of issue 22's low-pass penalty is chosen on the validation split of
# runs with a seed that is not reported (100), crop+flip, before its reported runs:
# the candidates, and the references the rule `choose` compares them with.
SWEEP_SEED = 100
SWEEP_CANDIDATES = tuple(
    f"group-dense-lowpass-penalty{weight:g}" for weight in (0.1, 1.0, 10.0)
)
SWEEP = (("shift", (SWEEP_SEED,), ("blur4", "group-dense-lowpass", *SWEEP_CANDIDATES)),)
# A candidate may lose at most this much validation accuracy against blur4.
SWEEP_ACCURACY_MARGIN = 0.003
EVALUATION_BATCH = 500
# The measures, primary first: pair agreement under the circular and the crop
# shift set, and unshifted accuracy (`statistics.per_image`).
MEASURES = ("circular", "crop", "accuracy")
# The claims "a is above b" of every table (Holm's correction over each table).
CLAIMS = (
    ("blur4", "baseline"),
    ("group", "baseline"),
    ("group-dense-lowpass", "baseline"),
    ("group", "blur4"),
    ("group-dense-lowpass", "blur4"),
    ("group-dense-lowpass-penalty10", "baseline"),
    ("group-dense-lowpass-penalty10", "blur4"),
    ("group-dense-lowpass-penalty10", "group-dense-lowpass"),
)


def shift_sets():
    """(circular shifts [16, 2], crop shifts [16, 2]) of the protocol."""
    rng = np.random.default_rng(SHIFT_SEED)
    circular = metrics._grid(CIRCULAR_MAX_SHIFT)
    crop = metrics._grid(CROP_MAX_SHIFT, symmetric=True)
    return tuple(
        grid[np.sort(rng.choice(len(grid), SHIFT_COUNT, replace=False))]
        for grid in (circular, crop)
    )


def choose(numbers):
    """The sweep's choice from `{variant: {"circular": c, "accuracy": a}}` (its
    validation numbers): among the candidates whose accuracy is at least blur4's
    less `SWEEP_ACCURACY_MARGIN`, the most circularly consistent (the smaller
    weight among equals); None when no candidate qualifies."""
    floor = numbers["blur4"]["accuracy"] - SWEEP_ACCURACY_MARGIN
    qualified = [
        v for v in SWEEP_CANDIDATES if v in numbers and numbers[v]["accuracy"] >= floor
    ]
    return max(qualified, key=lambda v: numbers[v]["circular"], default=None)


def run_name(variant, augment, seed):
    return f"{MODEL}-{variant}-{augment}-seed{seed}"


def planned_runs(runs=RUNS):
    """(variant, augment, seed) of every run, the longest-running variants of a
    seed together, seeds in order (so that every comparison has its first seeds
    early)."""
    return [
        (variant, augment, seed)
        for augment, seeds, variants in runs
        for seed in seeds
        for variant in variants
    ]


def test_data(data_dir=None):
    """All test images, fitted to the model as in training, batched."""
    ds, info = data.load("fashion_mnist", "test", data_dir=data_dir)
    fit = input_fit.fit_options(info.image_shape)
    return data.pipeline(
        ds.take(TEST_IMAGES), EVALUATION_BATCH, training=False, **fit
    ).cache()


def measured_data(split, config, data_dir=None):
    """The images a run is measured on: all test images, or (for the sweep) the
    run's own validation split, never seen in training."""
    if split == "test":
        return test_data(data_dir)
    return training.make_datasets(training.TrainConfig(**config)).validation.cache()


def predictions(model, test, variant, augment, seed):
    """The arrays of predictions.npz (see the module docstring)."""
    circular, crop = shift_sets()
    unshifted = metrics.predict_shifted(model, test, np.zeros((1, 2), np.int32))
    under_circular = metrics.predict_shifted(model, test, circular, mode="circular")
    under_crop = metrics.predict_shifted(
        model, test, crop, mode="crop", pad_mode="zero"
    )
    small = np.int8
    return {
        "labels": unshifted.labels.astype(small),
        "classes": unshifted.classes[:, 0].astype(small),
        "shifts_circular": circular.astype(small),
        "classes_circular": under_circular.classes.astype(small),
        "shifts_crop": crop.astype(small),
        "classes_crop": under_crop.classes.astype(small),
        "variant": np.array(variant),
        "augment": np.array(augment),
        "seed": np.array(seed),
    }


def summary_numbers(arrays):
    """accuracy and the two consistencies (means over images) of one run's arrays."""
    return {measure: float(per_image(arrays, measure).mean()) for measure in MEASURES}


def commit():
    """(HEAD commit of this checkout, whether its tracked files differ from it)."""
    here = os.path.dirname(os.path.abspath(__file__))

    def git(*args):
        return subprocess.run(
            ["git", "-C", here, *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return git("rev-parse", "HEAD"), dirty


def run_config(variant, augment, seed, out_dir, data_dir=None, verbose=2):
    """The `training.TrainConfig` options of one run."""
    settings = dataclasses.replace(SETTINGS, seed=seed)
    config = plan.train_config(
        settings, MODEL, variant, augment, out_dir, data_dir, verbose
    )
    config["out"] = os.path.join(out_dir, "train", run_name(variant, augment, seed))
    return config


def run_one(variant, augment, seed, out_dir, split, data_dir=None, verbose=2):
    """Trains one run and measures it on `split` ("test" or "validation"); writes
    its folder; returns its record."""
    name = run_name(variant, augment, seed)
    config = run_config(variant, augment, seed, out_dir, data_dir, verbose)
    start = time.perf_counter()
    summary = training.train(config, test=False)
    trained = time.perf_counter() - start
    model = load_model(summary["best_model"])
    images = measured_data(split, config, data_dir)
    arrays = predictions(model, images, variant, augment, seed)
    measured = time.perf_counter() - start - trained
    downsampling = diagnostics.downsampling_report(
        model,
        initial_weights=os.path.join(config["out"], run_folder.INITIAL_WEIGHTS),
    )
    folder = os.path.join(out_dir, "runs", name)
    os.makedirs(folder, exist_ok=True)
    # Written under temporary names and renamed, the record last: a folder with a
    # record is complete.
    np.savez_compressed(os.path.join(folder, "predictions.tmp.npz"), **arrays)
    os.replace(
        os.path.join(folder, "predictions.tmp.npz"),
        os.path.join(folder, "predictions.npz"),
    )
    shutil.copyfile(summary["best_model"], os.path.join(folder, "model.tmp.keras"))
    os.replace(
        os.path.join(folder, "model.tmp.keras"), os.path.join(folder, "model.keras")
    )
    head, dirty = commit()
    record = {
        "name": name,
        "model": MODEL,
        "variant": variant,
        "options": VARIANTS[variant],
        "augment": augment,
        "seed": seed,
        "split": split,
        "commit": head,
        "dirty": dirty,
        **summary_numbers(arrays),
        "parameters": summary["parameters"],
        "best_epoch": summary["best_epoch"],
        "downsampling": downsampling,
        "downsampling_summary": diagnostics.summarize(downsampling),
        "train_seconds": round(trained, 1),
        "measure_seconds": round(measured, 1),
        "train_config": config,
        "machine": plan.machine(),
        "load_average": round(os.getloadavg()[0], 2),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        "versions": {"keras": keras.__version__},
    }
    write_json(os.path.join(folder, "record.json"), record)
    keras.backend.clear_session()
    return record


def finished(out_dir):
    """The names of the runs of `out_dir` that have their record."""
    folder = os.path.join(out_dir, "runs")
    names = os.listdir(folder) if os.path.isdir(folder) else []
    return {n for n in names if os.path.exists(os.path.join(folder, n, "record.json"))}


def run_all(out_dir, runs, split, claims=None, data_dir=None, verbose=2):
    """Trains and measures on `split` every run of `runs` (see `planned_runs`) not
    done yet in `out_dir` (with `claims`, a folder shared by parallel processes,
    only those no other process has claimed)."""
    done = finished(out_dir)
    for k, (variant, augment, seed) in enumerate(runs, start=1):
        name = run_name(variant, augment, seed)
        prefix = f"[{k}/{len(runs)}] {name}:"
        if name in done:
            continue
        if claims is not None and not plan._claim(claims, name):
            continue
        print(f"{prefix} training", flush=True)
        record = run_one(variant, augment, seed, out_dir, split, data_dir, verbose)
        print(
            f"{prefix} accuracy {record['accuracy']:.4f}, circular "
            f"{record['circular']:.4f}, crop {record['crop']:.4f}; "
            f"{record['train_seconds']:.0f} s training, "
            f"{record['measure_seconds']:.0f} s measuring",
            flush=True,
        )
