"""W&B for a run: online with an API key, offline without one, never a reason to fail.

Mode: ``$WANDB_MODE`` when set (``disabled`` in tests), else ``online`` when an API key is
configured (``$WANDB_API_KEY`` or a ``wandb login`` entry in ``~/.netrc``), else ``offline``.
No network probe is made: a missing key means offline, and an online start that fails
(no network, bad key) falls back to offline with a warning. Offline runs are written to
``<run dir>/wandb/offline-run-*`` and uploaded later with ``wandb sync``.
"""

from __future__ import annotations

import logging
import netrc
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.loggers.logger import rank_zero_experiment
from pytorch_lightning.utilities.rank_zero import rank_zero_only
from pytorch_lightning.utilities.seed import isolate_rng

log = logging.getLogger("ptx.wandb")

ID_FILE = "ptx_run_id.txt"  # inside <run dir>/wandb/: the W&B run id, reused on resume


def has_api_key(environ: Mapping[str, str] = os.environ) -> bool:
    """True when W&B has a key to log in with: ``WANDB_API_KEY`` or a netrc entry."""
    if environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
    path = environ.get("NETRC") or str(Path(environ.get("HOME", Path.home())) / ".netrc")
    try:
        return netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_mode(environ: Mapping[str, str] = os.environ) -> tuple[str, str]:
    """(mode, why): ``online``, ``offline`` or ``disabled``."""
    if environ.get("WANDB_MODE"):
        return environ["WANDB_MODE"], "WANDB_MODE is set"
    if has_api_key(environ):
        return "online", "a W&B API key is configured"
    return "offline", "no W&B API key (wandb login or WANDB_API_KEY): logging offline"


def run_id(run_dir: Path, fresh: bool) -> str:
    """The W&B id of this run: a new one for a new run, the stored one when it continues."""
    from wandb.sdk.lib.runid import generate_id

    path = run_dir / "wandb" / ID_FILE
    if not fresh and path.is_file():
        return path.read_text().strip()
    if fresh and os.environ.get("WANDB_SWEEP_ID") and os.environ.get("WANDB_RUN_ID"):
        # started by a `wandb agent` (ablations/wandb/*.yaml): the agent chose the run id
        value = os.environ["WANDB_RUN_ID"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")
        return value
    if rank_zero_only.rank != 0:  # other ranks never start W&B; only rank 0 owns the id
        return generate_id()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = generate_id()
    path.write_text(value + "\n")
    return value


class ResilientWandbLogger(WandbLogger):
    """``WandbLogger`` that falls back to offline when starting online fails, and whose start
    leaves the random-number generators as they were (a run must not depend on W&B)."""

    @property
    @rank_zero_experiment
    def experiment(self):
        if self._experiment is not None:
            return self._experiment
        with isolate_rng():  # starting W&B must not move the run's random streams
            if self._wandb_init.get("mode") == "online":
                try:
                    return super().experiment
                except Exception as err:  # any failure to reach W&B must not stop training
                    log.warning("W&B online start failed (%s); logging offline instead", err)
                    self._wandb_init["mode"] = "offline"
            return super().experiment


def create_wandb_logger(
    run_dir: Path,
    project: str,
    group: str,
    name: str,
    tags: list[str],
    fresh: bool,
    environ: Mapping[str, str] = os.environ,
) -> WandbLogger:
    """The run's ``WandbLogger``: files under ``run_dir/wandb``, console capture off.

    Args:
        project: ``ptx-ct`` or ``ptx-xray``.
        group, name, tags: as the run's (``model:unet``, ``loss:ce``, ``seed:0``, ...).
        fresh: a new run (new W&B id) rather than a resumed or re-tested one.
    """
    import wandb

    mode, why = wandb_mode(environ)
    log.info("W&B %s (%s); project %s, group %s, run %s", mode, why, project, group, name)
    return ResilientWandbLogger(
        project=project,
        group=group,
        name=name,
        tags=tags,
        save_dir=str(run_dir),
        id=None if mode == "disabled" else run_id(run_dir, fresh),
        mode=mode,
        log_model=False,  # checkpoints stay on disk; uploading them is a user decision
        settings=wandb.Settings(console="off", init_timeout=60),
    )
