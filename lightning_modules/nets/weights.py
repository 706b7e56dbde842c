"""Local encoder weights for smp encoders: load a file, drop the head that never runs.

Nothing is ever downloaded: :func:`load_encoder_weights` reads a local ``state_dict`` (or a
checkpoint) into an encoder and fits a 3-channel first convolution to the encoder's
``in_channels`` the way smp does. :func:`drop_unused_head` deletes layers an encoder keeps
but never runs. Used by the smp baselines (``smp_models``) and by ``fa``/``efa_net``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def load_encoder_weights(encoder: nn.Module, weights: str | Path | None) -> None:
    """Load a local weights file into an smp encoder (``None``: keep the random init).

    The file holds the encoder's ``state_dict`` (``torch.save(encoder.state_dict(), path)``),
    or a checkpoint with a ``"state_dict"`` whose encoder keys start with ``"encoder."``. It is
    read with ``torch.load(weights_only=True)``. A 3-channel first convolution is adapted to a
    different ``in_channels`` the way smp adapts pretrained weights (summed for 1 channel,
    cycled and rescaled otherwise).
    """
    if weights is None:
        return
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"encoder_weights={str(weights)!r} is not a local file: this project never downloads "
            "weights; save them once with torch.save(encoder.state_dict(), PATH) and pass PATH"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if any(key.startswith("encoder.") for key in state):
        state = {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
    own = encoder.state_dict()
    dropped = tuple(f"{n}." for n in _UNUSED_HEADS.get(type(encoder).__name__, ()))
    if dropped:  # files saved from the full smp encoder still carry the unused head
        state = {k: v for k, v in state.items() if k in own or not k.startswith(dropped)}
    for key, value in list(state.items()):
        if key in own and value.shape != own[key].shape:
            state[key] = _adapt_input_channels(value, own[key].shape, path, key)
    try:
        # strict; smp's encoders drop their classifier keys and rename legacy ones themselves
        encoder.load_state_dict(dict(state))
    except RuntimeError as error:
        raise ValueError(
            f"{path}: does not fit encoder {type(encoder).__name__} ({str(error)[:400]}); "
            "pass a file saved from the same encoder_name"
        ) from None


def drop_unused_head(encoder: nn.Module) -> nn.Module:
    """Delete layers an smp encoder keeps but never runs, so sizes and gradients are honest.

    smp's EfficientNet encoders keep the ImageNet classifier's 1x1 conv head and its BN
    (``_conv_head``, ``_bn1``: 1,052,672 parameters for b5) although ``forward`` stops at the
    last block; every other encoder of the CT paper runs all of its parameters.
    """
    for name in _UNUSED_HEADS.get(type(encoder).__name__, ()):
        if hasattr(encoder, name):
            delattr(encoder, name)
    return encoder


_UNUSED_HEADS = {"EfficientNetEncoder": ("_conv_head", "_bn1")}


def _adapt_input_channels(weight: torch.Tensor, shape: torch.Size, path: Path, key: str):
    """Fit a first-conv weight ``O x 3 x k x k`` to ``O x in_channels x k x k`` (smp's rule)."""
    if weight.ndim != 4 or weight.shape[0] != shape[0] or weight.shape[2:] != shape[2:]:
        raise ValueError(
            f"{path}: {key} has shape {tuple(weight.shape)}, the encoder expects {tuple(shape)}; "
            "pass a file saved from the same encoder_name"
        )
    new_in = shape[1]
    if new_in == 1:
        return weight.sum(dim=1, keepdim=True)
    index = torch.arange(new_in) % weight.shape[1]
    return weight[:, index] * (weight.shape[1] / new_in)
