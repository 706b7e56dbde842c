import json
import re

import numpy as np
import pytest
import torch
from ct_fixtures import lps_affine, nifti_patient, write_nifti, write_series

from datamodules import CTDataModule
from datamodules.layouts.privacy import anonymous_key
from datamodules.phantom.ct import generate_ct_phantom
from datamodules.transforms import lung_window

SHAPE = (6, 5, 3)  # i (left), j (posterior), k (superior)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    out = tmp_path_factory.mktemp("ct") / "data"
    generate_ct_phantom(out, patients=4, size=40, slices=6, seed=1)
    return out


def _module(data_dir, tmp_path, **kwargs) -> CTDataModule:
    kwargs = {"image_size": None, "split_fractions": (1, 1, 1), **kwargs}
    return CTDataModule(data_dir=str(data_dir), cache_dir=str(tmp_path / "cache"), **kwargs)


def _plain_patients(root, n, shape=SHAPE):
    for index in range(n):
        hu = np.full(shape, -800, np.int16)
        nifti_patient(root / f"case{index:02d}", hu, np.zeros(shape, np.uint8))
    return root


def test_lung_window_values():
    hu = np.array([-2000, -1350, -600, 150, 400])
    np.testing.assert_allclose(lung_window(hu), [0, 0, 0.5, 1, 1])
    np.testing.assert_allclose(lung_window([-160, 40, 240], width=400, level=40), [0, 0.5, 1])
    assert lung_window(hu).dtype == np.float32


def test_contract_of_items_loaders_and_report(phantom, tmp_path):
    dm = _module(phantom, tmp_path, image_size=32, in_channels=3, batch_size=4)
    assert (dm.modality, dm.native_size, dm.default_fractions) == ("ct", 512, (50, 4, 6))
    dm.setup("fit")
    item = dm.train_dataset[0]
    assert {"image", "mask", "id", "patient", "index"} <= set(item)
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 32, 32)
    assert item["image"].min() >= 0 and item["image"].max() <= 1
    assert item["mask"].dtype == torch.uint8 and item["mask"].shape == (32, 32)
    datasets = (dm.train_dataset, dm.val_dataset, dm.test_dataset)
    ids = [i for ds in datasets for i in ds.ids]
    assert len(ids) == len(set(ids)) == 4 * 6  # every axial slice, once
    assert all(re.fullmatch(r"p[0-9a-f]{12}-z\d{4}", i) for i in ids)
    masks = torch.stack([ds[n]["mask"] for ds in datasets for n in range(len(ds))])
    assert set(masks.unique().tolist()) == {0, 1}
    assert sum(ds.positive.sum() for ds in datasets) == int(masks.flatten(1).any(1).sum())
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["mask"].shape == (4, 32, 32)
    assert dm.report["cases_decoded"] == 4
    assert sum(dm.report[s]["images"] for s in ("train", "val", "test")) == 24


def test_known_hounsfield_voxels_through_the_pipeline(tmp_path):
    hu = np.full(SHAPE, -1000, np.int16)
    hu[0:3, 0, 0] = [-1350, -600, 150]  # slice 0, top row, first three columns
    nifti_patient(tmp_path / "data" / "a", hu, np.zeros(SHAPE, np.uint8), axcodes="RAS")
    _plain_patients(tmp_path / "data", 2)
    dm = _module(tmp_path / "data", tmp_path)
    dm.setup()
    key = anonymous_key("a")
    dataset = next(
        ds for ds in (dm.train_dataset, dm.val_dataset, dm.test_dataset) if key in ds.patients
    )
    image = dataset[dataset.ids.index(f"{key}-z0000")]["image"][0]
    np.testing.assert_allclose(image[0, :3], [0.0, 0.5, 1.0], atol=1e-3)
    np.testing.assert_allclose(image[1:, :], lung_window(-1000), atol=1e-3)


def test_dicom_series_label_lands_on_its_voxels(tmp_path):
    """Shuffled slices and an asymmetric label: pneumothorax at the patient's left, anterior,
    top slice; the image has air exactly there and soft tissue elsewhere."""
    label = np.zeros(SHAPE, np.uint8)
    label[3:6, 0:2, 2] = 1
    label[5, 2, 2] = 1
    hu = np.where(label == 1, -1000, 40).astype(np.float32)
    folder = tmp_path / "data" / "dicom_patient"
    write_series(folder / "slices", hu.transpose(2, 1, 0), instance_numbers=[2, 3, 1])
    write_nifti(folder / "label.nii.gz", label, lps_affine())
    _plain_patients(tmp_path / "data", 2)
    dm = _module(tmp_path / "data", tmp_path)
    dm.setup()
    case = next(c for c in dm.discover_cases(tmp_path / "data") if c.meta["format"] == "dicom")
    arrays = dm.load_case(case)
    assert arrays.images.shape == (3, 5, 6)  # slices x rows (anterior first) x columns
    np.testing.assert_array_equal(arrays.masks, label.transpose(2, 1, 0))
    np.testing.assert_array_equal(arrays.masks == 1, arrays.images < 0.5)
    assert arrays.masks[2, 0, 5] == 1 and arrays.masks[2, 0, 0] == 0  # left is on the right


def test_patient_split_is_disjoint_seeded_and_50_4_6(tmp_path):
    _plain_patients(tmp_path / "data", 60, shape=(2, 2, 1))
    dm = _module(tmp_path / "data", tmp_path, split_fractions=None, seed=4)
    dm.setup()
    sizes = [len(dm.split[s]) for s in ("train", "val", "test")]
    assert sizes == [50, 4, 6]
    assert set(dm.train_dataset.patients) == set(dm.split["train"])
    assert not set(dm.train_dataset.patients) & set(
        dm.test_dataset.patients + dm.val_dataset.patients
    )
    other = _module(tmp_path / "data", tmp_path, split_fractions=None, seed=5)
    other.setup()
    assert other.split != dm.split
    reused = _module(
        tmp_path / "data", tmp_path, split_file=str(dm.save_split(tmp_path / "s.json"))
    )
    reused.setup()
    assert reused.split == dm.split and reused.test_dataset.ids == dm.test_dataset.ids


def test_cache_is_reused_and_rebuilt_for_exactly_what_changed(phantom, tmp_path):
    kwargs = {"image_size": 24, "split_fractions": (2, 1, 1)}
    first = _module(phantom, tmp_path, **kwargs)
    first.setup()
    assert (first.report["cases_decoded"], first.report["cases_from_cache"]) == (4, 0)
    second = _module(phantom, tmp_path, **kwargs)
    second.setup()
    assert (second.report["cases_decoded"], second.report["cases_from_cache"]) == (0, 4)
    indexes = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*.json")}
    folder = next(p for p in sorted(phantom.iterdir()) if not list(p.glob("image.nii*")))
    touched = next(p for p in folder.rglob("*") if p.is_file() and ".nii" not in p.name)
    touched.touch()
    third = _module(phantom, tmp_path, **kwargs)
    third.setup()
    assert third.report["cases_decoded"] == 1
    # the stale entry is rebuilt in place: same file, new content; the others untouched
    assert set((tmp_path / "cache").rglob("*.json")) == set(indexes)
    rebuilt = [p for p, t in indexes.items() if p.stat().st_mtime_ns != t]
    assert [json.loads(p.read_text())["patient"] for p in rebuilt] == [anonymous_key(folder.name)]
    other_window = _module(phantom, tmp_path, window_width=400, window_level=40, **kwargs)
    other_window.setup()
    assert other_window.report["cases_decoded"] == 4
