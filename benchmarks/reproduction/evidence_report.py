"""The report of the evidence protocol, recomputed from the committed files of its
runs alone (`runs/<name>/record.json` and `predictions.npz`): no model is loaded
and nothing trains. Writes report.md and evidence.png in the results folder and
the `evidence-results` section of BENCHMARKS.md; the same files give the same
bytes."""

import json
import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from . import statistics
from .evidence import (
    CLAIMS,
    MEASURES,
    RUNS,
    SWEEP_ACCURACY_MARGIN,
    SWEEP_SEED,
    choose,
)

MEASURE_TITLES = {
    "circular": "circular consistency (primary)",
    "crop": "symmetric crop consistency, zero fill",
    "accuracy": "test accuracy",
}
AUGMENT_TITLES = {"shift": "crop+flip training", "none": "no augmentation"}


def load_runs(out_dir):
    """{(variant, augment, seed): (record, arrays)} of every finished run."""
    runs = {}
    folder = os.path.join(out_dir, "runs")
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
        path = os.path.join(folder, name)
        if not os.path.exists(os.path.join(path, "record.json")):
            continue
        with open(os.path.join(path, "record.json")) as f:
            record = json.load(f)
        with np.load(os.path.join(path, "predictions.npz")) as npz:
            arrays = {key: npz[key] for key in npz.files}
        key = (str(arrays["variant"]), str(arrays["augment"]), int(arrays["seed"]))
        runs[key] = record, arrays
    return runs


def _values(runs, variant, augment, measure, seeds):
    return np.stack(
        [statistics.per_image(runs[(variant, augment, s)][1], measure) for s in seeds]
    )


def _seeds(runs, augment, *variants):
    """The seeds at which every one of `variants` has a run, in order."""
    found = [{s for v_, a, s in runs if (v_, a) == (v, augment)} for v in variants]
    return sorted(set.intersection(*found)) if found else []


def claim_rows(runs, augment, measure):
    """The claims of `CLAIMS` that have runs under two seeds or more, with their
    comparison, Holm-adjusted p and verdict (one Holm family per table)."""
    rows = []
    for a, b in CLAIMS:
        seeds = _seeds(runs, augment, a, b)
        if len(seeds) < 2:
            continue
        comparison = statistics.compare(
            _values(runs, a, augment, measure, seeds),
            _values(runs, b, augment, measure, seeds),
        )
        rows.append({"a": a, "b": b, "seeds": seeds, "comparison": comparison})
    adjusted = statistics.holm([r["comparison"].p_value for r in rows])
    for row, p in zip(rows, adjusted, strict=True):
        row["holm_p"] = float(p)
        row["verdict"] = statistics.verdict(row["comparison"], p)
    return rows


def _points(value):
    return f"{100 * value:+.2f}"


def _interval(interval):
    if np.isnan(interval[0]):
        return "n/a"
    return f"[{_points(interval[0])}, {_points(interval[1])}]"


def _p(value):
    return f"{value:.2g}" if value >= 1e-4 else "<1e-4"


def summary_table(runs, augment):
    lines = [
        "| variant | seeds | circular (%) | crop (%) | accuracy (%) | "
        "high-frequency share, start -> trained |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    variants = dict.fromkeys(v for v, a, _ in runs if a == augment)
    for variant in _ordered(variants):
        seeds = _seeds(runs, augment, variant)
        cells = []
        for measure in MEASURES:
            means = _values(runs, variant, augment, measure, seeds).mean(axis=1)
            spread = f" ± {100 * means.std(ddof=1):.2f}" if len(seeds) > 1 else ""
            cells.append(f"{100 * means.mean():.2f}{spread}")
        shares = [
            runs[(variant, augment, s)][0]["downsampling_summary"]["all"] for s in seeds
        ]
        share = _share(shares)
        lines.append(
            f"| {variant} | {len(seeds)} | " + " | ".join(cells) + f" | {share} |"
        )
    return lines


def _share(summaries):
    start = [s.get("initial_high_frequency_share") for s in summaries]
    trained = [s.get("high_frequency_share") for s in summaries]
    if None in start or None in trained:
        return "n/a"
    return f"{np.mean(start):.3f} -> {np.mean(trained):.3f}"


def _ordered(variants):
    order = [v for _, _, names in RUNS for v in names]
    return sorted(variants, key=lambda v: (order.index(v) if v in order else 99, v))


def claims_table(rows):
    lines = [
        "| claim | per-seed difference (points) | mean | 95% t-interval (seeds) | "
        "95% bootstrap (images) | p | Holm p | verdict |",
        "| --- | --- | ---: | --- | --- | ---: | ---: | --- |",
    ]
    for row in rows:
        c = row["comparison"]
        lines.append(
            f"| {row['a']} > {row['b']} | "
            + ", ".join(_points(d) for d in c.differences)
            + f" | {_points(c.mean)} | {_interval(c.interval)} | "
            f"{_interval(c.bootstrap)} | {_p(c.p_value)} | {_p(row['holm_p'])} | "
            f"**{row['verdict']}** |"
        )
    return lines


def mcnemar_table(runs, augment):
    lines = [
        "| comparison | per seed: only a right / only b right (p) |",
        "| --- | --- |",
    ]
    for a, b in CLAIMS:
        seeds = _seeds(runs, augment, a, b)
        if not seeds:
            continue
        cells = []
        for seed in seeds:
            correct = [
                statistics.per_image(runs[(v, augment, seed)][1], "accuracy") > 0
                for v in (a, b)
            ]
            only_a, only_b, p = statistics.mcnemar(*correct)
            cells.append(f"seed {seed}: {only_a} / {only_b} ({_p(p)})")
        lines.append(f"| {a} vs {b} | " + "; ".join(cells) + " |")
    return lines


def plot(tables, path):
    """The paired differences of the primary measure with their intervals."""
    panels = [(augment, rows) for (augment, measure), rows in tables if rows]
    panels = [p for p in panels if p[0] in AUGMENT_TITLES]
    # One panel above the other: the claims' long labels need the full width.
    figure = Figure(figsize=(8, 0.6 + sum(0.9 + 0.3 * len(r) for _, r in panels)))
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (augment, rows) in zip(axes, panels, strict=True):
        for y, row in enumerate(rows):
            c = row["comparison"]
            ax.plot([100 * v for v in c.interval], [y, y], color="tab:blue")
            ax.plot([100 * v for v in c.bootstrap], [y, y], color="tab:orange", lw=4)
            ax.plot(100 * np.array(c.differences), [y] * len(c.differences), "k.")
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_yticks(
            range(len(rows)), [f"{r['a']} - {r['b']}" for r in rows], fontsize=8
        )
        ax.invert_yaxis()
        ax.set_xlabel("circular consistency difference (points)")
        ax.set_title(AUGMENT_TITLES[augment], fontsize=9)
    figure.suptitle(
        "Paired differences: dots = seeds, blue = 95% t-interval over seeds, "
        "orange = bootstrap over images",
        fontsize=8,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110, metadata={"Software": None})


def report_markdown(out_dir, image_path):
    """(Markdown of the results, [(augment, measure), claim rows])."""
    runs = load_runs(out_dir)
    commits = sorted({r["commit"][:12] for r, _ in runs.values()})
    lines = [
        "## Evidence protocol: results (benchmarks/evidence.py report)",
        "",
        f"{len(runs)} runs; code at commit(s) {', '.join(commits) or 'none'}. "
        "Regenerate with `python benchmarks/evidence.py report` (reads only "
        "benchmarks/results/evidence/runs/). Differences are in percentage points, "
        "a minus b, paired by seed; verdicts by the rule of the protocol (Holm over "
        "the claims of each table).",
        "",
    ]
    tables = []
    for augment in AUGMENT_TITLES:
        if not any(a == augment for _, a, _ in runs):
            continue
        lines += [f"### {AUGMENT_TITLES[augment]}", "", *summary_table(runs, augment)]
        for measure in MEASURES:
            rows = claim_rows(runs, augment, measure)
            tables.append(((augment, measure), rows))
            if rows:
                lines += ["", f"Claims on {MEASURE_TITLES[measure]}:", ""]
                lines += claims_table(rows)
        lines += ["", "McNemar's exact test of accuracy, per seed:", ""]
        lines += mcnemar_table(runs, augment)
        lines.append("")
    if any(rows for _, rows in tables):
        lines += [f"![paired differences]({image_path})", ""]
    return "\n".join(lines), [t for t in tables if t[0][1] == "circular"]


def sweep_markdown(out_dir):
    """The sweep's validation numbers per variant and the choice of `choose`."""
    runs = load_runs(out_dir)
    numbers = {
        variant: {m: float(statistics.per_image(arrays, m).mean()) for m in MEASURES}
        for (variant, _, _), (_, arrays) in runs.items()
    }
    lines = [
        "## Low-pass penalty: the validation sweep (benchmarks/evidence.py sweep)",
        "",
        f"Seed {SWEEP_SEED} (not a reported seed), crop+flip, the evidence "
        "protocol's training; measured on the run's own 3,000 validation images "
        "(never the test split) under the protocol's two shift sets. Rule, fixed "
        "before the sweep ran: among the penalty weights whose validation accuracy "
        f"is at least blur4's less {100 * SWEEP_ACCURACY_MARGIN:.1f} points, the "
        "most circularly consistent (the smaller weight among equals).",
        "",
        "| variant | circular (%) | crop (%) | accuracy (%) | "
        "high-frequency share, start -> trained |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    records = {variant: record for (variant, _, _), (record, _) in runs.items()}
    for variant in _ordered(records):
        cells = " | ".join(f"{100 * numbers[variant][m]:.2f}" for m in MEASURES)
        share = _share([records[variant]["downsampling_summary"]["all"]])
        lines.append(f"| {variant} | {cells} | {share} |")
    chosen = choose(numbers) if "blur4" in numbers else None
    lines += ["", f"Chosen: **{chosen or 'none (no candidate qualifies)'}**.", ""]
    return "\n".join(lines)
