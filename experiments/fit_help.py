"""``ptx fit|validate|test --help``: the wrapper's options, then every LightningCLI option.

LightningCLI's help lists ``--trainer.*``, ``--model.*``, ``--checkpoint.*``, ``--run.*`` and
the subcommand's own options, with defaults; with ``--exp`` the defaults shown are that
experiment's (its config layers under the chosen profile), without it the classes' own. The
data module is a subclass option (``--data CLASS``), whose fields LightningCLI lists only
under ``--data.help CLASS``: they follow, for the experiment's data module or for both.
"""

from __future__ import annotations

import argparse
import warnings

HEADER = "LightningCLI options (every --KEY VALUE below is passed on):"
DATA_MODULES = ("datamodules.ct.CTDataModule", "datamodules.xray.XRayDataModule")
# Config-file options (`--config`, and `--model CONFIG`: jsonargparse's private
# _ActionConfigLoad) carry no default of their own: their keys come one by one. Told apart by
# class name, so a jsonargparse that renames its private class costs no ImportError (a test
# checks the names).
CONFIG_FILE_ACTIONS = {"ActionConfigFile", "_ActionConfigLoad"}


def wants_help(argv: list[str]) -> bool:
    """True when ``argv`` asks for help (``-h`` or ``--help``)."""
    return bool({"-h", "--help"} & set(argv))


def print_help(command: str, argv: list[str]) -> int:
    """Print the help of ``ptx <command>`` (``argv`` as given, with its ``--help``); 0."""
    from experiments.train import build_parser, lightning_args

    argv = [a for a in argv if a not in ("-h", "--help")]
    print(build_parser(command).format_help())
    options, rest = build_parser(command).parse_known_args(argv)
    configured = options.exp or {"--config", "-c"} & {a.split("=")[0] for a in rest}
    args = lightning_args(command, argv) if configured else rest
    print(HEADER + "\n")
    defaults = _lightning_help(command, args)
    data = defaults.get("data") if defaults is not None else None
    if data is not None and data.get("class_path"):
        init_args = data.get("init_args")
        _data_help(data.class_path, init_args.as_dict() if init_args else {}, "the experiment's")
    else:
        for class_path in DATA_MODULES:
            _data_help(class_path, {}, "the class's")
    return 0


def _lightning_help(command: str, args: list[str]):
    """Print LightningCLI's help of ``command``, defaults from the configs in ``args``;
    returns those values (a jsonargparse Namespace) or None without configs."""
    from jsonargparse import Namespace

    from experiments.lightning_cli import PtxCLI

    values = None

    def plain(value):  # a subclass default is given as a dict
        return value.as_dict() if isinstance(value, Namespace) else value

    class HelpCLI(PtxCLI):
        def init_parser(self, **kwargs):
            return super().init_parser(**{"prog": "ptx", **kwargs})

        def parse_arguments(self, parser, args_: list[str]) -> None:
            nonlocal values
            sub = self._subcommand_parsers[command]
            if args:  # the experiment's values become the defaults the help shows
                values = sub.parse_args(args)
                sub.set_defaults(
                    {
                        action.dest: plain(values.get(action.dest))
                        for action in sub._actions
                        if type(action).__name__ not in CONFIG_FILE_ACTIONS
                        and action.dest in values
                    }
                )
            super().parse_arguments(parser, [command, "--help"])

    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    try:
        HelpCLI(args=[command, "--help"], run=True)
    except SystemExit as done:  # jsonargparse exits after printing the help
        if done.code not in (0, None):
            raise
    return values


def _data_help(class_path: str, init_args: dict, whose: str) -> None:
    """Print the ``--data.*`` options of the data module ``class_path`` with defaults."""
    from jsonargparse.typing import import_object
    from pytorch_lightning.cli import LightningArgumentParser

    parser = LightningArgumentParser(
        prog="ptx", usage=argparse.SUPPRESS, description=f"--data {class_path} ({whose} values):"
    )
    parser.add_class_arguments(import_object(class_path), "data")
    known = {action.dest for action in parser._actions}
    parser.set_defaults({f"data.{k}": v for k, v in init_args.items() if f"data.{k}" in known})
    print("\n" + parser.format_help())
