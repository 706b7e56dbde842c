"""The chest X-ray phantom: real formats, label statistics, picture-mask agreement, difficulty."""

import numpy as np
import pydicom
import pytest
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from PIL import Image
from pydicom.uid import JPEGBaseline8Bit
from scipy import ndimage
from xray_fixtures import xray_phantom

from datamodules import XRayDataModule
from datamodules.phantom import cli
from datamodules.phantom.xray import generate_xray_phantom
from datamodules.phantom.xray_anatomy import (
    Instance,
    collapsed_coords,
    grid,
    instance_mask,
    lung_level,
    sample_instances,
)
from datamodules.phantom.xray_render import lung_attenuation, render_radiograph, sample_chest
from datamodules.readers.rle import decode_instances, read_rle_csv

PHANTOM = {"patients": 24, "size": 128, "seed": 3, "layout": "both"}
LEARN_STEPS, LEARN_LR = 240, 2e-3  # ~1-2 min on 2 idle CPU cores at 64 x 64, batch 16


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return xray_phantom(tmp_path_factory, **PHANTOM)


def _masks(root, size):
    """Per image id: the list of instance masks from train-rle.csv."""
    rows = read_rle_csv(root / "train-rle.csv")
    return {
        i: [decode_instances([r], size, size, "relative", "csv") for r in rs if r.encoded != "-1"]
        for i, rs in rows.items()
    }


def test_siim_layout_and_dicom_header(phantom):
    siim = phantom / "siim"
    assert (siim / "train-rle.csv").read_text().splitlines()[0] == "ImageId, EncodedPixels"
    files = sorted((siim / "dicom-images-train").rglob("*.dcm"))
    assert files and all(len(f.relative_to(siim).parts) == 4 for f in files)  # study/series/sop
    assert {f.stem for f in files} == set(read_rle_csv(siim / "train-rle.csv"))
    ds = pydicom.dcmread(files[0])
    assert ds.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    assert ds.SOPInstanceUID == files[0].stem and ds.StudyInstanceUID == files[0].parts[-3]
    assert (ds.Modality, ds.PhotometricInterpretation, ds.BitsStored) == ("CR", "MONOCHROME2", 8)
    assert (ds.Rows, ds.Columns) == (128, 128) and ds.LossyImageCompression == "01"
    assert "^" in str(ds.PatientName) and ds.PatientID.startswith("MRN")
    assert len(ds.PatientBirthDate) == 8 and ds.AccessionNumber
    png = np.asarray(Image.open(phantom / "png" / "images" / f"{files[0].stem}.png"), float)
    error = np.abs(ds.pixel_array.astype(float) - png)  # lossy JPEG of the same picture
    assert 0 < error.mean() < 3 and error.max() < 40


def test_labels_ratio_instances_and_patients(phantom):
    masks = _masks(phantom / "siim", 128)
    n = len(masks)
    positive = [i for i, m in masks.items() if m]
    assert len(positive) == (n + 1) // 2  # the paper's ~1:1 ratio
    several = [m for m in masks.values() if len(m) > 1]
    overlapping = [m for m in several if (m[0] & m[1]).any()]
    assert several and overlapping and len(overlapping) < len(several) + 1
    for image_id, instances in masks.items():  # PNG mask = OR of the RLE instances
        png = np.asarray(Image.open(phantom / "png" / "masks" / f"{image_id}.png"))
        assert set(np.unique(png)) <= {0, 255}
        union = np.zeros((128, 128), np.uint8)
        for m in instances:
            union |= m
        np.testing.assert_array_equal(png // 255, union)
    areas = sorted(sum(m).clip(0, 1).mean() for m in masks.values() if m)
    assert areas[0] < 0.004 and areas[-1] > 0.03  # tiny to large, in image fractions
    ids = {
        pydicom.dcmread(f, stop_before_pixels=True).PatientID
        for f in (phantom / "siim" / "dicom-images-train").rglob("*.dcm")
    }
    assert len(ids) == PHANTOM["patients"] < n  # some patients have several images


def test_deterministic_by_seed(tmp_path):
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        generate_xray_phantom(tmp_path / name, patients=3, size=64, seed=seed, layout="siim")
    read = {k: (tmp_path / k / "train-rle.csv").read_text() for k in "abc"}
    assert read["a"] == read["b"] != read["c"]
    for f in (tmp_path / "a").rglob("*.dcm"):
        assert f.read_bytes() == (tmp_path / "b" / f.relative_to(tmp_path / "a")).read_bytes()


def test_cli_writes_one_layout(tmp_path):
    assert (
        cli(["xray", "--out", str(tmp_path), "--patients", "2", "--size", "64", "--layout", "png"])
        == 0
    )
    images = sorted((tmp_path / "images").glob("*.png"))
    assert images and len(images) == len(list((tmp_path / "masks").glob("*.png")))
    assert not (tmp_path / "train-rle.csv").exists()


def test_pneumothorax_is_darker_and_without_markings():
    chest = sample_chest(np.random.default_rng(7))
    lung = chest.lungs[1]
    inst = Instance(side=1, phi=0.6, width=0.8, depth=0.35)
    x, y = grid(256)
    flat = np.zeros(x.shape, np.float32)  # no overlying tissue variation
    with_ptx = lung_attenuation(x, y, lung, [inst], chest, flat, 256)
    without = lung_attenuation(x, y, lung, [], chest, flat, 256)
    mask = instance_mask(x, y, lung, inst)
    assert mask.mean() > 0.02
    inner = ndimage.binary_erosion(mask, iterations=6)  # 4 LoG sigmas off both edges
    assert inner.sum() > 200
    # more air: the parenchyma's 0.2 and its markings are gone
    assert -0.3 < (with_ptx - without)[inner].mean() < -0.15
    vessels = [np.abs(ndimage.gaussian_laplace(a, 1.5))[inner].mean() for a in (with_ptx, without)]
    assert vessels[0] < 0.2 * vessels[1]  # no vessel crosses the air
    image = render_radiograph(chest, [inst], 256, np.random.default_rng(1))
    plain = render_radiograph(chest, [], 256, np.random.default_rng(1))  # same exposure
    assert (image - plain)[inner].mean() < -0.15  # and the radiograph shows it darker


def test_union_of_instances_is_the_drawn_collapse():
    rng = np.random.default_rng(0)
    x, y = grid(128)
    for _ in range(20):
        chest = sample_chest(rng)
        instances = sample_instances(rng)
        for side, lung in chest.lungs.items():
            union = np.zeros(x.shape, bool)
            for inst in instances:
                if inst.side == side:
                    union |= instance_mask(x, y, lung, inst)
            cx, cy, _ = collapsed_coords(x, y, lung, instances)
            drawn = (lung_level(x, y, lung) > 0) & (lung_level(cx, cy, lung) <= 0)
            np.testing.assert_array_equal(union, drawn)


def test_min_depth_bounds_the_collapse_and_is_checked():
    rng = np.random.default_rng(0)
    default = [i.depth for _ in range(200) for i in sample_instances(rng)]
    deep = [i.depth for _ in range(200) for i in sample_instances(rng, min_depth=0.12)]
    assert 0.03 <= min(default) < 0.05 and max(default) <= 0.5  # tiny .. large by default
    assert 0.12 <= min(deep) < 0.14 and max(deep) <= 0.5
    assert np.median(deep) > 1.6 * np.median(default)  # log-uniform medians 0.245 vs 0.122
    with pytest.raises(ValueError, match="min_depth must be in"):
        sample_instances(rng, min_depth=0.5)


def test_a_bad_min_depth_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match=r"min_depth must be in \[0.03, 0.5\), got 0.01"):
        generate_xray_phantom(tmp_path / "out", patients=2, size=64, min_depth=0.01)
    assert not (tmp_path / "out").exists()


def test_not_solved_by_an_intensity_threshold(phantom):
    """Pneumothorax is darker only locally: no global threshold segments it."""
    masks = _masks(phantom / "siim", 128)
    images, truths = [], []
    for image_id, instances in masks.items():
        if instances:
            images.append(np.asarray(Image.open(phantom / "png" / "images" / f"{image_id}.png")))
            truths.append(sum(instances) > 0)
    images, truths = np.stack(images), np.stack(truths)
    best = 0.0
    for t in range(0, 256, 4):
        pred = images < t
        tp = (pred & truths).sum((1, 2))
        dice = 2 * tp / (pred.sum((1, 2)) + truths.sum((1, 2)))
        best = max(best, dice.mean())
    assert best < 0.2, best


@pytest.mark.slow
def test_small_unet_learns_the_phantom(tmp_path):
    """Learnable, not trivial: a U-Net trained ~1-2 CPU minutes beats chance by far."""
    torch.manual_seed(0)
    dm = XRayDataModule(
        image_size=64,
        in_channels=1,
        batch_size=16,
        cache_dir=str(tmp_path),
        phantom={"patients": 100, "size": 256},
    )
    dm.setup("fit")
    model = smp.Unet("resnet18", encoder_weights=None, in_channels=1, classes=1)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=LEARN_LR, total_steps=LEARN_STEPS, pct_start=0.2
    )
    step = 0
    while step < LEARN_STEPS:
        for batch in dm.train_dataloader():
            target = batch["mask"][:, None].float()
            logits = model(batch["image"])
            soft = torch.sigmoid(logits)
            dice_loss = 1 - (2 * (soft * target).sum() + 1) / (soft.sum() + target.sum() + 1)
            loss = F.binary_cross_entropy_with_logits(logits, target) + dice_loss
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            step += 1
            if step == LEARN_STEPS:
                break
    model.eval()
    items = [ds[i] for ds in (dm.val_dataset, dm.test_dataset) for i in range(len(ds))]
    images = torch.stack([it["image"] for it in items])
    truth = torch.stack([it["mask"] for it in items]).bool()
    with torch.no_grad():
        predicted = model(images)[:, 0] > 0
    positive = truth.flatten(1).any(1)
    tp = (predicted & truth).flatten(1).sum(1)
    dice = 2 * tp / (predicted.flatten(1).sum(1) + truth.flatten(1).sum(1)).clamp(min=1)
    area = truth.flatten(1).sum(1).float()
    chance = (2 * area / (area + truth[0].numel()))[positive].mean()  # predict everything
    dice_pos = dice[positive].mean().item()
    print(
        f"phantom U-Net: dice_pos {dice_pos:.3f} on {int(positive.sum())} images "
        f"(all-pixels chance {chance:.3f}) after {LEARN_STEPS} steps"
    )
    assert dice_pos > 0.2 and dice_pos > 10 * chance
