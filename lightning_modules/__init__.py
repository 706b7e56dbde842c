"""Training side: ``SegmentationModule``, networks (``nets``), losses, metrics, callbacks.

``SegmentationModule`` is imported lazily so that light users of the package (the metric
functions, the model table) do not pay for importing Lightning.
"""

__all__ = ["SegmentationModule", "load_model"]


def load_model(path, device: str = "cpu", backend: str = "torch", tta: str = "none"):
    """A trained model with its preprocessing and diagnosis rule, from a run folder, a
    checkpoint or an exported bundle: ``load_model(path).probabilities(images)``
    (``lightning_modules.inference.Predictor``)."""
    from lightning_modules.inference import Predictor

    return Predictor.load(path, device=device, tta=tta, backend=backend)


def __getattr__(name: str):
    if name == "SegmentationModule":
        from lightning_modules.module import SegmentationModule

        return SegmentationModule
    raise AttributeError(f"module 'lightning_modules' has no attribute {name!r}")
