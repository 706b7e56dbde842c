import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from scipy import ndimage

from datamodules.ct import CTDataModule
from datamodules.layouts.privacy import anonymous_key
from datamodules.phantom.ct import generate_ct_phantom, simulate_patient
from datamodules.readers.dicom_series import series_files
from datamodules.readers.nifti import axial_slices
from datamodules.transforms import lung_window

SMALL = {"patients": 8, "size": 32, "slices": 8}
STEPS, LR = 150, 2e-3  # batches of 16 slices: about a minute on 2 idle CPU cores


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ct-phantom") / "data"
    generate_ct_phantom(out, seed=3, **SMALL)
    return out


def _dicom_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and ".nii" not in p.name]


def test_every_patient_reads_back_exactly_as_simulated(phantom):
    """DICOM (head and feet first) and every NIfTI orientation variant, through the readers:
    the slices equal the simulated HU windowed, and the masks equal the simulated label."""
    dm = CTDataModule(data_dir=str(phantom), image_size=None)
    cases = {c.patient: c for c in dm.discover_cases(phantom)}
    formats = []
    for index in range(SMALL["patients"]):
        _, hu, label, _, ident = simulate_patient(3, index, SMALL["size"], SMALL["slices"])
        case = cases[anonymous_key(ident["folder"])]
        arrays = dm.load_case(case)
        np.testing.assert_allclose(arrays.images, lung_window(axial_slices(hu)), atol=4e-4)
        np.testing.assert_array_equal(arrays.masks, axial_slices(label) > 0)
        formats.append(case.meta["format"])
    assert formats.count("dicom") == formats.count("nifti") == 4


def test_dicom_files_are_ct_image_storage_signed_with_shuffled_names(phantom):
    files = _dicom_files(phantom)
    assert len(files) == 4 * SMALL["slices"]
    for path in files:
        ds = pydicom.dcmread(path)
        assert ds.SOPClassUID == pydicom.uid.CTImageStorage
        assert (ds.PixelRepresentation, ds.BitsAllocated) == (1, 16)
        assert (ds.RescaleIntercept, ds.RescaleSlope) == (-1024, 1)
        assert ds.pixel_array.dtype == np.int16
        assert len(ds.ImageOrientationPatient) == 6 and len(ds.PixelSpacing) == 2
        assert float(ds.SliceThickness) > 0 and "^" in str(ds.PatientName)
        assert ds.PatientID and ds.PatientBirthDate and ds.AccessionNumber
    for folder in {p.parent for p in files}:
        by_name = [p for p in series_files(folder) if ".nii" not in p.name]
        along = [float(pydicom.dcmread(p).ImagePositionPatient[2]) for p in by_name]
        assert along != sorted(along) and along != sorted(along, reverse=True)


def test_orientations_label_values_and_folder_names_vary(phantom):
    image_codes, label_values = set(), set()
    for folder in phantom.iterdir():
        label = next(folder.glob("label.nii*"))
        label_values |= set(np.unique(np.asarray(nib.load(label).dataobj)).tolist())
        image = next(folder.glob("image.nii*"), label)  # a DICOM patient's label has its grid
        image_codes.add(nib.aff2axcodes(nib.load(image).affine))
    assert len(image_codes) >= 4  # RAS, LPS, LAS, RAI, RPI ...
    assert {0, 1, 2, 255} <= label_values
    names = [p.name for p in phantom.iterdir()]
    assert any(n.isdigit() for n in names) and any(n.startswith("MRN") for n in names)


def test_pneumothorax_kinds_and_slices_without(tmp_path):
    kinds, negative_slices = [], []
    for index in range(8):
        _, _, label, _, _ = simulate_patient(0, index, 64, 24)
        sides = {int(v) for v in np.unique(label)} - {0}
        kinds.append(len(sides))
        negative_slices.append(int((~label.any(axis=(0, 1))).sum()))
    assert 0 in kinds and 1 in kinds and 2 in kinds  # none, unilateral, bilateral
    assert sum(n > 0 for n in negative_slices) >= 6  # most patients have slices without


def test_intensities_are_those_of_a_chest_ct():
    _, hu, label, affine, _ = simulate_patient(0, 0, 128, 24)
    pocket = ndimage.binary_erosion(label > 0, np.ones((3, 3, 1)))
    assert pocket.sum() > 500
    assert np.median(hu[pocket]) < -970 and hu[pocket].max() < -850  # air, no vessels
    share = [np.mean((hu > lo) & (hu < hi)) for lo, hi in ((-900, -800), (0, 80), (-130, -70))]
    assert share[0] > 0.05 and share[1] > 0.2 and share[2] > 0.01  # lung, soft tissue, fat
    assert np.mean((hu > -700) & (hu < -200)) > 0.003  # vessels and pleura in the lungs
    assert hu.max() > 600 and abs(np.median(hu[:4, :4]) + 1000) < 15  # bone; air outside
    assert np.allclose(np.abs(np.diag(affine)[:2]), np.abs(np.diag(affine)[0]))  # square pixels


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    generate_ct_phantom(tmp_path / "a", patients=2, size=24, slices=4, seed=5)
    generate_ct_phantom(tmp_path / "b", patients=2, size=24, slices=4, seed=5)
    generate_ct_phantom(tmp_path / "c", patients=2, size=24, slices=4, seed=6)
    listing = {
        k: sorted(str(p.relative_to(tmp_path / k)) for p in (tmp_path / k).rglob("*"))
        for k in "abc"
    }
    assert listing["a"] == listing["b"] != listing["c"]
    for name in listing["a"]:
        a, b = tmp_path / "a" / name, tmp_path / "b" / name
        if ".nii" in name:
            np.testing.assert_array_equal(nib.load(a).get_fdata(), nib.load(b).get_fdata())
            np.testing.assert_array_equal(nib.load(a).affine, nib.load(b).affine)
        elif a.is_file():
            assert a.read_bytes() == b.read_bytes()


def test_refuses_to_write_into_a_folder_with_data(tmp_path):
    (tmp_path / "old").mkdir()
    with pytest.raises(ValueError, match="not empty"):
        generate_ct_phantom(tmp_path, patients=1, size=16, slices=2)


@pytest.mark.slow
def test_a_small_unet_learns_the_phantom(tmp_path):
    """~1-2 minutes of CPU training at 64 x 64 must segment pneumothorax well above chance."""
    import segmentation_models_pytorch as smp
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    dm = CTDataModule(
        cache_dir=str(tmp_path),
        image_size=64,
        batch_size=16,
        split_fractions=(8, 1, 3),
        hflip=True,
        train_negative_fraction=0.3,
        phantom={"patients": 12, "size": 128, "slices": 32},
    )
    dm.setup()
    # a small U-Net: ResNet-18 stem and first two stages (stride 8), a light decoder
    net = smp.Unet(
        "resnet18",
        encoder_weights=None,
        encoder_depth=3,
        decoder_channels=(64, 32, 16),
        in_channels=1,
        classes=2,
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=LR)
    # annealed to zero, so the result does not hang on the last few noisy steps
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, STEPS)
    start, steps = time.time(), 0
    while steps < STEPS:
        for batch in dm.train_dataloader():
            if steps == STEPS:
                break
            logits = net(batch["image"])
            probability, target = logits.softmax(1)[:, 1], batch["mask"].float()
            overlap = 2 * (probability * target).sum() + 1
            loss = (
                F.cross_entropy(logits, batch["mask"].long())
                + 1
                - overlap / (probability.sum() + target.sum() + 1)
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            steps += 1
    net.eval()
    dice, chance = [], []
    with torch.no_grad():
        for item in (dm.test_dataset[i] for i in np.flatnonzero(dm.test_dataset.positive)):
            truth = item["mask"].bool()
            predicted = net(item["image"][None]).argmax(1)[0].bool()
            dice.append(
                2 * (predicted & truth).sum().item() / (predicted.sum() + truth.sum()).item()
            )
            chance.append(truth.float().mean().item())  # Dice of a random mask of equal area
    print(
        f"\nCT phantom: Dice on {len(dice)} positive test slices {np.mean(dice):.3f} "
        f"(chance {np.mean(chance):.3f}) after {steps} steps, {time.time() - start:.0f} s"
    )
    assert len(dice) >= 10
    assert np.mean(dice) > 0.5 and np.mean(dice) > 10 * np.mean(chance)
