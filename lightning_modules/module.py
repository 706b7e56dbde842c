"""``SegmentationModule``: the one LightningModule that trains every network of both papers.

The network and the loss are chosen by registry name (``create_model``, ``create_loss``); the
optimiser and the learning-rate scheduler are injected as LightningCLI callables
(``lightning_modules.optim``), so a paper comparison is a change of config values only.
Train, validation and test share :meth:`SegmentationModule.model_step`; validation and test
accumulate per-image confusion counts in a :class:`SegmentationMetrics` per stage (built in
``setup`` from the evaluation index the data hands over, ``set_evaluation_data``) and log
every set-level key as ``val/<key>`` and ``test/<key>``; the whole result of a pass (with the
per-image and per-patient rows of the test) goes to the callbacks that listen for it
(``lightning_modules.evaluation``), never parked on the module. Prediction is the argmax over
classes (class 1 = pneumothorax); the image-level call is the diagnosis rule's
(``lightning_modules.diagnosis``) on the PTX probabilities. With the ``tuned`` rule,
validating a checkpoint (the validation ``ptx fit`` runs on its best checkpoint) also
chooses the rule's thresholds, which the test then applies.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable

from datamodules.dataset import EvaluationIndex
from lightning_modules.diagnosis import PAPER_MIN_AREA, RULES, DiagnosisRule
from lightning_modules.evaluation import EvaluationResult, publish
from lightning_modules.losses import create_loss
from lightning_modules.metrics import SegmentationMetrics
from lightning_modules.nets import create_model, model_entry
from lightning_modules.optim import fit_to_run, set_batchnorm_momentum
from lightning_modules.postprocessing import ThresholdCounts, tune_rule

log = logging.getLogger("ptx.run")
EXAMPLES = {
    "optimizer": "functools.partial(torch.optim.Adam, lr=1e-3)",
    "scheduler": "lightning_modules.optim.WarmupCosineLR",
}


class SegmentationModule(pl.LightningModule):
    """Segmentation network + loss + optimiser, with the papers' metrics per stage.

    Args:
        net, net_kwargs: registry name of the network and its keywords
            (``encoder_name``, ``growth_rate``, ...).
        loss, loss_kwargs: registry name of the loss (``ce``, ``wce``, ``swce``, ``dice``,
            ``ce+dice``) and its keywords.
        in_channels, classes: network input channels and output classes (PTX = class 1).
        image_size: side of the input images; networks whose registry entry is ``fixed_size``
            (the TransUNets' position embeddings) are built for it unless ``net_kwargs``
            names one. The CLI sets it (and ``in_channels``) from the datamodule.
        optimizer: builds the optimiser from the parameters (a config's
            ``{class_path: torch.optim.Adam, init_args: {lr: ...}}``; default Adam at 1e-3).
            Adam's weight decay is the coupled L2 term, as in the X-ray paper's setting.
        scheduler: builds the learning-rate scheduler from the optimiser, or None (constant
            rate, as both papers). Steps per epoch unless its class has ``interval = "step"``
            (``lightning_modules.optim.WarmupCosineLR``); ``ReduceLROnPlateau`` follows
            ``monitor``.
        monitor: the metric the best checkpoint, early stopping and a plateau schedule follow.
        bn_momentum: running-statistics momentum of every BatchNorm of the network, or None
            for each library's own (smp's EfficientNets: 0.01, everything else 0.1).
        diagnosis_rule: ``paper`` (more than ``min_area`` predicted PTX pixels on the grid
            the network predicts on), ``scaled`` (``min_area`` at the data's
            ``native_size``, scaled to that grid) or ``tuned`` (thresholds and minimum area
            chosen on the validation set; see ``lightning_modules.postprocessing``).
        min_area: the rule's area in pixels (paper: 50).
        val_hausdorff: also compute HD/HD95 at validation (CPU work each epoch); the test
            stage always computes them.
        channels_last: NHWC memory format for network and inputs (the result is the same).
            None: on a GPU only, where it speeds up mixed-precision convolutions; ``ptx fit``
            resolves it from the device, and a module built directly reads None as off. On a
            CPU it depends on the network, so a profile says True where it measured a gain
            (MS_scSE_FC-DenseNet: 1.1-1.5x; the CT encoders: slower).
    """

    def __init__(
        self,
        net: str = "unet",
        net_kwargs: dict | None = None,
        loss: str = "ce",
        loss_kwargs: dict | None = None,
        in_channels: int = 1,
        classes: int = 2,
        image_size: int | None = None,
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: LRSchedulerCallable | None = None,
        monitor: str = "val/dice",
        bn_momentum: float | None = None,
        diagnosis_rule: str = "paper",
        min_area: float = PAPER_MIN_AREA,
        val_hausdorff: bool = False,
        channels_last: bool | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        for name, value in (("optimizer", optimizer), ("scheduler", scheduler)):
            if isinstance(value, str):  # ptx-seg 0.1 named them (`optimizer: adam`)
                raise ValueError(
                    f"{name}={value!r}: pass a callable, e.g. {EXAMPLES[name]} "
                    "(docs/training.md, 'Optimiser and schedule')"
                )
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        net_kwargs = dict(net_kwargs or {})
        if image_size and model_entry(net).fixed_size:
            net_kwargs.setdefault("img_size", image_size)
        self.net = create_model(net, in_channels=in_channels, classes=classes, **net_kwargs)
        set_batchnorm_momentum(self.net, bn_momentum)
        self.criterion = create_loss(loss, **(loss_kwargs or {}))
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        if diagnosis_rule not in RULES:
            raise ValueError(f"unknown diagnosis_rule {diagnosis_rule!r}; use one of {RULES}")
        self.rule: DiagnosisRule | None = None  # built in setup (``scaled`` needs the data)
        self.threshold_counts = ThresholdCounts()
        self.evaluation_index: dict[str, EvaluationIndex] = {}  # set_evaluation_data
        self.native_size: int | None = None
        self.metrics: dict[str, SegmentationMetrics] = {}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``B x in_channels x H x W`` images in [0, 1] -> ``B x classes x H x W`` logits."""
        return self.net(images.contiguous(memory_format=self.memory_format))

    def model_step(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss (scalar, float32) and logits (``B x classes x H x W``) of a batch."""
        logits = self(batch["image"])
        # fp32 loss under mixed precision; the masks arrive as uint8, the loss wants classes
        loss = self.criterion(logits.float(), batch["mask"].long())
        return loss, logits

    # ---- stages ---------------------------------------------------------------------------
    def set_evaluation_data(
        self, index: Mapping[str, EvaluationIndex], native_size: int | None = None
    ) -> None:
        """What the metrics need to know of the evaluated images, handed over by the data.

        ``SegmentationDataModule.setup`` calls it (before this module's ``setup``, on every
        process); with other data, call it before fitting or testing.

        Args:
            index: per stage (``val``, ``test``) the images' ids, patients and ground-truth
                labels, in dataset order (``datamodules.dataset.EvaluationIndex``).
            native_size: the source grid side the ``scaled`` diagnosis rule refers to.
        """
        self.evaluation_index = dict(index)
        self.native_size = native_size

    def setup(self, stage: str) -> None:
        """Build the metric objects of the stages about to run from the evaluation index."""
        wanted = {"fit": ("val",), "validate": ("val",), "test": ("test",)}.get(stage, ())
        if self.rule is None:
            h = self.hparams
            reference = self.native_size if h.diagnosis_rule == "scaled" else None
            self.rule = DiagnosisRule(h.diagnosis_rule, h.min_area, reference_size=reference)
        for name in wanted:
            index = self.evaluation_index.get(name)
            if index is None:
                raise RuntimeError(
                    f"SegmentationModule has no evaluation index for {name!r} (ids and "
                    "patients for the metrics): a SegmentationDataModule hands it over in its "
                    "setup(); with other data call set_evaluation_data() first"
                )
            metric = SegmentationMetrics(
                ids=index.ids,
                patients=index.patients,
                hausdorff=name == "test" or self.hparams.val_hausdorff,
            )
            # an attribute, so Lightning moves it to the device with the network
            setattr(self, f"{name}_metrics", metric)
            self.metrics[name] = metric

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, _ = self.model_step(batch)
        size = len(batch["image"])
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=size)
        return loss

    @property
    def _tuning(self) -> bool:
        """Validating a checkpoint with the ``tuned`` rule: choose its thresholds now."""
        return self.rule.rule == "tuned" and self.trainer.state.fn == "validate"

    def _eval_step(self, stage: str, batch: dict) -> dict:
        loss, logits = self.model_step(batch)
        pred = logits.argmax(1)
        probabilities = logits.float().softmax(1)[:, 1]
        self.log(f"{stage}/loss", loss, on_epoch=True, sync_dist=True, batch_size=len(pred))
        calls = self.rule.calls(probabilities)
        self.metrics[stage].update(pred, batch["mask"], batch["index"], calls)
        if stage == "val" and self._tuning:
            self.threshold_counts.update(probabilities, batch["mask"], batch["index"])
        return {"pred": pred}  # the overlay callback picks its images from here

    def validation_step(self, batch: dict, batch_idx: int) -> dict:
        return self._eval_step("val", batch)

    def test_step(self, batch: dict, batch_idx: int) -> dict:
        return self._eval_step("test", batch)

    def _epoch_end(self, stage: str) -> None:
        metric = self.metrics[stage]
        if self.trainer.sanity_checking:  # a few batches only: not worth a number
            metric.reset()
            return
        results = metric.compute()  # collective under DDP: every rank gets the same values
        if stage == "val" and self._tuning:
            self.rule = tune_rule(self.threshold_counts.compute(), self.threshold_counts.grid)
            self.threshold_counts.reset()
            log.info(
                "diagnosis rule %s (val Kaggle Dice %.4f)",
                self.rule.describe(),
                self.rule.objective,
            )
        result = EvaluationResult(stage, results, diagnosis=self.rule.to_dict())
        if stage == "test":  # the rows are for the record of the test only
            result = replace(result, per_image=metric.per_image(), per_patient=metric.per_patient())
        publish(self.trainer, self, result)
        logged = {f"{stage}/{k}": float(v) for k, v in results.items()}
        shown = {k: logged.pop(k) for k in (f"{stage}/dice",) if k in logged}
        # identical on every rank, so the mean across ranks changes nothing (and no warning)
        self.log_dict(logged, sync_dist=True)
        self.log_dict(shown, prog_bar=True, sync_dist=True)
        metric.reset()

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        from lightning_modules.bundle import project_version

        # named when a later version cannot load these weights (inference.load_checkpoint)
        checkpoint["ptx_seg_version"] = project_version()

    # ---- optimisation ---------------------------------------------------------------------
    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = fit_to_run(
            self.scheduler_factory(optimizer), self.trainer.estimated_stepping_batches
        )
        interval = getattr(scheduler, "interval", "epoch")
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "interval": interval,
                "monitor": self.hparams.monitor,
            },
        }
