"""XRayDataModule on bad input (each names its culprit) and the patient-privacy guarantee."""

import logging
import shutil

import numpy as np
import pydicom
import pytest
from PIL import Image
from xray_fixtures import xray_phantom

from datamodules import DataError, XRayDataModule
from datamodules.layouts.check import check_data
from datamodules.readers.rle import read_rle_csv

PHANTOM = {"patients": 10, "size": 96, "seed": 5, "layout": "both"}


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return xray_phantom(tmp_path_factory, **PHANTOM)


@pytest.fixture
def siim(phantom, tmp_path):
    shutil.copytree(phantom / "siim", tmp_path / "siim")
    return tmp_path / "siim"


def _setup(data_dir, cache, **kwargs):
    dm = XRayDataModule(data_dir=str(data_dir), cache_dir=str(cache), image_size=32, **kwargs)
    dm.setup("fit")
    return dm


@pytest.mark.filterwarnings("ignore:End of file reached before delimiter")
def test_truncated_dicom_is_named(siim, tmp_path):
    victim = sorted(siim.rglob("*.dcm"))[3]
    victim.write_bytes(victim.read_bytes()[:-400])  # cut into the JPEG stream
    with pytest.raises(DataError) as err:
        _setup(siim, tmp_path)
    assert str(victim) in str(err.value) and err.value.path == victim


def test_not_a_dicom_is_named(siim, tmp_path):
    victim = sorted(siim.rglob("*.dcm"))[0]
    victim.write_text("this is a report, not an image")
    with pytest.raises(DataError, match="not a readable DICOM file") as err:
        _setup(siim, tmp_path)
    assert err.value.path == victim


def test_mask_of_another_shape_is_named(phantom, tmp_path):
    root = tmp_path / "png"
    shutil.copytree(phantom / "png", root)
    mask = sorted((root / "masks").glob("*.png"))[2]
    Image.fromarray(np.zeros((50, 96), np.uint8)).save(mask)
    with pytest.raises(DataError, match=r"mask is 50 x 96 but its image .* is 96 x 96") as err:
        _setup(root, tmp_path)
    assert err.value.path == mask


def test_rle_running_out_of_the_image_names_the_row(siim, tmp_path):
    csv = siim / "train-rle.csv"
    lines = csv.read_text().splitlines()
    image_id = lines[4].split(",")[0]
    lines[4] = f"{image_id}, 9214 5"  # ends past pixel 96 * 96 = 9216, relative or standard
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"train-rle\.csv: row 5: the RLE of image {image_id}"):
        _setup(siim, tmp_path)


def test_empty_data_sets_and_splits(siim, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        _setup(tmp_path / "nowhere", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no chest X-ray layout recognised"):
        _setup(tmp_path / "empty", tmp_path)
    (tmp_path / "empty" / "train-rle.csv").write_text("ImageId, EncodedPixels\n")
    with pytest.raises(DataError, match="no image folder"):
        _setup(tmp_path / "empty", tmp_path)
    (tmp_path / "empty" / "dicom-images-train").mkdir()
    with pytest.raises(DataError, match="no radiograph with a mask found"):
        _setup(tmp_path / "empty", tmp_path)
    # two patients cannot fill three subsets
    rows = read_rle_csv(siim / "train-rle.csv")
    keep = set(list(rows)[:2])
    for dcm in siim.rglob("*.dcm"):
        if dcm.stem not in keep:
            dcm.unlink()
    with pytest.raises(DataError, match=r"the (val|test) split is empty \(2 cases in all\)"):
        _setup(siim, tmp_path)


def test_skipped_ids_are_reported_not_dropped_silently(siim, tmp_path, caplog):
    orphan = sorted(siim.rglob("*.dcm"))[1]
    orphan.unlink()  # its CSV row now has no image
    with (siim / "train-rle.csv").open("a") as fh:
        fh.write("1.2.3.4.5, -1\n")  # a row without an image, too
    with caplog.at_level(logging.WARNING, logger="ptx.data"):
        dm = _setup(siim, tmp_path)
    assert dm.report["images_skipped"] == {"image without RLE row": 0, "RLE row without image": 2}
    assert "skipped 2 images (RLE row without image)" in caplog.text
    assert orphan.stem not in caplog.text  # a file stem may identify: the log has counts
    _, _, problems = check_data(siim, "xray")  # the data owner's check names them
    assert problems == [f"skipped 2 (RLE row without image): 1.2.3.4.5, {orphan.stem}"]


def test_check_data_names_the_skipped_ids_when_none_is_left(siim):
    csv = siim / "train-rle.csv"
    header = csv.read_text().splitlines()[0]
    csv.write_text(f"{header}\n9.9.9.9, -1\n")  # rows for no image, images without rows
    _, checks, problems = check_data(siim, "xray")
    assert checks == [] and problems[0].startswith("skipped ") and "no radiograph" in problems[-1]
    assert any("RLE row without image): 9.9.9.9" in p for p in problems)


def test_two_ids_with_one_key_are_an_error_naming_the_file(siim, tmp_path, monkeypatch):
    import datamodules.layouts.xray as layout

    monkeypatch.setattr(layout, "image_key", lambda image_id: "i000000000000")
    with pytest.raises(DataError, match=r"\.dcm: images '.+' and '.+' have the same key i0{12}"):
        _setup(siim, tmp_path)


def test_no_patient_identifier_leaves_the_dicom_files(phantom, tmp_path, caplog):
    headers = [
        pydicom.dcmread(f, stop_before_pixels=True)
        for f in (phantom / "siim" / "dicom-images-train").rglob("*.dcm")
    ]
    secrets = set()
    for h in headers:  # the phantom carries realistic made-up identifiers
        secrets |= {str(h.PatientName), h.PatientID, h.AccessionNumber}
        secrets |= {str(h.PatientName).split("^")[0]}
        secrets |= {h.SOPInstanceUID}  # the file stem, the image id: a site's own UID
    assert all(len(s) >= 5 for s in secrets) and any(s.startswith("MRN") for s in secrets)
    cache = tmp_path / "cache"
    with caplog.at_level(logging.DEBUG):
        dm = _setup(phantom / "siim", cache)
        dm.save_split(tmp_path / "run" / "split.json")
    exposed = [caplog.text, (tmp_path / "run" / "split.json").read_text(), repr(dm.report)]
    for ds in (dm.train_dataset, dm.val_dataset, dm.test_dataset):
        exposed += [*ds.ids, *ds.patients]
    for path in cache.rglob("*"):
        exposed.append(str(path.relative_to(cache)))
        if path.is_file():
            exposed.append(path.read_bytes().decode("latin-1"))
    assert len(exposed) > 20 and any(".npy" in e for e in exposed)
    for secret in secrets:
        leaks = [e[:80] for e in exposed if secret.lower() in e.lower()]
        assert not leaks, (secret, leaks)
