"""``ptx``: the project's one command line.

Each subcommand lives in the module that owns it and is imported only when used, so
``ptx phantom`` starts in a second while ``ptx fit`` pays for torch and Lightning.
"""

from __future__ import annotations

import importlib
import sys

# subcommand -> "module:function"; the function takes argv (without the subcommand), returns rc
COMMANDS: dict[str, tuple[str, str]] = {
    "phantom": ("datamodules.phantom:cli", "write a synthetic CT or X-ray data set"),
    "fit": ("experiments.train:fit_cli", "train a model (then test it), one experiment config"),
    "validate": ("experiments.train:validate_cli", "validate a checkpoint"),
    "test": ("experiments.train:test_cli", "test a checkpoint, write metrics and per-image table"),
    "model-table": ("lightning_modules.complexity:cli", "parameters and GMACs of every model"),
    "sweep": ("ablations.runner:cli", "run a paper table's grid of experiments"),
    "report": ("ablations.report:cli", "rebuild a sweep's table and figures from its runs"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "usage: ptx COMMAND [ARGS...]\n\ncommands:\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"ptx: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module, function = COMMANDS[name][0].split(":")
    return int(getattr(importlib.import_module(module), function)(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
