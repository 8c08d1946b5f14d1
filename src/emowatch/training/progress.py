"""One line per epoch when stdout is not a terminal (`dvc repro`, cron, CI logs).

Lightning's TQDM bar redraws itself with carriage returns: in a log file that is one endless
line until the epoch ends, or nothing at all. This bar prints the epoch's main metrics and its
duration once the epoch (with its validation) is over.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import lightning.pytorch as L
from lightning.pytorch.callbacks import ProgressBar

MAIN = ("train/loss", "train/acc", "val/loss", "val/acc", "val/recall_angry")


class EpochLines(ProgressBar):
    """`epoch 3/15  train/loss 1.234  ...  val/acc 0.612  (48 s)`, flushed, once an epoch."""

    def __init__(self, keys: tuple[str, ...] = MAIN) -> None:
        super().__init__()
        self.keys, self.enabled, self.started = keys, True, 0.0

    def disable(self) -> None:
        self.enabled = False

    def enable(self) -> None:
        self.enabled = True

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.enabled or trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        shown = "  ".join(f"{k} {float(metrics[k]):.3f}" for k in self.keys if k in metrics)
        seconds = time.perf_counter() - self.started
        epoch = f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"
        self.print(f"{epoch}  {shown}  ({seconds:.0f} s)")

    def print(self, *args: Any, **kwargs: Any) -> None:
        print(*args, **kwargs, flush=True)


def for_stdout() -> list[ProgressBar]:
    """The epoch-line bar when stdout is not a terminal; none (Lightning's TQDM bar) when it is."""
    return [] if sys.stdout.isatty() else [EpochLines()]
