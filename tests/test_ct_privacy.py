"""Patient identifiers in the CT phantom's DICOM headers and folder names never reach ids,
patient keys, splits, log records or the preprocessing cache (names or contents)."""

import logging

import pydicom

from datamodules import CTDataModule
from datamodules.phantom.ct import generate_ct_phantom


def _identifiers(data_dir) -> set[str]:
    found = set()
    for path in data_dir.rglob("*"):
        if path.is_file() and ".nii" not in path.name:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            found |= {str(ds.PatientID), str(ds.PatientBirthDate), str(ds.AccessionNumber)}
            found |= {str(ds.PatientName), *str(ds.PatientName).split("^")}
    return found


def test_no_identifier_leaves_the_data_folder(tmp_path, caplog):
    data_dir = tmp_path / "data"
    generate_ct_phantom(data_dir, patients=4, size=24, slices=3, seed=2, formats="dicom")
    identifiers = _identifiers(data_dir)
    folders = {p.name for p in data_dir.iterdir()}
    # the check means something: the headers carry PHI and some folders are named by MRN
    assert len(identifiers) >= 4 * 5 and any(f.isdigit() or f[3:].isdigit() for f in folders)
    identifiers |= folders

    caplog.set_level(logging.DEBUG)
    dm = CTDataModule(
        data_dir=str(data_dir),
        cache_dir=str(tmp_path / "cache"),
        image_size=16,
        split_fractions=(2, 1, 1),
    )
    dm.prepare_data()
    dm.setup()
    split_file = dm.save_split(tmp_path / "run" / "split.json")

    texts = [record.getMessage() for record in caplog.records]
    for ds in (dm.train_dataset, dm.val_dataset, dm.test_dataset):
        texts += ds.ids + ds.patients
    texts += [p for subset in dm.split.values() for p in subset]
    texts.append(split_file.read_text())
    cache_files = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert len(cache_files) >= 3 * 4  # image, mask and index of each patient
    texts += [str(p.relative_to(tmp_path)) for p in cache_files]
    blobs = [p.read_bytes() for p in cache_files]
    assert any("decoded" in t for t in texts)  # the log records were captured
    for identifier in identifiers:
        assert not any(identifier in text for text in texts), identifier
        assert not any(identifier.encode() in blob for blob in blobs), identifier
