"""SegmentationMetrics and metric_functions against hand-made masks with known answers.

MONAI is imported inside the tests that compare with it, so the processes the distributed
test spawns (which import this module) start faster.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from lightning_modules.diagnosis import diagnose
from lightning_modules.metric_functions import hausdorff
from lightning_modules.metrics import SegmentationMetrics


def _metric(n: int, patients=None, **kwargs) -> SegmentationMetrics:
    ids = [f"img{i}" for i in range(n)]
    return SegmentationMetrics(ids=ids, patients=patients or ids, **kwargs)


def _masks(shape, pixels) -> torch.Tensor:
    m = torch.zeros(shape, dtype=torch.bool)
    for r, c in pixels:
        m[r, c] = True
    return m


def _random_set(n: int, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
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


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], float) and math.isnan(a[k]):
            assert isinstance(b[k], float) and math.isnan(b[k]), k
        elif isinstance(a[k], float):
            assert a[k] == pytest.approx(b[k], rel=1e-12, abs=1e-12), k
        else:
            assert a[k] == b[k], k


def test_hand_computed_4x4_image():
    true = _masks((4, 4), [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)])  # 5 px
    pred = _masks((4, 4), [(0, 0), (0, 1), (1, 1), (3, 3)])  # TP 3, FP 1, FN 2, TN 10
    m = _metric(1)
    m.update(pred[None], true[None], torch.tensor([0]))
    row = m.per_image()[0]
    assert (row["tp"], row["fp"], row["fn"], row["tn"]) == (3, 1, 2, 10)
    assert row["acc"] == pytest.approx(13 / 16)
    assert row["dice"] == pytest.approx(6 / 9)
    assert row["iou"] == pytest.approx(3 / 6)
    assert row["sen"] == pytest.approx(3 / 5)
    assert row["spec"] == pytest.approx(10 / 11)
    assert row["mpa"] == pytest.approx((3 / 5 + 10 / 11) / 2)
    assert row["dsc"] == pytest.approx((20 / 23 + 6 / 9) / 2)
    assert (row["pred_area"], row["true_area"]) == (4, 5)
    values = m.compute()
    assert values["dice"] == values["dsc1"] == values["dice_global"] == pytest.approx(6 / 9)
    assert values["pa1"] == values["sen"] == pytest.approx(0.6)
    assert math.isnan(values["dice_sd"])  # one image: no sample sd


def test_empty_conventions():
    z = torch.zeros(8, 8, dtype=torch.bool)
    blob = _masks((8, 8), [(2, 2), (2, 3), (3, 2), (3, 3)])
    fp = _masks((8, 8), [(6, 6)])
    full = torch.ones(8, 8, dtype=torch.bool)
    pred = torch.stack([z, z, fp, full])
    true = torch.stack([z, blob, z, full])
    m = _metric(4)
    m.update(pred, true, torch.arange(4))
    empty_empty, missed, false_pos, covered = m.per_image()
    assert empty_empty["dice"] == empty_empty["iou"] == empty_empty["dsc"] == 1.0
    assert math.isnan(empty_empty["sen"]) and empty_empty["spec"] == empty_empty["mpa"] == 1.0
    assert missed["dice"] == missed["iou"] == missed["sen"] == 0.0
    assert missed["spec"] == 1.0 and missed["mpa"] == 0.5
    assert false_pos["dice"] == false_pos["iou"] == 0.0 and math.isnan(false_pos["sen"])
    assert false_pos["spec"] == false_pos["mpa"] == pytest.approx(63 / 64)
    assert false_pos["dsc"] == pytest.approx((126 / 127) / 2)
    assert math.isnan(covered["spec"]) and covered["mpa"] == covered["dice"] == 1.0
    for row in (empty_empty, missed, false_pos):
        assert math.isnan(row["hd"]) and math.isnan(row["hd95"])
    assert covered["hd"] == 0.0  # identical non-empty masks
    values = m.compute()
    # headline overlap metrics over the two images with pneumothorax: missed 0, covered 1
    assert values["dice"] == values["dsc1"] == values["iou"] == pytest.approx(0.5)
    assert values["sen"] == pytest.approx(0.5)
    # DSC: mean of the background and PTX Dice; missed: (120 / 124 + 0) / 2, covered: 1
    assert values["dsc"] == pytest.approx(((120 / 124 + 0) / 2 + 1) / 2)
    assert values["mpa"] == pytest.approx((0.5 + 1) / 2)
    assert values["dice_kaggle"] == pytest.approx((1 + 0 + 0 + 1) / 4)  # all four, SIIM's
    # accuracy and specificity over every image (the covered image has no specificity)
    assert values["spec"] == pytest.approx((1 + 1 + 63 / 64) / 3)
    assert values["acc"] == pytest.approx((1 + 60 / 64 + 63 / 64 + 1) / 4)
    # the two images without pneumothorax: 1 false pixel is below the paper's 50 px
    assert values["empty_fp_rate"] == 0.0 and values["neg_pred_area"] == pytest.approx(0.5)
    assert (values["n_images"], values["n_positive"], values["n_negative"]) == (4, 2, 2)
    assert values["hd_n"] == 1 and values["hd_max"] == 0.0
    skipped = [values[f"hd_skipped_{k}_empty"] for k in ("pred", "true", "both")]
    assert skipped == [1, 1, 1]


def test_per_image_dice_and_iou_match_monai_without_ignore_empty():
    from monai.metrics import compute_dice, compute_iou

    pred, true = _random_set(24, seed=3)
    m = _metric(24, hausdorff=False)
    m.update(pred, true, torch.arange(24))
    rows = m.per_image()
    one_hot = (pred[:, None].float(), true[:, None].float())
    monai_dice = compute_dice(*one_hot, include_background=True, ignore_empty=False)
    monai_iou = compute_iou(*one_hot, include_background=True, ignore_empty=False)
    np.testing.assert_allclose([r["dice"] for r in rows], monai_dice[:, 0].numpy(), rtol=1e-6)
    np.testing.assert_allclose([r["iou"] for r in rows], monai_iou[:, 0].numpy(), rtol=1e-6)
    assert "hd" not in rows[0] and "hd" not in m.compute()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kaggle_decomposition_identity(seed):
    pred, true = _random_set(40, seed=seed)
    m = _metric(40, hausdorff=False)
    m.update(pred, true, torch.arange(40))
    values, rows = m.compute(), m.per_image()
    negatives = [r for r in rows if r["true_area"] == 0]
    pi = values["n_positive"] / values["n_images"]
    empty_share = sum(r["pred_area"] == 0 for r in negatives) / len(negatives)
    assert 0 < pi < 1 and 0 < empty_share < 1  # both terms really contribute
    expected = pi * values["dice"] + (1 - pi) * empty_share  # dice: over the positives
    assert values["dice_kaggle"] == pytest.approx(expected, rel=1e-12)
    assert values["dice_kaggle"] == pytest.approx(np.mean([r["dice"] for r in rows]))
    tp, fp, fn = (sum(r[k] for r in rows) for k in ("tp", "fp", "fn"))
    assert values["dice_global"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert values["iou_global"] == pytest.approx(tp / (tp + fp + fn))


def test_hausdorff_hand_computed_and_hd95_convention():
    pred = _masks((8, 8), [(1, 1)])
    true = _masks((8, 8), [(1, 1), (1, 5)])
    hd, hd95 = hausdorff(pred.numpy(), true.numpy())
    assert hd == 4.0
    # MONAI: per-direction percentile, then max: max(q95([0]), q95([0, 4])) = 3.8.
    # medpy would pool first: q95([0, 0, 4]) = 3.6.
    assert hd95 == pytest.approx(3.8)
    square = torch.zeros(12, 12, dtype=torch.bool)
    square[2:7, 2:7] = True
    assert hausdorff(square.numpy(), square.roll(3, dims=1).numpy()) == (3.0, 3.0)
    with pytest.raises(ValueError, match="non-empty"):
        hausdorff(pred.numpy(), np.zeros((8, 8), bool))


@pytest.mark.filterwarnings("ignore:.*always_return_as_numpy:FutureWarning")  # MONAI-internal
def test_hausdorff_equals_monai():
    from monai.metrics import compute_hausdorff_distance

    pred, true = _random_set(30, size=40, seed=5)
    true[1, :, :3] = True  # a mask touching the image border
    pred[1, :, :5] = True
    m = _metric(30)
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


def test_per_volume_dice_two_patients():
    z = torch.zeros(4, 4, dtype=torch.bool)
    a1 = _masks((4, 4), [(0, 0), (0, 1), (1, 0), (1, 1)])  # patient a: slice 1 perfect (4 px)
    a2 = _masks((4, 4), [(3, 3), (3, 2)])  # slice 2: 2 FP on an empty slice
    b_true = _masks((4, 4), [(0, 0), (0, 1), (0, 2), (0, 3)])
    b_pred = _masks((4, 4), [(0, 0)])  # patient b: TP 1, FN 3
    c_pred = _masks((4, 4), [(2, 2)])  # patient c: no pneumothorax, one false pixel
    pred, true = torch.stack([a1, a2, b_pred, c_pred]), torch.stack([a1, z, b_true, z])
    m = _metric(4, patients=["a", "a", "b", "c"])
    m.update(pred, true, torch.arange(4))
    a, b, c = m.per_patient()
    assert a == {
        "patient": "a",
        "n_images": 2,
        "dice": 0.8,
        "iou": 4 / 6,
        "pred_area": 6,
        "true_area": 4,
    }
    assert b["patient"] == "b" and b["dice"] == pytest.approx(2 / 5) and b["iou"] == 0.25
    assert (c["dice"], c["true_area"]) == (0.0, 0)
    values = m.compute()
    # 3-D Dice over the patients with pneumothorax; c (none) is not in the mean
    assert values["dice_volume"] == pytest.approx((0.8 + 0.4) / 2)
    assert values["dice_volume_sd"] == pytest.approx(np.std([0.8, 0.4], ddof=1))
    assert values["dice"] == pytest.approx((1 + 0.4) / 2)  # per slice, the 2 positive slices
    assert (values["n_patients"], values["n_patients_positive"]) == (3, 2)


def test_a_network_that_predicts_nothing_scores_zero_on_every_headline():
    pred, true = _random_set(20, seed=9)
    m = _metric(20, patients=[f"p{i // 4}" for i in range(20)])
    m.update(torch.zeros_like(pred), true, torch.arange(20))
    values = m.compute()
    assert values["n_positive"] == 10
    for key in ("dice", "dsc1", "iou", "sen", "pa1", "dice_volume", "dice_global", "diag_sen"):
        assert values[key] == 0.0, key
    assert values["dice_kaggle"] == pytest.approx(0.5)  # what the Kaggle mean would give it
    assert values["empty_fp_rate"] == 0.0 and values["diag_spec"] == 1.0


def test_one_batch_many_batches_and_shuffled_order_agree():
    n = 30
    pred, true = _random_set(n, seed=7)
    patients = [f"p{i // 4}" for i in range(n)]
    whole = _metric(n, patients=patients)
    whole.update(pred, true, torch.arange(n))
    batched = _metric(n, patients=patients)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(1))
    for chunk in order.split(7):
        batched.update(pred[chunk].long(), true[chunk].long(), chunk)  # int masks too
    _same(whole.compute(), batched.compute())
    for a, b in zip(whole.per_image(), batched.per_image(), strict=True):
        _same(a, b)
    assert whole.per_patient() == batched.per_patient()
    assert [r["id"] for r in batched.per_image()] == [f"img{i}" for i in range(n)]


def test_repeated_indices_counted_once():
    pred, true = _random_set(10, seed=2)
    once = _metric(10)
    once.update(pred, true, torch.arange(10))
    twice = _metric(10)
    twice.update(pred, true, torch.arange(10))
    twice.update(pred[:3], true[:3], torch.arange(3))
    with pytest.warns(UserWarning, match="reset"):
        values = twice.compute()
    _same(once.compute(), values)
    assert values["n_images"] == 10
    twice.reset()
    twice.update(pred, true, torch.arange(10))
    _same(once.compute(), twice.compute())


def test_diagnosis_area_rule_below_at_above_threshold():
    # 64 px at 128 x 128 is 4 px on this 32 x 32 grid: 3 and 4 are negative, 5 positive.
    def area(k):
        return _masks((32, 32), [(0, c) for c in range(k)])

    pred = torch.stack([area(3), area(4), area(5), area(9), area(0), area(5)])
    true = torch.stack([area(6), area(6), area(6), area(0), area(0), area(2)])
    m = _metric(6, min_area=64, reference_size=128)
    m.update(pred, true, torch.arange(6))
    calls = [r["pred_ptx"] for r in m.per_image()]
    assert calls == [False, False, True, True, False, True]
    assert calls == diagnose(pred, min_area=64, reference_size=128).tolist()
    values = m.compute()  # calls: TP 2, FN 2, FP 1, TN 1
    assert values["diag_acc"] == pytest.approx(3 / 6)
    assert values["diag_sen"] == pytest.approx(2 / 4)
    assert values["diag_spec"] == pytest.approx(1 / 2)
    assert values["diag_ppv"] == pytest.approx(2 / 3)
    assert values["diag_npv"] == pytest.approx(1 / 3)
    assert values["diag_f1"] == pytest.approx(4 / 7)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_inputs_give_the_cpu_results():
    pred, true = _random_set(20, seed=4)
    on_cpu, on_gpu = _metric(20), _metric(20).to("cuda")
    on_cpu.update(pred, true, torch.arange(20))
    on_gpu.update(pred.cuda(), true.cuda(), torch.arange(20).cuda())
    assert on_gpu.tp[0].device.type == "cuda"
    _same(on_cpu.compute(), on_gpu.compute())
    for a, b in zip(on_cpu.per_image(), on_gpu.per_image(), strict=True):
        _same(a, b)


def test_bad_input_is_named():
    m = _metric(4)
    with pytest.raises(ValueError, match="B x H x W"):
        m.update(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4), torch.arange(2))
    m.update(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4), torch.tensor([7]))
    with pytest.raises(IndexError, match="7 outside the 4 items"):
        m.compute()
    with pytest.raises(ValueError, match="3 ids but 2 patients"):
        SegmentationMetrics(ids=["a", "b", "c"], patients=["p", "q"])


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
        pred, true = _random_set(n, seed=11)
        sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=0)
        m = _metric(n, patients=[f"p{i // 5}" for i in range(n)])
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
    pred, true = _random_set(n, seed=11)
    single = _metric(n, patients=[f"p{i // 5}" for i in range(n)])
    single.update(pred, true, torch.arange(n))
    out = tmp_path / "ddp.pt"
    torch.multiprocessing.spawn(
        _ddp_worker, args=(2, str(tmp_path / "store"), str(out)), nprocs=2, join=True
    )
    ddp = torch.load(out, weights_only=False)
    assert ddp["values"]["n_images"] == n and ddp["values"]["hd_n"] > 0
    _same(single.compute(), ddp["values"])
    for a, b in zip(single.per_image(), ddp["rows"], strict=True):
        _same(a, b)
    assert single.per_patient() == ddp["patients"]
