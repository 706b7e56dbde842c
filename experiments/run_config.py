"""A run's resolved configuration: what it is, its fingerprint, and how two of them differ.

"Resolved" is the config after ``PtxCLI.before_instantiate_classes`` filled in the values
one part takes from another (the data's channels and image size, the checkpoint monitor,
the precision this machine runs, the run's name and folder): the config the run really used,
as its ``config.yaml`` stores it. Its fingerprint, ``config_hash``, leaves out what names or
places a run without changing its numbers (:data:`NOT_HASHED`), so two runs with the same
hash trained the same way; ``metrics.json`` records it, the W&B run config shows it, and the
sweep planner reuses a finished run only when it matches the cell's (``ablations.plan``).
The helpers the resolution uses (typed free-form kwargs, the precision this machine runs)
live here too.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import logging
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("ptx.run")

# keys (or key prefixes, ending in ".") that name, place or log a run but do not change it
NOT_HASHED = (
    "config",
    "print_config",
    "ckpt_path",
    "weights_only",
    "run.",
    "wandb.",
    "trainer.default_root_dir",
    "trainer.logger",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "checkpoint.dirpath",
    "data.init_args.cache_dir",
    "data.init_args.num_workers",
)
KEPT_RUN_KEYS = ("run.experiment", "run.profile")  # of the run section, these do count


def flatten(config: Mapping, prefix: str = "") -> dict[str, object]:
    """``{"data.init_args.batch_size": 8, ...}``: one dotted key per leaf (lists are leaves)."""
    flat: dict[str, object] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def _plain(value):
    """JSON-comparable: tuples -> lists, paths and other objects -> str."""
    return json.loads(json.dumps(value, default=str))


def hashed_items(config: Mapping) -> dict[str, object]:
    """The flattened config without :data:`NOT_HASHED` (what makes two runs the same)."""
    flat = flatten(_plain(dict(config)))
    return {
        k: v
        for k, v in sorted(flat.items())
        if k in KEPT_RUN_KEYS
        or not any(k == n or (n.endswith(".") and k.startswith(n)) for n in NOT_HASHED)
    }


def config_hash(config: Mapping) -> str:
    """16 hex digits of SHA-256 over :func:`hashed_items` (key order does not matter)."""
    text = json.dumps(hashed_items(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def differences(found: Mapping, wanted: Mapping) -> list[str]:
    """``key: found (wanted)`` for every hashed key whose values differ; a key one side lacks
    counts as null there (a setting newer than the older run is only a difference if set)."""
    a, b = hashed_items(found), hashed_items(wanted)
    return [
        f"{k} {a.get(k)!r} (this sweep: {b.get(k)!r})"
        for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k)
    ]


@functools.cache
def source_version() -> dict[str, str | None]:
    """``{"version": ptx-seg's version, "git_commit": HEAD (+"-dirty")}`` of this code; the
    commit is None outside a git checkout."""
    try:
        version = importlib.metadata.version("ptx-seg")
    except importlib.metadata.PackageNotFoundError:
        version = None
    try:

        def git(*args: str) -> str:
            return subprocess.run(
                ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=10
            ).stdout.strip()

        commit = git("rev-parse", "HEAD") or None
        if commit and git("status", "--porcelain", "--untracked-files=no"):
            commit += "-dirty"
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"version": version, "git_commit": commit}


def wandb_config(config: Mapping, data_root: Path | None) -> dict:
    """The W&B run config: the whole resolved config (model, data, trainer, run, checkpoint,
    seed) and a ``ptx`` section with the code's version and commit, ``config_hash`` and a
    fingerprint of the data folder (of file names and sizes: never a name in clear)."""
    from datamodules.cache import folder_fingerprint

    plain = _plain(dict(config))
    plain.pop("config", None)  # the list of config files: their content is what is above
    fingerprint = folder_fingerprint(data_root) if data_root is not None else None
    plain["ptx"] = {
        **source_version(),
        "config_hash": config_hash(config),
        "data_fingerprint": fingerprint,
    }
    return plain


NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")  # 1e-1, 2.5E3: YAML 1.1 strings


def typed_values(kwargs: dict | None) -> dict | None:
    """``--model.net_kwargs.growth_rate 4`` (or ``loss_kwargs``, ``phantom``) arrives as the
    string ``"4"`` (a free-form dict has no types to parse into): read each string
    value as YAML when that gives a number, a boolean or null, so the network gets ``4``;
    names stay strings."""
    if not kwargs:
        return kwargs
    typed = dict(kwargs)
    for key, value in typed.items():
        if isinstance(value, str):
            try:
                parsed = yaml.safe_load(value)
            except yaml.YAMLError:
                continue
            if parsed is None or isinstance(parsed, (bool, int, float)):
                typed[key] = parsed
            elif NUMBER.fullmatch(value):  # YAML 1.1 reads 1e-1 (no dot) as a string
                typed[key] = float(value)
    return typed


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def supported_precision(precision) -> str | int | None:
    """``bf16-mixed`` where the machine runs it natively, else full precision (with a note).

    The quick profile trains in bf16 on the CPU: oneDNN's bf16 kernels (AVX512-BF16, AMX)
    make a step about 1.6 times faster there. A CPU without them would emulate bf16, slower
    than fp32, so such a machine falls back to ``32-true``.
    """
    if str(precision) != "bf16-mixed":
        return precision
    import torch

    if cuda_available() or torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return precision
    log.info("precision bf16-mixed -> 32-true: this CPU has no native bf16 kernels")
    return "32-true"
