"""Finding the cases of a data folder: what is where, before any pixel is decoded.

``layouts.ct`` (patient folders or a manifest CSV) and ``layouts.xray`` (SIIM-ACR or PNG
folders) turn a folder into :class:`Case` objects; ``layouts.privacy`` makes the
non-identifying patient keys they carry; ``layouts.check`` (``ptx check-data``) reports every
case of a folder. Decoding a case is the readers' job (``datamodules.readers``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Case:
    """One unit of decoding: a CT patient volume or one radiograph.

    ``patient`` is a non-identifying key; ``files`` are every source file whose change must
    invalidate the cache; ``meta`` is any other input that defines the case (e.g. its RLE
    rows), JSON-serialisable; ``label`` is the image-level stratum (1 = pneumothorax) if known
    before decoding (else it is read from the cache after decoding).
    """

    patient: str
    files: tuple[Path, ...]
    meta: dict = field(default_factory=dict, hash=False, compare=False)
    label: int | None = None
