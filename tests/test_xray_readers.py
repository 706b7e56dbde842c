"""One radiograph to [0, 1]: photometric interpretation, bit depth, rescale, window, PNG.

These test the bit-depth rule (``intensity="bit_depth"``) and the window; the default rule
for images without a window (their own robust range) is tested in test_radiograph_intensity.
"""

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder
from pydicom.uid import HTJ2KLossless
from xray_fixtures import write_dicom

from datamodules.io.errors import DataError
from datamodules.readers.radiograph import image_shape, read_mask_png, read_radiograph


def test_monochrome2_8bit_non_square(tmp_path):
    stored = np.arange(40 * 60, dtype=np.uint32).reshape(40, 60) % 256
    image = read_radiograph(write_dicom(tmp_path / "a.dcm", stored.astype(np.uint8)), "bit_depth")
    assert image.shape == (40, 60) and image.dtype == np.float32
    np.testing.assert_allclose(image, stored / 255, atol=1e-6)
    assert image_shape(tmp_path / "a.dcm") == (40, 60)


def test_monochrome1_is_inverted(tmp_path):
    stored = np.array([[0, 51, 255]], dtype=np.uint8)
    path = write_dicom(tmp_path / "m1.dcm", stored, photometric="MONOCHROME1")
    image = read_radiograph(path, "bit_depth")
    np.testing.assert_allclose(image, [[1.0, 0.8, 0.0]], atol=1e-6)  # air (0) is bright in M1


def test_12_bit_in_16_scaled_by_bits_stored(tmp_path):
    stored = np.array([[0, 1024, 4095]], dtype=np.uint16)
    image = read_radiograph(write_dicom(tmp_path / "12.dcm", stored, bits_stored=12), "bit_depth")
    np.testing.assert_allclose(image, [[0.0, 1024 / 4095, 1.0]], atol=1e-6)


def test_full_16_bit_and_signed_with_rescale(tmp_path):
    full = np.array([[0, 32768, 65535]], dtype=np.uint16)
    np.testing.assert_allclose(
        read_radiograph(write_dicom(tmp_path / "16.dcm", full), "bit_depth"),
        [[0, 32768 / 65535, 1]],
        atol=1e-6,
    )
    signed = np.array([[-2048, 0, 2047]], dtype=np.int16)
    path = write_dicom(
        tmp_path / "s.dcm", signed, bits_stored=12, RescaleSlope=2, RescaleIntercept=100
    )
    # the modality rescale is linear, so the bit-depth range maps to [0, 1] all the same
    np.testing.assert_allclose(read_radiograph(path, "bit_depth"), [[0, 2048 / 4095, 1]], atol=1e-6)


def test_voi_window_is_applied_when_present(tmp_path):
    stored = np.array([[1000, 1536, 2048, 2560, 4000]], dtype=np.uint16)
    path = write_dicom(
        tmp_path / "w.dcm", stored, bits_stored=12, WindowCenter=2048, WindowWidth=1025
    )
    image = read_radiograph(path)
    np.testing.assert_allclose(image, [[0, 0, 0.5 + 0.5 / 1024, 1, 1]], atol=1e-3)


def test_png_8_and_16_bit_and_colour(tmp_path):
    grey = np.array([[0, 128, 255]], dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "g.png")
    np.testing.assert_allclose(
        read_radiograph(tmp_path / "g.png", "bit_depth"), grey / 255, atol=1e-6
    )
    deep = np.array([[0, 30000, 65535]], dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "d.png")
    np.testing.assert_allclose(
        read_radiograph(tmp_path / "d.png", "bit_depth"), deep / 65535, atol=1e-6
    )
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "c.png")
    np.testing.assert_allclose(
        read_radiograph(tmp_path / "c.png", "bit_depth"), grey / 255, atol=1 / 255
    )


def test_mask_png_any_nonzero_is_pneumothorax(tmp_path):
    Image.fromarray(np.array([[0, 255, 1, 0]], dtype=np.uint8)).save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask_png(tmp_path / "m.png"), [[0, 1, 1, 0]])


def test_truncated_and_foreign_files_name_the_file(tmp_path):
    path = write_dicom(tmp_path / "t.dcm", np.zeros((64, 64), np.uint16))
    path.write_bytes(path.read_bytes()[:-3000])  # cut into the pixel data
    with pytest.raises(DataError, match=r"t\.dcm: pixel data is truncated"):
        read_radiograph(path)
    (tmp_path / "x.dcm").write_text("not a dicom file")
    with pytest.raises(DataError, match=r"x\.dcm: not a readable DICOM file"):
        read_radiograph(tmp_path / "x.dcm")
    (tmp_path / "x.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match=r"x\.png: not a readable image"):
        read_radiograph(tmp_path / "x.png")
    with pytest.raises(DataError, match=r"gone\.dcm: image file not found"):
        read_radiograph(tmp_path / "gone.dcm")


def test_missing_decoder_names_the_package(tmp_path):
    """HTJ2K needs pylibjpeg-openjpeg, which the project does not install."""
    if get_decoder(HTJ2KLossless).is_available:
        pytest.skip("an HTJ2K decoder is installed here")
    path = write_dicom(tmp_path / "htj2k.dcm", np.zeros((8, 8), np.uint8))
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = HTJ2KLossless
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(20)])  # a codestream's start
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(DataError, match=r"htj2k\.dcm: cannot decode .*pip install") as err:
        read_radiograph(path)
    assert "pylibjpeg-openjpeg" in str(err.value)
