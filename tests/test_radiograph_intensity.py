"""Radiographs without a VOI window are normalised by their own robust range, not by their
bit depth; the real vendor radiographs reach the network with their anatomy."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
from xray_fixtures import vendor_file, write_dicom

from datamodules import XRayDataModule
from datamodules.dataset import SliceDataset
from datamodules.io.errors import DataError
from datamodules.readers.radiograph import read_radiograph
from datamodules.transforms import resize_images

# (BitsStored, signed): the depths radiographs come in
DEPTHS = [(12, False), (12, True), (15, False), (16, False), (16, True)]


def _anatomy(low: int, span: int, shape=(48, 64)) -> np.ndarray:
    """A smooth 'thorax' (ellipse over a gradient) occupying ``low .. low + span``."""
    y, x = np.mgrid[: shape[0], : shape[1]]
    body = ((y - 24) / 20.0) ** 2 + ((x - 32) / 26.0) ** 2 < 1
    picture = 0.3 * x / shape[1] + 0.6 * body + 0.1 * np.sin(y / 3.0)
    return np.rint(low + span * (picture - picture.min()) / np.ptp(picture)).astype(np.int64)


def _stored(values: np.ndarray, bits: int, signed: bool) -> np.ndarray:
    dtype = np.int16 if signed else np.uint16
    limit = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    assert values.min() >= limit[0] and values.max() <= limit[1]
    return values.astype(dtype)


@pytest.mark.parametrize(("bits", "signed"), DEPTHS)
def test_no_window_uses_the_images_own_range(tmp_path, bits, signed):
    low = -200 if signed else 100
    values = _anatomy(low, 278)  # a narrow range, like the 16-bit 0-278 vendor file
    path = write_dicom(tmp_path / "a.dcm", _stored(values, bits, signed), bits_stored=bits)
    image = read_radiograph(path)
    assert image.dtype == np.float32 and image.shape == values.shape
    assert image.min() == 0 and image.max() == 1 and image.std() > 0.2
    assert np.corrcoef(image.ravel(), values.ravel())[0, 1] > 0.99
    inside = (values > values.min()) & (values < values.max())
    lo, hi = np.percentile(values[inside], [0.5, 99.5])
    np.testing.assert_allclose(image, np.clip((values - lo) / (hi - lo), 0, 1), atol=1e-6)
    # the old rule squeezes it into 278 / 2^bits of the range; at 15-16 bits that is a blank
    # image (sd < 0.01), now an error naming the file instead of a silent blank
    if bits < 15:
        assert read_radiograph(path, "bit_depth").std() < image.std() / 5
    else:
        with pytest.raises(DataError, match=r"a\.dcm: the radiograph is blank .*bit depth"):
            read_radiograph(path, "bit_depth")


@pytest.mark.parametrize(("bits", "signed"), DEPTHS)
def test_a_window_in_the_file_wins(tmp_path, bits, signed):
    low = -1000 if signed else 1000
    values = _anatomy(low, 2000)
    center, width = low + 1000, 1001
    path = write_dicom(
        tmp_path / "w.dcm",
        _stored(values, bits, signed),
        bits_stored=bits,
        WindowCenter=center,
        WindowWidth=width,
        RescaleSlope=1,
        RescaleIntercept=0,
    )
    expected = np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0, 1)  # DICOM linear
    np.testing.assert_allclose(read_radiograph(path), expected, atol=1e-6)


def test_monochrome1_padding_and_rescale(tmp_path):
    values = _anatomy(1000, 300)
    values[:, :8] = 0  # padding (e.g. outside the collimator), declared in the header
    path = write_dicom(
        tmp_path / "m1.dcm",
        values.astype(np.uint16),
        bits_stored=12,
        photometric="MONOCHROME1",
        PixelPaddingValue=0,
        RescaleSlope=2,
        RescaleIntercept=-50,
    )
    image = read_radiograph(path)
    body = values[:, 8:]
    assert np.corrcoef(image[:, 8:].ravel(), -body.ravel())[0, 1] > 0.99
    assert image[:, 8:].std() > 0.2  # the padding did not become the range's low end
    np.testing.assert_array_equal(image[:, :8], 1.0)  # padding (0) is air: dark in M2 ...
    # ... then inverted like the image: 0 is below the body's range, so it maps to 0 -> 1


def test_constant_and_nearly_constant_images_are_errors(tmp_path):
    flat = write_dicom(tmp_path / "flat.dcm", np.full((32, 32), 700, np.uint16), bits_stored=12)
    with pytest.raises(DataError, match=r"flat\.dcm: the radiograph is blank .*sd 0\.0000"):
        read_radiograph(flat)
    values = np.full((32, 32), 700, np.uint16)
    values[0, 0] = 701  # one pixel of difference: still blank once windowed
    windowed = write_dicom(
        tmp_path / "w.dcm", values, bits_stored=12, WindowCenter=2000, WindowWidth=400
    )
    with pytest.raises(DataError, match=r"w\.dcm: the radiograph is blank .*window 2000"):
        read_radiograph(windowed)


VENDOR = {  # name: (what it is)
    "RG1_UNCR.dcm": "CR, MONOCHROME1, 15-bit, window",
    "RG1_J2KR.dcm": "the same, JPEG 2000 lossless",
    "RG3_UNCR.dcm": "CR, MONOCHROME1, 10-bit, window",
    "RG3_J2KR.dcm": "the same, JPEG 2000 lossless",
    "JPEG-LL.dcm": "16-bit signed JPEG lossless, no window, values 0-278",
}


def test_real_vendor_radiographs_reach_the_network_with_their_anatomy(tmp_path):
    """Reader -> resize -> uint16 cache -> dataset item, against the source pixels."""
    root = tmp_path / "data"
    rows = ["ImageId, EncodedPixels"]
    for n, name in enumerate(VENDOR):
        folder = root / "dicom-images-train" / f"study{n}" / "series"
        folder.mkdir(parents=True)
        shutil.copy(vendor_file(name), folder / name)
        rows.append(f"{name.removesuffix('.dcm')}, -1")
    (root / "train-rle.csv").write_text("\n".join(rows) + "\n")
    dm = XRayDataModule(data_dir=str(root), image_size=256, cache_dir=str(tmp_path / "c"))
    cases = dm.discover_cases(root)
    cached = dm._cached_cases(cases)
    assert dm.report["cases_decoded"] == len(VENDOR)
    items = SliceDataset(cached, in_channels=1)
    for index, case in enumerate(cases):
        ds = pydicom.dcmread(case.files[0])
        source = ds.pixel_array.astype(np.float32)
        if ds.PhotometricInterpretation == "MONOCHROME1":
            source = -source  # bright = dense after the reader's inversion
        source = resize_images((source - source.min())[None] / np.ptp(source), 256)[0]
        image = items[index]["image"][0].numpy()
        corr = np.corrcoef(image.ravel(), source.ravel())[0, 1]
        assert image.std() > 0.1 and corr > 0.99, (case.image_id, image.std(), corr)
