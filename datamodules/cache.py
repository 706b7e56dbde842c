"""On-disk cache of preprocessed samples, shared by runs, processes and DataLoader workers.

Decoding, HU conversion, windowing and resizing happen once per case. The result is stored
as ``.npy`` files (images float16 N x H x W in [0, 1], masks uint8 N x H x W) that are opened
memory-mapped. A case's key fingerprints its source files (path, size, mtime) and everything
in ``settings`` (window, image size, ...): change either and the case is rebuilt. File names
are hashes, so no patient identifier reaches the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CACHE_VERSION = 1  # bump when the stored layout or the preprocessing code changes meaning


@dataclass
class CaseArrays:
    """Preprocessed slices of one case: images N x H x W in [0, 1], masks N x H x W in {0, 1}."""

    images: np.ndarray
    masks: np.ndarray
    ids: list[str]

    def __post_init__(self) -> None:
        if self.images.shape != self.masks.shape or self.images.ndim != 3:
            raise ValueError(
                f"images {self.images.shape} and masks {self.masks.shape} must both be N x H x W"
            )
        if len(self.ids) != len(self.images):
            raise ValueError(f"{len(self.ids)} ids for {len(self.images)} slices")


def digest(payload: object) -> str:
    """Stable sha256 hex digest of a JSON-serialisable payload."""
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def file_signature(paths: Sequence[Path]) -> list[tuple[str, int, int]]:
    """(absolute path, size, mtime_ns) of each file: cheap, and changes when a file does."""
    signature = []
    for path in sorted(Path(p).resolve() for p in paths):
        stat = path.stat()
        signature.append((str(path), stat.st_size, stat.st_mtime_ns))
    return signature


class PreprocessingCache:
    """A folder of preprocessed cases, one namespace per modality and preprocessing setting."""

    def __init__(self, root: str | Path, namespace: str, settings: Mapping[str, object]) -> None:
        self.settings = {"cache_version": CACHE_VERSION, **settings}
        self.dir = Path(root) / namespace / digest(self.settings)[:16]

    def key(self, files: Sequence[Path], meta: object = None) -> str:
        """Fingerprint of a case: its source files, its metadata and the settings."""
        return digest([self.settings, file_signature(files), meta])[:32]

    def _paths(self, key: str) -> tuple[Path, Path, Path]:
        base = self.dir / key
        return (
            base.with_suffix(".image.npy"),
            base.with_suffix(".mask.npy"),
            base.with_suffix(".json"),
        )

    def has(self, key: str) -> bool:
        """True when the case is stored completely (its index file is written last)."""
        return self._paths(key)[2].exists()

    def store(self, key: str, arrays: CaseArrays, **info: object) -> None:
        """Write a case atomically: arrays first, then the index that marks it complete."""
        self.dir.mkdir(parents=True, exist_ok=True)
        image_path, mask_path, index_path = self._paths(key)
        tmp = f".tmp{os.getpid()}"
        for path, array in (
            (image_path, np.asarray(arrays.images, dtype=np.float16)),
            (mask_path, np.asarray(arrays.masks, dtype=np.uint8)),
        ):
            with open(path.with_name(path.name + tmp), "wb") as fh:
                np.save(fh, array)
            os.replace(path.with_name(path.name + tmp), path)
        index = {"ids": list(arrays.ids), "shape": list(arrays.images.shape), **info}
        index_path.with_name(index_path.name + tmp).write_text(json.dumps(index))
        os.replace(index_path.with_name(index_path.name + tmp), index_path)

    def index(self, key: str) -> dict:
        """The stored index of a case (ids, shape and the ``info`` given to :meth:`store`)."""
        return json.loads(self._paths(key)[2].read_text())

    def array_paths(self, key: str) -> tuple[Path, Path]:
        """Paths of the image and mask arrays of a stored case."""
        image_path, mask_path, _ = self._paths(key)
        return image_path, mask_path

    def load(self, key: str) -> CaseArrays:
        """The stored case, memory-mapped (nothing is read until indexed)."""
        image_path, mask_path, _ = self._paths(key)
        return CaseArrays(
            images=np.load(image_path, mmap_mode="r"),
            masks=np.load(mask_path, mmap_mode="r"),
            ids=self.index(key)["ids"],
        )
