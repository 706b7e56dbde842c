"""Sweep definitions: one YAML per paper table under ``ablations/sweeps/``.

A sweep is a list of cells, each one ``ptx fit`` (train, then test the best checkpoint) of an
experiment config with command-line overrides, all in one run group (the W&B group and the
folder ``<runs root>/<group>/``). The file also says how the table is drawn: its metric
columns, the reference cell for the significance tests, and the paper's published numbers
per cell. Fields (see any file in ``ablations/sweeps/``)::

    title:      the table's caption (which paper table it rebuilds)
    paper:      efa-net | ms-scse-fc-densenet
    group:      run group / W&B group (default: the sweep's name)
    reference:  id of the cell the others are tested against
    columns:    [{key, label, scale, source, population, better, format}]; source is
                "image" (per-image values from per_image.csv over the key's population:
                mean (sd), bootstrap CI, paired tests), "patient" (per-patient 3-D values
                from per_image.csv's counts, over the patients with pneumothorax), "set" (a
                set-level value from metrics.json's test section) or "run" (params, gmacs);
                population (image columns) defaults to the key's
                (lightning_modules.metric_functions.POPULATION), better (higher|lower) to the
                metric's sense, format to "mean_sd" ("max_mean": the X-ray paper's HD)
    overrides:  {dotted.key: value} applied to every cell
    profile_overrides: {quick: {...}, paper: {...}} applied under that profile only
    cells:      [{id, label, exp, overrides, paper: {column key: published value},
                 reference: id tested against instead of the sweep's (optional)}]
    cells_from: build cells from rows of a YAML table instead (file, key, id, exp, label,
                overrides and paper map cell fields to row fields, "{field}" templates)

A published value is a number, or for a ``max_mean`` column the pair ``[max, mean]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lightning_modules.metric_functions import (
    ALL,
    LOWER_IS_BETTER,
    NEGATIVE,
    POSITIVE,
    population_of,
)

SWEEP_DIR = Path(__file__).resolve().parent / "sweeps"
ROOT = SWEEP_DIR.parent.parent
COLUMN_SOURCES = ("image", "patient", "set", "run")
FORMATS = ("mean_sd", "max_mean")
PATIENT_KEYS = ("dice_volume", "iou_volume")  # per-patient 3-D overlap from summed counts


class SweepError(ValueError):
    """A sweep definition is missing or malformed; the message names the file and field."""


@dataclass(frozen=True)
class Column:
    """A table column: ``key`` in the run record, shown as ``label``, multiplied by ``scale``.

    ``population`` (``positive``, ``negative`` or ``all`` test images) and ``better``
    (``higher`` or ``lower``) default to the metric's own; see the module docstring.
    """

    key: str
    label: str
    scale: float = 1.0
    source: str = "image"
    population: str | None = None
    better: str | None = None
    format: str = "mean_sd"

    def __post_init__(self) -> None:
        if self.population is None:
            default = POSITIVE if self.source == "patient" else population_of(self.key)
            object.__setattr__(self, "population", default)
        if self.better is None:
            object.__setattr__(self, "better", "lower" if self.key in LOWER_IS_BETTER else "higher")

    @property
    def higher_is_better(self) -> bool:
        return self.better == "higher"


@dataclass(frozen=True)
class Cell:
    """One row of the table: ``ptx fit --exp <exp>`` with ``overrides``, run as ``<id>-s<seed>``
    (``<id>-f<fold>-s<seed>`` for one fold of a k-fold cross-validation)."""

    id: str
    label: str
    exp: str
    overrides: dict = field(default_factory=dict)
    paper: dict = field(default_factory=dict)
    reference: str | None = None

    def run_name(self, seed: int, fold: int | None = None) -> str:
        return f"{self.id}-s{seed}" if fold is None else f"{self.id}-f{fold}-s{seed}"


@dataclass(frozen=True)
class Sweep:
    name: str
    title: str
    paper: str
    group: str
    reference: str
    columns: tuple[Column, ...]
    cells: tuple[Cell, ...]
    overrides: dict = field(default_factory=dict)
    profile_overrides: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def modality(self) -> str:
        return self.cells[0].exp.split("/")[0]

    def cell(self, cell_id: str) -> Cell:
        for cell in self.cells:
            if cell.id == cell_id:
                return cell
        raise SweepError(f"sweep {self.name}: no cell {cell_id!r}; cells: {self.cell_ids()}")

    def cell_ids(self) -> str:
        return ", ".join(c.id for c in self.cells)

    def reference_of(self, cell: Cell) -> Cell:
        """The cell ``cell`` is tested against (itself for the reference)."""
        return self.cell(cell.reference or self.reference)

    def overrides_for(self, cell: Cell, profile: str) -> dict:
        """The cell's overrides on top of the sweep's and the profile's (later wins)."""
        return {**self.overrides, **self.profile_overrides.get(profile, {}), **cell.overrides}


def list_sweeps(sweep_dir: Path = SWEEP_DIR) -> list[str]:
    return sorted(p.stem for p in sweep_dir.glob("*.yaml"))


def sweep_path(name: str, sweep_dir: Path = SWEEP_DIR) -> Path:
    """A sweep by name (``ablation-encoders``) or a path to a sweep YAML."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path.resolve()
    path = sweep_dir / f"{name}.yaml"
    if not path.is_file():
        raise SweepError(f"unknown sweep {name!r}; sweeps: {', '.join(list_sweeps(sweep_dir))}")
    return path


def _fill(template, row: dict, where: str):
    """``"{field}"`` templates filled from ``row``; a lone ``"{field}"`` keeps the value's type."""
    if isinstance(template, dict):
        return {k: _fill(v, row, where) for k, v in template.items()}
    if not isinstance(template, str):
        return template
    try:
        whole = re.fullmatch(r"\{(\w+)\}", template)
        return row[whole.group(1)] if whole else template.format(**row)
    except KeyError as err:
        raise SweepError(f"{where}: the row has no field {err}") from None


def _cells_from(spec: dict, path: Path) -> list[dict]:
    source = (ROOT / spec["file"]).resolve()
    rows = (yaml.safe_load(source.read_text()) or {}).get(spec["key"])
    if not rows:
        raise SweepError(f"{path}: cells_from: {source} has no list {spec['key']!r}")
    template = {k: spec[k] for k in ("id", "label", "exp", "overrides", "paper") if k in spec}
    return [_fill(template, row, f"{path}: cells_from row {i + 1}") for i, row in enumerate(rows)]


def _column(raw, path: Path) -> Column:
    try:
        column = Column(**raw) if isinstance(raw, dict) else Column(key=raw, label=raw)
    except TypeError as err:
        raise SweepError(f"{path}: column {raw}: {err}") from None
    checks = (
        (column.source in COLUMN_SOURCES, f"source must be one of {COLUMN_SOURCES}"),
        (column.population in (POSITIVE, NEGATIVE, ALL), "population: positive|negative|all"),
        (column.better in ("higher", "lower"), "better must be higher or lower"),
        (column.format in FORMATS, f"format must be one of {FORMATS}"),
        (column.source != "patient" or column.key in PATIENT_KEYS, f"patient keys: {PATIENT_KEYS}"),
    )
    for ok, message in checks:
        if not ok:
            raise SweepError(f"{path}: column {column.key}: {message}")
    return column


def load_sweep(name: str, sweep_dir: Path = SWEEP_DIR) -> Sweep:
    """Read and check a sweep definition (by name or path).

    Raises:
        SweepError: unknown sweep, missing field, duplicate cell id, unknown reference.
    """
    path = sweep_path(name, sweep_dir)
    raw = yaml.safe_load(path.read_text()) or {}
    try:
        cells_raw = list(raw.get("cells") or [])
        if raw.get("cells_from"):
            cells_raw += _cells_from(raw["cells_from"], path)
        cells = tuple(
            Cell(
                id=str(c["id"]),
                label=str(c.get("label", c["id"])),
                exp=str(c["exp"]),
                overrides=dict(c.get("overrides") or {}),
                paper=dict(c.get("paper") or {}),
                reference=c.get("reference"),
            )
            for c in cells_raw
        )
        sweep = Sweep(
            name=path.stem,
            title=str(raw["title"]),
            paper=str(raw.get("paper", "")),
            group=str(raw.get("group") or path.stem),
            reference=str(raw["reference"]),
            columns=tuple(_column(c, path) for c in raw["columns"]),
            cells=cells,
            overrides=dict(raw.get("overrides") or {}),
            profile_overrides={
                k: dict(v or {}) for k, v in (raw.get("profile_overrides") or {}).items()
            },
            path=path,
        )
    except KeyError as err:
        raise SweepError(f"{path}: missing field {err}") from None
    if not cells:
        raise SweepError(f"{path}: no cells")
    ids = [c.id for c in cells]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise SweepError(f"{path}: duplicate cell ids {duplicates}")
    if len({c.exp.split("/")[0] for c in cells}) != 1:
        raise SweepError(f"{path}: cells mix modalities; a sweep is one data set")
    for ref in {sweep.reference, *(c.reference for c in cells if c.reference)}:
        sweep.cell(ref)  # raises when a reference is not a cell
    return sweep
