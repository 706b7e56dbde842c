"""Map-style dataset over cached, memory-mapped slices, and the evaluation index it hands to
the module (what the metrics must know of each image: its id, patient and ground truth)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from datamodules.cache import decode_images
from datamodules.io.errors import DataError
from datamodules.transforms import random_hflip


@dataclass(frozen=True)
class CachedCase:
    """Where one preprocessed case lives in the cache, and what it holds."""

    patient: str
    image_path: Path
    mask_path: Path
    ids: tuple[str, ...]
    positive: tuple[bool, ...]  # per slice: does the ground truth contain pneumothorax?


@dataclass(frozen=True)
class EvaluationIndex:
    """The images of one evaluation stage, in dataset order (``batch["index"]`` points into
    it): ``ids`` and ``patients`` (non-identifying keys) and ``positive`` (bool, the ground
    truth has pneumothorax). The DataModule gives one per stage to the LightningModule
    (``SegmentationModule.set_evaluation_data``), so the module never reads the data."""

    ids: tuple[str, ...]
    patients: tuple[str, ...]
    positive: np.ndarray


class SliceDataset(Dataset):
    """One item per 2-D slice (CT) or radiograph (X-ray), read from memory-mapped cache arrays
    (images stored as uint16, see ``datamodules.cache``).

    Each item is a dict: ``image`` float32 ``in_channels x H x W`` in [0, 1] (grey replicated
    to the channels), ``mask`` uint8 ``H x W`` in {0, 1} (an eighth of int64's bytes through
    the DataLoader; the module makes the loss's class indices), ``index`` (int, the item's
    position here), ``id`` and ``patient`` (str, both non-identifying). Arrays are opened
    lazily in each process, so the dataset pickles cheaply into DataLoader workers whatever
    the start method.
    """

    def __init__(
        self,
        cases: Sequence[CachedCase],
        in_channels: int = 1,
        hflip: bool = False,
        keep: np.ndarray | None = None,
    ) -> None:
        self.cases = list(cases)
        self.in_channels = in_channels
        self.hflip = hflip
        lengths = [len(c.ids) for c in self.cases]
        case_index = np.repeat(np.arange(len(self.cases)), lengths)
        slice_index = np.concatenate([np.arange(n) for n in lengths]) if lengths else case_index
        if keep is not None:
            case_index, slice_index = case_index[keep], slice_index[keep]
        self.case_index = case_index.astype(np.int64)
        self.slice_index = slice_index.astype(np.int64)
        self._arrays: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.case_index)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_arrays"] = {}  # memmaps are reopened in the receiving process
        return state

    def _open(self, case: int) -> tuple[np.ndarray, np.ndarray]:
        if case not in self._arrays:
            c = self.cases[case]
            try:
                self._arrays[case] = (
                    np.load(c.image_path, mmap_mode="r"),
                    np.load(c.mask_path, mmap_mode="r"),
                )
            except (OSError, ValueError) as err:  # checked at set-up: changed since
                raise DataError(
                    f"cache entry changed after set-up ({type(err).__name__}: {err}); "
                    "run again: set-up detects and rebuilds it",
                    path=c.image_path,
                ) from err
        return self._arrays[case]

    def _items(self):
        return zip(self.case_index.tolist(), self.slice_index.tolist(), strict=True)

    @property
    def ids(self) -> list[str]:
        return [self.cases[c].ids[s] for c, s in self._items()]

    @property
    def patients(self) -> list[str]:
        return [self.cases[c].patient for c in self.case_index]

    @property
    def positive(self) -> np.ndarray:
        """Per item: does its ground truth contain pneumothorax?"""
        return np.array(
            [self.cases[c].positive[s] for c, s in self._items()],
            dtype=bool,
        )

    def evaluation_index(self) -> EvaluationIndex:
        return EvaluationIndex(tuple(self.ids), tuple(self.patients), self.positive)

    def __getitem__(self, index: int) -> dict:
        case, slc = int(self.case_index[index]), int(self.slice_index[index])
        images, masks = self._open(case)
        image = torch.from_numpy(decode_images(images[slc]))[None]
        # np.array copies: a memmap slice is read-only and torch warns on it
        mask = torch.from_numpy(np.array(masks[slc], dtype=np.uint8))
        image = image.expand(self.in_channels, -1, -1).contiguous()
        if self.hflip:
            image, mask = random_hflip(image, mask)
            image, mask = image.contiguous(), mask.contiguous()
        return {
            "image": image,
            "mask": mask,
            "index": index,  # position in this dataset: lets metrics gather across processes
            "id": self.cases[case].ids[slc],
            "patient": self.cases[case].patient,
        }
