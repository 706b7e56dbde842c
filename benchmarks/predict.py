"""Prediction throughput and memory: ``ptx predict``'s CT path against a bare forward pass.

``python -m benchmarks.predict`` (``make bench-predict``) writes one phantom CT of 300 slices
at 512 x 512 (NIfTI), then, for U-Net/ResNet-34 at the quick profile's 64 x 64 and at
256 x 256, times in a fresh process each:

- predict: what ``ptx predict`` does for one volume (``experiments.predict_ct``): read the
  NIfTI, reorient, window, resize each slice, segment, resize the probabilities back,
  threshold, write the mask NIfTI on the input grid, compute the volumes;
- bare: ``torch.no_grad()`` forward passes over the same slices, already windowed and
  resized, in the same batches (the floor a predict loop cannot beat).

Reports seconds, slices/s, the ratio bare / predict (1.0: reading, resampling and writing
cost nothing) and the process's peak resident memory. The weights are random: speed and
memory do not depend on them. Prints a table, then the same figures as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import tempfile
import time
from argparse import Namespace
from datetime import date
from pathlib import Path


def _case(volume_path: str, size: int, batch_size: int, threads: int) -> dict:
    import numpy as np
    import torch

    from datamodules.readers.nifti import axial_slices, read_nifti_volume, to_canonical
    from datamodules.transforms import lung_window, resize_images
    from experiments.predict_ct import Volume, predict_volume
    from lightning_modules.diagnosis import DiagnosisRule
    from lightning_modules.inference import Predictor
    from lightning_modules.nets import create_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = create_model("unet", in_channels=1, classes=2, encoder_name="resnet34").eval()
    config = {"data": {"class_path": "datamodules.ct.CTDataModule", "init_args": {}}}
    predictor = Predictor(net, size, 1, DiagnosisRule(), config)
    volume = Volume("bench", (Path(volume_path),), "nifti")
    with tempfile.TemporaryDirectory() as out:
        options = Namespace(batch_size=batch_size, save_probabilities=False)
        predict_volume(predictor, volume, Path(out), options)  # warm-up (page cache, allocator)
        start = time.perf_counter()
        row = predict_volume(predictor, volume, Path(out), options)
        predict_s = time.perf_counter() - start
    hu, affine = to_canonical(*read_nifti_volume(volume_path))
    slices = resize_images(lung_window(axial_slices(hu)), size)
    del hu
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(slices), batch_size):
            net(torch.from_numpy(np.ascontiguousarray(slices[i : i + batch_size]))[:, None])
    bare_s = time.perf_counter() - start
    return {
        "image_size": size,
        "slices": int(row["slices_total"]),
        "predict_s": round(predict_s, 2),
        "bare_s": round(bare_s, 2),
        "slices_per_s": round(row["slices_total"] / predict_s, 1),
        "ratio": round(bare_s / predict_s, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main(argv: list[str] | None = None) -> int:
    from experiments.cli import HelpFormatter

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.predict",
        description=__doc__.split("\n")[0],
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[64, 256], help="network input sides"
    )
    parser.add_argument("--slices", type=int, default=300, help="slices of the CT volume")
    parser.add_argument("--native", type=int, default=512, help="native slice side")
    parser.add_argument("--batch-size", type=int, default=16, help="slices per batch")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args(argv)
    from datamodules.phantom.ct import generate_ct_phantom

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        generate_ct_phantom(
            Path(tmp), patients=1, size=args.native, slices=args.slices, formats="nifti"
        )
        path = next(p for p in Path(tmp).rglob("image.nii*"))
        print(f"[bench-predict] phantom {args.slices} x {args.native}^2 written in "
              f"{time.perf_counter() - start:.0f} s", flush=True)  # fmt: skip
        spawn = mp.get_context("spawn")  # a fresh process per case: its own peak memory
        for size in args.sizes:
            with spawn.Pool(1) as pool:
                rows.append(pool.apply(_case, (str(path), size, args.batch_size, args.threads)))
            print(f"[bench-predict] {rows[-1]}", flush=True)
    print(f"\n{platform.processor() or platform.machine()}, {args.threads} threads, "
          f"{date.today()}, U-Net/ResNet-34, batch {args.batch_size}, one CT of "
          f"{args.slices} x {args.native} x {args.native}\n")  # fmt: skip
    print("| image size | predict s | slices/s | bare forward s | ratio | peak RSS MB |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['image_size']} | {r['predict_s']:.1f} | {r['slices_per_s']:.1f} "
            f"| {r['bare_s']:.1f} | {r['ratio']:.2f} | {r['peak_rss_mb']} |"
        )
    summary = {
        "benchmark": "predict",
        "device": platform.processor() or platform.machine(),
        "date": str(date.today()),
        "cases": rows,
        "ratio": min(r["ratio"] for r in rows),
        "slices_per_s": {str(r["image_size"]): r["slices_per_s"] for r in rows},
        "peak_rss_mb": max(r["peak_rss_mb"] for r in rows),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
