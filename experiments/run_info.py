"""What a run is, for its record and W&B: identity fields, tags, and network size.

Network size is the papers' convention (``lightning_modules.complexity``): parameters and
GMACs of one ``1 x in_channels x 256 x 256`` forward, measured on the meta device (shapes
only, no arithmetic) and cached per network configuration under
``$PTX_CACHE_DIR/complexity`` so the cells of a sweep measure each network once.
"""

from __future__ import annotations

import json
import logging

import torch
from pytorch_lightning.utilities.seed import isolate_rng

from datamodules.cache import default_cache_dir, digest
from datamodules.layouts.privacy import id_fingerprint
from lightning_modules.complexity import count_gmacs, count_parameters
from lightning_modules.nets import create_model, model_entry

log = logging.getLogger("ptx.run")

PAPER_TAGS = {"ct": "paper:efa-net", "xray": "paper:ms-scse-fc-densenet"}
GMACS_SIZE = 256  # both papers state GFLOPs (thop MACs) at one 256 x 256 image


def run_info(experiment, profile, group, name, modality, model: dict, seed: int) -> dict:
    """The identity fields of ``metrics.json`` (docs/design.md, "Run records")."""
    from experiments.run_dir import run_variant

    net_kwargs = model.get("net_kwargs") or {}
    return {
        "name": name,
        "group": group,
        "experiment": experiment,
        "profile": profile,
        "modality": modality,
        "model": model["net"],
        "variant": run_variant(net_kwargs, model["loss"]),
        "encoder": net_kwargs.get("encoder_name"),
        "growth_rate": net_kwargs.get("growth_rate"),
        "loss": model["loss"],
        "seed": seed,
        # which identifier secret made the patient keys: runs of different ones never mix
        "id_fingerprint": id_fingerprint(),
    }


def run_tags(info: dict) -> list[str]:
    """W&B tags: paper, model, encoder, loss, seed (``key:value``, easy to filter on)."""
    tags = [PAPER_TAGS.get(info["modality"], f"paper:{info['modality']}")]
    tags += [f"model:{info['model']}", f"loss:{info['loss']}", f"seed:{info['seed']}"]
    if info.get("encoder"):
        tags.append(f"encoder:{info['encoder']}")
    if info.get("growth_rate") is not None:
        tags.append(f"k:{info['growth_rate']}")
    if info.get("profile"):
        tags.append(f"profile:{info['profile']}")
    return tags


def network_gmacs(net: str, net_kwargs: dict | None, in_channels: int, classes: int) -> float:
    """GMACs of one ``1 x in_channels x 256 x 256`` forward of the registered network."""
    spec = [net, net_kwargs or {}, in_channels, classes, GMACS_SIZE]
    path = default_cache_dir() / "complexity" / f"{digest(spec)[:24]}.json"
    try:
        return float(json.loads(path.read_text())["gmacs"])
    except (OSError, ValueError, KeyError):
        pass
    kwargs = dict(net_kwargs or {})
    if model_entry(net).fixed_size:
        kwargs["img_size"] = GMACS_SIZE  # the TransUNets' position embeddings fix the size
    shape = (1, in_channels, GMACS_SIZE, GMACS_SIZE)
    try:
        with torch.device("meta"):
            model = create_model(net, in_channels=in_channels, classes=classes, **kwargs)
        gmacs = count_gmacs(model, shape)
    except (NotImplementedError, RuntimeError):  # forward reads values: count it for real
        gmacs = count_gmacs(
            create_model(net, in_channels=in_channels, classes=classes, **kwargs), shape
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"spec": spec, "gmacs": gmacs}))
    return gmacs


def network_complexity(module, model: dict) -> tuple[int, float | None]:
    """(parameters, GMACs) of a ``SegmentationModule``'s network; GMACs None if unmeasurable."""
    params = count_parameters(module.net)
    try:
        # building networks draws random initial weights (smp makes some layers on the CPU
        # even under the meta device): keep the run's random streams as they were
        with isolate_rng():
            gmacs = network_gmacs(
                model["net"], model.get("net_kwargs"), model["in_channels"], model["classes"]
            )
    except Exception as err:  # a size figure must never cost the run
        log.warning("could not measure GMACs of %s (%s); recording null", model["net"], err)
        gmacs = None
    return params, gmacs
