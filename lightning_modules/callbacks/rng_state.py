"""Random-number generator states in checkpoints, so a resumed run draws what the unbroken one did.

Lightning restores weights, optimiser and loop counters but not the global RNGs; without
them a resumed run shuffles and flips differently from the run it continues. Everything is
stored as tensors and plain Python values so the checkpoint still loads with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random

import numpy as np
import pytorch_lightning as pl
import torch


class RngState(pl.Callback):
    """Save the torch, CUDA, NumPy and Python RNG states with each checkpoint; restore on resume."""

    def state_dict(self) -> dict:
        # the legacy global state is the one seed_everything seeds and libraries draw from
        name, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {
                "name": str(name),
                "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                "pos": int(pos),
                "has_gauss": int(has_gauss),
                "gauss": float(gauss),
            },
            "python": random.getstate(),
        }

    def load_state_dict(self, state: dict) -> None:
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        n = state["numpy"]
        keys = n["keys"].numpy().astype(np.uint32)
        np.random.set_state((n["name"], keys, n["pos"], n["has_gauss"], n["gauss"]))  # noqa: NPY002
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
