"""``ptx predict`` writes a DICOM SEG for every DICOM CT input: an enhanced (multi-frame) file
referenced frame by frame, and a one-slice classic series. The network marks the dark voxels,
so each SEG frame is checked against the mask of the source frame it references."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
from ct_fixtures import HIGHDICOM_HEADER, write_series
from predict_fixtures import DARK, options, predictor
from pydicom.uid import generate_uid

from datamodules.readers.dicom_series import read_dicom_series
from datamodules.transforms import lung_window
from experiments.predict_ct import find_volumes, predict_volume


def _hu(slices: int, seed: int = 0) -> np.ndarray:
    """slices x 12 rows x 10 columns, with air darker than the window (PTX to the network)
    on some slices only, so the SEG holds fewer frames than the source."""
    hu = np.random.default_rng(seed).integers(-1000, 400, (slices, 12, 10)).astype(float)
    hu[::2, 3:7, 2:5] = -1300.0  # every other slice
    return hu


def _classic(folder, hu):
    uids = {"StudyInstanceUID": generate_uid(), "FrameOfReferenceUID": generate_uid()}
    return write_series(folder, hu, **uids, **HIGHDICOM_HEADER)


def _seg_frames(path) -> list[tuple[str, int, np.ndarray]]:
    """(referenced SOP instance, referenced frame number or 0, mask) of each SEG frame."""
    seg = hd.seg.segread(path)
    assert seg.Modality == "SEG"
    frames = seg.pixel_array.reshape(int(seg.NumberOfFrames), seg.Rows, seg.Columns)
    out = []
    for frame, item in zip(frames, seg.PerFrameFunctionalGroupsSequence, strict=True):
        source = item.DerivationImageSequence[0].SourceImageSequence[0]
        number = int(source.get("ReferencedFrameNumber", 0) or 0)
        out.append((source.ReferencedSOPInstanceUID, number, frame.astype(bool)))
    return out


def test_an_enhanced_ct_gets_a_seg_referencing_its_frames(tmp_path):
    from highdicom.legacy import LegacyConvertedEnhancedCTImage

    hu = _hu(6)
    paths = _classic(tmp_path / "classic", hu)
    shuffled = [pydicom.dcmread(p) for p in np.random.default_rng(1).permutation(paths)]
    enhanced = LegacyConvertedEnhancedCTImage(shuffled, generate_uid(), 2, generate_uid(), 1)
    source = tmp_path / "in" / "enhanced.dcm"
    source.parent.mkdir()
    enhanced.save_as(source)

    (volume,) = find_volumes(source)
    row = predict_volume(predictor("ct"), volume, tmp_path / "out", options())
    assert row["dicom_seg"] == f"{volume.name}_ptx.dcm"
    volume_hu, _ = read_dicom_series([source])
    expected = lung_window(volume_hu) < DARK  # columns x rows x slices sorted along the normal
    # frame f of the file lies at z; the volume's slice k is the k-th z in sorted order
    z = [float(f.PlanePositionSequence[0].ImagePositionPatient[2])
         for f in enhanced.PerFrameFunctionalGroupsSequence]  # fmt: skip
    frames = _seg_frames(tmp_path / "out" / row["dicom_seg"])
    assert len(frames) == int(expected.any(axis=(0, 1)).sum()) == 3
    assert {uid for uid, _, _ in frames} == {enhanced.SOPInstanceUID}
    for _, number, mask in frames:
        k = sorted(z).index(z[number - 1])
        assert np.array_equal(mask, expected[:, :, k].T)


def test_a_single_slice_series_gets_a_one_frame_seg(tmp_path):
    hu = _hu(1)
    (path,) = _classic(tmp_path / "in", hu)
    (volume,) = find_volumes(tmp_path / "in")
    row = predict_volume(predictor("ct"), volume, tmp_path / "out", options())
    ((uid, _, mask),) = _seg_frames(tmp_path / "out" / row["dicom_seg"])
    assert uid == pydicom.dcmread(path).SOPInstanceUID
    assert np.array_equal(mask, lung_window(hu[0]) < DARK) and mask.sum() == 12
