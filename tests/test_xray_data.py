"""XRayDataModule on phantom files: the item contract, layouts, splits and the cache."""

import os
import shutil

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image
from xray_fixtures import xray_phantom

from datamodules import XRayDataModule
from datamodules.layouts.privacy import anonymous_key, image_key
from datamodules.phantom import cli
from datamodules.readers.rle import read_rle_csv, rle_encode, rle_encode_standard

PHANTOM = {"patients": 24, "size": 128, "seed": 3, "layout": "both"}


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return xray_phantom(tmp_path_factory, **PHANTOM)


def _dm(data_dir, cache, **kwargs):
    kwargs.setdefault("image_size", 64)
    dm = XRayDataModule(data_dir=str(data_dir), cache_dir=str(cache), **kwargs)
    dm.setup("fit")
    return dm


def _by_id(dm):
    """id -> (image C x H x W, mask H x W) over all three subsets, without augmentation."""
    out = {}
    for ds in (dm.train_dataset, dm.val_dataset, dm.test_dataset):
        flip, ds.hflip = ds.hflip, False
        for i in range(len(ds)):
            item = ds[i]
            out[item["id"]] = (item["image"], item["mask"])
        ds.hflip = flip
    return out


def test_item_contract(phantom, tmp_path):
    dm = _dm(phantom / "siim", tmp_path)
    files = sorted((phantom / "siim" / "dicom-images-train").rglob("*.dcm"))
    assert dm.report["images_read"] == len(files) > PHANTOM["patients"]  # some have 2-3 images
    assert sum(dm.report[s]["images"] for s in ("train", "val", "test")) == len(files)
    assert dm.native_size == 1024 and dm.in_channels == 3 and dm.hflip
    item = dm.val_dataset[0]
    assert set(item) == {"image", "mask", "index", "id", "patient"}
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 64, 64)
    assert torch.equal(item["image"][0], item["image"][2])  # grey replicated
    assert item["image"].min() >= 0.0 and item["image"].max() <= 1.0
    assert item["image"].std() > 0.1  # a radiograph, not a constant
    assert item["mask"].dtype == torch.uint8 and item["mask"].shape == (64, 64)
    assert set(item["mask"].unique().tolist()) <= {0, 1}
    assert item["id"] in {image_key(f.stem) for f in files}  # the key of the SOP Instance UID
    positives = dm.train_dataset.positive
    assert 0.3 < positives.mean() < 0.7  # about half the images have pneumothorax
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (8, 3, 64, 64) and batch["mask"].shape == (8, 64, 64)


def test_flips_only_on_train(phantom, tmp_path):
    dm = _dm(phantom / "siim", tmp_path)
    train = dm.train_dataset
    index = int(np.flatnonzero(train.positive)[0])  # a mask on one side: not symmetric
    train.hflip = False
    plain = train[index]
    train.hflip = True
    torch.manual_seed(0)
    draws = [train[index] for _ in range(16)]
    flipped = [d for d in draws if not torch.equal(d["mask"], plain["mask"])]
    assert 0 < len(flipped) < 16
    for d in flipped:
        assert torch.equal(d["mask"], plain["mask"].flip(-1))
        assert torch.equal(d["image"], plain["image"].flip(-1))
    for ds in (dm.val_dataset, dm.test_dataset):
        first = ds[0]
        assert all(torch.equal(ds[0]["image"], first["image"]) for _ in range(8))


def test_split_is_stratified_and_patient_disjoint(phantom, tmp_path):
    dm = _dm(phantom / "siim", tmp_path)
    ids = {
        pydicom.dcmread(f, stop_before_pixels=True).PatientID
        for f in (phantom / "siim" / "dicom-images-train").rglob("*.dcm")
    }
    keys = {anonymous_key(i) for i in ids}  # grouped by the DICOM's PatientID
    subsets = {s: set(getattr(dm, f"{s}_dataset").patients) for s in ("train", "val", "test")}
    assert set().union(*subsets.values()) == keys
    assert not (subsets["train"] & subsets["val"] or subsets["train"] & subsets["test"])
    assert not subsets["val"] & subsets["test"]
    counts = [len(dm.split[s]) for s in ("train", "val", "test")]
    expected = [0.64 * 24, 0.16 * 24, 0.2 * 24]  # rounded within each of the two strata
    assert all(abs(c - e) <= 2 for c, e in zip(counts, expected, strict=True)), counts
    share = {s: getattr(dm, f"{s}_dataset").positive.mean() for s in subsets}
    overall = np.concatenate([getattr(dm, f"{s}_dataset").positive for s in subsets]).mean()
    for s in subsets:  # each subset keeps about the overall share of pneumothorax
        assert abs(share[s] - overall) < 0.25, share
    saved = dm.save_split(tmp_path / "split.json")
    again = _dm(phantom / "siim", tmp_path, split_file=str(saved), seed=99)
    assert again.split == dm.split


def test_png_layout_matches_siim(phantom, tmp_path):
    siim, png = _by_id(_dm(phantom / "siim", tmp_path)), _by_id(_dm(phantom / "png", tmp_path))
    assert siim.keys() == png.keys()
    for image_id, (image, mask) in png.items():
        assert torch.equal(mask, siim[image_id][1])  # RLE rows and mask PNG agree exactly
        assert (image - siim[image_id][0]).abs().mean() < 0.01  # JPEG vs lossless PNG


def test_stage2_csv_train_png_and_standard_rle(phantom, tmp_path):
    """The other SIIM variant: train_png/ + stage_2_train.csv, written in standard RLE."""
    root = tmp_path / "stage2"
    shutil.copytree(phantom / "png" / "images", root / "train_png")
    lines = ["ImageId,EncodedPixels"]
    for mask_file in sorted((phantom / "png" / "masks").glob("*.png")):
        encoded = rle_encode_standard(np.asarray(Image.open(mask_file)) > 0)
        lines.append(f"{mask_file.stem},{encoded}")
    (root / "stage_2_train.csv").write_text("\n".join(lines) + "\n")
    stage2, png = _by_id(_dm(root, tmp_path)), _by_id(_dm(phantom / "png", tmp_path))
    assert stage2.keys() == png.keys()
    for image_id, (image, mask) in png.items():
        assert torch.equal(mask, stage2[image_id][1]) and torch.equal(image, stage2[image_id][0])


def test_cache_reuse_and_invalidation(phantom, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(phantom / "siim", root)
    first = _dm(root, tmp_path)
    n = first.report["images_read"]
    assert first.report["cases_decoded"] == n
    assert _dm(root, tmp_path).report["cases_decoded"] == 0  # second setup decodes nothing
    one = sorted(root.rglob("*.dcm"))[0]
    os.utime(one, ns=(one.stat().st_atime_ns, one.stat().st_mtime_ns + 10**9))
    touched = _dm(root, tmp_path)
    assert (touched.report["cases_decoded"], touched.report["cases_from_cache"]) == (1, n - 1)
    # edit one RLE row: only that image is rebuilt, and its mask follows the edit
    csv = root / "train-rle.csv"
    rows = read_rle_csv(csv)
    target = next(i for i, r in rows.items() if r[0].encoded != "-1")
    square = np.zeros((PHANTOM["size"],) * 2, np.uint8)
    square[40:72, 10:42] = 1
    lines = csv.read_text().splitlines()
    kept = [ln for k, ln in enumerate(lines, 1) if k not in {r.line for r in rows[target]}]
    csv.write_text("\n".join([*kept, f"{target}, {rle_encode(square)}"]) + "\n")
    edited = _dm(root, tmp_path)
    assert edited.report["cases_decoded"] == 1
    np.testing.assert_array_equal(_by_id(edited)[image_key(target)][1].numpy(), square[::2, ::2])
    assert _dm(root, tmp_path, image_size=32).report["cases_decoded"] == n  # new settings


def test_default_phantom_is_generated_once(tmp_path):
    settings = {"patients": 6, "size": 96}
    dm = XRayDataModule(image_size=32, cache_dir=str(tmp_path), phantom=settings)
    dm.setup()
    assert dm.data_root == tmp_path / "phantom" / "xray-v2-seed0-layoutsiim-patients6-size96"
    assert (dm.data_root / "train-rle.csv").is_file() and (dm.data_root / ".complete").exists()
    again = XRayDataModule(image_size=32, cache_dir=str(tmp_path), phantom=settings)
    again.setup()
    assert again.report["cases_decoded"] == 0
    assert again.split == dm.split
    recorded = XRayDataModule(cache_dir=str(tmp_path), phantom={**settings, "version": 2})
    assert recorded.data_root == dm.data_root  # the version ptx fit records is this one
    with pytest.raises(ValueError, match="phantom version 1: this ptx draws version 2 of the"):
        XRayDataModule(cache_dir=str(tmp_path), phantom={**settings, "version": 1})


SIIM = ["--layout", "siim"]


def test_a_phantom_folder_of_an_older_version_is_read_with_a_warning(tmp_path, caplog):
    cli(["xray", "--out", str(tmp_path / "new"), "--patients", "2", "--size", "64"] + SIIM)
    assert (tmp_path / "new" / ".ptx-phantom").read_text() == "xray 2\n"
    shutil.copytree(tmp_path / "new", tmp_path / "old")
    (tmp_path / "old" / ".ptx-phantom").write_text("")  # as written before versions
    for name, warned in (("new", False), ("old", True)):
        caplog.clear()
        XRayDataModule(data_dir=str(tmp_path / name), cache_dir=str(tmp_path)).prepare_data()
        older = [r.message for r in caplog.records if "version-1 xray phantom" in r.message]
        assert bool(older) is warned, caplog.text


def test_png_masks_are_decoded_once_into_the_cache(tmp_path, monkeypatch):
    import datamodules.xray as xray_module

    root = tmp_path / "png"
    rng = np.random.default_rng(0)
    for n in range(6):
        for folder in ("images", "masks"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        picture = rng.integers(0, 255, (16, 16), dtype=np.uint8)
        Image.fromarray(picture).save(root / "images" / f"i{n}.png")
        mask = np.zeros((16, 16), np.uint8)
        mask[:4, :4] = 255 * (n % 2)
        Image.fromarray(mask).save(root / "masks" / f"i{n}.png")
    calls = []
    original = xray_module.read_mask_png
    monkeypatch.setattr(xray_module, "read_mask_png", lambda p: calls.append(p) or original(p))
    kwargs = {"data_dir": str(root), "cache_dir": str(tmp_path / "c"), "image_size": 16}
    first = XRayDataModule(split_fractions=(1, 1, 1), **kwargs)
    first.setup()
    assert len(calls) == 6  # decoded once each, while filling the cache
    second = XRayDataModule(split_fractions=(1, 1, 1), **kwargs)
    second.setup()
    assert len(calls) == 6 and second.report["cases_from_cache"] == 6  # none read again
    assert second.split == first.split  # labels from the cache: the same stratified split
    positives = sum(
        int(ds.positive.sum())
        for ds in (second.train_dataset, second.val_dataset, second.test_dataset)
    )
    assert positives == 3
