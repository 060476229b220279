"""What the reproduction runs and how: the variants, the modes and their settings,
the name and label of a run, its training configuration, the run loop, the records
(one JSON file per run) and the git commit of the results."""

import dataclasses
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time

import keras

from keras_shiftinv import diagnostics
from keras_shiftinv.app import run_folder, training
from keras_shiftinv.models import load_model

from . import measure

# Our name: the zoo options of the variant.
VARIANTS = {
    "baseline": {"variant": "baseline"},
    "blur2": {"variant": "blur", "filt_size": 2},
    "blur3": {"variant": "blur", "filt_size": 3},
    "blur5": {"variant": "blur", "filt_size": 5},
    "blur7": {"variant": "blur", "filt_size": 7},
    "blur4": {"variant": "blur", "filt_size": 4},
    "group": {"variant": "group"},
    "conv3d": {"variant": "conv3d"},
    # The seed's module in both readings of the paper, from random kernels
    # (Keras' he_normal) or from the 4-tap binomial filter ("lowpass").
    "group-lowpass": {"variant": "group", "module_initializer": "lowpass"},
    "group-dense": {"variant": "group", "placement": "dense"},
    "group-dense-lowpass": {
        "variant": "group",
        "placement": "dense",
        "module_initializer": "lowpass",
    },
    # The low-pass start kept low-pass by a penalty on the high-frequency share of
    # its stride-2 filters (issue 22), at the weights of its validation sweep.
    **{
        f"group-dense-lowpass-penalty{weight:g}": {
            "variant": "group",
            "placement": "dense",
            "module_initializer": "lowpass",
            "module_lowpass_penalty": weight,
        }
        for weight in (0.1, 1.0, 10.0)
    },
    "conv3d-lowpass": {"variant": "conv3d", "module_initializer": "lowpass"},
    "conv3d-dense": {"variant": "conv3d", "placement": "dense"},
    "conv3d-dense-lowpass": {
        "variant": "conv3d",
        "placement": "dense",
        "module_initializer": "lowpass",
    },
    # Adaptive polyphase sampling alone (no blur), as in Chaman & Dokmanic.
    "aps": {"variant": "aps", "filt_size": 1},
    "group-aps": {"variant": "group", "polyphase_order": "aps"},
    "conv3d-aps": {"variant": "conv3d", "polyphase_order": "aps"},
}
# Made only by the decisive mode (and the VGG13 check of "group-dense") and the
# evidence protocol (benchmarks/evidence.py).
DECISIVE_ONLY = (
    *(v for v in VARIANTS if "penalty" in v),
    "blur4",
    "group-lowpass",
    "group-dense",
    "group-dense-lowpass",
    "conv3d-lowpass",
    "conv3d-dense",
    "conv3d-dense-lowpass",
)
# Exactly invariant to circular shifts (in inference mode) with circular padding.
EXACT = ("aps", "group-aps", "conv3d-aps")
MODELS = ("vgg13", "resnet18")
PADDINGS = ("circular", "zero")
# Our name: the `augment` option of the training pipeline.
AUGMENTS = {"none": "none", "shift": "crop_flip"}
AUGMENT_TITLES = {
    "none": "without shift augmentation",
    "shift": "with shift augmentation",
}


@dataclasses.dataclass(frozen=True)
class Settings:
    """What one mode trains and measures (the same for every run of the mode).

    Args:
        width_multiplier: channel widths of the zoo models, relative to the papers'.
        train_subset: training examples (None: all but the validation ones).
        epochs: epochs of every run.
        batch_size: training and evaluation batch size.
        validation_split: fraction of the training split held out (best epoch).
        test_images: test images for accuracy and consistency.
        detail_images: test images for variation and diagonal stability.
        samples: random shift pairs per test image for consistency (and shifts
            for the shifted accuracy).
        max_shift: random shifts are drawn from [0, max_shift) px per axis.
        stability_shift: the diagonal stability curve goes to (d, d) for this d.
        equivariance_images: test images for the per-layer equivariance maps.
        equivariance_shift: the maps cover the shifts [0, equivariance_shift]^2.
        lr: peak learning rate of SGD (momentum 0.9) with one triangular cycle.
        seed: seed of weights, data order, augmentation and shifts.
        padding: padding of every conv, pool and blur of every model: "circular"
            (Zhang's protocol: circular convolution under circular shifts) or
            "zero".
        models, variants, augments: the runs the mode makes by default (every
            combination).
    """

    width_multiplier: float
    train_subset: int | None
    epochs: int
    batch_size: int
    validation_split: float
    test_images: int
    detail_images: int
    samples: int
    max_shift: int = 8
    stability_shift: int = 32
    equivariance_images: int = 32
    equivariance_shift: int = 8
    lr: float = 0.1
    seed: int = 0
    padding: str = "circular"
    models: tuple = MODELS
    variants: tuple = tuple(VARIANTS)
    augments: tuple = tuple(AUGMENTS)


MODES = {
    "quick": Settings(
        width_multiplier=1 / 8,
        train_subset=5000,
        epochs=1,
        batch_size=64,
        validation_split=0.02,
        test_images=512,
        detail_images=64,
        samples=4,
        # 4.5 minutes on 2 CPUs (reproduce.py --jobs): the baseline, the two
        # anti-aliasing methods and one exact variant.
        variants=("baseline", "blur5", "group", "group-aps"),
    ),
    "full": Settings(
        width_multiplier=1 / 8,
        train_subset=12000,
        epochs=3,
        batch_size=128,
        validation_split=0.05,
        test_images=2048,
        detail_images=128,
        samples=2,
        equivariance_images=64,
        equivariance_shift=16,
        lr=0.05,
        variants=tuple(v for v in VARIANTS if v not in DECISIVE_ONLY),
    ),
    # Does the seed's module learn to anti-alias when it trains long enough?
    # ResNet-18 on all 57,000 training images (3,000 held out), random crop and
    # flip, 2 epochs of 1,188 SGD steps; run under seeds 0, 1 and 2.
    "decisive": Settings(
        width_multiplier=1 / 8,
        train_subset=None,
        epochs=2,
        batch_size=48,
        validation_split=0.05,
        test_images=5000,
        detail_images=128,
        samples=2,
        lr=0.05,
        models=("resnet18",),
        variants=(
            "baseline",
            "blur4",
            "group",
            "group-lowpass",
            "group-dense",
            "group-dense-lowpass",
            "conv3d",
            "conv3d-lowpass",
            "conv3d-dense",
            "conv3d-dense-lowpass",
            "aps",
            "group-aps",
        ),
        augments=("shift",),
    ),
}


def run_name(model, variant, augment):
    return f"{model}-{variant}-{augment}"


def label(mode, settings):
    """The name of a mode's results (folder, BENCHMARKS.md subsection)."""
    parts = [mode]
    if settings.padding != MODES[mode].padding:
        parts.append(settings.padding)
    if settings.seed != MODES[mode].seed:
        parts.append(f"seed{settings.seed}")
    return "-".join(parts)


def train_config(settings, model, variant, augment, out_dir, data_dir, verbose):
    """The `training.TrainConfig` options of one run."""
    options = {"filt_size": 4, "padding": settings.padding, "polyphase_order": "fixed"}
    options.update(VARIANTS[variant])
    return {
        "model": model,
        "dataset": "fashion_mnist",
        "data_dir": data_dir,
        "epochs": settings.epochs,
        "batch_size": settings.batch_size,
        "optimizer": "sgd",
        "lr": settings.lr,
        "schedule": "cyclic",
        "augment": AUGMENTS[augment],
        "width_multiplier": settings.width_multiplier,
        "seed": settings.seed,
        "out": os.path.join(out_dir, "train", run_name(model, variant, augment)),
        "validation_split": settings.validation_split,
        "train_subset": settings.train_subset,
        "test_subset": settings.test_images,
        "consistency_images": min(256, settings.test_images),
        "max_shift": settings.max_shift,
        "install_data": False,
        "verbose": verbose,
        **options,
    }


def machine():
    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = re.search(r"model name\s*:\s*(.*)", f.read()).group(1).strip()
    except (OSError, AttributeError):
        pass
    try:
        nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout
    except OSError:
        nproc = str(os.cpu_count())
    return {"nproc": int(nproc.strip()), "cpu": cpu}


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # Per process: two invocations may share an output folder.
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def read_records(out_dir):
    folder = os.path.join(out_dir, "records")
    if not os.path.isdir(folder):
        return []
    records = []
    for name in os.listdir(folder):
        if name.endswith(".json"):
            with open(os.path.join(folder, name)) as f:
                records.append(json.load(f))
    return sorted(records, key=plan_order)


def plan_order(record):
    def index(names, name):
        names = list(names)
        return names.index(name) if name in names else len(names)

    return (
        index(AUGMENTS, record["augment"]),
        index(MODELS, record["model"]),
        index(VARIANTS, record["variant"]),
    )


def run(
    mode,
    settings,
    out_dir,
    data_dir=None,
    benchmarks=None,
    command=None,
    verbose=1,
    commit=False,
    report=None,
    claims=None,
):
    """Trains and measures every (augment, model, variant) run of `settings` not
    done yet (with a `claims` folder, shared by processes working in parallel, only
    the runs no other process has claimed there), writing its record after each
    run, then calling
    `report(mode, settings, out_dir, benchmarks, data_dir)` (if given: it writes
    results.json, the plots, report.md and the BENCHMARKS.md section; also called
    when nothing new was run), and committing them with `commit=True`. Returns the
    records of `out_dir`."""
    command = command or shlex.join(
        ["python", "benchmarks/reproduce.py", *sys.argv[1:]]
    )
    plan = runs(settings)
    if claims is not None:
        # Longest first, so that the last runs to end are short and no process
        # waits long for the others at the end.
        plan.sort(key=lambda r: r[1] != "resnet18")
    start = time.perf_counter()
    test = detail = None
    for k, (augment, model, variant) in enumerate(plan, start=1):
        name = run_name(model, variant, augment)
        path = os.path.join(out_dir, "records", f"{name}.json")
        prefix = f"[{k}/{len(plan)}] {name}:"
        if os.path.exists(path):
            print(f"{prefix} done before ({path})", flush=True)
            continue
        if claims is not None and not _claim(claims, name):
            continue
        print(f"{prefix} training", flush=True)
        if test is None:
            test, detail = measure.test_batches(settings, data_dir)
        config = train_config(
            settings, model, variant, augment, out_dir, data_dir, verbose
        )
        run_start = time.perf_counter()
        # `measure` below measures the test accuracy and consistency (and more).
        summary = training.train(config, test=False)
        trained = time.perf_counter() - run_start
        network = load_model(summary["best_model"])
        downsampling = diagnostics.downsampling_report(
            network,
            initial_weights=os.path.join(config["out"], run_folder.INITIAL_WEIGHTS),
        )
        record = {
            "name": name,
            "mode": mode,
            "model": model,
            "variant": variant,
            "augment": augment,
            "padding": settings.padding,
            "exact": variant in EXACT and settings.padding == "circular",
            "parameters": summary["parameters"],
            **measure.measure(network, test, detail, settings),
            "downsampling": downsampling,
            "downsampling_summary": diagnostics.summarize(downsampling),
            "best_epoch": summary["best_epoch"],
            "train_seconds": round(trained, 1),
            "seconds": round(time.perf_counter() - run_start, 1),
            "command": command,
            "settings": dataclasses.asdict(settings),
            "train_config": config,
            "machine": machine(),
            "load_average": round(os.getloadavg()[0], 2),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"
            ),
            "versions": {"keras": keras.__version__},
        }
        write_json(path, record)
        print(
            f"{prefix} accuracy {record['accuracy']:.4f}, consistency "
            f"{record['consistency_circular']:.4f} circular / "
            f"{record['consistency_crop']:.4f} crop, variation "
            f"{record['variation']:.2e}; {record['seconds']:.0f} s "
            f"(elapsed {time.perf_counter() - start:.0f} s)",
            flush=True,
        )
        keras.backend.clear_session()
        if report is not None:
            report(mode, settings, out_dir, benchmarks, data_dir)
        if commit:
            commit_results(
                out_dir, benchmarks, f"reproduce {label(mode, settings)}: {name}"
            )
    records = read_records(out_dir)
    if records and test is None and report is not None:
        # Nothing new was run: the report may still be missing or out of date.
        report(mode, settings, out_dir, benchmarks, data_dir)
    return records


def runs(settings):
    """The (augment, model, variant) of every run of `settings`, in the run order."""
    return [
        (a, m, v)
        for a in settings.augments
        for m in settings.models
        for v in settings.variants
    ]


def pending(settings, out_dir):
    """The names of the runs of `settings` without a record in `out_dir`."""
    names = [run_name(m, v, a) for a, m, v in runs(settings)]
    done = {r["name"] for r in read_records(out_dir)}
    return [name for name in names if name not in done]


def _claim(claims, name):
    """Whether this process is the first to claim the run `name` in `claims`."""
    try:
        os.close(os.open(os.path.join(claims, name), os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return False
    return True


def recorded(out_dir):
    """The names of the runs of `out_dir` that have a record."""
    return {r["name"] for r in read_records(out_dir)}


def run_processes(
    command, jobs, out_dir, on_record=None, poll_seconds=5, finished=recorded
):
    """Runs `jobs` copies of `command + ["--claims", FOLDER]` in parallel: each
    takes the next run no other has claimed in FOLDER (`run(claims=...)`), so all
    stay busy until the last runs. While they work, calls `on_record(name)` for each
    run that `finished(out_dir)` newly names. Raises `RuntimeError` if a process
    fails."""
    claims = os.path.join(out_dir, f"claims-{os.getpid()}")
    os.makedirs(claims)
    try:
        _watch(
            command + ["--claims", claims],
            jobs,
            out_dir,
            on_record,
            poll_seconds,
            finished,
        )
    finally:
        shutil.rmtree(claims, ignore_errors=True)


def _watch(command, jobs, out_dir, on_record, poll_seconds, finished):
    processes = [subprocess.Popen(command) for _ in range(jobs)]
    seen = finished(out_dir)
    while True:
        ended = all(p.poll() is not None for p in processes)
        for name in sorted(finished(out_dir) - seen):
            seen.add(name)
            if on_record is not None:
                on_record(name)
        if ended:
            break
        time.sleep(poll_seconds)
    failed = [p.args for p in processes if p.returncode]
    if failed:
        raise RuntimeError(f"{len(failed)} of {jobs} processes failed: {failed}")


def commit_results(out_dir, benchmarks, message):
    """Commits the results folders of this mode (seeds included) and the
    BENCHMARKS.md file in their git repository, so a long reproduction keeps
    what it has made if the machine goes away."""
    paths = [os.path.dirname(os.path.normpath(out_dir))]
    if benchmarks:
        paths.append(benchmarks)
    root = os.path.dirname(os.path.normpath(out_dir))
    subprocess.run(["git", "-C", root, "add", "--", *paths], check=True)
    # Nothing staged (a run whose files were committed before) is not an error.
    staged = subprocess.run(["git", "-C", root, "diff", "--cached", "--quiet"])
    if staged.returncode:
        subprocess.run(["git", "-C", root, "commit", "-q", "-m", message], check=True)


def find(records, model, variant, augment):
    return next(
        (
            r
            for r in records
            if (r["model"], r["variant"], r["augment"]) == (model, variant, augment)
        ),
        None,
    )
