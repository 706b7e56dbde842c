"""CT and chest X-ray data: finding, reading, caching and serving pneumothorax cases.

The data path, one package or module per step: ``layouts`` (find the cases of a folder;
patient keys, ``ptx check-data``) -> ``readers`` (decode one file or series) ->
``transforms`` (intensity windows, resizing) -> ``cache`` (preprocessed arrays on disk) ->
``dataset`` (items) -> ``base`` / ``ct`` / ``xray`` (the DataModules; ``splits`` draws the
patient split). Beside it: ``phantom`` (synthetic data sets, ``ptx phantom``), ``writers``
(what ``ptx predict`` writes) and ``io`` (atomic writes, ``DataError``).

The DataModules are imported lazily, so light tools such as ``ptx phantom`` do not pay for
importing torch and Lightning.
"""

from datamodules.io.errors import DataError

__all__ = ["CTDataModule", "DataError", "SegmentationDataModule", "XRayDataModule"]


def __getattr__(name: str):
    if name == "CTDataModule":
        from datamodules.ct import CTDataModule

        return CTDataModule
    if name == "XRayDataModule":
        from datamodules.xray import XRayDataModule

        return XRayDataModule
    if name == "SegmentationDataModule":
        from datamodules.base import SegmentationDataModule

        return SegmentationDataModule
    raise AttributeError(f"module 'datamodules' has no attribute {name!r}")
