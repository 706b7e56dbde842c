"""Synthetic chest X-ray data set in the SIIM-ACR layout and the PNG folder layout.

``generate_xray_phantom(out)`` draws ``patients`` patients (some with several images, about
half of all images with pneumothorax, some with two instances, some of those overlapping) and
writes them as SIIM-ACR does: ``dicom-images-train/<Study>/<Series>/<SOP>.dcm`` (8-bit
MONOCHROME2, Modality CR, lossy baseline JPEG pixel data) with ``train-rle.csv``
(``ImageId, EncodedPixels``, relative RLE, ``-1`` for none); and/or as ``images/`` + ``masks/``
PNGs. The DICOM headers carry made-up but realistic patient names, IDs, birth dates and
accession numbers, so the privacy tests have something to look for. Deterministic by seed.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit, SecondaryCaptureImageStorage, generate_uid

from datamodules.phantom.xray_anatomy import (
    MIN_DEPTH,
    Instance,
    check_min_depth,
    grid,
    instance_mask,
    lung_box,
    sample_instances,
)
from datamodules.phantom.xray_render import Chest, render_radiograph, sample_chest
from datamodules.readers.rle import rle_encode

LAYOUTS = ("siim", "png", "both")
JPEG_QUALITY = 90
LAST_NAMES = ("SMITH", "GARCIA", "MUELLER", "NGUYEN", "KOWALSKI", "ROSSI", "TANAKA", "OKAFOR")
FIRST_NAMES = ("MARIA", "JAMES", "LINA", "PETER", "AMARA", "KENJI", "SOFIA", "OMAR", "GRACE")
MIN_AREA_1024 = 55  # smallest SIIM pneumothorax, pixels at 1024 x 1024


@dataclass(frozen=True)
class Person:
    """Made-up identifiers of one phantom patient (they must never leave the DICOM files)."""

    name: str
    patient_id: str
    birth_date: str
    sex: str


@dataclass(frozen=True)
class PhantomImage:
    """One drawn image: 8-bit pixels, one mask per pneumothorax instance, its DICOM UIDs."""

    pixels: np.ndarray
    instances: list[np.ndarray]
    study: str
    series: str
    sop: str
    accession: str
    study_date: str


def generate_xray_phantom(
    out: Path,
    *,
    patients: int = 40,
    seed: int = 0,
    size: int = 1024,
    layout: str = "both",
    min_depth: float = MIN_DEPTH,
) -> None:
    """Write the phantom into ``out`` (``layout`` "both": ``out/siim`` and ``out/png``).

    ``min_depth``: the shallowest collapse, as a fraction of the lung radius (default 0.03,
    thinner than a pixel at 64 x 64; a profile training at a small size may ask for
    pneumothoraces it can resolve)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    check_min_depth(min_depth)  # before anything is written
    if patients < 1 or size < 32:
        raise ValueError(f"need patients >= 1 and size >= 32, got {patients} and {size}")
    out = Path(out)
    rng = np.random.default_rng(seed)
    per_patient = 1 + (rng.random(patients) < 0.3) + (rng.random(patients) < 0.1)
    n_images = int(per_patient.sum())
    positive = rng.permutation(n_images) < (n_images + 1) // 2  # the paper's ~1:1 ratio
    folders = {"siim": (out, None), "png": (None, out), "both": (out / "siim", out / "png")}
    siim, png = folders[layout]
    csv_lines = ["ImageId, EncodedPixels"]  # SIIM's header, space included
    drawn = 0
    for p in range(patients):
        patient_rng = np.random.default_rng([seed, p])
        person, chest = _person(patient_rng), sample_chest(patient_rng)
        for j in range(int(per_patient[p])):
            image_rng = np.random.default_rng([seed, p, j])
            image = _draw(chest, bool(positive[drawn]), size, image_rng, (seed, p, j), min_depth)
            drawn += 1
            if siim is not None:  # written as drawn: memory stays flat however many images
                csv_lines += _write_siim_image(siim, person, image)
            if png is not None:
                _write_png_image(png, image)
    if siim is not None:
        (siim / "train-rle.csv").write_text("\n".join(csv_lines) + "\n")


def _person(rng: np.random.Generator) -> Person:
    year, month, day = rng.integers(1935, 2005), rng.integers(1, 13), rng.integers(1, 29)
    return Person(
        name=f"{rng.choice(LAST_NAMES)}^{rng.choice(FIRST_NAMES)}",
        patient_id=f"MRN{rng.integers(10**6, 10**7)}",
        birth_date=f"{year}{month:02d}{day:02d}",
        sex=str(rng.choice(["F", "M"])),
    )


def _draw(
    chest: Chest, positive: bool, size: int, rng, key: tuple[int, ...], min_depth: float
) -> PhantomImage:
    shift = tuple(rng.uniform(-0.015, 0.015, 2))  # the patient never stands the same way
    instances, masks = [], []
    for inst in sample_instances(rng, min_depth) if positive else []:
        inst, mask = _visible(inst, chest, size, shift)
        instances.append(inst)
        masks.append(mask)
    image = render_radiograph(chest, instances, size, rng, shift)
    uid = [str(v) for v in key]
    return PhantomImage(
        pixels=np.round(image * 255).astype(np.uint8),
        instances=masks,
        study=generate_uid(entropy_srcs=["study", *uid]),
        series=generate_uid(entropy_srcs=["series", *uid]),
        sop=generate_uid(entropy_srcs=["sop", *uid]),
        accession=f"A{rng.integers(10**8, 10**9)}",
        study_date=f"20{rng.integers(15, 20)}{rng.integers(1, 13):02d}{rng.integers(1, 29):02d}",
    )


def _visible(inst: Instance, chest: Chest, size: int, shift) -> tuple[Instance, np.ndarray]:
    """Deepen an instance until it covers at least the smallest SIIM area, scaled to ``size``.

    Returns the instance and its boolean ``size x size`` mask.
    """
    min_area = max(4, round(MIN_AREA_1024 * (size / 1024) ** 2))
    lung = chest.lungs[inst.side]
    box = lung_box(lung, size, shift)
    x, y = (v[box] for v in grid(size, shift))
    crop = instance_mask(x, y, lung, inst)
    while crop.sum() < min_area and inst.depth < 0.6:
        inst = Instance(inst.side, inst.phi, min(inst.width * 1.2, 1.2), inst.depth * 1.4)
        crop = instance_mask(x, y, lung, inst)
    mask = np.zeros((size, size), dtype=bool)
    mask[box] = crop
    return inst, mask


def _write_siim_image(root: Path, person: Person, image: PhantomImage) -> list[str]:
    """Write the nested DICOM file; return the image's CSV rows (one per instance)."""
    folder = root / "dicom-images-train" / image.study / image.series
    folder.mkdir(parents=True, exist_ok=True)
    _write_dicom(folder / f"{image.sop}.dcm", person, image)
    rows = [rle_encode(m) for m in image.instances] or ["-1"]
    return [f"{image.sop}, {rle}" for rle in rows]


def _write_png_image(root: Path, image: PhantomImage) -> None:
    """Write ``images/<id>.png`` and ``masks/<id>.png`` (0/255, the OR of the instances)."""
    union = np.zeros(image.pixels.shape, dtype=bool)
    for mask in image.instances:
        union |= mask
    for sub, pixels in (("images", image.pixels), ("masks", union.astype(np.uint8) * 255)):
        (root / sub).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / sub / f"{image.sop}.png")


def _write_dicom(path: Path, person: Person, r: PhantomImage) -> None:
    """An 8-bit MONOCHROME2 CR secondary capture with baseline JPEG pixel data, as in SIIM."""
    buffer = io.BytesIO()
    Image.fromarray(r.pixels).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    jpeg = buffer.getvalue()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = r.sop
    meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, r.sop
    ds.StudyInstanceUID, ds.SeriesInstanceUID = r.study, r.series
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = r.study_date, "101500", r.accession
    ds.Modality, ds.ConversionType = "CR", "WSD"
    ds.BodyPartExamined, ds.ViewPosition = "CHEST", "PA"
    ds.PatientName, ds.PatientID = person.name, person.patient_id
    ds.PatientBirthDate, ds.PatientSex = person.birth_date, person.sex
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    rows, cols = r.pixels.shape
    ds.Rows, ds.Columns = rows, cols
    ds.PixelSpacing = [f"{430 / cols:.6f}", f"{430 / cols:.6f}"]  # a 43 cm detector
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.LossyImageCompression, ds.LossyImageCompressionMethod = "01", "ISO_10918_1"
    ds.LossyImageCompressionRatio = f"{rows * cols / len(jpeg):.2f}"
    ds.PixelData = encapsulate([jpeg])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
