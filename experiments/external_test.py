"""``ptx test --model RUN [--data DIR] [--split all]``: score a trained run on other data.

External validation in one command: the run's own config (``RUN/config.yaml``) and
checkpoint (``best``, or ``--ckpt_path``) on the folder ``--data``, with ``--split all``
scoring every case of it (``split_fractions [0, 0, 1]``: no training or validation subset is
needed to test). The record is a test run's (``metrics.json``, ``per_image.csv``,
``per_patient.csv``, ``split.json``, ``predictions.npz``) in ``--out``, by default
``RUN/external/<split>-<fingerprint>`` (a hash of the data folder's file names and sizes:
never a folder name, which could name a patient). The run's own record is not touched; a
diagnosis rule it tuned on its validation set is applied unchanged.
"""

from __future__ import annotations

import argparse
from pathlib import Path

SPLITS = ("test", "all")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``ptx test`` that score a trained run on other data."""
    parser.add_argument(
        "--model", help="a trained run folder (or a .ckpt inside one) to test on --data"
    )
    parser.add_argument(
        "--split",
        choices=SPLITS,
        default="test",
        help="with --model: score the data's test subset, or every case of it (all)",
    )
    parser.add_argument(
        "--out", help="with --model: the record's folder (default: RUN/external/<split>-<hash>)"
    )


def external_args(options: argparse.Namespace, rest: list[str]) -> list[str]:
    """LightningCLI arguments testing ``options.model`` as ``ptx test --model`` asks."""
    from datamodules.cache import folder_fingerprint
    from lightning_modules.inference import run_files

    if options.exp:
        raise ValueError("--model tests a trained run with its own config: drop --exp")
    checkpoint, run_dir = run_files(options.model)
    run_dir = run_dir.resolve()
    args = ["--config", str(run_dir / "config.yaml"), "--run.model_run", str(run_dir)]
    if not any(a.split("=")[0] == "--ckpt_path" for a in rest):
        args += ["--ckpt_path", str(checkpoint.resolve())]
    if options.data is not None:
        data = Path(options.data).resolve()
        if not data.is_dir():
            raise ValueError(f"{data}: no such data folder")
        args += ["--data.init_args.data_dir", str(data)]
        tag = f"{options.split}-{folder_fingerprint(data)[:12]}"
    else:
        tag = f"{options.split}-own-data"
    if options.split == "all":
        args += ["--data.init_args.split_fractions", "[0, 0, 1]"]
        args += ["--data.init_args.split_file", "null", "--data.init_args.folds", "null"]
        args += ["--data.init_args.fold", "0"]
    out = Path(options.out).resolve() if options.out else run_dir / "external" / tag
    args += ["--run.runs_dir", str(out.parent.parent), "--run.group", out.parent.name]
    args += ["--run.name", out.name, "--run.sweep", "null", "--run.cell", "null"]
    return args + rest
