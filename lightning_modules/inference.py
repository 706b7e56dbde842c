"""A trained network applied to new images: ``Predictor.load(run folder or checkpoint)``.

The predictor keeps what a run needs to see new images as it saw its training images: the
network (from the checkpoint), the image size and input channels of its data config, and
the diagnosis rule of its ``postprocessing.json`` (``ptx tune-postprocessing``), else the one
its test used (``metrics.json``, so a rule tuned on validation is applied unchanged).
:meth:`Predictor.probabilities` takes images in [0, 1] at any size and returns the
pneumothorax probability on the network's grid and, upsampled, on the input's grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from datamodules.transforms import resize_images
from lightning_modules import records
from lightning_modules.diagnosis import DiagnosisRule

TTA = ("none", "hflip")


class ModelError(ValueError):
    """The model path cannot be used; the message says what is missing."""


def run_files(model: str | Path) -> tuple[Path, Path]:
    """``(checkpoint, run folder)`` of a run folder (its ``checkpoints/best.ckpt``) or of a
    checkpoint inside one (``<run>/checkpoints/<name>.ckpt``)."""
    path = Path(model)
    if path.is_dir():
        checkpoint, run_dir = path / "checkpoints" / "best.ckpt", path
    else:
        checkpoint, run_dir = path, path.parent.parent
    if not checkpoint.is_file():
        raise ModelError(f"{checkpoint}: no checkpoint there; give a run folder or a .ckpt file")
    if not (run_dir / records.CONFIG).is_file():
        raise ModelError(
            f"{run_dir / 'config.yaml'}: missing; a checkpoint is read with its run's config "
            "(keep it in <run>/checkpoints/ next to the run's config.yaml)"
        )
    return checkpoint, run_dir


def load_checkpoint(checkpoint: Path):
    """The ``SegmentationModule`` of a ``ptx fit`` checkpoint, read with
    ``torch.load(weights_only=True)``: tensors and plain values only, so loading cannot run
    code hidden in the file (LightningCLI stores the injected optimiser as its class path).
    A file holding other objects, or weights that do not fit the network its
    hyperparameters describe, is refused with what differs."""
    import pickle

    from lightning_modules.module import SegmentationModule

    try:
        return SegmentationModule.load_from_checkpoint(
            checkpoint, map_location="cpu", weights_only=True
        )
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(
            f"{checkpoint}: refused by torch.load(weights_only=True), it holds more than "
            f"tensors and plain values ({first}); load only checkpoints written by ptx fit, or "
            "a bundle (ptx export)"
        ) from err
    except RuntimeError as err:
        if "state_dict" not in str(err):
            raise
        raise ModelError(checkpoint_mismatch(checkpoint)) from err


def checkpoint_mismatch(checkpoint: Path) -> str:
    """One line naming how a checkpoint's weights differ from the network it describes."""
    from lightning_modules.bundle import project_version
    from lightning_modules.nets import create_model

    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    h = saved.get("hyper_parameters", {})
    net = create_model(
        h.get("net"), in_channels=h.get("in_channels", 1), classes=h.get("classes", 2),
        **(h.get("net_kwargs") or {}),
    )  # fmt: skip
    built = net.state_dict()
    weights = {k[4:]: v for k, v in saved["state_dict"].items() if k.startswith("net.")}
    missing = sorted(set(built) - set(weights))
    unexpected = sorted(set(weights) - set(built))
    shapes = [
        f"{k} {tuple(weights[k].shape)} vs {tuple(built[k].shape)}"
        for k in sorted(set(built) & set(weights))
        if weights[k].shape != built[k].shape
    ]
    written_by = saved.get("ptx_seg_version", "an unknown version")
    return (
        f"{checkpoint}: its weights do not fit {h.get('net')} {h.get('net_kwargs') or {}} as "
        f"ptx-seg {project_version()} builds it (checkpoint written by ptx-seg {written_by}): "
        f"missing {missing[:3]}, unexpected {unexpected[:3]}, shape differs {shapes[:3]}"
    )


@dataclass
class Prediction:
    """PTX probabilities of a batch: ``grid`` on the network's grid (``N x s x s``) and
    ``native`` on the input's grid (``N x H x W``), float32 in [0, 1]."""

    grid: np.ndarray
    native: np.ndarray


class Predictor:
    """A network in eval mode with the preprocessing and diagnosis rule of its run.

    Args:
        net: the segmentation network (logits ``B x classes x s x s``, class 1 = PTX).
        image_size: the square grid the network saw in training (None: the input's own).
        in_channels: channels the network takes (a grey image is repeated).
        rule: the diagnosis rule of the run's test.
        config: the run's resolved config (``config.yaml``), for the data settings.
        device: ``cpu``, ``cuda``, ``cuda:1`` ...; bf16 autocast on CUDA.
        tta: ``none`` or ``hflip`` (mean of the image's and its mirror's probabilities).
        hparams: the run's module hyperparameters (``net``, ``net_kwargs``, ...), for the
            bundle and the DICOM SEG's algorithm name.
    """

    def __init__(
        self, net, image_size, in_channels, rule, config, device="cpu", tta="none", hparams=None
    ):
        if tta not in TTA:
            raise ValueError(f"tta must be one of {TTA}, got {tta!r}")
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.image_size, self.in_channels = image_size, in_channels
        self.rule, self.config, self.tta = rule, config, tta
        self.hparams: dict = dict(hparams or {})  # net, net_kwargs, ... of the run or bundle

    @classmethod
    def load(
        cls, model: str | Path, device: str = "cpu", tta: str = "none", backend: str = "torch"
    ) -> Predictor:
        """From a run folder, a checkpoint in one, or an exported bundle (``backend`` onnx:
        the bundle's ``model.onnx`` through onnxruntime)."""
        from lightning_modules.bundle import is_bundle, load_bundle

        if is_bundle(model):
            net, bundle = load_bundle(model, backend)
            config = {"data": {"class_path": bundle["data_class"], "init_args": bundle["data"]}}
            hparams = {k: bundle[k] for k in ("net", "net_kwargs", "in_channels", "classes")}
            rule = DiagnosisRule(**bundle["diagnosis"])
            size, channels = bundle["image_size"], bundle["in_channels"]
            return cls(net, size, channels, rule, config, device, tta, hparams)
        if backend != "torch":
            raise ModelError(f"{model}: --backend {backend} needs a bundle (ptx export first)")
        checkpoint, run_dir = run_files(model)
        config = records.read_config(run_dir)
        module = load_checkpoint(checkpoint)
        record = records.read_status(run_dir)
        chosen = records.read_postprocessing(run_dir)  # ptx tune-postprocessing, if run
        h = module.hparams
        if chosen is not None:
            rule = DiagnosisRule.from_dict(chosen)
        elif "diagnosis" in record:
            rule = DiagnosisRule(**record["diagnosis"])
        else:  # a run without its test: the rule it was trained with (untuned)
            rule = DiagnosisRule("paper" if h.diagnosis_rule == "tuned" else h.diagnosis_rule,
                                 h.min_area)  # fmt: skip
        data = config.get("data", {}).get("init_args", {})
        size = h.image_size or data.get("image_size")
        return cls(module.net, size, h.in_channels, rule, config, device, tta, dict(h))

    @property
    def modality(self) -> str:
        data_class = self.config.get("data", {}).get("class_path", "")
        return "xray" if data_class.endswith("XRayDataModule") else "ct"

    @property
    def data_settings(self) -> dict:
        return dict(self.config.get("data", {}).get("init_args", {}))

    @torch.inference_mode()
    def _grid_probabilities(self, images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(resize_images(images, self.image_size))[:, None].to(self.device)
        x = x.expand(-1, self.in_channels, -1, -1).contiguous()
        cuda = self.device.type == "cuda"
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            p = self.net(x).float().softmax(1)[:, 1]
            if self.tta == "hflip":
                mirrored = self.net(x.flip(-1)).float().softmax(1)[:, 1].flip(-1)
                p = (p + mirrored) / 2
        return p

    def probabilities(self, images: np.ndarray, batch_size: int = 16) -> Prediction:
        """PTX probabilities of ``N x H x W`` float images in [0, 1] (one size per call)."""
        images = np.asarray(images, dtype=np.float32)
        grids, natives = [], []
        for start in range(0, len(images), batch_size):
            p = self._grid_probabilities(images[start : start + batch_size])
            grids.append(p.cpu().numpy())
            native = F.interpolate(p[:, None], size=images.shape[1:], mode="bilinear")
            natives.append(native[:, 0].clamp_(0, 1).cpu().numpy())
        return Prediction(np.concatenate(grids), np.concatenate(natives))

    def calls(self, grid: np.ndarray) -> np.ndarray:
        """The diagnosis (PTX yes/no) of each image from its network-grid probabilities."""
        return self.rule.calls(torch.from_numpy(grid)).numpy()

    def masks(self, native: np.ndarray, calls: np.ndarray) -> np.ndarray:
        """uint8 {0, 1} masks on the input's grid: pixels above the rule's ``pixel_threshold``;
        the ``tuned`` rule also clears the images it calls negative (as in its test)."""
        masks = native > self.rule.pixel_threshold
        if self.rule.rule == "tuned":
            masks &= np.asarray(calls, dtype=bool)[:, None, None]
        return masks.astype(np.uint8)
