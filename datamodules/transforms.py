"""Deterministic resizing for the preprocessing cache, and the random flip for training."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def resize_images(images: np.ndarray, size: int | None) -> np.ndarray:
    """Resize N x H x W float images to N x size x size (bilinear, antialiased when shrinking)."""
    if size is None or images.shape[1:] == (size, size):
        return np.asarray(images, dtype=np.float32)
    tensor = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
    shrinking = size < max(images.shape[1:])
    out = F.interpolate(
        tensor, size=(size, size), mode="bilinear", align_corners=False, antialias=shrinking
    )
    return out[:, 0].clamp_(0.0, 1.0).numpy()


def resize_masks(masks: np.ndarray, size: int | None) -> np.ndarray:
    """Resize N x H x W {0,1} masks: area average then >= 0.5 (nearest when enlarging)."""
    if size is None or masks.shape[1:] == (size, size):
        return np.asarray(masks, dtype=np.uint8)
    tensor = torch.from_numpy(np.ascontiguousarray(masks, dtype=np.float32))[:, None]
    out = F.interpolate(tensor, size=(size, size), mode="area")
    return (out[:, 0] >= 0.5).to(torch.uint8).numpy()


def random_hflip(image: torch.Tensor, mask: torch.Tensor, p: float = 0.5):
    """Flip a C x H x W image and its H x W mask left-right together with probability ``p``."""
    if torch.rand(()) < p:
        return image.flip(-1), mask.flip(-1)
    return image, mask
