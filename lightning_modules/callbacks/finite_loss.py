"""Stop a run at the first non-finite training loss, before it reaches weights or checkpoints."""

from __future__ import annotations

import pytorch_lightning as pl
import torch


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message says where and what to try."""


class FiniteLossGuard(pl.Callback):
    """Raise :class:`NonFiniteLossError` when the loss of a training step is not finite.

    The check runs before ``backward``, so the optimiser never applies a NaN update and no
    checkpoint is written from the broken state; earlier checkpoints stay as they were. In
    multi-process runs every rank stops together (one rank's NaN would otherwise hang the
    others in the next all-reduce).
    """

    def __init__(self) -> None:
        self._batch_ids: list[str] = []
        self._batch_idx = -1

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        ids = batch.get("id", []) if isinstance(batch, dict) else []
        self._batch_ids, self._batch_idx = list(ids), batch_idx

    def on_before_backward(self, trainer, pl_module, loss: torch.Tensor) -> None:
        local = not bool(torch.isfinite(loss.detach()).all())
        if not trainer.strategy.reduce_boolean_decision(local, all=False):
            return
        shown = ", ".join(self._batch_ids[:4]) + (" ..." if len(self._batch_ids) > 4 else "")
        where = f"on this rank (value {loss.item()})" if local else "on another rank"
        raise NonFiniteLossError(
            f"non-finite training loss {where} at epoch {trainer.current_epoch}, global step "
            f"{trainer.global_step}, batch {self._batch_idx} (images {shown or 'unknown'}). "
            "The run stopped before this step was applied; no checkpoint was written from it. "
            "Try a lower learning rate (--model.optimizer.lr), gradient clipping "
            "(--trainer.gradient_clip_val 1.0), 32-bit precision (--trainer.precision 32-true), "
            "or check those images."
        )
