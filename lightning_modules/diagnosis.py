"""Image-level pneumothorax calls from predicted maps: the X-ray paper's area rule and its kin.

The paper calls an image pneumothorax when its predicted segmentation map has more than 50
PTX pixels, "according to the predicted segmentation maps": 50 pixels on the grid the network
predicts on. Three rules, named in every table that reports a diagnosis:

- ``paper``: area of the predicted mask > ``min_area`` pixels on the predicted grid.
- ``scaled``: ``min_area`` is stated at ``reference_size`` (e.g. 50 px at the radiographs'
  1024 x 1024) and scaled by area to the predicted grid (3.125 px at 256 x 256).
- ``tuned``: the SIIM-ACR winners' post-processing (``lightning_modules.postprocessing``): an
  image is positive when more than ``min_area`` pixels have a PTX probability above
  ``top_threshold``, and its mask is the pixels above ``pixel_threshold``; the three values
  are chosen on the validation set only.

For ``paper`` and ``scaled`` both thresholds are 0.5, the argmax of a two-class network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from numbers import Integral

import torch

PAPER_MIN_AREA = 50  # pixels on the predicted grid (the X-ray paper's rule)
RULES = ("paper", "scaled", "tuned")


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, Integral) else tuple(size)
    if int(h) < 1 or int(w) < 1:
        raise ValueError(f"a grid size must be positive, got {size!r}")
    return int(h), int(w)


def _check_batch(maps: torch.Tensor) -> None:
    # an H x W map would silently be read as H images of one row each
    if maps.ndim != 3:
        raise ValueError(
            f"masks must be B x H x W, got shape {tuple(maps.shape)}; "
            "add a batch dimension (mask[None]) for a single image"
        )


def scaled_min_area(
    min_area: float, shape: int | Sequence[int], reference_size: int | Sequence[int] | None
) -> float:
    """``min_area`` pixels at ``reference_size`` in pixels of a ``shape`` grid (None: as is)."""
    h, w = _pair(shape)
    if reference_size is None:
        return float(min_area)
    rh, rw = _pair(reference_size)
    return float(min_area) * (h * w) / (rh * rw)


def diagnose(
    masks: torch.Tensor,
    min_area: float = PAPER_MIN_AREA,
    reference_size: int | Sequence[int] | None = None,
) -> torch.Tensor:
    """Per image True (pneumothorax) when the mask area exceeds the threshold.

    Args:
        masks: ``B x H x W`` binary predicted masks (bool or 0/1).
        min_area: threshold in pixels; an area equal to it is negative.
        reference_size: None (the paper's rule: ``min_area`` on the masks' own grid), or the
            grid ``min_area`` is stated at (int or (H, W)), scaled by area to the masks' grid.
    Returns:
        bool tensor of shape ``B``, on the masks' device.
    """
    _check_batch(masks)
    if min_area < 0:
        raise ValueError(f"min_area must be >= 0 pixels, got {min_area}")
    area = masks.flatten(1).sum(1)  # exact int64 for bool/integer masks, on any device
    return area > scaled_min_area(min_area, masks.shape[-2:], reference_size)


@dataclass(frozen=True)
class DiagnosisRule:
    """How an image is called pneumothorax, and which pixels form its mask, from the
    ``B x H x W`` PTX probabilities of a network (see the module docstring).

    Attributes:
        rule: ``paper``, ``scaled`` or ``tuned``.
        min_area: pixels; on the predicted grid (``paper``, ``tuned``), or at
            ``reference_size`` (``scaled``).
        reference_size: the grid ``min_area`` is stated at (``scaled`` only).
        top_threshold: a pixel counts towards the area when its probability exceeds it.
        pixel_threshold: mask pixels are those above it (0.5: the argmax).
        tuned_on: where the thresholds were chosen (``"val"``) and ``objective`` the
            validation value they reached; None for untuned rules.
    """

    rule: str = "paper"
    min_area: float = PAPER_MIN_AREA
    reference_size: int | None = None
    top_threshold: float = 0.5
    pixel_threshold: float = 0.5
    tuned_on: str | None = None
    objective: float | None = None

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"unknown diagnosis rule {self.rule!r}; use one of {', '.join(RULES)}")
        if self.min_area < 0:
            raise ValueError(f"min_area must be >= 0 pixels, got {self.min_area}")
        if self.rule == "scaled" and self.reference_size is None:
            raise ValueError("diagnosis rule 'scaled' needs the reference_size min_area is at")
        for name in ("top_threshold", "pixel_threshold"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")

    @property
    def tuned(self) -> bool:
        return self.tuned_on is not None

    def area_threshold(self, shape: int | Sequence[int]) -> float:
        """The area (pixels of a ``shape`` grid) an image must exceed to be called PTX."""
        reference = self.reference_size if self.rule == "scaled" else None
        return scaled_min_area(self.min_area, shape, reference)

    def calls(self, probabilities: torch.Tensor) -> torch.Tensor:
        """bool ``B``: more than the area threshold of pixels above ``top_threshold``."""
        _check_batch(probabilities)
        area = (probabilities > self.top_threshold).flatten(1).sum(1)
        return area > self.area_threshold(probabilities.shape[-2:])

    def masks(self, probabilities: torch.Tensor) -> torch.Tensor:
        """bool ``B x H x W`` masks as the rule reports them: the pixels above
        ``pixel_threshold``, cleared on images the rule calls negative (``tuned`` only;
        the other rules keep the network's own mask whatever the call)."""
        masks = probabilities > self.pixel_threshold
        if self.rule != "tuned":
            return masks
        return masks & self.calls(probabilities)[:, None, None]

    def describe(self) -> str:
        """One line for a table footnote, e.g. ``paper: > 50 px on the predicted grid``."""
        if self.rule == "paper":
            return f"paper: more than {self.min_area:g} predicted PTX pixels on the predicted grid"
        if self.rule == "scaled":
            return (
                f"scaled: more than {self.min_area:g} PTX pixels at {self.reference_size} x "
                f"{self.reference_size}, scaled by area to the predicted grid"
            )
        return (
            f"tuned on {self.tuned_on or 'nothing yet'}: more than {self.min_area:g} pixels "
            f"with p > {self.top_threshold:g}, mask p > {self.pixel_threshold:g}"
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> DiagnosisRule:
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})
