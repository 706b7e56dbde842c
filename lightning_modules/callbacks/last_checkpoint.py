"""``last.ckpt``: the full training state a resumed run continues from.

Weights, optimiser, loops, callbacks and RNG are saved after every ``every_n_epochs`` epochs
(0: never during training), always at the end of training, and when the run is interrupted
(Ctrl-C, ``kill``/SIGTERM: Lightning turns both into exceptions its callbacks see). A run
killed without warning (SIGKILL, a power cut) resumes from the last epoch saved, or starts
over if none was. The paper profile saves every epoch (hours per run); the quick profile
only at the end and on interruption: a full-state save costs seconds for a minute-long run.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl


class LastCheckpoint(pl.Callback):
    """Write ``<dirpath>/last.ckpt`` (see the module docstring)."""

    def __init__(self, dirpath: str | Path, every_n_epochs: int = 1) -> None:
        if every_n_epochs < 0:
            raise ValueError(f"every_n_epochs must be >= 0, got {every_n_epochs}")
        self.path = Path(dirpath) / "last.ckpt"
        self.every_n_epochs = every_n_epochs

    def _save(self, trainer: pl.Trainer) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(self.path)  # rank 0 writes; every rank must call it

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        every = self.every_n_epochs
        if every and (trainer.current_epoch + 1) % every == 0 and not trainer.sanity_checking:
            self._save(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self._save(trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        interrupted = isinstance(exception, KeyboardInterrupt) or (
            type(exception).__name__ == "SIGTERMException"
        )
        if interrupted and trainer.state.fn == "fit" and trainer.global_step > 0:
            self._save(trainer)
