"""Run-length encoded pneumothorax masks: the SIIM-ACR ``train-rle.csv`` and its variants.

SIIM uses *relative* RLE: pairs ``(offset, length)``, 0-indexed, column-major, where each
offset counts from the end of the previous run. Standard Kaggle RLE (pairs of absolute,
1-indexed starts and lengths) also circulates; :func:`detect_scheme` tells them apart. One CSV
row is one pneumothorax instance; an image's instances are combined with a logical OR.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datamodules.io.errors import DataError

EMPTY = "-1"
SCHEMES = ("relative", "standard")
HEADERS = ("ImageId, EncodedPixels", "ImageId,EncodedPixels")  # train-rle.csv, stage_2_train.csv


@dataclass(frozen=True)
class RleRow:
    """One CSV row: an instance mask of ``image_id`` (``"-1"`` = no pneumothorax).

    ``line`` is the row's line number in the CSV (the header is line 1), for error messages.
    """

    image_id: str
    encoded: str
    line: int


def parse_runs(encoded: str) -> np.ndarray:
    """The ``(start, length)`` pairs of an RLE string as an int64 array K x 2 (K = 0 if empty).

    Raises ValueError for non-integer tokens, an odd token count or negative numbers.
    """
    tokens = encoded.split()
    if not tokens or tokens == [EMPTY]:
        return np.zeros((0, 2), dtype=np.int64)
    try:
        values = np.array([int(t) for t in tokens], dtype=np.int64)
    except ValueError as err:
        raise ValueError(f"RLE has a non-integer token ({err})") from None
    if len(values) % 2:
        raise ValueError(f"RLE has {len(values)} numbers; expected (start, length) pairs")
    if (values < 0).any():
        raise ValueError(f"RLE has a negative number ({values[values < 0][0]})")
    return values.reshape(-1, 2)


def run_bounds(runs: np.ndarray, scheme: str = "relative") -> tuple[np.ndarray, np.ndarray]:
    """0-indexed flat ``[start, end)`` of each run, in column-major pixel order."""
    starts, lengths = runs[:, 0], runs[:, 1]
    if scheme == "relative":
        previous_ends = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        begin = np.cumsum(starts) + previous_ends
    elif scheme == "standard":
        begin = starts - 1
    else:
        raise ValueError(f"unknown RLE scheme {scheme!r}; use one of {SCHEMES}")
    return begin, begin + lengths


def fits(runs: np.ndarray, n_pixels: int, scheme: str) -> bool:
    """Whether the runs decode inside an image of ``n_pixels`` under ``scheme``.

    Standard RLE must also have strictly increasing, non-overlapping, 1-indexed starts.
    """
    if len(runs) == 0:
        return True
    begin, end = run_bounds(runs, scheme)
    if scheme == "standard" and ((begin < 0).any() or (begin[1:] < end[:-1]).any()):
        return False
    return bool(end.max() <= n_pixels)


def rle_decode(encoded: str, height: int, width: int, scheme: str = "relative") -> np.ndarray:
    """Decode one RLE string into an ``height x width`` uint8 mask in {0, 1}.

    Raises ValueError when the runs leave the image (see :func:`decode_instances` for the
    error that names the CSV row).
    """
    runs = parse_runs(encoded)
    n_pixels = height * width
    if not fits(runs, n_pixels, scheme):
        begin, end = run_bounds(runs, scheme)
        raise ValueError(
            f"{scheme} RLE runs to pixel {int(end.max())} (first run at {int(begin.min())}) "
            f"but the image has {height} x {width} = {n_pixels} pixels"
        )
    flat = np.zeros(n_pixels + 1, dtype=np.int32)
    begin, end = run_bounds(runs, scheme)
    np.add.at(flat, begin, 1)  # a difference array: +1 where a run opens, -1 past its end
    np.add.at(flat, end, -1)
    covered = (np.cumsum(flat[:-1]) > 0).astype(np.uint8)
    return np.ascontiguousarray(covered.reshape(width, height).T)  # column-major pixel order


def _runs_of(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """0-indexed flat starts and lengths of the foreground runs, column-major."""
    flat = np.asarray(mask).T.reshape(-1) > 0
    edges = np.diff(np.concatenate([[0], flat.astype(np.int8), [0]]))
    begin, end = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return begin, end - begin


def rle_encode(mask: np.ndarray) -> str:
    """Relative (SIIM) RLE of an ``H x W`` mask (non-zero = pneumothorax); ``"-1"`` if empty."""
    begin, lengths = _runs_of(mask)
    if len(begin) == 0:
        return EMPTY
    previous_ends = np.concatenate([[0], begin[:-1] + lengths[:-1]])
    pairs = np.stack([begin - previous_ends, lengths], axis=1)
    return " ".join(str(int(v)) for v in pairs.reshape(-1))


def rle_encode_standard(mask: np.ndarray) -> str:
    """Standard Kaggle RLE (absolute 1-indexed starts) of an ``H x W`` mask; ``"-1"`` if empty."""
    begin, lengths = _runs_of(mask)
    if len(begin) == 0:
        return EMPTY
    return " ".join(str(int(v)) for v in np.stack([begin + 1, lengths], axis=1).reshape(-1))


def read_rle_csv(path: str | Path) -> dict[str, list[RleRow]]:
    """Rows of a SIIM RLE CSV grouped by image id, in file order.

    Accepts both headers (``ImageId, EncodedPixels`` and ``ImageId,EncodedPixels``), ``-1``,
    `` -1`` and an empty cell for images without pneumothorax. Malformed rows raise DataError
    naming the line.
    """
    path = Path(path)
    rows: dict[str, list[RleRow]] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, skipinitialspace=True)
            header = [h.strip() for h in next(reader, [])]
            if header != ["ImageId", "EncodedPixels"]:
                raise DataError(
                    f"header is {','.join(header)!r}; expected one of {list(HEADERS)}",
                    path=path,
                    row=1,
                )
            for record in reader:
                if not any(cell.strip() for cell in record):
                    continue  # blank line
                row = _parse_record(record, reader.line_num, path)
                rows.setdefault(row.image_id, []).append(row)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"cannot read the RLE CSV ({err})", path=path) from err
    return rows


def _parse_record(record: Sequence[str], line: int, path: Path) -> RleRow:
    if len(record) != 2:
        raise DataError(
            f"expected 2 cells (ImageId, EncodedPixels), found {len(record)}; fix the row",
            path=path,
            row=line,
        )
    image_id, encoded = record[0].strip(), " ".join(record[1].split()) or EMPTY
    if not image_id:
        raise DataError("empty ImageId; fix or delete the row", path=path, row=line)
    try:
        parse_runs(encoded)
    except ValueError as err:
        raise DataError(f"{err}; fix the row's EncodedPixels", path=path, row=line) from None
    return RleRow(image_id, encoded, line)


def detect_scheme(rows: Iterable[tuple[RleRow, int]], path: str | Path) -> str:
    """``"relative"`` or ``"standard"`` for a whole CSV, from its rows and image pixel counts.

    A file is standard RLE when some row runs past its image under relative decoding but fits
    as strictly increasing absolute starts; then every row must fit as standard. A row that
    fits neither raises DataError naming it. Files whose rows all fit both ways are relative
    (SIIM's convention): pass the scheme explicitly if yours is not.
    """
    checked = [(row, parse_runs(row.encoded), n) for row, n in rows]
    standard = [row for row, runs, n in checked if not fits(runs, n, "relative")]
    for row, runs, n in checked:
        if not fits(runs, n, "relative") and not fits(runs, n, "standard"):
            raise _outside(row, n, "relative or standard", path)
    if not standard:
        return "relative"
    for row, runs, n in checked:
        if not fits(runs, n, "standard"):
            raise _outside(row, n, f"standard (as row {standard[0].line} is)", path)
    return "standard"


def check_rows(rows: Iterable[tuple[RleRow, int]], scheme: str, path: str | Path) -> None:
    """Raise DataError naming the first row that runs outside its image under ``scheme``."""
    for row, n in rows:
        if not fits(parse_runs(row.encoded), n, scheme):
            raise _outside(row, n, scheme, path)


def _outside(row: RleRow, n_pixels: int, scheme: str, path: str | Path) -> DataError:
    return DataError(
        f"the RLE of image {row.image_id} runs outside its {n_pixels}-pixel image when decoded "
        f"as {scheme} RLE; check that the row belongs to this image and that all rows use one "
        "encoding",
        path=path,
        row=row.line,
    )


def decode_instances(
    rows: Sequence[RleRow], height: int, width: int, scheme: str, path: str | Path
) -> np.ndarray:
    """OR of the instance masks of one image: ``height x width`` uint8 in {0, 1}."""
    mask = np.zeros((height, width), dtype=np.uint8)
    for row in rows:
        try:
            mask |= rle_decode(row.encoded, height, width, scheme)
        except ValueError as err:
            raise DataError(
                f"{err}; check that the row belongs to this image", path=path, row=row.line
            ) from None
    return mask
