import dataclasses
import json
import os

import keras
import numpy as np
import pytest

pytest.importorskip("tensorflow")

from tests.benchmark_scripts import load_script  # noqa: E402
from tests.shift_reference import grid, predictions  # noqa: E402
from tests.training_helpers import write_idx  # noqa: E402

pytestmark = pytest.mark.tf_only

reproduce = load_script("reproduce")
# Loading reproduce.py puts the benchmarks folder on sys.path.
import markdown_sections  # noqa: E402
from reproduction import plan, report, seeds  # noqa: E402


def _fashion_like(folder, n_train=64, n_test=16):
    """IDX files of 28x28 images, two classes told apart by a bright square.

    Returns the test split's `(images [N, 28, 28], labels [N])`."""
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 2, n).astype(np.uint8)
        images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        images[labels == 1, 10:18, 10:18] = 255
        write_idx(folder, prefix, images, labels, gz=True)
    return images, labels


def _measured_in_numpy(record, images, labels):
    """`measure`'s numbers for `record`, from its model's predictions on the test
    images shifted in NumPy."""
    settings = record["settings"]
    model = keras.saving.load_model(
        os.path.join(record["train_config"]["out"], "best.keras")
    )
    # The images as the model is fed them: zero-padded (centred) to its input size.
    pad = (model.input_shape[1] - images.shape[1]) // 2
    x = np.pad(images[:, :, :, None], [(0, 0), (pad, pad), (pad, pad), (0, 0)])
    x, y = x[: settings["test_images"]].astype("float32"), labels.astype(int)

    def draws(count):
        # The metrics' shifts: per batch (one here), from a generator of the seed.
        rng = np.random.default_rng(settings["seed"])
        return rng.integers(0, settings["max_shift"], (len(x), count, 2))

    def consistency(mode):
        classes = predictions(model, x, draws(2 * settings["samples"]), mode)
        classes = classes.argmax(-1)
        return np.mean(classes[:, 0::2] == classes[:, 1::2])

    n = np.arange(settings["detail_images"])
    every_shift = grid(len(n), settings["max_shift"])
    label_probs = predictions(model, x[n], every_shift)[n, :, y[n]]
    unshifted = predictions(model, x, np.zeros((len(x), 1, 2), int))[:, 0]
    shifted = predictions(model, x, draws(settings["samples"]))
    return {
        "accuracy": np.mean(unshifted.argmax(-1) == y),
        "shifted_accuracy": np.mean(shifted.argmax(-1) == y[:, None]),
        "consistency_circular": consistency("circular"),
        "consistency_crop": consistency("crop"),
        "variation": label_probs.var(axis=1).mean(),
    }


# Trains two tiny models.
@pytest.mark.slow
def test_runs_records_and_benchmarks_section(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    images, labels = _fashion_like(str(data_dir))
    settings = dataclasses.replace(
        plan.MODES["quick"],
        width_multiplier=1 / 32,
        train_subset=None,
        batch_size=16,
        validation_split=0.25,
        test_images=16,
        detail_images=8,
        samples=1,
        stability_shift=2,
        equivariance_images=4,
        equivariance_shift=1,
    )
    benchmarks = tmp_path / "BENCHMARKS.md"
    benchmarks.write_text(
        "# Benchmarks\n\n<!-- bench_layers:start -->\nkeep\n<!-- bench_layers:end -->\n"
    )
    out = str(tmp_path / "out")
    variants = ["baseline", "group-aps"]
    settings = dataclasses.replace(
        settings, models=("vgg13",), variants=tuple(variants), augments=("none",)
    )
    args = ("quick", settings, out)
    options = {"data_dir": str(data_dir), "benchmarks": str(benchmarks), "verbose": 0}
    options["report"] = reproduce.write_reports
    records = plan.run(*args, command="python reproduce.py --test", **options)

    assert sorted(r["variant"] for r in records) == sorted(variants)
    with open(os.path.join(out, "results.json")) as f:
        assert json.load(f) == records
    for r in records:
        expected = _measured_in_numpy(r, images, labels)
        variation = expected.pop("variation")
        assert {key: r[key] for key in expected} == expected
        assert r["variation"] == pytest.approx(variation, rel=1e-4, abs=1e-9)
        assert len(r["stability"]["mean"]) == settings.stability_shift + 1
        assert r["command"] == "python reproduce.py --test"
        assert r["train_config"]["model"] == "vgg13"
        assert r["settings"]["test_images"] == 16
        assert r["machine"]["nproc"] >= 1
        assert r["parameters"] > 0
    exact = next(r for r in records if r["variant"] == "group-aps")
    assert exact["exact"] and exact["consistency_circular"] == 1.0
    assert exact["variation"] < 1e-10

    text = benchmarks.read_text()
    assert "<!-- bench_layers:start -->\nkeep\n<!-- bench_layers:end -->" in text
    body = markdown_sections.section(text, "reproduce-quick")
    assert "python reproduce.py --test" in body
    assert "| vgg13 | none | group-aps |" in body
    assert "--variants baseline group-aps --augment none" in body
    for png in ("consistency_accuracy.png", "stability_vgg13_none.png"):
        assert os.path.exists(os.path.join(out, png))
        assert f"(out/{png})" in body

    # A second invocation finds every record and trains nothing.
    stamps = {
        name: os.path.getmtime(os.path.join(out, "records", name))
        for name in os.listdir(os.path.join(out, "records"))
    }
    again = plan.run(*args, command="python reproduce.py --test", **options)
    assert again == records
    for name, stamp in stamps.items():
        assert os.path.getmtime(os.path.join(out, "records", name)) == stamp


def test_replace_section_keeps_other_sections():
    text = (
        "# Benchmarks\n\nintro\n\n<!-- bench_layers:start -->\nlayers\n"
        "<!-- bench_layers:end -->\n\n<!-- reproduce:start -->\nold\n"
        "<!-- reproduce:end -->\n\n<!-- bench_models:start -->\nmodels\n"
        "<!-- bench_models:end -->\n"
    )
    new = markdown_sections.replace_section(text, "reproduce", "new\ntable")
    assert new == text.replace("\nold\n", "\nnew\ntable\n")
    assert markdown_sections.replace_section(new, "reproduce", "new\ntable") == new

    appended = markdown_sections.replace_section("# Benchmarks\n", "x", "body")
    assert appended == "# Benchmarks\n\n<!-- x:start -->\nbody\n<!-- x:end -->\n"
    # An unterminated marker is not a section: a complete one is appended.
    broken = "<!-- x:start -->\ndangling\n"
    assert markdown_sections.replace_section(broken, "x", "b").startswith(broken)


def test_modes_are_subsections_of_the_reproduce_section(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(
        "# Benchmarks\n\n<!-- bench_models:start -->\nm\n<!-- bench_models:end -->\n"
    )
    report.write_benchmarks(str(path), "quick", "quick table")
    report.write_benchmarks(str(path), "full", "full table")
    report.write_benchmarks(str(path), "quick", "quick table 2")
    text = path.read_text()
    inner = markdown_sections.section(text, "reproduce")
    assert inner.startswith("<!-- reproduce-intro:start -->")
    assert markdown_sections.section(inner, "reproduce-intro") == report.INTRO.strip()
    assert markdown_sections.section(inner, "reproduce-quick") == "quick table 2"
    assert markdown_sections.section(inner, "reproduce-full") == "full table"
    assert markdown_sections.section(text, "bench_models") == "m"
    assert text.count("<!-- reproduce:start -->") == 1


def test_write_section_creates_the_file_and_replaces_only_its_section(tmp_path):
    # As bench_layers.py and bench_models.py write their sections.
    path = tmp_path / "BENCHMARKS.md"
    markdown_sections.write_section(path, "bench_layers", "table 1\n")
    assert path.read_text() == (
        "# Benchmarks\n\n<!-- bench_layers:start -->\ntable 1\n"
        "<!-- bench_layers:end -->\n"
    )
    markdown_sections.write_section(str(path), "bench_models", "models")
    markdown_sections.write_section(path, "bench_layers", "table 2")
    text = path.read_text()
    assert markdown_sections.section(text, "bench_layers") == "table 2"
    assert markdown_sections.section(text, "bench_models") == "models"
    assert text.index("bench_layers:end") < text.index("bench_models:start")


def test_consistency_accuracy_plot_has_a_panel_per_augmentation(tmp_path):
    records = [
        {
            "model": model,
            "variant": variant,
            "augment": augment,
            "accuracy": 0.8,
            "consistency_circular": 0.9,
            "exact": variant == "aps",
        }
        for model in plan.MODELS
        for variant in ("baseline", "aps")
        for augment in plan.AUGMENTS
    ]
    path = tmp_path / "consistency_accuracy.png"
    report.plot_consistency_accuracy(records, str(path))
    from matplotlib.image import imread

    # Two panels of 5.5 x 4.5 inches at 110 dpi.
    assert imread(path).shape[:2] == (495, 1210)


def test_table_command_names_only_what_differs_from_the_mode():
    quick = plan.MODES["quick"]
    records = [
        {"model": m, "variant": v, "augment": a}
        for m in plan.MODELS
        for v in quick.variants
        for a in plan.AUGMENTS
    ]
    assert report.table_command("quick", quick, records) == (
        "python benchmarks/reproduce.py --quick"
    )
    zero = dataclasses.replace(quick, padding="zero")
    subset = [r for r in records if r["augment"] == "none"]
    assert report.table_command("quick", zero, subset) == (
        "python benchmarks/reproduce.py --quick --padding zero --augment none"
    )
    # Variants beyond the quick mode's are listed, in the script's order.
    more = records + [{"model": "vgg13", "variant": "aps", "augment": "none"}]
    assert report.table_command("quick", quick, more).endswith(
        "--variants baseline blur5 group aps group-aps"
    )
    assert plan.label("quick", zero) == "quick-zero"
    seeded = dataclasses.replace(zero, seed=2)
    assert plan.label("quick", seeded) == "quick-zero-seed2"
    assert report.table_command("quick", seeded, subset) == (
        "python benchmarks/reproduce.py --quick --padding zero --seed 2 --augment none"
    )
    assert plan.label("full", plan.MODES["full"]) == "full"


def _write_records(folder, values):
    """Records of 'none' VGG13 runs: {variant: (circular, crop, accuracy)}."""
    os.makedirs(os.path.join(folder, "records"))
    for variant, (circular, crop, accuracy) in values.items():
        record = {
            "model": "vgg13",
            "variant": variant,
            "augment": "none",
            "consistency_circular": circular,
            "consistency_crop": crop,
            "accuracy": accuracy,
        }
        path = os.path.join(folder, "records", f"vgg13-{variant}-none.json")
        with open(path, "w") as f:
            json.dump(record, f)


def test_seeds_report_compares_each_seed_with_its_own_baseline(tmp_path):
    _write_records(
        str(tmp_path / "full"),
        {"baseline": (0.5, 0.4, 0.8), "group": (0.4, 0.3, 0.7), "aps": (1, 1, 1)},
    )
    _write_records(
        str(tmp_path / "full-seed1"),
        {"baseline": (0.6, 0.5, 0.8), "group": (0.8, 0.6, 0.9)},
    )
    # Zero padding is another experiment: not one of the seeds.
    _write_records(str(tmp_path / "full-zero-seed1"), {"baseline": (0, 0, 0)})
    benchmarks = tmp_path / "BENCHMARKS.md"
    benchmarks.write_text("# Benchmarks\n")
    seeded = dataclasses.replace(plan.MODES["full"], seed=1)
    out = str(tmp_path / "full-seed1")
    assert seeds.seed_folders("full", seeded, out) == {
        0: str(tmp_path / "full"),
        1: out,
    }

    seeds.seeds_report("full", seeded, out, str(benchmarks))

    body = markdown_sections.section(benchmarks.read_text(), "reproduce-full-seeds")
    std = np.std([0.5, 0.6], ddof=1) * 100
    assert f"| vgg13 | none | baseline | 0, 1 | 80.0 ± 0.0 | 55.0 ± {std:.1f} |" in body
    # group: 0.4 - 0.5 under seed 0, 0.8 - 0.6 under seed 1.
    gain_std = np.std([-0.1, 0.2], ddof=1) * 100
    assert f"| +5.0 ± {gain_std:.1f} | 1 of 2 |" in body
    assert "**not in every seed**: group (1 of 2)" in body
    assert "| aps |" not in body  # one seed only
    assert "for seed in 0 1; do python benchmarks/reproduce.py --seed $seed " in body
    assert "--variants baseline group" in body
    folder = tmp_path / "full-seeds"
    assert (folder / "consistency_seeds.png").exists()
    with open(folder / "seeds.json") as f:
        assert [row["variant"] for row in json.load(f)] == ["baseline", "group"]

    # Results in a folder the script did not name have no seeds to gather.
    assert seeds.seed_folders("full", seeded, str(tmp_path / "mine")) == {}


def _write_decisive(folder, values):
    """Decisive-mode records (ResNet-18, shift augmentation): {variant: (circular,
    symmetric crop, accuracy, high-frequency share, weight change)}."""
    os.makedirs(os.path.join(folder, "records"))
    for variant, (circular, symmetric, accuracy, share, change) in values.items():
        learned = {"high_frequency_share": share, "weight_change": change}
        record = {
            "model": "resnet18",
            "variant": variant,
            "augment": "shift",
            "consistency_circular": circular,
            "consistency_crop": symmetric - 0.01,
            "consistency_crop_symmetric": symmetric,
            "accuracy": accuracy,
            "downsampling_summary": {
                "all": {
                    "high_frequency_share": share,
                    "initial_high_frequency_share": 0.5,
                    "weight_change": change,
                },
                "learned": {**learned, "initial_high_frequency_share": 0.5},
            },
        }
        path = os.path.join(folder, "records", f"resnet18-{variant}-shift.json")
        with open(path, "w") as f:
            json.dump(record, f)


def test_verdict_rule():
    assert seeds.verdict([0.1, 2.0, 0.5]) == "holds"
    assert seeds.verdict([-0.1, 2.0, 0.5]) == "not settled"
    assert seeds.verdict([-3.0, 2.0, 0.5]) == "does not hold"
    assert seeds.verdict([0.0, 0.0]) == "does not hold"


def test_decisive_seeds_report_has_diagnostics_and_the_papers_verdicts(tmp_path):
    _write_decisive(
        str(tmp_path / "decisive"),
        {
            "baseline": (0.5, 0.6, 0.90, 0.7, None),
            "blur4": (0.9, 0.8, 0.91, 0.065, None),
            "group": (0.55, 0.7, 0.89, 0.6, 0.1),
        },
    )
    _write_decisive(
        str(tmp_path / "decisive-seed1"),
        {
            "baseline": (0.6, 0.7, 0.90, 0.7, None),
            "blur4": (0.9, 0.8, 0.92, 0.065, None),
            "group": (0.5, 0.75, 0.92, 0.4, 0.3),
        },
    )
    benchmarks = tmp_path / "BENCHMARKS.md"
    benchmarks.write_text("# Benchmarks\n")
    seeded = dataclasses.replace(plan.MODES["decisive"], seed=1)
    seeds.seeds_report(
        "decisive", seeded, str(tmp_path / "decisive-seed1"), str(benchmarks)
    )
    body = markdown_sections.section(benchmarks.read_text(), "reproduce-decisive-seeds")
    share_sd = np.std([0.6, 0.4], ddof=1)
    change_sd = np.std([0.1, 0.3], ddof=1)
    # Symmetric crop 70 and 75 %; crop gains +10 and +5 points.
    crop_gain_sd = np.std([0.1, 0.05], ddof=1) * 100
    assert (
        f"| resnet18 | shift | group | 72.5 ± {np.std([0.7, 0.75], ddof=1) * 100:.1f}"
        f" | +7.5 ± {crop_gain_sd:.1f} | 0.500 ± {share_sd:.3f} | 0.500 ± 0.000 | "
        f"0.200 ± {change_sd:.3f} |"
    ) in body
    # Against the baseline: +10.0 and +5.0 points of symmetric crop consistency.
    assert "| group | +10.0, +5.0 | +7.5 | holds |" in body
    # Against blur4: -10.0 and -5.0.
    assert "| group | -10.0, -5.0 | -7.5 | does not hold |" in body
    # Accuracy against the baseline: -1.0 and +2.0 points.
    assert "| group | -1.0, +2.0 | +0.5 | not settled |" in body
    assert (tmp_path / "decisive-seeds" / "diagnostics.png").exists()


def test_commit_results_commits_the_results_and_nothing_twice(tmp_path):
    import subprocess

    def git(*args):
        return subprocess.run(
            ["git", "-C", str(tmp_path), *args],
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    git("init", "-q")
    git("config", "user.email", "ci@example.org")
    git("config", "user.name", "CI")
    out = tmp_path / "results" / "decisive"
    (out / "records").mkdir(parents=True)
    (out / "records" / "a.json").write_text("{}\n")
    (tmp_path / "mine.txt").write_text("not results\n")
    benchmarks = tmp_path / "BENCHMARKS.md"
    benchmarks.write_text("# Benchmarks\n")

    plan.commit_results(str(out), str(benchmarks), "reproduce decisive: a")
    assert git("log", "--format=%s").splitlines() == ["reproduce decisive: a"]
    tracked = git("ls-files").split()
    assert tracked == ["BENCHMARKS.md", "results/decisive/records/a.json"]
    plan.commit_results(str(out), str(benchmarks), "again")
    assert len(git("log", "--format=%s").splitlines()) == 1


def test_runs_claimed_by_another_process_are_left_to_it(tmp_path):
    settings = dataclasses.replace(
        plan.MODES["quick"], models=("vgg13",), variants=("baseline", "blur5")
    )
    claims = tmp_path / "claims"
    claims.mkdir()
    names = plan.pending(settings, str(tmp_path / "out"))
    assert len(names) == 4
    for name in names:
        assert plan._claim(str(claims), name)
        assert not plan._claim(str(claims), name)
    # Every run is claimed: nothing is trained (or even loaded) here.
    records = plan.run("quick", settings, str(tmp_path / "out"), claims=str(claims))
    assert records == []
    assert not (tmp_path / "out" / "train").exists()


# Stands in for reproduce.py: claims runs of the folder given after --claims and
# writes their records, or fails if told to.
_FAKE_WORKER = """
import json, os, sys
out, names, fail = sys.argv[1], sys.argv[2].split(","), sys.argv[3] == "fail"
claims = sys.argv[sys.argv.index("--claims") + 1]
if fail:
    sys.exit(3)
os.makedirs(os.path.join(out, "records"), exist_ok=True)
for name in names:
    try:
        os.close(os.open(os.path.join(claims, name), os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        continue
    model, variant, augment = name.split("-")
    record = {"name": name, "model": model, "variant": variant, "augment": augment}
    with open(os.path.join(out, "records", name + ".json"), "w") as f:
        json.dump(record, f)
"""


def test_run_processes_shares_the_runs_and_reports_each_record(tmp_path):
    import sys

    out = str(tmp_path / "out")
    names = ["vgg13-baseline-none", "vgg13-blur5-none", "resnet18-group-shift"]
    seen = []
    command = [sys.executable, "-c", _FAKE_WORKER, out, ",".join(names), "ok"]
    plan.run_processes(command, 3, out, on_record=seen.append, poll_seconds=0.05)
    assert sorted(seen) == sorted(names)
    assert sorted(r["name"] for r in plan.read_records(out)) == sorted(names)
    # The claims folder is gone once the processes are done.
    assert os.listdir(out) == ["records"]

    command[-1] = "fail"
    with pytest.raises(RuntimeError, match="2 of 2 processes failed"):
        plan.run_processes(command, 2, out, poll_seconds=0.05)
