"""A predicted CT mask as a DICOM Segmentation (highdicom) that references its source series
(classic slices, or the frames of one enhanced multi-frame image).

One binary segment, "Pneumothorax" (SNOMED CT 36118008, morphologically abnormal structure),
algorithm type AUTOMATIC with the network's name. Frames follow the source slices; slices
without pneumothorax are omitted, as highdicom does by default. The patient, study and
frame-of-reference attributes are copied from the source by highdicom, so a PACS files the
SEG with its CT; its file name is the case's non-identifying key.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes

from datamodules.io.atomic import write_with_atomic

PNEUMOTHORAX = hd.sr.CodedConcept("36118008", "SCT", "Pneumothorax")
# type 2 attributes (present, may be empty) highdicom copies from the source: many exports
# (and the phantom) leave some out; a SEG gets them empty rather than failing
TYPE2 = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
    "ReferringPhysicianName", "StudyID", "AccessionNumber",
)  # fmt: skip


def _complete(ds: pydicom.Dataset) -> pydicom.Dataset:
    """A shallow copy of ``ds`` with every missing TYPE2 attribute present and empty."""
    out = copy.copy(ds)
    for keyword in TYPE2:
        if keyword not in out:
            setattr(out, keyword, "")
    return out


def write_dicom_seg(
    path: str | Path,
    sources: Sequence[pydicom.Dataset],
    frames: np.ndarray,
    algorithm: str,
    version: str,
) -> Path:
    """Write ``frames`` (uint8 {0, 1}, one ``rows x columns`` frame per frame of ``sources``:
    classic slices in the given order, or the frames of one enhanced image in its own order)
    as a binary DICOM SEG at ``path``; returns the path."""
    expected = sum(int(getattr(ds, "NumberOfFrames", 1) or 1) for ds in sources)
    if len(frames) != expected:
        raise ValueError(f"{len(frames)} mask frames for {expected} source frames")
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="Pneumothorax",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=PNEUMOTHORAX,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=algorithm, version=version, family=codes.cid7162.ArtificialIntelligence
        ),
    )
    seg = hd.seg.Segmentation(
        source_images=[_complete(ds) for ds in sources],
        pixel_array=np.asarray(frames, dtype=np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment],
        series_instance_uid=hd.UID(),
        series_number=9001,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="ptx-seg",
        manufacturer_model_name=algorithm,
        software_versions=version,
        device_serial_number="0",
        series_description="Pneumothorax (ptx-seg)",
    )
    return write_with_atomic(path, lambda fh: seg.save_as(fh))
