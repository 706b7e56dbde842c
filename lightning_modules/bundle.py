"""A trained model as a portable bundle: ``model.safetensors`` + ``config.json`` (+ ``model.onnx``).

``export_bundle(run, out)`` writes the network's weights as safetensors (tensors only: loading
runs no pickled code), a ``config.json`` with everything a reader needs to use them
(architecture and its kwargs, input channels, classes, the training image size, the data
settings that prepare an image, the diagnosis rule, the project version) and, unless asked
not to, an ONNX graph checked against PyTorch with onnxruntime at export. ``load_bundle``
rebuilds the network from the registry; ``OnnxNetwork`` runs the graph with no model code.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch

from datamodules.io.atomic import write_bytes_atomic, write_text_atomic
from lightning_modules.nets import create_model, model_entry

log = logging.getLogger("ptx.export")

BUNDLE_VERSION = 1
CLASS_NAMES = ("background", "pneumothorax")
OPSET = 18
TOLERANCE = 1e-3  # max |logit difference| between onnxruntime and PyTorch, per unit of
# logit scale (max(1, max |logit|)): float32 rounding grows with the logits' magnitude


class BundleError(ValueError):
    """A bundle that cannot be written or read; the message says what differs or is missing."""


def is_bundle(path: str | Path) -> bool:
    path = Path(path)
    return (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def project_version() -> str:
    try:
        return version("ptx-seg")
    except PackageNotFoundError:
        return "unknown"


def bundle_config(predictor) -> dict:
    """The ``config.json`` of a run loaded as a ``Predictor``."""
    module_hparams = predictor.hparams
    return {
        "bundle_version": BUNDLE_VERSION,
        "ptx_seg_version": project_version(),
        "modality": predictor.modality,
        "net": module_hparams["net"],
        "net_kwargs": dict(module_hparams.get("net_kwargs") or {}),
        "in_channels": int(module_hparams["in_channels"]),
        "classes": int(module_hparams["classes"]),
        "class_names": list(CLASS_NAMES),
        "image_size": predictor.image_size,
        "data_class": predictor.config.get("data", {}).get("class_path"),
        "data": predictor.data_settings,
        "diagnosis": asdict(predictor.rule),
    }


def export_onnx(
    net: torch.nn.Module, path: Path, in_channels: int, size: int, dynamic_size: bool = True
) -> bool:
    """Write ``net`` as ONNX (opset ``OPSET``); dynamic batch, height and width where the
    network's graph allows it, else dynamic batch at ``size`` x ``size`` (returned: dynamic?).
    ``dynamic_size=False`` (a network the registry marks ``fixed_size``, e.g. TransUNet's
    position embeddings) skips the dynamic attempt, which for TransUNet runs for a quarter of
    an hour before it fails."""
    example = (torch.rand(2, in_channels, size, size),)
    batch, height, width = (torch.export.Dim(n, min=1, max=4096) for n in ("b", "h", "w"))
    attempts = ({0: batch, 2: height, 3: width}, {0: batch})[0 if dynamic_size else 1 :]
    for number, shapes in enumerate(attempts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                program = torch.onnx.export(
                    net, example, dynamic_shapes=(shapes,), opset_version=OPSET, dynamo=True,
                    input_names=["image"], output_names=["logits"], verbose=False,
                )  # fmt: skip
            write_bytes_atomic(path, program.model_proto.SerializeToString())
            return len(shapes) == 3
        except Exception as err:  # torch.export raises many kinds; the next attempt is fixed H x W
            if number == len(attempts) - 1:
                raise BundleError(f"ONNX export failed: {type(err).__name__}: {err}") from err
            log.info("ONNX: no dynamic height/width for this network (%s); fixed size", err)
    return False


def onnx_difference(net: torch.nn.Module, path: Path, in_channels: int, size: int) -> float:
    """Max |logits(onnxruntime) - logits(PyTorch)| on a random batch of 3 images, divided by
    max(1, max |logit|) (so logits of order 1 compare absolutely, large ones relatively)."""
    x = torch.rand(3, in_channels, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        reference = net(x).numpy()
    got = OnnxNetwork(path)(x).numpy()
    scale = max(1.0, float(np.abs(reference).max()))
    return float(np.abs(got - reference).max()) / scale


def export_bundle(model: str | Path, out: str | Path, onnx: bool = True) -> dict:
    """Bundle the run (folder or checkpoint) ``model`` into ``out``; returns its config."""
    from safetensors.torch import save

    from lightning_modules.inference import Predictor

    predictor = Predictor.load(model)
    net = predictor.net.eval()
    out = Path(out)
    config = bundle_config(predictor)
    tensors = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    write_bytes_atomic(out / "model.safetensors", save(tensors))
    if onnx:
        size = predictor.image_size or 256
        fixed = model_entry(config["net"]).fixed_size
        config["onnx_dynamic_size"] = export_onnx(
            net, out / "model.onnx", config["in_channels"], size, dynamic_size=not fixed
        )
        difference = onnx_difference(net, out / "model.onnx", config["in_channels"], size)
        config["onnx_max_abs_difference"] = difference
        log.info("ONNX max |logit difference| to PyTorch: %.2e", difference)
        if not difference <= TOLERANCE:
            raise BundleError(
                f"{out / 'model.onnx'}: onnxruntime logits differ from PyTorch by {difference:.2e}"
                f" (> {TOLERANCE:g}); the graph is not faithful, do not use it"
            )
    write_text_atomic(out / "config.json", json.dumps(config, indent=1))
    return config


def load_bundle(path: str | Path, backend: str = "torch") -> tuple[object, dict]:
    """``(network, config)`` of a bundle; the network is an ``nn.Module`` (``torch``) or an
    :class:`OnnxNetwork` (``onnx``)."""
    from safetensors.torch import load_file

    path = Path(path)
    config = json.loads((path / "config.json").read_text())
    if config.get("bundle_version") != BUNDLE_VERSION:
        raise BundleError(
            f"{path / 'config.json'}: bundle_version {config.get('bundle_version')} is not "
            f"{BUNDLE_VERSION}; export the run again with this version of ptx-seg"
        )
    if backend == "onnx":
        if not (path / "model.onnx").is_file():
            raise BundleError(f"{path}: no model.onnx; export without --no-onnx")
        return OnnxNetwork(path / "model.onnx"), config
    net = create_model(
        config["net"], in_channels=config["in_channels"], classes=config["classes"],
        **config["net_kwargs"],
    )  # fmt: skip
    state = load_file(path / "model.safetensors")
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise BundleError(
            f"{path / 'model.safetensors'} does not fit {config['net']} "
            f"{config['net_kwargs']}: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    return net, config


class OnnxNetwork:
    """An ONNX graph behind the network interface the predictor uses (logits from images)."""

    def __init__(self, path: str | Path):
        import onnxruntime

        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().float().cpu().numpy()
        return torch.from_numpy(self.session.run(None, {self.input: array})[0])

    def to(self, device):  # runs on the CPU provider whatever the device
        return self

    def eval(self):
        return self
