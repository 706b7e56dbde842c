"""Synthetic phantom data sets written in the real formats: the default data of every target.

``ptx phantom ct --out DIR`` writes chest CT volumes with pneumothorax as DICOM series and
NIfTI pairs; ``ptx phantom xray --out DIR`` writes radiographs in the SIIM-ACR layout
(nested JPEG DICOM + ``train-rle.csv``) and/or the PNG folder layout. Deterministic by seed.
The generators are ``phantom.ct`` (anatomy: ``ct_anatomy``) and ``phantom.xray`` (anatomy:
``xray_anatomy``, projection: ``xray_render``); a DataModule without ``data_dir`` makes its
phantom once, in the cache folder, with :func:`ensure_phantom`.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from datamodules.io.atomic import atomic_dir
from datamodules.io.errors import DataError
from experiments.cli import HelpFormatter

log = logging.getLogger("ptx.data.phantom")

MARKERS = (".ptx-phantom", ".complete")  # what ptx phantom / a DataModule leave in a phantom
# Raised whenever a generator draws differently. It names the cache folder and enters each
# run's config (data.init_args.phantom.version), so a phantom or a finished run of an older
# generator is never taken for the new one. xray 2: pleural air darker (0.06 -> 0.2).
VERSIONS = {"ct": 1, "xray": 2}


def phantom_version(modality: str) -> int:
    """The version of ``modality``'s phantom this ptx draws."""
    if modality not in VERSIONS:
        raise ValueError(f"no phantom for modality {modality!r}; use 'ct' or 'xray'")
    return VERSIONS[modality]


def check_version(settings: dict, modality: str) -> dict:
    """``settings`` without its ``version`` key, refused when that names another version."""
    settings = dict(settings)
    asked = settings.pop("version", None)
    current = phantom_version(modality)
    if asked is not None and asked != current:
        raise ValueError(
            f"phantom version {asked!r}: this ptx draws version {current} of the {modality} "
            "phantom (a run of an older one is not reproducible here; --force reruns it)"
        )
    return settings


def warn_if_older(root: Path, modality: str) -> None:
    """Log a warning when ``root`` is a phantom written by ``ptx phantom`` of an older
    version (its ``.ptx-phantom`` marker names modality and version; empty: version 1)."""
    marker = root / MARKERS[0]
    if modality not in VERSIONS or not marker.is_file():
        return
    words = marker.read_text().split()
    version = int(words[1]) if len(words) == 2 and words[1].isdigit() else 1
    if version < phantom_version(modality):
        log.warning(
            "%s: a version-%d %s phantom; this ptx draws version %d (ptx phantom %s --out %s "
            "--overwrite redraws it)",
            root,
            version,
            modality,
            phantom_version(modality),
            modality,
            root,
        )


def generate_phantom(modality: str, out: str | Path, **kwargs) -> Path:
    """Write the phantom of ``modality`` ("ct" or "xray") into ``out``; returns ``out``."""
    out = Path(out)
    if modality == "ct":
        from datamodules.phantom.ct import generate_ct_phantom

        generate_ct_phantom(out, **kwargs)
    elif modality == "xray":
        from datamodules.phantom.xray import generate_xray_phantom

        generate_xray_phantom(out, **kwargs)
    else:
        raise ValueError(f"unknown phantom modality {modality!r}; use 'ct' or 'xray'")
    (out / MARKERS[0]).write_text(f"{modality} {phantom_version(modality)}\n")
    return out


def ensure_phantom(root: Path, modality: str, generate: Callable[[Path], None]) -> Path:
    """``root``, after ``generate(folder)`` wrote the phantom there unless a complete one is
    (marked ``.complete``); written into a temporary folder renamed into place, so another
    process generating the same phantom at once finishes first and keeps its own."""
    if not (root / MARKERS[1]).exists():
        log.info("generating the %s phantom in %s (no data_dir given)", modality, root)
        with atomic_dir(root) as tmp:
            generate(tmp)
            (tmp / MARKERS[1]).touch()
    return root


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptx phantom", description=__doc__.splitlines()[0], formatter_class=HelpFormatter
    )
    sub = parser.add_subparsers(dest="modality", required=True)
    ct = sub.add_parser(
        "ct", help="chest CT volumes (DICOM series and NIfTI pairs)", formatter_class=HelpFormatter
    )
    ct.add_argument("--slices", type=int, default=64, help="axial slices per patient")
    ct.add_argument(
        "--formats",
        choices=["mixed", "dicom", "nifti"],
        default="mixed",
        help="mixed: some patients as DICOM series, the others as NIfTI",
    )
    xray = sub.add_parser(
        "xray",
        help="frontal chest radiographs (SIIM-ACR and PNG layouts)",
        formatter_class=HelpFormatter,
    )
    xray.add_argument(
        "--layout", choices=["siim", "png", "both"], default="both", help="the files written"
    )
    xray.add_argument(
        "--min-depth",
        type=float,
        default=0.03,
        help="shallowest pneumothorax, fraction of the lung radius (log-uniform up to 0.5)",
    )
    for p, size, patients in ((ct, 512, 8), (xray, 1024, 40)):
        p.add_argument("--out", type=Path, required=True, help="output folder")
        p.add_argument("--patients", type=int, default=patients, help="number of patients")
        p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same data)")
        p.add_argument("--size", type=int, default=size, help="native image side in pixels")
        p.add_argument(
            "--overwrite", action="store_true", help="replace a phantom already in --out"
        )
    return parser


def clear_output(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty ``out``; with ``overwrite``, delete it if it holds a phantom (and
    never a folder that does not: that could be anyone's data)."""
    if not out.exists() or not any(out.iterdir()):
        return
    if not overwrite:
        raise DataError("folder is not empty; choose a new --out or pass --overwrite", path=out)
    if not any((out / m).exists() for m in MARKERS):
        raise DataError(
            "folder is not empty and holds no phantom (no .ptx-phantom): not deleting it; "
            "choose a new --out",
            path=out,
        )
    shutil.rmtree(out)


def cli(argv: list[str]) -> int:
    args = vars(build_parser().parse_args(argv))
    modality, out = args.pop("modality"), args.pop("out")
    clear_output(out, args.pop("overwrite"))
    generate_phantom(modality, out, **args)
    print(f"wrote {modality} phantom to {out}")
    return 0
