"""How an evaluation pass's results reach the callbacks that record them.

At the end of a validation or test pass ``SegmentationModule`` computes its metrics once
(a collective under DDP) and hands them, as one :class:`EvaluationResult`, to every callback
of the trainer that defines the hook ``on_evaluation_result(trainer, pl_module, result)``
(:class:`EvaluationListener`). The listener keeps what it needs in its own state and writes
it in its usual Lightning hook (``RunRecord`` in ``on_validation_end`` / ``on_test_end``).
The module keeps nothing of it, so the results of one pass cannot leak into the next.

This is the same dispatch Lightning uses for its own callback hooks, for one hook Lightning
does not have: results at full (float64) precision, with the per-image and per-patient rows
that ``trainer.callback_metrics`` (scalars, float32) cannot carry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import pytorch_lightning as pl


@dataclass(frozen=True)
class EvaluationResult:
    """The results of one validation or test pass over the whole set (every rank's images).

    Attributes:
        stage: ``val`` or ``test``.
        metrics: the set-level keys of ``SegmentationMetrics.compute`` (``dice``, ...).
        per_image: one row per image (``SegmentationMetrics.per_image``); test only.
        per_patient: one row per patient (``SegmentationMetrics.per_patient``); test only.
        diagnosis: the diagnosis rule the image-level calls used (``DiagnosisRule.to_dict``).
    """

    stage: str
    metrics: dict[str, float]
    per_image: list[dict] = field(default_factory=list)
    per_patient: list[dict] = field(default_factory=list)
    diagnosis: dict = field(default_factory=dict)


@runtime_checkable
class EvaluationListener(Protocol):
    """A callback that wants the results of each evaluation pass."""

    def on_evaluation_result(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, result: EvaluationResult
    ) -> None: ...


def publish(trainer: pl.Trainer, pl_module: pl.LightningModule, result: EvaluationResult) -> None:
    """Hand ``result`` to every listening callback, in the trainer's callback order."""
    for callback in trainer.callbacks:
        if isinstance(callback, EvaluationListener):
            callback.on_evaluation_result(trainer, pl_module, result)
