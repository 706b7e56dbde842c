"""SegmentationMetrics against the reference libraries and across devices and processes:
MONAI's Dice, IoU and Hausdorff distances on random masks, the libraries' empty-mask
conventions pinned, CUDA against CPU, and two DDP processes against one.

MONAI is imported inside the tests that use it, so the processes the distributed test spawns
(which import this module) start faster.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from metric_fixtures import assert_same, metric, random_set


def test_per_image_dice_and_iou_match_monai_without_ignore_empty():
    from monai.metrics import compute_dice, compute_iou

    pred, true = random_set(24, seed=3)
    m = metric(24, hausdorff=False)
    m.update(pred, true, torch.arange(24))
    rows = m.per_image()
    one_hot = (pred[:, None].float(), true[:, None].float())
    monai_dice = compute_dice(*one_hot, include_background=True, ignore_empty=False)
    monai_iou = compute_iou(*one_hot, include_background=True, ignore_empty=False)
    np.testing.assert_allclose([r["dice"] for r in rows], monai_dice[:, 0].numpy(), rtol=1e-6)
    np.testing.assert_allclose([r["iou"] for r in rows], monai_iou[:, 0].numpy(), rtol=1e-6)
    assert "hd" not in rows[0] and "hd" not in m.compute()


@pytest.mark.filterwarnings("ignore:.*always_return_as_numpy:FutureWarning")  # MONAI-internal
def test_hausdorff_equals_monai():
    from monai.metrics import compute_hausdorff_distance

    pred, true = random_set(30, size=40, seed=5)
    true[1, :, :3] = True  # a mask touching the image border
    pred[1, :, :5] = True
    m = metric(30)
    m.update(pred, true, torch.arange(30))
    rows = m.per_image()
    both = [i for i, r in enumerate(rows) if r["pred_area"] and r["true_area"]]
    assert len(both) >= 8
    p, t = pred[both, None].float(), true[both, None].float()
    monai_hd = compute_hausdorff_distance(p, t, include_background=True)[:, 0]
    monai_hd95 = compute_hausdorff_distance(p, t, include_background=True, percentile=95)[:, 0]
    np.testing.assert_allclose([rows[i]["hd"] for i in both], monai_hd.numpy(), rtol=1e-6)
    np.testing.assert_allclose([rows[i]["hd95"] for i in both], monai_hd95.numpy(), rtol=1e-6)
    assert sum(not math.isnan(r["hd"]) for r in rows) == len(both) == m.compute()["hd_n"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_inputs_give_the_cpu_results():
    pred, true = random_set(20, seed=4)
    on_cpu, on_gpu = metric(20), metric(20).to("cuda")
    on_cpu.update(pred, true, torch.arange(20))
    on_gpu.update(pred.cuda(), true.cuda(), torch.arange(20).cuda())
    assert on_gpu.tp[0].device.type == "cuda"
    assert_same(on_cpu.compute(), on_gpu.compute())
    for a, b in zip(on_cpu.per_image(), on_gpu.per_image(), strict=True):
        assert_same(a, b)


def test_library_empty_mask_behaviours_are_pinned():
    """How the libraries score empty masks (MONAI's Dice NaN for an empty ground truth unless
    ignore_empty=False, torchmetrics' NaN for empty/empty, smp's zero_division); a failure here
    means an upgrade changed them."""
    from monai.metrics import compute_dice
    from segmentation_models_pytorch import metrics as smp_metrics
    from torchmetrics.functional.segmentation import dice_score

    z = torch.zeros(1, 1, 4, 4)
    fp = z.clone()
    fp[0, 0, 1, 1] = 1
    assert torch.isnan(compute_dice(z, z, include_background=True)).all()
    assert torch.isnan(compute_dice(fp, z, include_background=True)).all()  # FP: NaN too
    assert compute_dice(z, z, include_background=True, ignore_empty=False).item() == 1.0
    assert compute_dice(fp, z, include_background=True, ignore_empty=False).item() == 0.0
    zi, fpi = z[:, 0].long(), fp[:, 0].long()
    tm = {"num_classes": 2, "include_background": False, "input_format": "index"}
    assert torch.isnan(dice_score(zi, zi, **tm)).all()
    assert dice_score(fpi, zi, **tm).item() == 0.0
    stats = smp_metrics.get_stats(z.long(), z.long(), mode="binary")
    assert smp_metrics.f1_score(*stats).item() == 1.0  # smp 0.6 defaults zero_division=1.0
    assert smp_metrics.f1_score(*stats, zero_division=0.0).item() == 0.0
    with pytest.warns(UserWarning, match="Zero division"):
        assert smp_metrics.iou_score(*stats, zero_division="warn").item() == 0.0


def _ddp_worker(rank: int, world: int, store: str, out: str) -> None:
    """One of `world` gloo processes: its DistributedSampler share (with padding), batch 3."""
    from torch.utils.data import DistributedSampler

    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=world
    )
    try:
        n = 23  # odd: DistributedSampler repeats an item to even out the ranks
        pred, true = random_set(n, seed=11)
        sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=0)
        m = metric(n, patients=[f"p{i // 5}" for i in range(n)])
        for chunk in torch.tensor(list(sampler)).split(3):
            m.update(pred[chunk], true[chunk], chunk)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the one padded repeat must not warn
            result = {"values": m.compute(), "rows": m.per_image(), "patients": m.per_patient()}
        if rank == 0:
            torch.save(result, out)
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    n = 23
    pred, true = random_set(n, seed=11)
    single = metric(n, patients=[f"p{i // 5}" for i in range(n)])
    single.update(pred, true, torch.arange(n))
    out = tmp_path / "ddp.pt"
    torch.multiprocessing.spawn(
        _ddp_worker, args=(2, str(tmp_path / "store"), str(out)), nprocs=2, join=True
    )
    ddp = torch.load(out, weights_only=False)
    assert ddp["values"]["n_images"] == n and ddp["values"]["hd_n"] > 0
    assert_same(single.compute(), ddp["values"])
    for a, b in zip(single.per_image(), ddp["rows"], strict=True):
        assert_same(a, b)
    assert single.per_patient() == ddp["patients"]
