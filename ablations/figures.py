"""Figures of a sweep report, from the run records only (PNG, matplotlib's Agg canvas).

- ``dice_histogram``: per-image Dice of the positive test images in bins [0, 0.1), ...,
  [0.9, 1.0], one panel per method (X-ray paper, Fig. 6).
- ``overlay_grid``: the fixed test images of ``predictions.npz``, ground truth then each
  method's prediction over the image with that case's Dice (DSC1) and HD from the run's
  ``per_image.csv`` (Fig. 5 of both papers).
- ``training_curves``: training loss and the validation monitor per epoch per method.

Figures use ``matplotlib.figure.Figure`` directly (no pyplot): no global state, no display.
Rows are labelled by position, never by image id (ids carry patient keys). Each function
returns notes for the report (what was left out and why); it writes no file when there is
nothing to draw.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from scipy.ndimage import binary_erosion

from ablations.records import CellRuns
from lightning_modules.records import RecordError

DICE_BINS = np.linspace(0.0, 1.0, 11)  # np.histogram: [0, .1), ..., [.9, 1.0] (last closed)
MONITOR_KEYS = ("val/dice", "val/dsc1")  # first present is drawn (Dice over the PTX group)
_GT, _PRED = np.array([0, 211, 90]), np.array([255, 42, 42])  # RGB


def _colors(n: int) -> list:
    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _label(text: str, width: int = 16) -> str:
    return textwrap.fill(text, width)


def dice_histogram(cells: list[CellRuns], path: Path) -> list[str]:
    """Per-method histogram of per-image Dice over the positive test images.

    The bar height is the number of images in the bin, averaged over a cell's finished seeds.
    """
    methods = [c for c in cells if c.finished]
    if not methods:
        return ["no finished run: no Dice histogram"]
    n_cols = min(4, len(methods))
    n_rows = math.ceil(len(methods) / n_cols)
    fig_w, fig_h = max(3.2 * n_cols, 6.4), 2.4 * n_rows + 1.0
    # fixed margins in inches (constrained layout costs seconds with many panels)
    margins = {"left": 0.75 / fig_w, "right": 1 - 0.15 / fig_w, "bottom": 0.8 / fig_h}
    margins.update(top=1 - 0.3 / fig_h, hspace=0.45, wspace=0.12)
    fig = Figure(figsize=(fig_w, fig_h))
    axes = fig.subplots(
        n_rows, n_cols, sharex=True, sharey=True, squeeze=False, gridspec_kw=margins
    )
    axes = axes.ravel()
    ticks = ["0"] + [f".{i}" for i in range(1, 10)]  # lower bin edges
    for ax, cell_runs, color in zip(axes, methods, _colors(len(methods)), strict=False):
        counts = []
        for run in cell_runs.finished:
            table = run.per_image
            dice = table.column("dice")[table.positive]
            counts.append(np.histogram(dice[~np.isnan(dice)], bins=DICE_BINS)[0])
        mean_counts = np.mean(counts, axis=0)
        ax.bar(np.arange(10), mean_counts, width=0.85, color=color)
        n_pos = int(np.sum(cell_runs.finished[0].per_image.positive))
        ax.set_title(f"{_label(cell_runs.cell.label, 28)} ({n_pos} pos.)", fontsize=8)
        ax.set_xticks(np.arange(10), ticks, fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
    for ax in axes[len(methods) :]:
        ax.set_visible(False)
    fig.supxlabel("per-image Dice of positive test images (bins [0, 0.1), ..., [0.9, 1])", size=9)
    fig.supylabel("images (mean over seeds)", size=9)
    fig.savefig(path, dpi=100)
    return []


def _tile(image: np.ndarray, fill: np.ndarray, rgb: np.ndarray, outline: np.ndarray | None):
    """RGB uint8 H x W x 3: ``image`` in grey, ``fill`` blended in ``rgb``, the boundary of
    ``outline`` (mask minus its erosion; the grid edge counts as outside) in green."""
    out = np.repeat(image[..., None], 3, axis=2).astype(np.float32)
    inside = fill.astype(bool)
    out[inside] = 0.55 * out[inside] + 0.45 * rgb
    if outline is not None:
        mask = outline.astype(bool)
        out[mask & ~binary_erosion(mask, border_value=0)] = _GT
    return out.astype(np.uint8)


def _case_scores(per_image, image_id: str, dice_name: str) -> str:
    """``DSC1:0.84,HD:12.2`` of one case as the X-ray paper's Fig. 5 prints it (HD only
    where both masks are non-empty)."""
    row = per_image.ids.index(image_id) if image_id in per_image.ids else None
    if row is None:
        return ""
    text = f"{dice_name}:{per_image.column('dice')[row]:.2f}"
    hd = per_image.values.get("hd")
    if hd is not None and np.isfinite(hd[row]):
        text += f",HD:{hd[row]:.1f}"
    return text


def overlay_grid(cells: list[CellRuns], path: Path, max_images: int = 8) -> list[str]:
    """Rows: test images common to every method's ``predictions.npz`` (lowest finished seed);
    columns: the image with its ground truth, then each method's prediction (red) with the
    ground-truth outline (green)."""
    notes, methods = [], []
    for cell_runs in cells:
        found = None
        for run in cell_runs.finished:
            try:
                arrays = run.predictions()
            except RecordError as err:  # one bad file must not cost the whole figure
                notes.append(f"overlays: {err}")
                continue
            if arrays is not None:
                found = (cell_runs.cell.label, run.seed, arrays, run.per_image)
                break
        if found is not None:
            methods.append(found)
        elif cell_runs.finished:
            notes.append(f"overlays: {cell_runs.cell.label} has no predictions.npz")
    if not methods:
        return [*notes, "no predictions.npz in any finished run: no overlay figure"]
    id_sets = [set(p["ids"]) for _, _, p, _ in methods]
    common = [i for i in methods[0][2]["ids"] if all(i in s for s in id_sets)]
    if any(len(s) != len(common) for s in id_sets):
        notes.append(
            f"overlays: the runs' predictions.npz hold different test images; "
            f"showing the {len(common)} common to all"
        )
    if not common:
        return [*notes, "overlays: no test image common to all runs: no overlay figure"]
    shown = common[:max_images]
    first = methods[0][2]
    height, width = first["image"].shape[1:]
    if any(p["image"].shape[1:] != (height, width) for _, _, p, _ in methods):
        sizes = {label: p["image"].shape[1:] for label, _, p, _ in methods}
        notes.append(f"overlays: methods drew different image sizes {sizes}; shown as stored")
    gap = max(2, height // 32)
    step_y, step_x = height + gap, width + gap
    n_rows, n_cols = len(shown), len(methods) + 1
    # one mosaic in one axes: hundreds of small axes would take matplotlib many seconds
    mosaic = np.full((n_rows * step_y - gap, n_cols * step_x - gap, 3), 255, np.uint8)
    for row, image_id in enumerate(shown):
        j = int(np.flatnonzero(first["ids"] == image_id)[0])
        tiles = [_tile(first["image"][j], first["true"][j], _GT, None)]
        for _, _, pred, _ in methods:
            i = int(np.flatnonzero(pred["ids"] == image_id)[0])
            tile = _tile(pred["image"][i], pred["pred"][i], _PRED, pred["true"][i])
            tiles.append(tile[:height, :width])
        for col, tile in enumerate(tiles):
            y, x = row * step_y, col * step_x
            mosaic[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
    inch = 1.45 / max(step_y, step_x)  # figure inches per mosaic pixel: 1.45 in per panel
    ax_w, ax_h = mosaic.shape[1] * inch, mosaic.shape[0] * inch
    fig_w, fig_h = max(ax_w + 1.0, 4.5), ax_h + 0.95
    fig = Figure(figsize=(fig_w, fig_h))
    ax = fig.add_axes((0.9 / fig_w, 0.1 / fig_h, ax_w / fig_w, ax_h / fig_h))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()
    titles = ["ground truth"] + [f"{_label(label, 20)} (s{seed})" for label, seed, *_ in methods]
    for col, title in enumerate(titles):
        ax.text(col * step_x + width / 2, -gap, title, ha="center", va="bottom", fontsize=7)
    dice_name = "DSC1" if cells[0].cell.exp.startswith("xray/") else "Dice"
    for row, image_id in enumerate(shown):
        for col, (*_, per_image) in enumerate(methods, start=1):
            text = _case_scores(per_image, image_id, dice_name)
            y, x = row * step_y + height - 1, col * step_x + 1
            ax.text(
                x,
                y,
                text,
                ha="left",
                va="bottom",
                fontsize=5,
                color="white",
                bbox={"facecolor": "black", "alpha": 0.55, "pad": 0.6, "lw": 0},
            )
    for row, image_id in enumerate(shown):
        j = int(np.flatnonzero(first["ids"] == image_id)[0])
        label = f"image {row + 1}\n{'PTX' if first['true'][j].any() else 'no PTX'}"
        ax.text(-gap * 2, row * step_y + height / 2, label, ha="right", va="center", fontsize=7)
    fig.suptitle("prediction (red) over the image, ground-truth outline (green)", fontsize=9)
    fig.savefig(path, dpi=100)
    return notes


def _curve(cell_runs: CellRuns, key: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Epochs and the mean over the finished seeds of ``key`` at each epoch."""
    by_epoch: dict[int, list[float]] = {}
    for run in cell_runs.finished:
        for row in run.history:
            value = row.get(key) if key else None
            if value is not None and "epoch" in row:
                by_epoch.setdefault(int(row["epoch"]), []).append(float(value))
    epochs = np.array(sorted(by_epoch), dtype=np.float64)
    return epochs, np.array([np.mean(by_epoch[int(e)]) for e in epochs])


def _monitor(cell_runs: CellRuns) -> str | None:
    rows = [row for run in cell_runs.finished for row in run.history]
    return next((k for k in MONITOR_KEYS if any(row.get(k) is not None for row in rows)), None)


def training_curves(cells: list[CellRuns], path: Path) -> list[str]:
    """Two panels: ``train/loss`` and the validation Dice over the PTX group (``val/dice``,
    else ``val/dsc1``) per epoch, one line per method (mean over seeds)."""
    methods = [c for c in cells if any(r.history for r in c.finished)]
    if not methods:
        return ["no training history in any finished run: no training curves"]
    fig = Figure(figsize=(12, 4.6 + 0.22 * math.ceil(len(methods) / 4)), layout="constrained")
    loss_ax, monitor_ax = fig.subplots(1, 2)
    monitors, handles = set(), []
    for i, (cell_runs, color) in enumerate(zip(methods, _colors(len(methods)), strict=True)):
        style = "-" if i < 10 else "--"  # tab20 pairs light/dark shades: vary the line too
        epochs, loss = _curve(cell_runs, "train/loss")
        (line,) = loss_ax.plot(epochs, loss, style, color=color, marker=".", ms=3, lw=1.2)
        key = _monitor(cell_runs)
        monitors.add(key or "none")
        epochs, value = _curve(cell_runs, key)
        monitor_ax.plot(epochs, value, style, color=color, marker=".", ms=3, lw=1.2)
        handles.append((line, cell_runs.cell.label))
    loss_ax.set(xlabel="epoch", ylabel="train/loss", title="training loss")
    monitor_ax.set(xlabel="epoch", ylabel=", ".join(sorted(monitors)), title="validation")
    monitor_ax.set_ylim(-0.02, 1.02)  # every monitor key is a Dice in [0, 1]
    for ax in (loss_ax, monitor_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.legend(
        [h for h, _ in handles],
        [label for _, label in handles],
        loc="outside lower center",
        ncol=min(4, len(handles)),
        fontsize=8,
    )
    fig.savefig(path, dpi=100)
    return [] if len(monitors) == 1 else [f"training curves: monitors differ ({monitors})"]
