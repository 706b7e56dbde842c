"""``ptx tune-postprocessing RUN``: choose the SIIM-ACR triplet for a trained run.

A run trained with the ``paper`` (or ``scaled``) rule can still be post-processed as the
SIIM-ACR winners did: its best checkpoint is validated once more on the run's own validation
split (``RUN/split.json``) with the ``tuned`` rule, which searches the top threshold, minimum
area and pixel threshold on those images (``lightning_modules.postprocessing``). The chosen
rule goes to ``RUN/postprocessing.json`` (``lightning_modules.records``); from then on
``ptx predict``, ``ptx export`` and ``ptx test --model RUN`` apply it. The validation passes
keep their own record in ``RUN/tuning/`` (the metrics of a second pass with the chosen rule;
W&B run); the run's own record is not touched. No test image is looked at.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from experiments.cli import HelpFormatter
from lightning_modules import records
from lightning_modules.metric_functions import RECORD_VERSION

log = logging.getLogger("ptx")
TUNING = "tuning"  # RUN/tuning/: the record of the validation pass that chose the rule


def tuning_args(run_dir: Path, rest: list[str]) -> list[str]:
    """LightningCLI arguments (no subcommand) building ``run_dir``'s module and data with the
    ``tuned`` rule, its record in ``run_dir/tuning``."""
    import yaml

    config = records.read_config(run_dir)
    for key in ("ckpt_path", "weights_only"):  # Trainer.fit's: no key without a subcommand
        config.pop(key, None)
    args = ["--config", yaml.safe_dump(config), "--run.model_run", str(run_dir)]
    args += ["--model.diagnosis_rule", "tuned"]
    split = run_dir / records.SPLIT
    if split.is_file():  # the very validation patients of the fit, whatever the data's order
        args += ["--data.init_args.split_file", str(split)]
    args += ["--run.runs_dir", str(run_dir.parent), "--run.group", run_dir.name]
    args += ["--run.name", TUNING, "--run.sweep", "null", "--run.cell", "null"]
    return args + rest


def tune(model: str | Path, rest: list[str] | None = None) -> dict:
    """Tune the triplet of a run folder (its ``best.ckpt``) or of a checkpoint in one; write
    and return ``postprocessing.json``'s content. ``rest``: extra LightningCLI arguments
    (e.g. ``--data.init_args.batch_size 4``)."""
    from experiments.train import finish_wandb, run
    from lightning_modules.inference import run_files

    checkpoint, run_dir = run_files(model)
    run_dir = run_dir.resolve()
    cli = run("validate", tuning_args(run_dir, list(rest or [])), run_command=False)
    failed = True
    try:  # the checkpoint's weights only: its hyperparameters would bring the untuned rule back
        cli.trainer.validate(cli.model, datamodule=cli.datamodule, ckpt_path=str(checkpoint),
                             weights_only=True)  # fmt: skip
        rule = cli.model.rule
        if rule.rule != "tuned" or rule.tuned_on != "val":
            raise RuntimeError(f"{run_dir}: validation ended without a tuned rule ({rule})")
        # the first pass scored the images before the rule was chosen: a second one records
        # the validation metrics with the tuned rule's calls (it re-tunes to the same triplet)
        cli.trainer.validate(cli.model, datamodule=cli.datamodule)
        failed = False
    finally:
        finish_wandb(1 if failed else 0)  # the tuning pass's own W&B run
    val = records.read_status(run_dir / TUNING).get("val", {})
    record = {
        "record_version": RECORD_VERSION,
        "diagnosis": rule.to_dict(),
        "checkpoint": checkpoint.name,
        "val": val,
    }
    records.write_postprocessing(run_dir, record)
    log.info("%s: %s", run_dir / records.POSTPROCESSING, rule.describe())
    return record


def cli(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="ptx tune-postprocessing",
        description=__doc__,
        formatter_class=HelpFormatter,
        epilog="Other --KEY VALUE arguments go to LightningCLI, e.g. --data.init_args.batch_size 4",
    )
    p.add_argument("model", help="a trained run folder (its best.ckpt) or a .ckpt inside one")
    options, rest = p.parse_known_args(argv)
    record = tune(options.model, rest)
    rule = record["diagnosis"]
    print(
        f"tuned on the validation split: top threshold {rule['top_threshold']:g}, minimum area "
        f"{rule['min_area']:g} px, pixel threshold {rule['pixel_threshold']:g} (val Kaggle Dice "
        f"{rule['objective']:.4f}); predict, export and test --model apply it"
    )
    return 0
