"""SegmentationMetrics and metric_functions against hand-made masks with known answers
(agreement with MONAI and across processes: test_metrics_reference.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from metric_fixtures import assert_same, masks, metric, random_set

from lightning_modules.diagnosis import diagnose
from lightning_modules.metric_functions import hausdorff
from lightning_modules.metrics import SegmentationMetrics


def test_hand_computed_4x4_image():
    true = masks((4, 4), [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)])  # 5 px
    pred = masks((4, 4), [(0, 0), (0, 1), (1, 1), (3, 3)])  # TP 3, FP 1, FN 2, TN 10
    m = metric(1)
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
    blob = masks((8, 8), [(2, 2), (2, 3), (3, 2), (3, 3)])
    fp = masks((8, 8), [(6, 6)])
    full = torch.ones(8, 8, dtype=torch.bool)
    pred = torch.stack([z, z, fp, full])
    true = torch.stack([z, blob, z, full])
    m = metric(4)
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


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kaggle_decomposition_identity(seed):
    pred, true = random_set(40, seed=seed)
    m = metric(40, hausdorff=False)
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
    pred = masks((8, 8), [(1, 1)])
    true = masks((8, 8), [(1, 1), (1, 5)])
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


def test_per_volume_dice_two_patients():
    z = torch.zeros(4, 4, dtype=torch.bool)
    a1 = masks((4, 4), [(0, 0), (0, 1), (1, 0), (1, 1)])  # patient a: slice 1 perfect (4 px)
    a2 = masks((4, 4), [(3, 3), (3, 2)])  # slice 2: 2 FP on an empty slice
    b_true = masks((4, 4), [(0, 0), (0, 1), (0, 2), (0, 3)])
    b_pred = masks((4, 4), [(0, 0)])  # patient b: TP 1, FN 3
    c_pred = masks((4, 4), [(2, 2)])  # patient c: no pneumothorax, one false pixel
    pred, true = torch.stack([a1, a2, b_pred, c_pred]), torch.stack([a1, z, b_true, z])
    m = metric(4, patients=["a", "a", "b", "c"])
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
    pred, true = random_set(20, seed=9)
    m = metric(20, patients=[f"p{i // 4}" for i in range(20)])
    m.update(torch.zeros_like(pred), true, torch.arange(20))
    values = m.compute()
    assert values["n_positive"] == 10
    for key in ("dice", "dsc1", "iou", "sen", "pa1", "dice_volume", "dice_global", "diag_sen"):
        assert values[key] == 0.0, key
    assert values["dice_kaggle"] == pytest.approx(0.5)  # what the Kaggle mean would give it
    assert values["empty_fp_rate"] == 0.0 and values["diag_spec"] == 1.0


def test_one_batch_many_batches_and_shuffled_order_agree():
    n = 30
    pred, true = random_set(n, seed=7)
    patients = [f"p{i // 4}" for i in range(n)]
    whole = metric(n, patients=patients)
    whole.update(pred, true, torch.arange(n))
    batched = metric(n, patients=patients)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(1))
    for chunk in order.split(7):
        batched.update(pred[chunk].long(), true[chunk].long(), chunk)  # int masks too
    assert_same(whole.compute(), batched.compute())
    for a, b in zip(whole.per_image(), batched.per_image(), strict=True):
        assert_same(a, b)
    assert whole.per_patient() == batched.per_patient()
    assert [r["id"] for r in batched.per_image()] == [f"img{i}" for i in range(n)]


def test_repeated_indices_counted_once():
    pred, true = random_set(10, seed=2)
    once = metric(10)
    once.update(pred, true, torch.arange(10))
    twice = metric(10)
    twice.update(pred, true, torch.arange(10))
    twice.update(pred[:3], true[:3], torch.arange(3))
    with pytest.warns(UserWarning, match="reset"):
        values = twice.compute()
    assert_same(once.compute(), values)
    assert values["n_images"] == 10
    twice.reset()
    twice.update(pred, true, torch.arange(10))
    assert_same(once.compute(), twice.compute())


def test_diagnosis_area_rule_below_at_above_threshold():
    # 64 px at 128 x 128 is 4 px on this 32 x 32 grid: 3 and 4 are negative, 5 positive.
    def area(k):
        return masks((32, 32), [(0, c) for c in range(k)])

    pred = torch.stack([area(3), area(4), area(5), area(9), area(0), area(5)])
    true = torch.stack([area(6), area(6), area(6), area(0), area(0), area(2)])
    m = metric(6, min_area=64, reference_size=128)
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


def test_bad_input_is_named():
    m = metric(4)
    with pytest.raises(ValueError, match="B x H x W"):
        m.update(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4), torch.arange(2))
    m.update(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4), torch.tensor([7]))
    with pytest.raises(IndexError, match="7 outside the 4 items"):
        m.compute()
    with pytest.raises(ValueError, match="3 ids but 2 patients"):
        SegmentationMetrics(ids=["a", "b", "c"], patients=["p", "q"])
