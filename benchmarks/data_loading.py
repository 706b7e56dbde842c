"""DataLoader throughput for CT: slices per second from raw DICOM vs from the cache.

``python -m benchmarks.data_loading`` (``make bench-data``) writes a DICOM phantom at the
native 512 x 512, then times whole epochs of a DataLoader at 256 x 256 two ways:

- raw: every item reads its DICOM file, decodes it, converts to HU, applies the lung window
  and resizes image and mask, as a pipeline without a cache does on every epoch;
- cache: ``CTDataModule`` items, memory-mapped from the preprocessing cache (built once,
  whose one-off cost is printed too).

Epochs after a warm-up one are timed (workers started, files in the page cache), with
0 and 2 worker processes. Prints a markdown table (``docs/benchmarks.md`` keeps results).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from datamodules.ct import CTDataModule
from datamodules.phantom.ct import generate_ct_phantom
from datamodules.readers.dicom import read_dicom
from datamodules.readers.dicom_series import series_files, series_geometry, slice_hu
from datamodules.readers.nifti import read_nifti_label
from datamodules.transforms import lung_window, resize_images, resize_masks
from experiments.cli import HelpFormatter


class RawDicomSlices(Dataset):
    """One item per DICOM slice, decoded from its file on every access (no cache).

    Slice order and the label are read once up front; images stay in the DICOM pixel
    orientation (reorienting is a flip, free next to decoding).
    """

    def __init__(self, root: Path, image_size: int) -> None:
        self.image_size = image_size
        self.items: list[tuple[Path, np.ndarray]] = []
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            label_path = next(folder.glob("label.nii*"))
            files = series_files(folder, exclude=[label_path])
            headers = [read_dicom(f, header_only=True) for f in files]
            order = series_geometry(headers, files).order
            label, _ = read_nifti_label(label_path)  # the series' own grid (ITK-SNAP)
            self.items += [(files[i], label[:, :, k].T) for k, i in enumerate(order)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        path, mask = self.items[index]
        image = lung_window(slice_hu(read_dicom(path), path))
        image = resize_images(image[None], self.image_size)
        mask = resize_masks(mask[None], self.image_size)[0]
        return {"image": torch.from_numpy(image), "mask": torch.from_numpy(mask.astype(np.int64))}


def slices_per_second(dataset: Dataset, workers: int, batch_size: int, epochs: int) -> float:
    """Rate over ``epochs`` shuffled epochs through a DataLoader, after one warm-up epoch."""
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    for _ in loader:  # warm-up: start workers, fill the page cache
        pass
    start, seen = time.perf_counter(), 0
    for _ in range(epochs):
        for batch in loader:
            seen += len(batch["image"])
    return seen / (time.perf_counter() - start)


def cpu_name() -> str:
    """The CPU model, from /proc/cpuinfo where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.data_loading",
        description=__doc__.split("\n")[0],
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--patients", type=int, default=3, help="phantom patients (>= 3)")
    parser.add_argument("--slices", type=int, default=48, help="slices per patient")
    parser.add_argument("--native", type=int, default=512, help="DICOM slice side")
    parser.add_argument("--image-size", type=int, default=256, help="network input side")
    parser.add_argument("--batch-size", type=int, default=16, help="slices per batch")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[0, 2], help="DataLoader worker counts to time"
    )
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per setting")
    args = parser.parse_args(argv)
    if args.patients < 3:
        parser.error("--patients must be at least 3 (train, validation and test each need one)")
    torch.set_num_threads(1)  # one thread per process, as in DataLoader workers

    with tempfile.TemporaryDirectory(prefix="ptx-bench-") as tmp:
        data = Path(tmp) / "data"
        start = time.perf_counter()
        generate_ct_phantom(
            data, patients=args.patients, size=args.native, slices=args.slices, formats="dicom"
        )
        generated = time.perf_counter() - start
        raw = RawDicomSlices(data, args.image_size)
        dm = CTDataModule(
            data_dir=str(data),
            cache_dir=str(Path(tmp) / "cache"),
            image_size=args.image_size,
            split_fractions=(1, 1, 1),
        )
        start = time.perf_counter()
        dm.setup()
        built = time.perf_counter() - start
        cached = ConcatDataset([dm.train_dataset, dm.val_dataset, dm.test_dataset])
        rows = []
        for workers in args.workers:
            for name, dataset in (("raw DICOM", raw), ("cache", cached)):
                rate = slices_per_second(dataset, workers, args.batch_size, args.epochs)
                rows.append((name, workers, rate))

    print(
        f"\n{len(raw)} slices ({args.patients} patients x {args.slices}) of "
        f"{args.native} x {args.native} DICOM -> {args.image_size} x {args.image_size}, "
        f"batch {args.batch_size}, {args.epochs} timed epochs; {cpu_name()}, "
        f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch thread per process"
    )
    print(f"phantom written in {generated:.1f} s; cache built in {built:.1f} s (once)\n")
    print("| source | workers | slices/s |\n|---|---:|---:|")
    for name, workers, rate in rows:
        print(f"| {name} | {workers} | {rate:,.0f} |")
    by_workers = {w: {n: r for n, ww, r in rows if ww == w} for w in args.workers}
    for workers, rates in by_workers.items():
        speedup = rates["cache"] / rates["raw DICOM"]
        print(f"\ncache vs raw DICOM with {workers} worker(s): {speedup:.1f}x", end="")
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
