"""Hand-made masks for the metric tests: a metric over n images, masks from pixel lists, a
random set of prediction/ground-truth pairs, and exact comparison of metric results."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_modules.metrics import SegmentationMetrics


def metric(n: int, patients=None, **kwargs) -> SegmentationMetrics:
    ids = [f"img{i}" for i in range(n)]
    return SegmentationMetrics(ids=ids, patients=patients or ids, **kwargs)


def masks(shape, pixels) -> torch.Tensor:
    m = torch.zeros(shape, dtype=torch.bool)
    for r, c in pixels:
        m[r, c] = True
    return m


def random_set(n: int, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n (pred, true) mask pairs: half positive; predictions hit, miss, shift, or add FPs."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")

    def disc():
        cy, cx = torch.randint(0, size, (2,), generator=g).tolist()
        r = torch.randint(2, size // 3, (1,), generator=g).item()
        return (yy - cy) ** 2 + (xx - cx) ** 2 < r**2

    true = torch.stack(
        [disc() if i % 2 else torch.zeros(size, size, dtype=torch.bool) for i in range(n)]
    )
    pred = torch.zeros_like(true)
    for i in range(n):
        kind = torch.randint(0, 4, (1,), generator=g).item()
        if kind == 1:
            pred[i] = torch.roll(true[i], shifts=(1, 2), dims=(0, 1))
        elif kind == 2:
            pred[i] = true[i] | disc()
        elif kind == 3:
            pred[i] = true[i] & (torch.rand(size, size, generator=g) > 0.3)
    return pred, true


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], float) and math.isnan(a[k]):
            assert isinstance(b[k], float) and math.isnan(b[k]), k
        elif isinstance(a[k], float):
            assert a[k] == pytest.approx(b[k], rel=1e-12, abs=1e-12), k
        else:
            assert a[k] == b[k], k
