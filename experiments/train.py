"""``ptx fit|validate|test``: train, validate or test one experiment config.

    ptx fit  --exp ct/efa_net [--profile paper|quick|auto] [--data DIR] [--seed S]
             [--group G] [--name N] [--runs-dir D] [--overwrite] [--ckpt_path last]
             [--KEY VALUE ...]
    ptx test --exp ct/efa_net [same options as the fit] [--ckpt_path best|last|PATH]
    ptx test --model RUN --data DIR [--split all] [--out DIR]   (experiments.external_test)

The options above are this wrapper's; every other ``--KEY VALUE`` goes to LightningCLI
unchanged, e.g. ``--trainer.max_epochs 5``, ``--model.optimizer.lr 3e-4``,
``--model.net_kwargs.encoder_name resnet50``, ``--data.batch_size 4``,
``--trainer.devices 2 --trainer.strategy ddp``. ``--print_config`` prints the resolved
config and exits. ``--help`` lists them all after these (``experiments.fit_help``; with
``--exp``, the defaults shown are the experiment's). See docs/training.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

from experiments.cli import HelpFormatter
from experiments.profiles import choose_profile, experiment_layers, list_experiments
from experiments.run_dir import RunDirError

log = logging.getLogger("ptx")


def build_parser(command: str) -> argparse.ArgumentParser:
    """The wrapper's own options (everything else is passed on to LightningCLI)."""
    parser = argparse.ArgumentParser(
        prog=f"ptx {command}",
        allow_abbrev=False,  # `--data.batch_size` must not be taken for `--data`
        formatter_class=HelpFormatter,
        description=__doc__,
    )
    parser.add_argument("--exp", help="experiment config: ct/efa_net, xray/ms_scse_fc_densenet")
    parser.add_argument(
        "--profile",
        choices=("paper", "quick", "auto"),
        default="auto",
        help="paper settings, a quick CPU-sized run, or auto (quick without data and GPU)",
    )
    parser.add_argument("--data", help="data folder (default: the generated phantom)")
    parser.add_argument("--seed", type=int, help="training seed, in the run name (default: 0)")
    parser.add_argument("--group", help="run group: folder under the runs root, W&B group")
    parser.add_argument("--name", help="run name (default: <model>-<variant>-s<seed>)")
    parser.add_argument("--runs-dir", help="runs root (default: $PTX_RUNS_DIR or ./runs)")
    if command == "fit":
        parser.add_argument(
            "--overwrite", action="store_true", help="delete an earlier run of this name first"
        )
    if command == "test":
        from experiments.external_test import add_arguments

        add_arguments(parser)
    return parser


# ptx-seg 0.1's optimiser keys -> what to write now (the optimiser is a class in the config)
OLD_KEYS = {
    "--model.lr": "--model.optimizer.lr",
    "--model.weight_decay": "--model.optimizer.weight_decay",
    "--model.betas": "--model.optimizer.betas",
    "--model.momentum": "--model.optimizer.momentum",
    "--model.scheduler_kwargs": "--model.scheduler.<argument>",
}
OLD_NAMES = {"adam", "adamw", "sgd", "none", "cosine", "step", "plateau"}


def check_old_keys(args: list[str]) -> None:
    """Refuse the removed optimiser keys with the spelling that replaces them."""
    for i, arg in enumerate(args):
        key, _, value = arg.partition("=")
        if key in OLD_KEYS:
            raise ValueError(f"{key} is gone: write {OLD_KEYS[key]} (docs/training.md)")
        value = value or (args[i + 1] if i + 1 < len(args) else "")
        if key in ("--model.optimizer", "--model.scheduler") and value.lower() in OLD_NAMES:
            raise ValueError(
                f"{key} {value}: give a class, e.g. --model.optimizer torch.optim.AdamW or "
                "--model.scheduler lightning_modules.optim.WarmupCosineLR (docs/training.md)"
            )


def lightning_args(command: str, argv: list[str], gpu: bool | None = None) -> list[str]:
    """Translate ``ptx <command>`` arguments into LightningCLI arguments (without command).

    Raises:
        ValueError: no experiment given, or an unknown experiment/profile.
    """
    options, rest = build_parser(command).parse_known_args(argv)
    check_old_keys(rest)
    if getattr(options, "model", None):
        from experiments.external_test import external_args

        return external_args(options, rest)
    args: list[str] = []
    if options.exp:
        if gpu is None:
            import torch

            gpu = torch.cuda.is_available()
        profile, message = choose_profile(options.profile, options.data is not None, gpu)
        if message:
            log.info(message)
        for layer in experiment_layers(options.exp, profile):
            args += ["--config", str(layer)]
        args += ["--run.experiment", options.exp.removesuffix(".yaml"), "--run.profile", profile]
    elif not {"--config", "-c"} & {a.split("=")[0] for a in rest}:
        raise ValueError(f"give --exp (one of: {', '.join(list_experiments())}) or --config FILE")
    if options.data is not None:
        args += ["--data.init_args.data_dir", str(Path(options.data).resolve())]
    if options.seed is not None:
        args += ["--seed_everything", str(options.seed)]
    for flag, value in (
        ("--run.group", options.group),
        ("--run.name", options.name),
        ("--run.runs_dir", options.runs_dir),
    ):
        if value is not None:
            args += [flag, value]
    if getattr(options, "overwrite", False):
        args += ["--run.overwrite", "true"]
    return args + rest


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is now (a handler keeping the stream it was made
    with would write to a closed one once a caller, e.g. a test capture, replaced it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _configure_logging() -> None:
    logger = logging.getLogger("ptx")
    if not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("[ptx] %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def run(command: str, argv: list[str], run_command: bool = True):
    """Build the ``PtxCLI`` for ``ptx <command> argv``; runs it unless ``run_command`` is False.

    With ``run_command=False`` the model, datamodule and trainer are built and nothing runs.
    """
    _configure_logging()
    return _build(command, lightning_args(command, argv), run_command)


def _build(command: str, args: list[str], run_command: bool = True):
    from experiments.lightning_cli import PtxCLI

    # `ptx` passes its own argv on purpose; Lightning's reminder about that is noise here
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    failed = True
    try:
        cli = PtxCLI(args=[command, *args] if run_command else args, run=run_command)
        failed = False
    finally:
        finish_wandb(1 if failed else 0)
    return cli


def finish_wandb(exit_code: int) -> None:
    # close this command's W&B run, so the next command in the process starts its own
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish(exit_code=exit_code)


def _main(command: str, argv: list[str]) -> int:
    from experiments.cli import debugging, error_line
    from experiments.fit_help import print_help, wants_help
    from lightning_modules.callbacks import NonFiniteLossError

    _configure_logging()
    try:
        if wants_help(argv):
            return print_help(command, argv)
        _build(command, lightning_args(command, argv))
    except (RunDirError, ValueError) as err:  # bad data, run folder or setting: input errors
        if debugging():
            raise
        print(error_line(command, err), file=sys.stderr)
        return 2
    except NonFiniteLossError as err:  # the training diverged: a failed run, not bad input
        print(f"ptx {command}: error: {err}", file=sys.stderr)
        return 1
    return 0


def fit_cli(argv: list[str]) -> int:
    """``ptx fit``: train, then validate and test the best checkpoint; writes the run record."""
    return _main("fit", argv)


def validate_cli(argv: list[str]) -> int:
    """``ptx validate``: validate a checkpoint of a run (``--ckpt_path best`` by default)."""
    return _main("validate", argv)


def test_cli(argv: list[str]) -> int:
    """``ptx test``: test a checkpoint (``best``, ``last`` or a path; default ``best``)."""
    return _main("test", argv)
