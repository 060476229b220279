"""Plots of an evaluation report (PNG files; see `keras_shiftinv.app.evaluate`).

Each function takes the "models" entries of report.json. Figures are drawn with
matplotlib's object-oriented API on the Agg canvas, so nothing opens a window and
the global pyplot state is left alone.
"""

import math

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from keras_shiftinv.app._files import atomic_path


def _figure(width, height):
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path, dpi):
    """Writes `figure` to `path` atomically (`keras_shiftinv.app._files`)."""
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=dpi)


def plot_stability(entries, path):
    """Probability of the correct class against a diagonal shift, one panel per
    model (a few images, thin; the mean, thick), plus the means side by side."""
    panels = len(entries) + (len(entries) > 1)
    figure = _figure(3.2 * panels, 3)
    axes = figure.subplots(1, panels, squeeze=False)[0]
    for ax, entry in zip(axes, entries, strict=False):
        curves = entry["stability"]
        for curve in curves["images"]:
            ax.plot(curves["shifts"], curve, color="tab:blue", alpha=0.4, lw=1)
        ax.plot(curves["shifts"], curves["mean"], color="black", lw=2.5, label="mean")
        ax.set_title(entry["name"], fontsize=9)
        ax.legend(loc="lower left", fontsize=8)
    if len(entries) > 1:
        for entry in entries:
            curves = entry["stability"]
            axes[-1].plot(curves["shifts"], curves["mean"], lw=2, label=entry["name"])
        axes[-1].set_title("mean of each model", fontsize=9)
        axes[-1].legend(fontsize=7)
    for ax in axes:
        ax.set_xlabel("diagonal shift (px)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("P(correct class)")
    _save(figure, path, 100)


def plot_equivariance(entry, path):
    """One heat map per layer: distance from equivariance against the shift
    (dy down, dx right), all on one colour scale (Zhang's Figure 4)."""
    layers = entry["equivariance"]
    columns = min(8, len(layers))
    rows = math.ceil(len(layers) / columns)
    figure = _figure(1.6 * columns + 0.8, 1.7 * rows + 0.5)
    axes = figure.subplots(rows, columns, squeeze=False)
    top = max(max(np.max(layer["distance"]) for layer in layers), 1e-6)
    for ax, layer in zip(axes.flat, layers, strict=False):
        image = ax.imshow(layer["distance"], vmin=0, vmax=top, cmap="magma")
        size = "x".join(map(str, layer["shape"][:-1])) or "1"
        ax.set_title(f"{layer['name']}\n[{size}]", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.flat[len(layers) :]:
        ax.axis("off")
    figure.colorbar(image, ax=axes, shrink=0.6, label="cosine distance")
    figure.suptitle(
        f"{entry['name']}: distance between shift(F(x)) and F(shift(x)); "
        "shift dy down, dx across, from 0",
        fontsize=10,
    )
    _save(figure, path, 100)


def plot_layer_means(entries, path):
    """Mean distance from equivariance of each layer, input to output, per model."""
    figure = _figure(7, 3.5)
    ax = figure.subplots()
    for entry in entries:
        means = [layer["mean"] for layer in entry["equivariance"]]
        ax.plot(range(len(means)), means, "o-", ms=3, label=entry["name"])
    ax.set_xlabel("measured layer (input to output)")
    ax.set_ylabel("mean cosine distance")
    ax.set_title("distance from shift-equivariance per layer", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(figure, path, 100)


def plot_consistency_accuracy(
    entries,
    path,
    panels=None,
    legend=None,
    percent=False,
    xlabel="accuracy (unshifted)",
    ylabel="consistency",
    size=(5, 4),
    point_size=30,
    font_size=8,
    margins=0.2,
    dpi=100,
):
    """Consistency against accuracy, one labelled point per entry.

    Each entry has a "name" (its label), an "accuracy" and a "consistency"; an
    entry may also give the "color" of its point and label, the "marker" of its
    point, the "edgecolor" of its point, and the "panel" it is drawn in.

    Args:
        entries: the points.
        path: the PNG file to write.
        panels: {panel: title}: one panel side by side per key, in this order,
            each with the entries whose "panel" is that key. None: one panel,
            with every entry, titled "shift consistency against accuracy".
        legend: {label: marker}: a legend of these markers in every panel.
        percent: plot accuracy and consistency in percent.
        xlabel, ylabel: the axis labels (ylabel on the first panel).
        size: (width, height) of one panel, in inches.
        point_size: area of a point, in points^2.
        font_size: size of the point labels.
        margins: of the axes, relative to the range of the data.
        dpi: of the PNG.
    """
    scale = 100 if percent else 1
    if panels is None:
        panels = {None: "shift consistency against accuracy"}
    figure = _figure(size[0] * len(panels), size[1])
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (panel, title) in zip(axes, panels.items(), strict=True):
        for entry in entries:
            if entry.get("panel") != panel:
                continue
            point = (scale * entry["accuracy"], scale * entry["consistency"])
            colour = {"color": entry["color"]} if "color" in entry else {}
            ax.scatter(
                *point,
                marker=entry.get("marker"),
                s=point_size,
                edgecolors=entry.get("edgecolor"),
                **colour,
            )
            ax.annotate(
                entry["name"],
                point,
                textcoords="offset points",
                xytext=(4, font_size / 2),
                fontsize=font_size,
                **colour,
            )
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.margins(margins)
        if legend:
            for name, marker in legend.items():
                ax.scatter([], [], marker=marker, color="gray", label=name)
            ax.legend(fontsize=8, loc="lower right")
    axes[0].set_ylabel(ylabel)
    _save(figure, path, dpi)


def plot_downsampling(entries, path, reference=None):
    """The high-frequency share of every downsampling layer, one panel per model:
    after training (dark) and at the start (light, when known), with the share of
    BlurPool2D(4) (`reference`) as a dashed line."""
    figure = _figure(max(4.0, 0.45 * _most_layers(entries) + 1.5), 2.6 * len(entries))
    axes = figure.subplots(len(entries), 1, squeeze=False)[:, 0]
    for ax, entry in zip(axes, entries, strict=True):
        layers = [
            layer
            for layer in entry.get("downsampling", [])
            if layer["high_frequency_share"] is not None
        ]
        positions = np.arange(len(layers))
        start = [layer["initial_high_frequency_share"] for layer in layers]
        if any(value is not None for value in start):
            ax.bar(
                positions - 0.2,
                [np.nan if v is None else v for v in start],
                0.4,
                color="tab:blue",
                alpha=0.35,
                label="at start",
            )
        ax.bar(
            positions + 0.2,
            [layer["high_frequency_share"] for layer in layers],
            0.4,
            color="tab:blue",
            label="trained",
        )
        if reference is not None:
            ax.axhline(reference, color="black", ls="--", lw=1, label="BlurPool2D(4)")
        ax.axhline(0.75, color="gray", ls=":", lw=1, label="no filter")
        ax.set_xticks(positions)
        ax.set_xticklabels(
            [layer["layer"].split("/")[-1] for layer in layers],
            rotation=60,
            ha="right",
            fontsize=6,
        )
        ax.set_ylim(0, 1)
        ax.set_ylabel("high-frequency share", fontsize=8)
        ax.set_title(entry["name"], fontsize=9)
        ax.legend(fontsize=6, loc="upper right")
    _save(figure, path, 110)


def _most_layers(entries):
    return max((len(entry.get("downsampling", [])) for entry in entries), default=1)


def plot_training_curves(rows, path):
    """Loss, accuracy and shift consistency per epoch of a run's log.csv rows."""
    from matplotlib.ticker import MaxNLocator

    epochs = [int(row["epoch"]) + 1 for row in rows]
    panels = [
        ("loss", ["loss", "val_loss"]),
        ("accuracy", ["accuracy", "val_accuracy"]),
        ("shift consistency", ["val_consistency"]),
    ]
    figure = _figure(12, 3.5)
    axes = figure.subplots(1, 3)
    for ax, (title, keys) in zip(axes, panels, strict=True):
        for key in keys:
            if rows and rows[0].get(key, "") != "":
                ax.plot(epochs, [float(row[key]) for row in rows], "o-", label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
        ax.grid(alpha=0.3)
    _save(figure, path, 100)
