"""Training throughput: the project's LightningModule + Trainer against a plain PyTorch loop.

``python -m benchmarks.train_loop`` (``make bench-train``) trains the same network on the
same batches at the same precision two ways and reports images per second:

- plain: ``for batch in loader: zero_grad; autocast forward; loss; backward; step``;
- lightning: ``SegmentationModule`` under a ``Trainer`` with what ``ptx fit`` adds to every
  training step (the non-finite-loss guard, the RNG-state callback, the step logging, the
  progress bar); no validation, no checkpoints, no W&B (their cost is per epoch or per run).

Cases: U-Net/ResNet-34 and EFA-Net at the quick profile's 64 x 64 and the paper's 256 x 256,
batch 8, on the phantom's training slices (resized; memory-mapped from the cache, so loading
costs the same in both). CPU: bf16 autocast where the CPU has native bf16 (as the quick
profile), else fp32. GPU: bf16 autocast, channels_last, cudnn.benchmark. The first steps of
each run are warm-up and not timed; each case runs plain, lightning, plain, lightning and
keeps the faster of each pair. Prints a table, then the same figures as one JSON object on
the last line.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date

import pytorch_lightning as pl
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

from experiments.cli import HelpFormatter
from experiments.run_config import supported_precision
from lightning_modules import SegmentationModule
from lightning_modules.callbacks import FiniteLossGuard, RngState

CASES = (("unet", {"encoder_name": "resnet34"}), ("efa_net", {}))


class _Clock(pl.Callback):
    """Wall time from the start of optimiser step ``warmup`` to the end of training."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.seconds = warmup, None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup and self.start is None:
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        self.seconds = time.perf_counter() - self.start


def _loader(dataset, batch_size: int, steps: int) -> DataLoader:
    # shuffled with a fixed generator: both loops see the same batches in the same order
    sampler = torch.utils.data.RandomSampler(
        dataset,
        replacement=True,
        num_samples=steps * batch_size,
        generator=torch.Generator().manual_seed(0),
    )
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True)


def _module(net: str, kwargs: dict, size: int, channels_last: bool) -> SegmentationModule:
    torch.manual_seed(0)
    module = SegmentationModule(
        net=net, net_kwargs=kwargs, image_size=size, channels_last=channels_last
    )
    return module


def plain_loop(module, loader, warmup: int, device, precision: str) -> float:
    """Images/s of a bare loop over ``loader`` (same optimiser, loss and precision)."""
    module = module.to(device).train()
    optimizer = module.optimizer_factory(module.parameters())
    dtype = torch.bfloat16 if precision == "bf16-mixed" else None
    start, images = None, 0
    for step, batch in enumerate(loader):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        image = batch["image"].to(device, non_blocking=True)
        mask = batch["mask"].to(device, non_blocking=True).long()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = module(image)
        loss = F.cross_entropy(logits.float(), mask)
        loss.backward()
        optimizer.step()
        images += len(image) if step >= warmup else 0
    if device.type == "cuda":
        torch.cuda.synchronize()
    return images / (time.perf_counter() - start)


def lightning_loop(module, datamodule, loader, warmup, accelerator, precision) -> float:
    """Images/s of ``Trainer.fit`` over ``loader`` with the training-step callbacks of ptx."""
    clock = _Clock(warmup)
    steps = len(loader)
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=1,
        max_steps=steps,
        max_epochs=1,
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        log_every_n_steps=8,
        callbacks=[FiniteLossGuard(), RngState(), clock, pl.callbacks.RichProgressBar()],
    )
    datamodule.train_dataloader = lambda: loader  # the plain loop's batches, in its order
    trainer.fit(module, datamodule=datamodule)
    return (steps - warmup) * loader.batch_size / clock.seconds


def _datamodule(size: int):
    from datamodules.ct import CTDataModule

    dm = CTDataModule(
        image_size=size,
        split_fractions=(24, 6, 10),
        phantom={"patients": 40, "size": 128, "slices": 16},
    )
    dm.setup("fit")
    return dm


def run_case(net, kwargs, size, steps, warmup, batch_size, device, precision) -> dict:
    datamodule = _datamodule(size)
    cuda = device.type == "cuda"
    loader = _loader(datamodule.train_dataset, batch_size, steps + warmup)
    plain, lightning = [], []
    for _ in range(2):
        plain.append(
            plain_loop(_module(net, kwargs, size, cuda), loader, warmup, device, precision)
        )
        module = _module(net, kwargs, size, cuda)
        lightning.append(lightning_loop(module, datamodule, loader, warmup, device.type, precision))
    best_plain, best_lightning = max(plain), max(lightning)
    return {
        "net": net,
        "image_size": size,
        "batch_size": batch_size,
        "precision": precision,
        "timed_steps": steps,
        "plain_img_s": round(best_plain, 2),
        "lightning_img_s": round(best_lightning, 2),
        "ratio": round(best_lightning / best_plain, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.train_loop",
        description=__doc__.split("\n")[0],
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256], help="image sides")
    parser.add_argument("--batch-size", type=int, default=8, help="images per step")
    parser.add_argument(
        "--steps", type=int, nargs="+", default=[24, 4], help="timed steps per size"
    )
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if cuda:
        torch.backends.cudnn.benchmark = True
    precision = supported_precision("bf16-mixed")
    rows = []
    for size, steps in zip(args.sizes, args.steps, strict=True):
        for net, kwargs in CASES:
            rows.append(
                run_case(net, kwargs, size, steps, args.warmup, args.batch_size, device, precision)
            )
            print(f"[bench-train] {rows[-1]}", flush=True)
    name = torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine()
    threads = torch.get_num_threads()
    print(f"\n{name}, {threads} torch threads, torch {torch.__version__}, {date.today()}\n")
    print("| network | size | batch | precision | plain img/s | Lightning img/s | ratio |")
    print("|---|---:|---:|---|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['net']} | {r['image_size']} | {r['batch_size']} | {r['precision']} "
            f"| {r['plain_img_s']:.1f} | {r['lightning_img_s']:.1f} | {r['ratio']:.2f} |"
        )
    summary = {
        "benchmark": "train_loop",
        "device": name,
        "date": str(date.today()),
        "cases": rows,
        "ratio": min(r["ratio"] for r in rows),
        "lightning_img_s": {f"{r['net']}@{r['image_size']}": r["lightning_img_s"] for r in rows},
        "plain_img_s": {f"{r['net']}@{r['image_size']}": r["plain_img_s"] for r in rows},
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
