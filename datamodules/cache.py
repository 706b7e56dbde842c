"""On-disk cache of preprocessed samples, shared by runs, processes and DataLoader workers.

Decoding, HU conversion, windowing and resizing happen once per case, at set-up. An entry
is three files named by a hash (no patient identifier reaches the cache): ``<key>.image.npy``
(uint16 N x H x W, the [0, 1] intensities x 65535: float16 had only 11 bits near 1),
``<key>.mask.npy`` (uint8) and ``<key>.json``, the index written last: the cache version, a
digest of the sources' paths, sizes and mtimes, each array's byte count and CRC-32, and a
CRC-32 of its own content.

:meth:`PreprocessingCache.problem` checks all of that before an entry is used (once per
case at set-up; reading the arrays costs about as much as copying them). A stale entry (its
sources changed) or a torn or corrupted one (truncated, flipped bytes, a file missing) is
reported in one log line naming the entry and rebuilt, never served. Every file is written
atomically (``datamodules.io.atomic``) and an entry is built under a per-entry OS file lock,
so concurrent writers (two runs, DDP ranks, DataLoader workers) neither tear an entry nor
decode the same case twice; a crashed writer's lock is released by the OS.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from filelock import FileLock

from datamodules.io.atomic import write_bytes_atomic
from datamodules.layouts import Case

if TYPE_CHECKING:
    from datamodules.dataset import CachedCase

log = logging.getLogger("ptx.data.cache")

CACHE_VERSION = 2  # bump when the stored layout or the preprocessing code changes meaning
IMAGE_SCALE = 65535  # stored image value of intensity 1.0 (uint16)
_CHUNK = 1 << 22


def default_cache_dir() -> Path:
    """The one cache of every entry point (``ptx``, make, Python): ``$PTX_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/ptx``, else ``~/.cache/ptx``. It holds the preprocessed arrays, the
    phantoms, measured network complexities and the identifier secret."""
    if os.environ.get("PTX_CACHE_DIR"):
        return Path(os.environ["PTX_CACHE_DIR"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # the XDG base directory specification ignores a relative $XDG_CACHE_HOME
    return (Path(xdg) if Path(xdg).is_absolute() else Path.home() / ".cache") / "ptx"


@dataclass
class CaseArrays:
    """Preprocessed slices of one case: images N x H x W in [0, 1], masks N x H x W in {0, 1}.

    ``info`` describes the source for ``ptx check-data`` (layout, native shape, spacing in mm);
    it is not cached.
    """

    images: np.ndarray
    masks: np.ndarray
    ids: list[str]
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.shape != self.masks.shape or self.images.ndim != 3:
            raise ValueError(
                f"images {self.images.shape} and masks {self.masks.shape} must both be N x H x W"
            )
        if len(self.ids) != len(self.images):
            raise ValueError(f"{len(self.ids)} ids for {len(self.images)} slices")


def encode_images(images: np.ndarray) -> np.ndarray:
    """[0, 1] float images -> the stored uint16 (step 1/65535)."""
    scaled = np.clip(np.asarray(images, dtype=np.float32), 0.0, 1.0) * np.float32(IMAGE_SCALE)
    return np.rint(scaled).astype(np.uint16)


def decode_images(stored: np.ndarray) -> np.ndarray:
    """Stored uint16 images (any shape) -> float32 in [0, 1]."""
    return np.asarray(stored, dtype=np.float32) / np.float32(IMAGE_SCALE)


def digest(payload: object) -> str:
    """Stable sha256 hex digest of a JSON-serialisable payload."""
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def folder_fingerprint(root: Path) -> str | None:
    """16 hex digits identifying a data folder's content: SHA-256 over every file's path
    relative to ``root`` and size (hidden files left out). Two copies of one data set match
    wherever they live; names enter only hashed (they may hold patient names). None when
    ``root`` is not a folder."""
    root = Path(root)
    if not root.is_dir():
        return None
    entries = sorted(
        (str(path.relative_to(root)), path.stat().st_size)
        for path in root.rglob("*")
        if path.is_file() and not any(p.startswith(".") for p in path.relative_to(root).parts)
    )
    return digest(entries)[:16]


def file_signature(paths: Sequence[Path]) -> list[tuple[str, int, int]]:
    """(absolute path, size, mtime_ns) of each file: cheap, and changes when a file does."""
    signature = []
    for path in sorted(Path(p).resolve() for p in paths):
        stat = path.stat()
        signature.append((str(path), stat.st_size, stat.st_mtime_ns))
    return signature


def file_crc32(path: Path) -> int:
    """CRC-32 of a file's bytes, read in 4 MiB chunks."""
    crc = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return crc


def _sealed(fields: dict) -> dict:
    """``fields`` plus the CRC-32 of their canonical JSON (``checksum``)."""
    return {**fields, "checksum": zlib.crc32(json.dumps(fields, sort_keys=True).encode())}


class PreprocessingCache:
    """A folder of preprocessed cases, one namespace per modality and preprocessing setting."""

    def __init__(self, root: str | Path, namespace: str, settings: Mapping[str, object]) -> None:
        self.settings = {"cache_version": CACHE_VERSION, **settings}
        self.dir = Path(root) / namespace / digest(self.settings)[:16]

    @classmethod
    def under(cls, cache_dir: str | Path, namespace: str, settings: Mapping[str, object]):
        """The cache of ``namespace`` and ``settings`` in ``<cache_dir>/preprocessed/``."""
        return cls(Path(cache_dir) / "preprocessed", namespace, settings)

    def key(self, files: Sequence[Path], meta: object = None) -> str:
        """Name of a case's entry: its source paths, its metadata and the settings. Sizes and
        times of the files are checked by :meth:`problem`, so a changed file rebuilds the
        entry in place instead of leaving the old one behind."""
        paths = sorted(str(Path(p).resolve()) for p in files)
        return digest([self.settings, paths, meta])[:32]

    def _paths(self, key: str) -> tuple[Path, Path, Path]:
        base = self.dir / key
        return (
            base.with_suffix(".image.npy"),
            base.with_suffix(".mask.npy"),
            base.with_suffix(".json"),
        )

    def describe(self, key: str) -> str:
        """How log lines name an entry: its index file."""
        return str(self._paths(key)[2])

    # ---- checking ---------------------------------------------------------------------
    def problem(self, key: str, files: Sequence[Path]) -> str | None:
        """None when the entry is complete, current and intact; else what is wrong with it
        (``"missing"`` when it was never built)."""
        image_path, mask_path, index_path = self._paths(key)
        if not index_path.exists():
            return "missing"
        try:
            index = self._read_index(index_path)
        except ValueError as err:
            return f"corrupt index ({err})"
        if index.get("cache_version") != CACHE_VERSION:
            return f"built by cache version {index.get('cache_version')}"
        if index.get("sources") != digest(file_signature(files)):
            return "stale: its source files changed (size or modification time)"
        for name, path in (("image", image_path), ("mask", mask_path)):
            expected = index["arrays"][name]
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                return f"torn: the {name} array {path.name} is missing"
            if size != expected["bytes"]:
                return f"truncated: the {name} array is {size} bytes, expected {expected['bytes']}"
            if file_crc32(path) != expected["crc32"]:
                return f"corrupt: the {name} array's checksum does not match (changed bytes)"
        return None

    @staticmethod
    def _read_index(path: Path) -> dict:
        try:
            sealed = json.loads(path.read_text())
            fields = {k: v for k, v in sealed.items() if k != "checksum"}
            ok = _sealed(fields)["checksum"] == sealed.get("checksum")
            _ = sealed["arrays"]["image"]["bytes"], sealed["arrays"]["mask"]["crc32"]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{type(err).__name__}: {err}") from None
        if not ok:
            raise ValueError("its checksum does not match (changed bytes)")
        return fields

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold the entry's OS file lock (one builder per entry; released on crash)."""
        path = self.dir / ".locks" / f"{key}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():  # a file system without flock: soft lock, said once
            warnings.simplefilter("once")
            with FileLock(path):
                yield

    # ---- writing and reading ----------------------------------------------------------
    def store(
        self, key: str, arrays: CaseArrays, files: Sequence[Path] = (), **info: object
    ) -> None:
        """Write an entry: arrays first, then the index that marks it complete.

        ``files`` are the case's sources (their signature is recorded); ``info`` is stored in
        the index (e.g. ``patient``, ``positive``).
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        image_path, mask_path, index_path = self._paths(key)
        checks = {}
        for name, path, array in (
            ("image", image_path, encode_images(arrays.images)),
            ("mask", mask_path, np.asarray(arrays.masks, dtype=np.uint8)),
        ):
            buffer = io.BytesIO()
            np.save(buffer, array)
            data = buffer.getbuffer()
            checks[name] = {"bytes": data.nbytes, "crc32": zlib.crc32(data)}
            write_bytes_atomic(path, data, durable=False)  # the checksum catches a power cut
        index = {
            "cache_version": CACHE_VERSION,
            "sources": digest(file_signature(files)),
            "arrays": checks,
            "ids": list(arrays.ids),
            "shape": list(arrays.images.shape),
            **info,
        }
        write_bytes_atomic(index_path, json.dumps(_sealed(index)).encode(), durable=False)

    def index(self, key: str) -> dict:
        """The stored index of a case (ids, shape and the ``info`` given to :meth:`store`)."""
        return self._read_index(self._paths(key)[2])

    def array_paths(self, key: str) -> tuple[Path, Path]:
        """Paths of the image (uint16, see :func:`decode_images`) and mask arrays of a case."""
        image_path, mask_path, _ = self._paths(key)
        return image_path, mask_path

    def load(self, key: str) -> CaseArrays:
        """The stored case: images decoded to float32 [0, 1], masks memory-mapped."""
        image_path, mask_path, _ = self._paths(key)
        return CaseArrays(
            images=decode_images(np.load(image_path, mmap_mode="r")),
            masks=np.load(mask_path, mmap_mode="r"),
            ids=self.index(key)["ids"],
        )

    # ---- the cases of a data set ------------------------------------------------------
    def ensure(self, case: Case, decode: Callable[[Case], CaseArrays]) -> tuple[str, bool]:
        """The key of ``case``'s entry, built by ``decode(case)`` unless a valid one is there
        (a stale, torn or corrupt one is logged and rebuilt); and whether it was decoded."""
        key = self.key(case.files, case.meta)
        if self.problem(key, case.files) is None:
            return key, False
        with self.lock(key):  # one builder per entry; the others wait, then use it
            problem = self.problem(key, case.files)
            if problem is None:
                return key, False
            if problem != "missing":
                log.warning("cache entry %s: %s; rebuilding it", self.describe(key), problem)
            arrays = decode(case)
            positive = [bool(m.any()) for m in arrays.masks]
            self.store(key, arrays, case.files, patient=case.patient, positive=positive)
        return key, True

    def cached_cases(
        self, cases: Sequence[Case], decode: Callable[[Case], CaseArrays]
    ) -> tuple[list[CachedCase], int]:
        """Each case's entry (built by :meth:`ensure` where needed), and how many were decoded."""
        from datamodules.dataset import CachedCase  # the dataset imports this module

        out, decoded = [], 0
        for case in cases:
            key, built = self.ensure(case, decode)
            decoded += built
            index = self.index(key)
            ids, positive = tuple(index["ids"]), tuple(index["positive"])
            out.append(CachedCase(case.patient, *self.array_paths(key), ids, positive))
        return out, decoded
