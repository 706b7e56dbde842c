"""CT and chest X-ray DataModules, their readers, the preprocessing cache and the phantoms.

``CTDataModule`` and ``XRayDataModule`` are imported lazily, so light tools such as
``ptx phantom`` do not pay for importing torch and Lightning.
"""

from datamodules.errors import DataError

__all__ = ["CTDataModule", "DataError", "XRayDataModule"]


def __getattr__(name: str):
    if name == "CTDataModule":
        from datamodules.ct import CTDataModule

        return CTDataModule
    if name == "XRayDataModule":
        from datamodules.xray import XRayDataModule

        return XRayDataModule
    raise AttributeError(f"module 'datamodules' has no attribute {name!r}")
