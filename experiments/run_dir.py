"""Where a run lives and what it is called: ``<runs root>/<group>/<name>/``.

Name ``<model>-<variant>-s<seed>``: the variant is what distinguishes runs of one model (the
encoder of smp-style models, the growth rate ``k12`` of DenseNets, the loss), so the cells of
a sweep get distinct, readable names. The runs root is ``--runs-dir``, else
``$PTX_RUNS_DIR``, else ``runs`` in the current folder.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from lightning_modules.records import RECORD_FILES


class RunDirError(RuntimeError):
    """The run directory is in a state the command cannot use; the message says what to do."""


@dataclass
class RunSettings:
    """Identity and bookkeeping of a run (the ``run`` section of a config).

    Attributes:
        experiment: the experiment config it came from (``ct/efa_net``).
        profile: ``paper`` or ``quick``.
        group: folder under the runs root and W&B group (default: the modality).
        name: run name (default: ``<model>-<variant>-s<seed>``).
        runs_dir: runs root (default: ``$PTX_RUNS_DIR`` or ``runs``).
        overwrite: let ``fit`` delete an earlier run of the same name and start over.
        overlays: images per stage logged to W&B as ground truth vs prediction overlays.
        last_checkpoint_every_n_epochs: write the full-state ``last.ckpt`` after every N
            epochs (0: only at the end of training and when interrupted; see
            ``lightning_modules.callbacks.last_checkpoint``).
        sweep, cell: the sweep and cell id that ran it (``ptx sweep`` sets them).
        model_run: the trained run an external test scores (``ptx test --model``); its
            tuned diagnosis rule is the one applied.
    """

    experiment: str | None = None
    profile: str | None = None
    group: str | None = None
    name: str | None = None
    runs_dir: str | None = None
    overwrite: bool = False
    overlays: int = 8
    last_checkpoint_every_n_epochs: int = 1
    sweep: str | None = None
    cell: str | None = None
    model_run: str | None = None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+=-]+", "_", str(text)).strip("_")


def run_variant(net_kwargs: dict | None, loss: str) -> str:
    """``resnet34-ce``, ``k12-swce``, ``swce``: encoder and/or growth rate, then the loss."""
    kwargs = net_kwargs or {}
    parts = []
    if kwargs.get("encoder_name"):
        parts.append(str(kwargs["encoder_name"]))
    if kwargs.get("growth_rate") is not None:
        parts.append(f"k{kwargs['growth_rate']}")
    parts.append(loss)
    return "-".join(_slug(p) for p in parts)


def run_name(net: str, net_kwargs: dict | None, loss: str, seed: int) -> str:
    """``<model>-<variant>-s<seed>``, e.g. ``unet-resnet34-ce-s0``."""
    return f"{_slug(net)}-{run_variant(net_kwargs, loss)}-s{seed}"


def runs_root(value: str | None = None) -> Path:
    """The runs root: ``value``, else ``$PTX_RUNS_DIR``, else ``./runs`` (absolute)."""
    return Path(value or os.environ.get("PTX_RUNS_DIR") or "runs").resolve()


def prepare_fit_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Make sure a new ``fit`` does not mix with an earlier run of the same name.

    Resuming (``--ckpt_path last``) keeps everything. Otherwise a folder already holding a
    record or checkpoints is refused, or emptied when ``overwrite`` is set.
    """
    checkpoints = run_dir / "checkpoints"
    earlier = [f for f in RECORD_FILES if (run_dir / f).exists()]
    if checkpoints.is_dir() and any(checkpoints.iterdir()):
        earlier.append("checkpoints/")
    if resume or not earlier:
        return
    if not overwrite:
        raise RunDirError(
            f"{run_dir} already holds a run ({', '.join(earlier)}). Resume it with "
            "--ckpt_path last, start it over with --overwrite, or choose another --name"
        )
    shutil.rmtree(run_dir)


def resolve_checkpoint(run_dir: Path, ckpt_path: str | None, command: str) -> str | None:
    """``best``/``last`` -> the run's ``checkpoints/best.ckpt``/``last.ckpt``; paths unchanged.

    For ``fit``, ``last`` without a last checkpoint means there is nothing to resume (None).
    For ``validate``/``test`` a missing checkpoint is an error naming what exists.
    """
    if ckpt_path not in ("best", "last"):
        if ckpt_path and not Path(ckpt_path).is_file():
            raise RunDirError(f"checkpoint {ckpt_path} does not exist")
        return ckpt_path
    path = run_dir / "checkpoints" / f"{ckpt_path}.ckpt"
    if path.is_file():
        return str(path)
    if command == "fit" and ckpt_path == "last":
        return None
    found = sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt"))
    raise RunDirError(
        f"no {ckpt_path}.ckpt in {run_dir / 'checkpoints'} (found: {', '.join(found) or 'none'}); "
        "train the run first (ptx fit with the same --exp, --seed and overrides, or its --name)"
    )
