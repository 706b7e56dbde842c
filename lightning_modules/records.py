"""The run record, ``runs/<group>/<name>/``: its files, their keys, and the one writer and
reader of each (docs/design.md, "Run records").

- ``metrics.json`` (:func:`write_metrics`, :func:`read_metrics`, lenient
  :func:`read_status`): ``status`` (``created``, ``running``, ``fitted``, ``finished``,
  ``failed``), ``record_version``, the run's identity and ``config_hash``, ``val`` and
  ``test`` set-level metrics, ``history``, ``params``, ``gmacs``, ``diagnosis``.
- ``per_image.csv`` (:func:`write_per_image`, :func:`read_per_image`): one row per test
  image, ``id``, ``patient`` and the per-image metrics and counts.
- ``per_patient.csv`` (:func:`write_per_patient`): one row per test patient, its 3-D
  Dice and IoU from the summed counts of its images (``SegmentationMetrics.per_patient``).
- ``predictions.npz`` (:func:`write_predictions`, :func:`read_predictions`): the fixed
  overlay images, ``ids``, ``image``, ``true``, ``pred``.
- ``postprocessing.json`` (:func:`write_postprocessing`, :func:`read_postprocessing`): the
  diagnosis rule ``ptx tune-postprocessing`` chose on the run's validation split after
  training, which ``ptx predict``, ``ptx export`` and ``ptx test --model`` apply.
- ``config.yaml`` (written by LightningCLI, :func:`read_config`) and ``split.json``
  (``datamodules.splits``).

Every write is atomic (``datamodules.io.atomic``): a reader never sees half a file. NaN and
infinities are written as JSON null (:func:`json_safe`). A record of another
``record_version`` is refused with the remedy.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from datamodules.io.atomic import atomic_write, write_bytes_atomic, write_text_atomic
from lightning_modules.metric_functions import ALIASES, RECORD_VERSION

METRICS, PER_IMAGE, PER_PATIENT, PREDICTIONS, CONFIG, SPLIT = (
    "metrics.json", "per_image.csv", "per_patient.csv", "predictions.npz", "config.yaml",
    "split.json",
)  # fmt: skip
POSTPROCESSING = "postprocessing.json"
RECORD_FILES = (METRICS, PER_IMAGE, CONFIG, SPLIT)  # what makes a folder hold a run
CREATED, RUNNING, FITTED, FINISHED, FAILED = "created", "running", "fitted", "finished", "failed"
PREDICTION_KEYS = ("ids", "image", "true", "pred")
_REMEDY = "rerun the cell (ptx sweep ... FORCE=1) or delete its folder"
OLDER_RECORDS = {  # why a finished record of an older version is not read
    1: "averaged Dice over every image, empty ones counting 1",
    2: "recorded radiograph ids as their file stems, which may identify",
}


def version_problem(record: dict) -> str | None:
    """Why a finished record's version is not this ptx-seg's (None: it is read). Version 2
    differs from 3 only in radiograph ids, so a CT record of version 2 is still read."""
    version = record.get("record_version", 1)
    if version == RECORD_VERSION or (version == 2 and record.get("modality") == "ct"):
        return None
    why = OLDER_RECORDS.get(version, "is not a version this ptx-seg knows")
    return f"record version {version} {why} (this ptx-seg: {RECORD_VERSION})"


def remedy() -> str:
    """What to do about a malformed or incompatible record (ends every RecordError)."""
    return _REMEDY


class RecordError(ValueError):
    """A run record file is malformed; the message names the file, the row and the remedy."""


def json_safe(value):
    """JSON-safe copy: NaN/inf become None (strict JSON readers reject NaN)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ---- writers --------------------------------------------------------------------------------
def _write_json(path: Path, record: dict) -> Path:
    text = json.dumps(json_safe(record), indent=1, allow_nan=False) + "\n"
    return write_text_atomic(path, text, durable=False)


def write_metrics(run_dir: Path, record: dict) -> Path:
    """``metrics.json`` (NaN as null), atomically."""
    return _write_json(Path(run_dir) / METRICS, record)


def _write_rows(path: Path, rows: list[dict], empty_header: list[str]) -> Path:
    with atomic_write(path, durable=False) as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else empty_header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_per_image(run_dir: Path, rows: list[dict]) -> Path:
    """``per_image.csv``: one row per test image, columns as ``SegmentationMetrics.per_image``."""
    return _write_rows(Path(run_dir) / PER_IMAGE, rows, ["id", "patient"])


def write_per_patient(run_dir: Path, rows: list[dict]) -> Path:
    """``per_patient.csv``: one row per test patient (``SegmentationMetrics.per_patient``)."""
    return _write_rows(Path(run_dir) / PER_PATIENT, rows, ["patient"])


def write_predictions(run_dir: Path, arrays: dict[str, np.ndarray]) -> Path:
    """``predictions.npz``: ``ids`` (str N), ``image``/``true``/``pred`` (uint8 N x H x W)."""
    missing = [k for k in PREDICTION_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"predictions.npz needs {PREDICTION_KEYS}; missing {missing}")
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{k: arrays[k] for k in PREDICTION_KEYS})
    return write_bytes_atomic(Path(run_dir) / PREDICTIONS, buffer.getvalue(), durable=False)


def write_postprocessing(run_dir: Path, record: dict) -> Path:
    """``postprocessing.json``: ``diagnosis`` (a ``DiagnosisRule.to_dict``), ``checkpoint``,
    ``val`` (the validation metrics with that rule's image-level calls), ``record_version``;
    atomically."""
    return _write_json(Path(run_dir) / POSTPROCESSING, record)


# ---- readers --------------------------------------------------------------------------------
def read_status(run_dir: Path) -> dict:
    """``metrics.json`` of a run, leniently: empty when absent or unreadable (a run that never
    started or is being written for the first time). For tables use :func:`read_metrics`."""
    try:
        record = json.loads((Path(run_dir) / METRICS).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def read_postprocessing(run_dir: Path) -> dict | None:
    """The diagnosis rule ``ptx tune-postprocessing`` stored for a run (None: never tuned).

    Raises:
        RecordError: the file is not valid JSON or holds no ``diagnosis``.
    """
    path = Path(run_dir) / POSTPROCESSING
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except ValueError as err:
        raise RecordError(
            f"{path}: not valid JSON ({err}); rerun ptx tune-postprocessing"
        ) from None
    if not isinstance(record, dict) or not isinstance(record.get("diagnosis"), dict):
        raise RecordError(f"{path}: holds no 'diagnosis' rule; rerun ptx tune-postprocessing")
    return record["diagnosis"]


def read_config(run_dir: Path) -> dict:
    """A run's resolved ``config.yaml`` ({} when absent).

    Raises:
        RecordError: not valid YAML.
    """
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        return {}
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise RecordError(f"{path}: not valid YAML ({err}); {_REMEDY}") from None


def config_data_dir(config: dict) -> str | None:
    """The data folder in a run's resolved ``config.yaml`` (None: the phantom)."""
    return ((config.get("data") or {}).get("init_args") or {}).get("data_dir")


@dataclass
class PerImage:
    """``per_image.csv`` of a run: ``ids``, ``patients`` (N each) and float64 columns (N)."""

    path: Path
    ids: list[str]
    patients: list[str]
    values: dict[str, np.ndarray]

    def has(self, key: str) -> bool:
        return key in self.values or ALIASES.get(key, key) in self.values

    def column(self, key: str) -> np.ndarray:
        """Per-image values of ``key`` (``dsc1``/``pa1`` read ``dice``/``sen``); NaN = undefined."""
        name = key if key in self.values else ALIASES.get(key, key)
        if name not in self.values:
            raise RecordError(f"{self.path}: no column {key!r}; columns: {', '.join(self.values)}")
        return self.values[name]

    @property
    def true_area(self) -> np.ndarray:
        """Float N: ground-truth PTX pixels (``true_area``, else 0/1 from ``true_ptx``)."""
        source = self.values.get("true_area", self.values.get("true_ptx"))
        if source is None:
            raise RecordError(f"{self.path}: neither true_area nor true_ptx; {_REMEDY}")
        return np.nan_to_num(source)

    @property
    def positive(self) -> np.ndarray:
        """Bool N: the ground truth has pneumothorax."""
        return self.true_area > 0

    def counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``tp``, ``fp``, ``fn`` (int64 N): what every per-patient (3-D) number is made of."""
        missing = [k for k in ("tp", "fp", "fn") if k not in self.values]
        if missing:
            raise RecordError(f"{self.path}: no column(s) {', '.join(missing)}; {_REMEDY}")
        return tuple(np.nan_to_num(self.values[k]).astype(np.int64) for k in ("tp", "fp", "fn"))


def _number(text: str | None, path: Path, line: int, column: str) -> float:
    value = (text or "").strip()
    if value.lower() in ("", "nan", "none", "null"):
        return float("nan")
    if value in ("True", "False"):
        return float(value == "True")
    try:
        return float(value)
    except ValueError:
        raise RecordError(
            f"{path}, line {line}: column {column}: {value!r} is not a number; {_REMEDY}"
        ) from None


def read_per_image(path: Path) -> PerImage:
    """Parse ``per_image.csv``; NaN may be written ``nan`` or left empty; booleans as 0/1.

    Raises:
        RecordError: no header, no ``id``/``patient`` column, a short row, a value that is
            not a number, a duplicate image id (each names the file and line).
    """
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header or "id" not in header or "patient" not in header:
            raise RecordError(f"{path}: header must name id and patient columns; {_REMEDY}")
        metrics = [c for c in header if c not in ("id", "patient")]
        ids, patients, rows = [], [], []
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise RecordError(
                    f"{path}, line {line}: {len(row)} fields, the header has {len(header)}; "
                    f"{_REMEDY}"
                )
            record = dict(zip(header, row, strict=True))
            ids.append(record["id"])
            patients.append(record["patient"])
            rows.append([_number(record[c], path, line, c) for c in metrics])
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise RecordError(f"{path}: image id {duplicate!r} appears twice; {_REMEDY}")
    table = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(metrics))
    values = {c: table[:, j].copy() for j, c in enumerate(metrics)}
    return PerImage(path=path, ids=ids, patients=patients, values=values)


def read_metrics(path: Path) -> dict:
    """Parse ``metrics.json`` (null = NaN stays None here); must hold a ``status``."""
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise RecordError(f"{path}: not valid JSON ({err}); {_REMEDY}") from None
    if not isinstance(record, dict) or "status" not in record:
        raise RecordError(f"{path}: no 'status' field: not a run record; {_REMEDY}")
    if not isinstance(record.get("history") or [], list):
        raise RecordError(f"{path}: 'history' must be a list of per-epoch rows; {_REMEDY}")
    problem = version_problem(record) if record["status"] == FINISHED else None
    if problem:
        raise RecordError(f"{path}: {problem}; {_REMEDY}")
    return record


def read_predictions(path: Path) -> dict[str, np.ndarray]:
    """Parse ``predictions.npz``: ``ids`` N, ``image``, ``true``, ``pred`` N x H x W."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as err:
        raise RecordError(f"{path}: unreadable ({err}); {_REMEDY}") from None
    missing = [k for k in PREDICTION_KEYS if k not in arrays]
    if missing:
        raise RecordError(f"{path}: missing arrays {missing}; {_REMEDY}")
    n = len(arrays["ids"])
    shapes = {k: arrays[k].shape for k in PREDICTION_KEYS[1:]}
    if any(len(s) != 3 or s[0] != n for s in shapes.values()) or len(set(shapes.values())) > 1:
        raise RecordError(f"{path}: {n} ids but image/true/pred shapes {shapes}; {_REMEDY}")
    arrays["ids"] = arrays["ids"].astype(str)
    return arrays
