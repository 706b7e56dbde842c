"""The on-disk record of a run, ``runs/<group>/<name>/`` (docs/design.md, "Run records").

``split.json`` when training starts; ``metrics.json`` after every validation (status
``running``; its ``history`` gains one row per training epoch: the epoch's mean training
loss and the validation metrics, for the training curves of a sweep report), at the end of
training (``fitted``) and after the test (``finished``), or
``failed`` with the error; ``per_image.csv`` and ``per_patient.csv`` after the test. Only
global rank 0 writes. The numbers arrive from the module with each pass
(``on_evaluation_result``, ``lightning_modules.evaluation``) and are kept here until written.
A sweep reads nothing else, so every number it tabulates comes from here. The files'
format has one owner, ``lightning_modules.records``, which writes them here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl
import torch

from lightning_modules import records
from lightning_modules.evaluation import EvaluationResult
from lightning_modules.metric_functions import RECORD_VERSION

log = logging.getLogger("ptx.run")


def describe_device(trainer: pl.Trainer) -> str:
    """E.g. ``cpu x1`` or ``cuda NVIDIA H100 80GB HBM3 x2`` (devices x nodes)."""
    device = trainer.strategy.root_device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    count = trainer.num_devices * trainer.num_nodes
    return " ".join(p for p in (device.type, name, f"x{count}") if p)


class RunRecord(pl.Callback):
    """Writes the run directory's ``split.json``, ``metrics.json``, ``per_image.csv`` and
    ``per_patient.csv``.

    Args:
        run_dir: ``runs/<group>/<name>``.
        info: identity of the run copied into ``metrics.json`` (``name``, ``group``,
            ``experiment``, ``modality``, ``model``, ``variant``, ``encoder``, ``loss``,
            ``seed``, ``profile``).
        resumed: training continues an earlier process of this run: its wall time is added.
        complexity: returns ``(params, gmacs)`` of the network; called once, on rank 0, when
            the run starts (so building a trainer without running measures nothing).
    """

    def __init__(
        self,
        run_dir: str | Path,
        info: dict,
        resumed: bool = False,
        complexity: Callable[[], tuple[int, float | None]] | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.info = dict(info)
        self.resumed = resumed
        self.complexity = complexity
        self.record: dict | None = None
        self.results: dict[str, EvaluationResult] = {}  # the last pass of each stage
        self._start = 0.0
        self._earlier_wall_time = 0.0
        self._times_fit = False

    def _write(self, trainer: pl.Trainer) -> None:
        if trainer.is_global_zero:
            if self._times_fit:
                elapsed = time.perf_counter() - self._start
                self.record["wall_time_s"] = round(self._earlier_wall_time + elapsed, 2)
            records.write_metrics(self.run_dir, self.record)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.record is None:  # first stage of this process (fit, or a lone test)
            self._start = time.perf_counter()
            self._times_fit = stage == "fit"
            keep = stage != "fit" or self.resumed
            self.record = records.read_status(self.run_dir) if keep else {}
            if self._times_fit and self.resumed:
                self._earlier_wall_time = float(self.record.get("wall_time_s") or 0.0)
            self.record.update(self.info)
            self.record["record_version"] = RECORD_VERSION
            if self.complexity is not None and trainer.is_global_zero:
                self.record["params"], self.record["gmacs"] = self.complexity()
                if trainer.logger is not None:  # the W&B run config shows the network's size
                    size = {k: self.record[k] for k in ("params", "gmacs")}
                    trainer.logger.log_hyperparams(size)
            self.record.setdefault("status", records.CREATED)
        self.record["device"] = describe_device(trainer)
        # intra-op threads: a CPU cell's wall time and numbers depend on them (a quick
        # sweep runs two cells with half the threads each, ablations/workers.py)
        self.record["torch_threads"] = torch.get_num_threads()
        self.record["precision"] = str(trainer.precision)
        if trainer.is_global_zero:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            split = self.run_dir / records.SPLIT
            if stage == "fit" or not split.exists():
                trainer.datamodule.save_split(split)

    def on_fit_start(self, trainer, pl_module) -> None:
        self.record["status"] = records.RUNNING
        self._write(trainer)

    def on_evaluation_result(self, trainer, pl_module, result: EvaluationResult) -> None:
        self.results[result.stage] = result

    def on_validation_end(self, trainer, pl_module) -> None:
        result = self.results.pop("val", None)
        if trainer.sanity_checking or result is None:
            return
        self.record["val"] = result.metrics
        if trainer.state.fn == "fit":
            self.record["epochs"] = trainer.current_epoch + 1
        else:  # validating a checkpoint (after fit: the best one)
            self.record["val_checkpoint"] = Path(trainer.ckpt_path or "").name or None
        self._write(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # validation of this epoch (if any) ran before this hook; the epoch's mean training
        # loss is complete here
        row = {"epoch": trainer.current_epoch + 1, "step": trainer.global_step}
        for key, value in trainer.callback_metrics.items():
            # per-epoch means only (no per-step values, no spreads): the curves of a report
            if key.endswith(("_step", "_sd")) or not key.startswith(("train/", "val/")):
                continue
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                row[key.removesuffix("_epoch")] = float(value)
        history = [r for r in self.record.get("history", []) if r.get("epoch", 0) < row["epoch"]]
        self.record["history"] = [*history, row]
        self._write(trainer)

    def on_fit_end(self, trainer, pl_module) -> None:
        checkpoint = trainer.checkpoint_callback
        if checkpoint is not None and checkpoint.best_model_score is not None:
            self.record["monitor"] = checkpoint.monitor
            self.record["best_score"] = float(checkpoint.best_model_score)
        self.record["status"] = records.FITTED
        self._write(trainer)

    def on_test_end(self, trainer, pl_module) -> None:
        result = self.results.pop("test")
        self.record["test"] = test = result.metrics
        self.record["test_checkpoint"] = Path(trainer.ckpt_path or "").name or None
        self.record["diagnosis"] = result.diagnosis
        self.record["status"] = records.FINISHED
        self._write(trainer)
        if not trainer.is_global_zero:
            return
        rows = result.per_image
        records.write_per_image(self.run_dir, rows)
        records.write_per_patient(self.run_dir, result.per_patient)
        log.info(
            "run record %s: test dice %.4f over %d images with pneumothorax (%d patients), "
            "3-D dice %.4f, empty-image false positives %.3f, Kaggle dice %.4f (%d images)",
            self.run_dir,
            test["dice"],
            test["n_positive"],
            test["n_patients_positive"],
            test["dice_volume"],
            test["empty_fp_rate"],
            test["dice_kaggle"],
            test["n_images"],
        )
        if rows and not any(row["pred_area"] for row in rows):
            log.warning(
                "%s predicted no pneumothorax on any of its %d test images: it has not learnt "
                "to segment (its dice is 0); train longer or check the learning rate",
                self.info.get("name", self.run_dir.name),
                len(rows),
            )

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if self.record is None:
            return
        self.record["status"] = records.FAILED
        self.record["error"] = f"{type(exception).__name__}: {exception}"
        self._write(trainer)
