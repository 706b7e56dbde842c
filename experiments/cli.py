"""``ptx [--debug] [--version] COMMAND ...``: the project's one command line.

Each subcommand lives in the module that owns it and is imported only when used, so
``ptx phantom`` starts in a second while ``ptx fit`` pays for torch and Lightning. The
project's own input errors (bad data, a bad sweep or run folder, a bad setting) end every
command with a one-line message and exit status 2; ``--debug`` (or ``PTX_DEBUG=1``, which
cells run in their own process inherit) shows the traceback instead. Every command's
``--help`` shows each option's default (``HelpFormatter``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

DISTRIBUTION = "ptx-seg"  # the project name in pyproject.toml

# subcommand -> "module:function"; the function takes argv (without the subcommand), returns rc
COMMANDS: dict[str, tuple[str, str]] = {
    "phantom": ("datamodules.phantom:cli", "write a synthetic CT or X-ray data set"),
    "check-data": (
        "datamodules.layouts.check:cli",
        "read every case of a data folder, report problems",
    ),
    "fit": ("experiments.train:fit_cli", "train a model (then test it), one experiment config"),
    "validate": ("experiments.train:validate_cli", "validate a checkpoint"),
    "test": ("experiments.train:test_cli", "test a checkpoint, write metrics and per-image table"),
    "predict": ("experiments.predict:cli", "apply a trained run to new CT volumes or radiographs"),
    "export": ("experiments.export:cli", "write a run as safetensors + config.json + ONNX"),
    "tune-postprocessing": (
        "experiments.tune_postprocessing:cli",
        "choose a run's SIIM-ACR post-processing triplet on its validation split",
    ),
    "model-table": ("lightning_modules.complexity:cli", "parameters and GMACs of every model"),
    "sweep": ("ablations.runner:cli", "run a paper table's grid of experiments"),
    "report": ("ablations.report:cli", "rebuild a sweep's table and figures from its runs"),
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The ``--help`` of every command: the description as written, and ``(default: X)`` after
    each option that has a default (not after flags, nor options whose default is None: their
    help says what happens without them)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.nargs == 0 or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def version() -> str:
    """``ptx-seg <version>`` of the installed distribution."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version

    try:
        return f"{DISTRIBUTION} {installed_version(DISTRIBUTION)}"
    except PackageNotFoundError:  # run from a source tree that was never installed
        return f"{DISTRIBUTION} (not installed: pip install -e .)"


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return (
        f"usage: ptx [--debug] [-V | --version] COMMAND [ARGS...]   ({version()})\n\n"
        "commands:\n"
        + "\n".join(lines)
        + "\n\n--debug: tracebacks instead of one-line errors\n-V, --version: print the version"
        + "\nptx COMMAND --help: the options of a command, with their defaults"
    )


def debugging() -> bool:
    """True under ``ptx --debug`` (or ``PTX_DEBUG=1``): let errors raise with tracebacks."""
    return os.environ.get("PTX_DEBUG", "") not in ("", "0")


def input_errors() -> tuple[type[BaseException], ...]:
    """The project's own errors about its input: a message, never a traceback."""
    from ablations.sweeps import SweepError
    from datamodules.io.errors import DataError
    from experiments.run_dir import RunDirError
    from lightning_modules.bundle import BundleError
    from lightning_modules.records import RecordError

    return (DataError, SweepError, RecordError, RunDirError, BundleError)


def error_line(command: str, err: BaseException) -> str:
    """``ptx <command>: error: <message on one line>``; a ValueError not of the project's
    own kinds (e.g. a setting a library refused) adds where to see the traceback."""
    message = " ".join(str(err).split()) or type(err).__name__
    hint = "" if isinstance(err, input_errors()) else f" (ptx --debug {command} ... for details)"
    return f"ptx {command}: error: {message}{hint}"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--debug":
        os.environ["PTX_DEBUG"] = "1"  # inherited by cells run in their own process
        argv = argv[1:]
    if not argv or argv[0] in {"-h", "--help"}:
        print(usage())
        return 0
    if argv[0] in {"-V", "--version"}:
        print(version())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"ptx: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module, function = COMMANDS[name][0].split(":")
    try:
        return int(getattr(importlib.import_module(module), function)(rest) or 0)
    except (ValueError, *input_errors()) as err:
        if debugging():
            raise
        print(error_line(name, err), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
