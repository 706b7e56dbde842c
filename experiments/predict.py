"""``ptx predict --model RUN --input PATH --out DIR``: a trained model on new, unlabelled scans.

CT (a NIfTI volume, a DICOM series folder, or a folder of those), per volume: the mask on
the input's own voxel grid and affine (``<case>_ptx.nii.gz``, a label map any viewer
overlays on the source), optionally the probability map, and one row of
``predictions.csv``/``.json``: pneumothorax volume in mL (total, right, left), the axial
slices involved and the estimated compression ratio per side
(``lightning_modules.volumetry``). Cases are named by a keyed, non-identifying key of the
input's path (``datamodules.layouts.privacy``), as patients are everywhere else.

X-ray (DICOM or PNG radiographs, a file or a folder), per image: ``masks/<case>.png`` at
the input size, ``overlays/<case>.png`` (the contour on the radiograph), a row with the
diagnosis by the run's rule, the area in pixels (and mm² when the DICOM has a pixel spacing)
and the top probability; plus ``submission.csv`` in the SIIM-ACR format
(``ImageId,EncodedPixels``, relative RLE, ``-1`` for no pneumothorax) that the SIIM reader
reads back. ``<case>`` is the image's key (``image_key`` of its file stem, as in the X-ray
data module's records); the ImageId of the submission is the stem itself, the one output
that names the images, since the format asks for it.

Each finished case writes ``cases/<case>.json`` first, so a killed run resumes where it
stopped (``--overwrite`` predicts everything again).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from pathlib import Path

from datamodules.io.atomic import atomic_write, write_text_atomic
from datamodules.io.errors import DataError
from experiments.cli import HelpFormatter
from lightning_modules.inference import TTA, ModelError, Predictor

log = logging.getLogger("ptx.predict")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ptx predict",
        description="Apply a trained run to new CT volumes or radiographs (no labels needed).",
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--model", required=True, help="a run folder (its best.ckpt), a .ckpt or a bundle"
    )
    p.add_argument(
        "--backend", choices=("torch", "onnx"), default="torch", help="onnx: a bundle's model.onnx"
    )
    p.add_argument("--input", required=True, help="a file or a folder of scans")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--tta", choices=TTA, default="none", help="hflip: mean with the mirror")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 (bf16 on CUDA)")
    p.add_argument("--batch-size", type=int, default=16, help="slices or images per batch")
    p.add_argument("--save-probabilities", action="store_true", help="also write the maps")
    p.add_argument("--overwrite", action="store_true", help="predict finished cases again")
    return p


def cli(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[predict] %(message)s", stream=sys.stderr)
    try:
        predictor = Predictor.load(args.model, args.device, args.tta, args.backend)
    except ModelError as err:
        raise DataError(str(err)) from err
    out = Path(args.out)
    if predictor.modality == "ct":
        from experiments.predict_ct import find_volumes, predict_volume

        cases, run_case = find_volumes(Path(args.input)), predict_volume
    else:
        from experiments.predict_xray import find_radiographs, predict_radiograph

        cases, run_case = find_radiographs(Path(args.input)), predict_radiograph
    if not cases:
        raise DataError(f"no {predictor.modality} scans found under this path", path=args.input)
    rows, failures, predicted = [], [], []  # predicted: the case of each row
    for number, case in enumerate(cases, 1):
        record = out / "cases" / f"{case.name}.json"
        if record.is_file() and not args.overwrite:
            rows.append(json.loads(record.read_text()))
            predicted.append(case)
            log.info("%d/%d %s: done before, kept", number, len(cases), case.name)
            continue
        try:
            row = run_case(predictor, case, out, args)
        except DataError as err:  # one bad scan: say which and why, predict the others
            failures.append((case.name, " ".join(str(err).split())))
            log.error("%d/%d %s: failed: %s", number, len(cases), case.name, failures[-1][1])
            continue
        write_text_atomic(record, json.dumps(row, indent=1))
        rows.append(row)
        predicted.append(case)
        log.info("%d/%d %s: %s", number, len(cases), case.name, case.summary(row))
    if rows:
        write_tables(out, rows, predictor)
    if rows and predictor.modality == "xray":
        from experiments.predict_xray import write_submission

        write_submission(out / "submission.csv", predicted, rows)
    write_failures(out / "failures.csv", failures)
    log.info("%d cases predicted, %d failed; outputs in %s", len(rows), len(failures), out)
    return 1 if failures else 0


def write_failures(path: Path, failures: list[tuple[str, str]]) -> None:
    """``failures.csv`` (case, error) of this run; removed when nothing failed."""
    if not failures:
        path.unlink(missing_ok=True)
        return
    write_csv(path, [{"case": name, "error": message} for name, message in failures])


def write_tables(out: Path, rows: list[dict], predictor: Predictor) -> None:
    """``predictions.csv`` (one row per case) and ``predictions.json`` (rows + settings)."""
    rows_out = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    write_csv(out / "predictions.csv", rows_out)
    settings = {
        "modality": predictor.modality,
        "image_size": predictor.image_size,
        "tta": predictor.tta,
        "diagnosis": predictor.rule.describe(),
    }
    write_text_atomic(out / "predictions.json", json.dumps({**settings, "cases": rows_out}))


def write_csv(path: Path, rows: list[dict]) -> None:
    """Rows (same keys) as CSV, atomically; None is an empty cell."""
    with atomic_write(path) as fh:  # text, newline="" as csv wants
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
