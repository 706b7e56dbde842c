"""W&B for a run: online with an API key, offline without one, never a reason to fail.

Mode: ``$WANDB_MODE`` when set (``disabled`` in tests), else ``online`` when an API key is
configured (``$WANDB_API_KEY`` or a ``wandb login`` entry in ``~/.netrc``), else ``offline``.
No network probe is made: a missing key means offline, and an online start that fails
(no network, bad key) falls back to offline with a warning. Offline runs are written to
``<run dir>/wandb/offline-run-*`` and uploaded later with ``wandb sync``.

The ``wandb`` section of a config (:class:`WandbSettings`, ``--wandb.project`` etc.) wins
over W&B's own environment variables, which win over the defaults: ``WANDB_PROJECT``
(default ``ptx-<modality>``), ``WANDB_ENTITY``, ``WANDB_DIR`` (default the run directory),
``WANDB_MODE`` (as above) and ``WANDB_TAGS`` (comma-separated, added to the run's own tags).
The run config holds the full resolved configuration (``experiments.run_config``).
"""

from __future__ import annotations

import logging
import netrc
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import yaml
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.loggers.logger import rank_zero_experiment
from pytorch_lightning.utilities.rank_zero import rank_zero_only
from pytorch_lightning.utilities.seed import isolate_rng

log = logging.getLogger("ptx.wandb")

ID_FILE = "ptx_run_id.txt"  # inside <run dir>/wandb/: the W&B run id, reused on resume


LOG_MODEL = {"best": True, "all": "all", "false": False}  # --wandb.log_model -> WandbLogger's


@dataclass
class WandbSettings:
    """The ``wandb`` section of a config: where and how a run logs to W&B.

    Attributes:
        project: W&B project (default ``$WANDB_PROJECT``, else ``ptx-<modality>``).
        entity: W&B user or team (default ``$WANDB_ENTITY``, else your default entity).
        dir: folder W&B writes its files under (default ``$WANDB_DIR``, else the run dir).
        mode: ``online``, ``offline`` or ``disabled`` (default ``$WANDB_MODE``, else online
            with an API key, offline without).
        tags: tags added to the run's own (``model:unet``, ...) and ``$WANDB_TAGS``.
        log_model: upload checkpoints as model artifacts: ``best`` (the best checkpoint at
            the end of training), ``all`` (every checkpoint as it is written), ``false``, or
            ``auto``: ``best`` online, ``false`` offline (an offline upload waits for
            ``wandb sync`` and doubles the run folder's size).
    """

    project: str | None = None
    entity: str | None = None
    dir: str | None = None
    mode: str | None = None
    tags: list[str] | None = None
    log_model: str = "auto"


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


def wandb_mode(
    environ: Mapping[str, str] = os.environ, setting: str | None = None
) -> tuple[str, str]:
    """(mode, why): ``online``, ``offline`` or ``disabled``; ``setting`` (--wandb.mode) wins."""
    if setting:
        return setting, "--wandb.mode is set"
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
    """``WandbLogger`` that falls back to offline when starting online fails, whose start
    leaves the random-number generators as they were (a run must not depend on W&B), and
    whose run config comes from ``config_factory`` when W&B starts. ``run_dir`` is what
    Lightning sees as the logger's folder (``trainer.log_dir``: ``config.yaml`` is written
    there) while W&B writes its files under ``save_dir`` (``$WANDB_DIR``, ``--wandb.dir``)."""

    def __init__(
        self,
        *args,
        config_factory: Callable[[], dict] | None = None,
        run_dir: str | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self._config_factory = config_factory
        if run_dir is not None:  # Lightning's log_dir (config.yaml goes there), not W&B's own
            self._save_dir = str(run_dir)

    @property
    @rank_zero_experiment
    def experiment(self):
        if self._experiment is not None:
            return self._experiment
        if self._config_factory is not None and "config" not in self._wandb_init:
            self._wandb_init["config"] = self._config_factory()
        with isolate_rng():  # starting W&B must not move the run's random streams
            if self._wandb_init.get("mode") == "online":
                try:
                    return super().experiment
                except Exception as err:  # any failure to reach W&B must not stop training
                    log.warning("W&B online start failed (%s); logging offline instead", err)
                    self._wandb_init["mode"] = "offline"
            run = super().experiment
        if self._wandb_init.get("mode") == "offline":
            write_offline_config(run, self._wandb_init.get("config") or {})
        return run


def write_offline_config(run, config: dict) -> None:
    """``files/config.yaml`` of an offline run, in W&B's layout (``key: {value: ...}``): the
    W&B service writes it only when it uploads, so without it an offline run's folder would
    not show its configuration until ``wandb sync`` (which rewrites it, with the same keys)."""
    try:
        path = Path(run.dir) / "config.yaml"
        payload = {key: {"value": value} for key, value in config.items()}
        path.write_text(yaml.safe_dump(payload, sort_keys=False, width=100))
    except Exception as err:  # a convenience copy: never a reason to fail
        log.warning("could not write the offline W&B config.yaml (%s)", err)


def logger_arguments(
    settings: WandbSettings,
    run_dir: Path,
    modality: str,
    tags: list[str],
    environ: Mapping[str, str] = os.environ,
) -> dict:
    """``project``, ``entity``, ``save_dir``, ``mode``, ``tags`` and ``log_model`` of a run's
    logger: the ``wandb`` section, else W&B's environment variables, else the defaults.

    Raises:
        ValueError: an unknown ``log_model`` or ``mode``.
    """
    mode, why = wandb_mode(environ, settings.mode)
    if mode not in ("online", "offline", "disabled"):
        raise ValueError(f"W&B mode {mode!r} ({why}): give online, offline or disabled")
    choice = str(settings.log_model).lower()
    if choice == "auto":
        choice = "best" if mode == "online" else "false"
    if choice not in LOG_MODEL:
        raise ValueError(f"--wandb.log_model {settings.log_model!r}: give best, all, false, auto")
    env_tags = [t.strip() for t in environ.get("WANDB_TAGS", "").split(",") if t.strip()]
    return {
        "project": settings.project or environ.get("WANDB_PROJECT") or f"ptx-{modality}",
        "entity": settings.entity or environ.get("WANDB_ENTITY") or None,
        "save_dir": str(settings.dir or environ.get("WANDB_DIR") or run_dir),
        "mode": mode,
        "why": why,
        "tags": list(dict.fromkeys([*tags, *env_tags, *(settings.tags or [])])),
        "log_model": LOG_MODEL[choice],
    }


def create_wandb_logger(
    run_dir: Path,
    arguments: dict,
    group: str,
    name: str,
    fresh: bool,
    config: Callable[[], dict] | None = None,
) -> WandbLogger:
    """The run's ``WandbLogger``: files under ``arguments["save_dir"]``, console capture off.

    Args:
        arguments: :func:`logger_arguments`.
        group, name: as the run's.
        fresh: a new run (new W&B id) rather than a resumed or re-tested one.
        config: returns the W&B run config; called when W&B starts (after the data is
            prepared, so it can fingerprint the data folder).
    """
    import wandb

    args = dict(arguments)
    mode, why = args.pop("mode"), args.pop("why")
    log.info("W&B %s (%s); project %s, group %s, run %s", mode, why, args["project"], group, name)
    return ResilientWandbLogger(
        group=group,
        name=name,
        id=None if mode == "disabled" else run_id(run_dir, fresh),
        mode=mode,
        settings=wandb.Settings(console="off", init_timeout=60),
        config_factory=config,
        run_dir=str(run_dir),
        **args,
    )
