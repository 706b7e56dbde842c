"""Training side: ``SegmentationModule``, networks (``nets``), losses, metrics, callbacks.

``SegmentationModule`` is imported lazily so that light users of the package (the metric
functions, the model table) do not pay for importing Lightning.
"""

__all__ = ["SegmentationModule"]


def __getattr__(name: str):
    if name == "SegmentationModule":
        from lightning_modules.module import SegmentationModule

        return SegmentationModule
    raise AttributeError(f"module 'lightning_modules' has no attribute {name!r}")
