"""``PtxCLI``: LightningCLI for ``SegmentationModule`` + a ``SegmentationDataModule`` subclass.

On top of Lightning's: a ``run`` section (``RunSettings``: group, name, runs root), a
``checkpoint`` section (the ``ModelCheckpoint`` writing ``best.ckpt`` and ``last.ckpt``),
the run directory ``<runs root>/<group>/<name>/`` wired into checkpoints, config and W&B,
``best``/``last`` resolved to that run's checkpoints, the run's callbacks (record, W&B
overlays, RNG state, non-finite loss guard, rich progress bar), and ``fit`` followed by
validation and test of the best checkpoint, so one ``fit`` leaves a complete record; a
``wandb`` section (``experiments.wandb_setup.WandbSettings``).

``PtxCLI(args, resolve_only=True)`` parses and resolves the config and stops there: nothing
is built, written or run (``resolved_config``: ``--print_config`` and the sweep planner).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import yaml
from jsonargparse import Namespace
from jsonargparse.typing import import_object
from pytorch_lightning.callbacks import ModelCheckpoint, RichProgressBar
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from datamodules.base import SegmentationDataModule
from datamodules.phantom import VERSIONS, phantom_version
from experiments.run_config import (
    config_hash,
    cuda_available,
    supported_precision,
    typed_values,
    wandb_config,
)
from experiments.run_dir import (
    RunSettings,
    prepare_fit_dir,
    resolve_checkpoint,
    run_name,
    runs_root,
)
from experiments.run_info import network_complexity, run_info, run_tags
from experiments.wandb_setup import WandbSettings, create_wandb_logger, logger_arguments
from lightning_modules import records
from lightning_modules.callbacks import (
    FiniteLossGuard,
    LastCheckpoint,
    RngState,
    RunRecord,
    TestPredictions,
    WandbOverlays,
)
from lightning_modules.diagnosis import DiagnosisRule
from lightning_modules.module import SegmentationModule

log = logging.getLogger("ptx.run")

CHECKPOINT_DEFAULTS = {  # the `checkpoint` section: best.ckpt by the monitored metric
    "checkpoint.filename": "best",
    "checkpoint.mode": "max",
    "checkpoint.save_top_k": 1,
    # Lightning 2.6 writes save_last only in epochs that improved the best: last.ckpt comes
    # from its own callback (LastCheckpoint), so resuming always continues the latest epoch
    "checkpoint.save_last": False,
    "checkpoint.auto_insert_metric_name": False,
    # testing needs only the weights (and hyperparameters): a third of the size with Adam
    "checkpoint.save_weights_only": True,
    # a run directory holds one run (prepare_fit_dir), so files are overwritten in place
    "checkpoint.enable_version_counter": False,
}


class PtxCLI(LightningCLI):
    """LightningCLI of the project (see the module docstring); ``args`` as LightningCLI's."""

    def __init__(
        self, args: list[str] | None = None, run: bool = True, resolve_only: bool = False
    ) -> None:
        self.run_dir: Path | None = None
        self.fresh = True
        # --print_config: print what this run will use (filled in below), not the raw parse
        show = [a for a in args or [] if a.split("=")[0] == "--print_config"]
        args = [a for a in args or [] if a not in show] if args is not None else None
        self.resolve_only = resolve_only or bool(show)
        super().__init__(
            SegmentationModule,
            SegmentationDataModule,
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
            seed_everything_default=0,
            args=args,
            run=run,
        )
        if show:
            print(self.resolved_yaml())
            raise SystemExit(0)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_class_arguments(RunSettings, "run")
        parser.add_class_arguments(WandbSettings, "wandb")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(CHECKPOINT_DEFAULTS)

    # ---- run directory ----------------------------------------------------------------------
    def before_instantiate_classes(self) -> None:
        command = self.subcommand or "instantiate"
        cfg = self.config[command] if self.subcommand else self.config
        data_class = import_object(cfg.data.class_path)
        modality = getattr(data_class, "modality", "") or "runs"
        init = cfg.data.init_args
        # the dicts without value types: --model.loss_kwargs.weight_power 0.75 gives 0.75
        for owner, key in (
            (cfg.model, "net_kwargs"),
            (cfg.model, "loss_kwargs"),
            (init, "phantom"),
        ):
            if key in owner:
                setattr(owner, key, typed_values(getattr(owner, key)))
        if data_class_draws_phantom(data_class, init):  # recorded and hashed with the run
            init.phantom = {**(init.phantom or {}), "version": phantom_version(modality)}
        # one source for values two parts need: the data's channels and size, the monitor
        cfg.model.in_channels = cfg.data.init_args.in_channels
        cfg.model.image_size = cfg.data.init_args.image_size
        cfg.checkpoint.monitor = cfg.model.monitor
        cfg.trainer.precision = supported_precision(cfg.trainer.precision)
        if cfg.model.channels_last is None:  # the default: on the GPU, where it is known to pay
            accelerator = str(cfg.trainer.accelerator or "auto")
            cfg.model.channels_last = accelerator in ("gpu", "cuda") or (
                accelerator == "auto" and cuda_available()
            )
        run = cfg.run
        run.group = run.group or modality
        run.name = run.name or run_name(
            cfg.model.net, cfg.model.net_kwargs, cfg.model.loss, cfg.seed_everything
        )
        root = runs_root(run.runs_dir)
        run.runs_dir = str(root)
        self.run_dir = root / run.group / run.name
        cfg.checkpoint.dirpath = str(self.run_dir / "checkpoints")
        cfg.trainer.default_root_dir = str(self.run_dir)
        self.modality = modality
        if self.resolve_only:
            return
        if command == "fit":
            wanted = cfg.ckpt_path
            cfg.ckpt_path = resolve_checkpoint(self.run_dir, wanted, "fit")
            self.fresh = cfg.ckpt_path is None
            if rank_zero_only.rank == 0:  # other DDP ranks start after rank 0 prepared it
                # asking for `last` where there is none means: start this run over
                prepare_fit_dir(self.run_dir, not self.fresh, run.overwrite or wanted == "last")
            if not self.fresh:
                log.info("resuming %s from %s", run.name, cfg.ckpt_path)
        elif command in ("validate", "test"):
            cfg.ckpt_path = resolve_checkpoint(self.run_dir, cfg.ckpt_path or "best", command)
            self.fresh = False
            self._parse_ckpt_path()  # rebuild the network exactly as it was checkpointed
            self.save_config_callback = None  # config.yaml stays the one of the fit

    def instantiate_classes(self) -> None:
        if not self.resolve_only:
            super().instantiate_classes()

    def _run_subcommand(self, subcommand: str) -> None:
        if not self.resolve_only:
            super()._run_subcommand(subcommand)

    @property
    def resolved(self) -> dict:
        """The resolved config of the subcommand (or of the whole, without one), as plain data."""
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        return json.loads(json.dumps(cfg.clone().as_dict(), default=str))  # paths as text

    def resolved_yaml(self) -> str:
        """The resolved config as YAML, with the W&B logger the run will create."""
        config = self.resolved
        if config.get("trainer", {}).get("logger") is None:
            arguments = self.logger_arguments()
            arguments.pop("why")
            wandb = config.get("wandb") or {}
            wandb.update({k: arguments[k] for k in ("project", "entity", "mode", "tags")})
            config["wandb"] = {**wandb, "dir": arguments["save_dir"]}
            config["trainer"]["logger"] = {
                "class_path": "experiments.wandb_setup.ResilientWandbLogger",
                "init_args": arguments,
            }
        config.pop("config", None)
        header = "# the resolved config: the values this run uses (ptx fit ... --print_config)\n"
        return header + yaml.safe_dump(config, sort_keys=False, width=100)

    def _set_seed(self) -> None:
        if not self.resolve_only:  # resolving builds nothing random: the RNGs stay as they are
            super()._set_seed()

    def logger_arguments(self, tags: list[str] | None = None) -> dict:
        """The W&B logger's project, entity, folder, mode, tags and ``log_model``; ``tags``
        are the run's own (``run_tags``), made from the config when not given."""
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        settings = WandbSettings(**(cfg.wandb.as_dict() if cfg.wandb else {}))
        if tags is None:
            run, model = cfg.run, cfg.model.as_dict()
            info = run_info(
                run.experiment, run.profile, run.group, run.name, self.modality, model,
                cfg.seed_everything,
            )  # fmt: skip
            tags = run_tags(info)
        return logger_arguments(settings, self.run_dir, self.modality, tags)

    def instantiate_trainer(self, **kwargs):
        trainer_cfg = self._get(self.config_init, "trainer")
        run: RunSettings = self._get(self.config_init, "run")
        seed = self._get(self.config_init, "seed_everything")
        model_cfg = self._get(self.config, "model")
        model_cfg = model_cfg.as_dict() if isinstance(model_cfg, Namespace) else dict(model_cfg)
        info = run_info(
            run.experiment, run.profile, run.group, run.name, self.modality, model_cfg, seed
        )
        resolved = self.resolved
        if self.subcommand == "fit":  # a lone test keeps the hash of the fit
            info["config_hash"] = config_hash(resolved)
        if run.sweep:
            info.update(sweep=run.sweep, cell=run.cell)
        model = self.model
        callbacks = [
            *(trainer_cfg.get("callbacks") or []),
            FiniteLossGuard(),
            RngState(),
            RunRecord(
                self.run_dir,
                info,
                resumed=not self.fresh,
                complexity=lambda: network_complexity(model, model_cfg),
            ),
            WandbOverlays(run.overlays, seed),
            TestPredictions(self.run_dir, run.overlays),
        ]
        if trainer_cfg.get("enable_progress_bar") is not False:
            callbacks.append(RichProgressBar())
        logger = trainer_cfg.get("logger")
        if logger is None or logger is True:
            datamodule = self.datamodule
            logger = create_wandb_logger(
                self.run_dir,
                self.logger_arguments(run_tags(info)),
                group=run.group,
                name=run.name,
                fresh=self.fresh,
                config=lambda: wandb_config(resolved, datamodule.data_root),
            )
        trainer = super().instantiate_trainer(callbacks=callbacks, logger=logger, **kwargs)
        # after the `checkpoint` one, which stays trainer.checkpoint_callback (the "best")
        trainer.callbacks.append(
            LastCheckpoint(self.run_dir / "checkpoints", run.last_checkpoint_every_n_epochs)
        )
        return trainer

    def before_test(self) -> None:
        """A lone ``ptx test`` applies the rule ``ptx tune-postprocessing`` stored for the run,
        else, for a run trained with the ``tuned`` rule, the thresholds its fit tuned."""
        if self.model.rule is not None:
            return
        source = Path(self.config[self.subcommand].run.model_run or self.run_dir)
        chosen = records.read_postprocessing(source)
        if chosen is not None:
            self.model.rule = DiagnosisRule.from_dict(chosen)
            log.info(
                "diagnosis rule from %s: %s", records.POSTPROCESSING, self.model.rule.describe()
            )
            return
        if self.model.hparams.diagnosis_rule != "tuned":
            return
        stored = records.read_status(source).get("diagnosis")
        if stored and stored.get("tuned_on"):
            self.model.rule = DiagnosisRule.from_dict(stored)
            log.info("diagnosis rule from the run record: %s", self.model.rule.describe())
        else:
            log.warning(
                "diagnosis rule 'tuned' but %s holds no tuned thresholds: testing with the "
                "untuned ones (run ptx validate first, which tunes them)",
                self.run_dir / records.METRICS,
            )

    # ---- fit = train, then validate and test the best checkpoint ------------------------
    def after_fit(self) -> None:
        checkpoint = self.trainer.checkpoint_callback
        best = "best" if checkpoint is not None and checkpoint.best_model_path else None
        if best is None:  # e.g. validation switched off: nothing ranked the epochs
            log.warning("no best checkpoint to test; testing the weights training ended with")
        self.trainer.validate(self.model, datamodule=self.datamodule, ckpt_path=best)
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best)


def data_class_draws_phantom(data_class, init_args) -> bool:
    """Whether this data config reads the phantom: a ptx DataModule with no data folder
    (and, for CT, no manifest)."""
    if getattr(data_class, "modality", "") not in VERSIONS:
        return False
    return init_args.get("data_dir") is None and init_args.get("manifest") is None


def resolved_config(args: list[str]) -> dict:
    """The resolved config of ``ptx``'s LightningCLI ``args`` (with the subcommand first,
    e.g. ``["fit", "--config", ...]``), without building or running anything."""
    return PtxCLI(args=args, resolve_only=True).resolved


__all__ = ["PtxCLI", "SegmentationDataModule", "resolved_config"]
