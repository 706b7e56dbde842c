"""Learning-rate schedules and normalisation settings injected into ``SegmentationModule``.

Optimisers and schedulers are LightningCLI callables in the YAML configs::

    model:
      optimizer: {class_path: torch.optim.Adam, init_args: {lr: 0.001}}
      scheduler: {class_path: lightning_modules.optim.WarmupCosineLR,
                  init_args: {warmup_fraction: 0.05}}

Any ``torch.optim`` optimiser and ``torch.optim.lr_scheduler`` scheduler fits; a scheduler
steps once per epoch unless its class says ``interval = "step"``. :class:`WarmupCosineLR`
learns the run's length from the trainer (``estimated_stepping_batches``), so a config never
has to repeat the number of steps.
"""

from __future__ import annotations

import math

from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler


class WarmupCosineLR(LambdaLR):
    """Linear warm-up from ~0 to the optimiser's learning rate over the first
    ``warmup_fraction`` of the run's optimiser steps, then a cosine decay to
    ``min_lr_ratio`` times it at the last step. Steps per optimiser step (``interval``).

    Args:
        optimizer: the optimiser whose learning rates it scales.
        warmup_fraction: share of the steps spent warming up (0 disables the warm-up).
        min_lr_ratio: final learning rate as a fraction of the initial one.
        total_steps: optimiser steps of the run; None until :func:`fit_to_run` sets it from
            the trainer (the module does so in ``configure_optimizers``).
    """

    interval = "step"

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_fraction: float = 0.05,
        min_lr_ratio: float = 0.0,
        total_steps: int | None = None,
    ) -> None:
        if not 0.0 <= warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
        if not 0.0 <= min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
        self.warmup_fraction, self.min_lr_ratio = warmup_fraction, min_lr_ratio
        self.total_steps = total_steps
        super().__init__(optimizer, self.factor)

    def factor(self, step: int) -> float:
        """The learning-rate multiplier after ``step`` optimiser steps."""
        total = max(int(self.total_steps or 1), 1)
        warmup = int(round(self.warmup_fraction * total))
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min((step - warmup) / max(total - warmup, 1), 1.0)
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (
            1 + math.cos(math.pi * progress)
        )

    def set_total_steps(self, total_steps: int) -> None:
        """Fix the run's length and re-apply the current step's learning rate."""
        self.total_steps = int(total_steps)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * self.factor(self.last_epoch)
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


def fit_to_run(scheduler: LRScheduler, total_steps: int) -> LRScheduler:
    """Tell a scheduler that needs the run's length (``total_steps`` None) how long it is."""
    if getattr(scheduler, "total_steps", 0) is None and hasattr(scheduler, "set_total_steps"):
        scheduler.set_total_steps(total_steps)
    return scheduler


def set_batchnorm_momentum(module: nn.Module, momentum: float | None) -> int:
    """Set the running-statistics momentum of every BatchNorm in ``module`` (None: keep
    each layer's own). Returns how many layers were changed. Parameters are untouched.

    smp's EfficientNet encoders carry TensorFlow's 0.01 (decay 0.99) where every other
    encoder has PyTorch's 0.1: after a few hundred steps their running statistics are still
    near the initial ones and the eval-mode network outputs background. One value for every
    network keeps a comparison fair.
    """
    if momentum is None:
        return 0
    if not 0.0 < momentum <= 1.0:
        raise ValueError(f"bn_momentum must be in (0, 1], got {momentum}")
    changed = 0
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.momentum = momentum
            changed += 1
    return changed
