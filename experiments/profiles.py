"""Experiment configs and profiles: which YAML files make up a run, in which order.

An experiment is ``<modality>/<model>`` (``ct/efa_net``), a file under ``configs/``. A run
layers, later files overriding earlier ones key by key::

    configs/<modality>/_defaults.yaml    the paper's settings shared by the modality's models
    configs/<modality>/<model>.yaml      the model (network, its keywords, loss if it differs)
    configs/<modality>/_<profile>.yaml   the profile: "paper" (the papers' schedule) or
                                         "quick" (phantom-sized, a minute per run on a CPU)

then the command line's ``--key value`` overrides. A dict-valued key (``net_kwargs``,
``phantom``) is replaced whole by a later file, but merged key by key from the command line.
"""

from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
PROFILES = ("paper", "quick")


def list_experiments(config_dir: Path = CONFIG_DIR) -> list[str]:
    """Every experiment name (``ct/unet``, ...): the YAML files not starting with ``_``."""
    return sorted(
        f"{p.parent.name}/{p.stem}"
        for p in config_dir.glob("*/*.yaml")
        if not p.name.startswith("_")
    )


def experiment_layers(experiment: str, profile: str, config_dir: Path = CONFIG_DIR) -> list[Path]:
    """The config files of ``experiment`` under ``profile``, in the order they apply.

    Raises:
        ValueError: unknown experiment or profile; the message lists the valid ones.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; use one of {', '.join(PROFILES)} or auto")
    name = experiment.removesuffix(".yaml").strip("/")
    path = config_dir / f"{name}.yaml"
    if name.count("/") != 1 or Path(name).name.startswith("_") or not path.is_file():
        raise ValueError(
            f"unknown experiment {experiment!r}; experiments: {', '.join(list_experiments())}"
        )
    modality = path.parent
    layers = [modality / "_defaults.yaml", path, modality / f"_{profile}.yaml"]
    return [p for p in layers if p.is_file()]


def choose_profile(profile: str, data_given: bool, gpu: bool) -> tuple[str, str | None]:
    """Resolve ``auto``: ``quick`` when there is no data and no GPU, else ``paper``.

    Returns the profile and, for ``auto``, a sentence saying what was chosen and why.
    """
    if profile != "auto":
        return profile, None
    if not data_given and not gpu:
        return "quick", (
            "profile auto -> quick: no --data given and no GPU, so the phantom at a small "
            "size for a few epochs (--profile paper for the papers' settings)"
        )
    if data_given:
        return "paper", "profile auto -> paper: data given (--profile quick for a short run)"
    return "paper", (
        "profile auto -> paper: a GPU is present and no --data given, so the phantom at the "
        "paper's scale (generated once; --profile quick for a short run)"
    )
