"""``ptx check-data DIR [--modality ct|xray] [--quiet]``: read every case, train nothing.

Like nnU-Net's dataset integrity check: every case of the folder is found and decoded by the
very code the DataModules run at set-up (``discover_entries`` and ``load_case``), and reported
with what was found (layout, native shape, spacing, whether a label is there, pneumothorax
pixels or voxels) or every problem with the file it concerns. A broken case does not stop
the others; the exit status is 1 when any case (or the data set as a whole) has a problem.
CT cases are named by their patient keys; radiographs by their image ids (file stems) and
skipped ids are listed, since this is the data owner's own check (the one place that names
them: runs record keys); a problem names its file, as every DataError does. Nothing is
written, not even the cache.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from datamodules.io.errors import DataError
from experiments.cli import HelpFormatter


@dataclass
class CaseCheck:
    """What ``ptx check-data`` found for one case (``error`` None when it read cleanly)."""

    name: str
    layout: str = ""
    shape: tuple[int, ...] = ()
    spacing: tuple[float, ...] | None = None
    images: int = 0  # slices (CT) or 1 (X-ray)
    ptx_pixels: int = 0  # pneumothorax voxels or pixels at the native grid
    ptx_images: int = 0  # slices / images with pneumothorax
    error: str | None = None

    def line(self) -> str:
        if self.error is not None:
            return f"  {self.name:<24} ERROR {self.error}"
        shape = " x ".join(str(n) for n in self.shape)
        spacing = " x ".join(f"{v:.2f}" for v in self.spacing) + " mm" if self.spacing else "-"
        ptx = f"{self.ptx_pixels} px in {self.ptx_images}/{self.images}"
        return f"  {self.name:<24} {self.layout:<16} {shape:<16} {spacing:<22} label  {ptx}"


def detect_modality(root: Path) -> str:
    """``xray`` when the folder has a chest X-ray layout, else ``ct``."""
    from datamodules.layouts.xray import find_layout

    try:
        find_layout(root)
    except DataError:
        return "ct"
    return "xray"


def data_module(modality: str, root: Path):
    """The modality's DataModule on ``root`` at the native grid (no resizing)."""
    if modality == "ct":
        from datamodules.ct import CTDataModule

        return CTDataModule(data_dir=str(root), image_size=None)
    from datamodules.xray import XRayDataModule

    return XRayDataModule(data_dir=str(root), image_size=None)


def check_case(dm, case) -> CaseCheck:
    """Decode one case as set-up does and summarise it; any failure becomes its error."""
    name = getattr(case, "image_id", "") or case.patient
    try:
        arrays = dm.load_case(case)
    except DataError as err:
        return CaseCheck(name, error=str(err))
    except Exception as err:  # a reader bug must not hide the other cases
        return CaseCheck(name, error=f"unexpected {type(err).__name__}: {err} ({case.files[0]})")
    info = arrays.info
    return CaseCheck(
        name,
        layout=str(info.get("layout", "")),
        shape=tuple(int(n) for n in info.get("shape", arrays.images.shape)),
        spacing=info.get("spacing"),
        images=len(arrays.masks),
        ptx_pixels=int(arrays.masks.sum()),
        ptx_images=int(arrays.masks.any(axis=(1, 2)).sum()),
    )


def check_data(root: Path, modality: str | None = None) -> tuple[str, list[CaseCheck], list[str]]:
    """(modality, one check per case, problems of the data set as a whole)."""
    modality = modality or detect_modality(root)
    dm = data_module(modality, root)
    try:
        cases, errors = dm.discover_entries(root)
    except DataError as err:  # the skipped ids first: they often say why nothing was found
        return modality, [], [*_skipped(dm), str(err)]
    problems = _skipped(dm)
    checks = [CaseCheck(err.patient or "(discovery)", error=str(err)) for err in errors]
    checks += [check_case(dm, case) for case in cases]
    if not checks:
        problems.append(f"no {modality} cases found")
    return modality, checks, problems


def _skipped(dm, shown: int = 5) -> list[str]:
    """One problem per reason the discovery skipped ids for, naming the first ``shown`` (the
    data owner's own check: the one place that names them)."""
    problems = []
    for why, ids in getattr(dm, "skipped_ids", {}).items():
        if ids:
            more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
            problems.append(f"skipped {len(ids)} ({why}): {', '.join(ids[:shown])}{more}")
    return problems


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="ptx check-data", description=__doc__.splitlines()[0], formatter_class=HelpFormatter
    )
    parser.add_argument("data", type=Path, help="the data folder (as --data of ptx fit)")
    parser.add_argument(
        "--modality", choices=("ct", "xray"), help="ct or xray (default: from the layout)"
    )
    parser.add_argument("--quiet", action="store_true", help="print only problems and totals")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        raise DataError("no such data folder", path=args.data)
    modality, checks, problems = check_data(args.data, args.modality)
    bad = [c for c in checks if c.error is not None]
    print(f"{modality} data in {args.data}: {len(checks)} cases")
    for check in checks:
        if check.error is not None or not args.quiet:
            print(check.line())
    for problem in problems:
        print(f"  data set: {problem}")
    fatal = [p for p in problems if not p.startswith("skipped")]
    print(f"{len(checks) - len(bad)} cases fine, {len(bad)} with errors")
    return 1 if bad or fatal else 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
