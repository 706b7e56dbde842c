"""Run-length encoding of SIIM masks: relative and standard RLE, CSV variants, bad rows."""

import numpy as np
import pytest

from datamodules.io.errors import DataError
from datamodules.readers.rle import (
    RleRow,
    decode_instances,
    detect_scheme,
    read_rle_csv,
    rle_decode,
    rle_encode,
    rle_encode_standard,
)


def test_relative_decode_by_hand_is_column_major():
    # 3 rows x 4 columns; column-major flat order: pixel k sits at (k % 3, k // 3)
    # runs: pixels 1..2 (offset 1, length 2), then 3 pixels later pixels 6..6
    mask = rle_decode("1 2 3 1", height=3, width=4)
    expected = np.zeros((3, 4), np.uint8)
    expected[1:3, 0] = 1  # flat 1, 2
    expected[0, 2] = 1  # flat 6
    np.testing.assert_array_equal(mask, expected)


def test_round_trip_random_masks_non_square():
    rng = np.random.default_rng(0)
    for height, width in ((7, 5), (16, 16), (5, 11)):
        mask = (rng.random((height, width)) > 0.6).astype(np.uint8)
        encoded = rle_encode(mask)
        np.testing.assert_array_equal(rle_decode(encoded, height, width), mask)
        standard = rle_encode_standard(mask)
        np.testing.assert_array_equal(rle_decode(standard, height, width, "standard"), mask)


def test_run_ending_on_last_pixel_and_starting_on_first():
    mask = np.zeros((4, 4), np.uint8)
    mask[:, 3] = 1  # the last column: flat 12..15, ends on the very last pixel
    mask[0, 0] = 1  # flat 0
    assert rle_encode(mask) == "0 1 11 4"
    np.testing.assert_array_equal(rle_decode("0 1 11 4", 4, 4), mask)
    assert rle_encode_standard(mask) == "1 1 13 4"
    with pytest.raises(ValueError, match="runs to pixel 17"):
        rle_decode("0 1 12 4", 4, 4)  # one pixel too far


def test_empty_mask_is_minus_one():
    assert rle_encode(np.zeros((3, 3))) == "-1"
    assert rle_decode("-1", 3, 3).sum() == 0
    assert rle_decode(" -1 ", 3, 3).sum() == 0


def test_overlapping_instances_are_ored_not_summed(tmp_path):
    a = np.zeros((6, 6), np.uint8)
    b = np.zeros((6, 6), np.uint8)
    a[1:4, 1:4] = 1  # 9 pixels
    b[2:5, 2:5] = 1  # 9 pixels, 4 shared with a
    rows = [RleRow("img", rle_encode(a), 2), RleRow("img", rle_encode(b), 3)]
    mask = decode_instances(rows, 6, 6, "relative", tmp_path / "x.csv")
    assert mask.dtype == np.uint8 and mask.max() == 1
    assert mask.sum() == 9 + 9 - 4
    np.testing.assert_array_equal(mask, a | b)


@pytest.mark.parametrize("header", ["ImageId, EncodedPixels", "ImageId,EncodedPixels"])
def test_both_csv_headers_and_empty_markers(tmp_path, header):
    path = tmp_path / "train.csv"
    path.write_text(f"{header}\nimg1, -1\nimg2,-1\nimg3, 5 2 1 3\nimg3, 0 1\n\nimg4,\n")
    rows = read_rle_csv(path)
    assert list(rows) == ["img1", "img2", "img3", "img4"]
    assert [r.encoded for r in rows["img3"]] == ["5 2 1 3", "0 1"]
    assert [r.line for r in rows["img3"]] == [4, 5]
    assert rows["img1"][0].encoded == rows["img2"][0].encoded == rows["img4"][0].encoded == "-1"


def test_bad_header_and_bad_rows_name_the_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("ImageId;EncodedPixels\nimg1;-1\n")
    with pytest.raises(DataError, match=r"bad\.csv: row 1: header"):
        read_rle_csv(path)
    path.write_text("ImageId,EncodedPixels\nimg1,-1\nimg2,3 4 5\n")
    with pytest.raises(DataError, match=r"row 3: RLE has 3 numbers"):
        read_rle_csv(path)
    path.write_text("ImageId,EncodedPixels\nimg1,3 x\n")
    with pytest.raises(DataError, match=r"row 2: RLE has a non-integer token"):
        read_rle_csv(path)


def _standard_rows():
    """Standard (absolute, 1-indexed) RLE of two 8 x 8 masks that relative decoding overruns."""
    a = np.zeros((8, 8), np.uint8)
    a[5:7, 4:8] = 1  # four runs in the right half: absolute starts sum past 64
    b = np.zeros((8, 8), np.uint8)
    b[0, 0] = 1
    return (a, b), [RleRow("a", rle_encode_standard(a), 2), RleRow("b", rle_encode_standard(b), 3)]


def test_standard_rle_is_detected_and_decoded(tmp_path):
    (a, b), rows = _standard_rows()
    assert rows[0].encoded == "38 2 46 2 54 2 62 2"
    assert detect_scheme([(r, 64) for r in rows], tmp_path / "s.csv") == "standard"
    np.testing.assert_array_equal(decode_instances(rows[:1], 8, 8, "standard", "s.csv"), a)
    np.testing.assert_array_equal(decode_instances(rows[1:], 8, 8, "standard", "s.csv"), b)
    relative = [RleRow("a", rle_encode(a), 2), RleRow("b", rle_encode(b), 3)]
    assert detect_scheme([(r, 64) for r in relative], "r.csv") == "relative"


def test_rle_outside_the_image_names_the_row(tmp_path):
    rows = [RleRow("ok", "0 4", 2), RleRow("far", "62 5", 7)]  # 67 (66) > 64 pixels
    with pytest.raises(DataError, match=r"s\.csv: row 7: the RLE of image far runs outside"):
        detect_scheme([(r, 64) for r in rows], tmp_path / "s.csv")
    with pytest.raises(DataError, match=r"row 7: relative RLE runs to pixel 67"):
        decode_instances(rows, 8, 8, "relative", tmp_path / "s.csv")
    # a file mixing schemes: row 2 is only valid as standard, row 3 only as relative
    mixed = [RleRow("a", "38 2 46 2 54 2 62 2", 2), RleRow("b", "0 1 0 1", 3)]
    with pytest.raises(DataError, match=r"row 3: .* as standard \(as row 2 is\)"):
        detect_scheme([(r, 64) for r in mixed], tmp_path / "s.csv")
