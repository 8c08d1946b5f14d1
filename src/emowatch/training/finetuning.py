"""The two phases of transfer learning as a Lightning callback (BaseFinetuning).

Phase 1, feature extraction: the whole backbone is frozen, its BatchNorm layers in eval mode
(running statistics stay ImageNet's; the seed let them train), only the new head learns.
Phase 2, from epoch `frozen_epochs`: the top `trainable_blocks` blocks join the optimizer at the
head's learning rate × `lr_factor`. Lightning keeps the added parameter groups in checkpoints,
so a killed run resumes in the right phase.
"""

from __future__ import annotations

import lightning.pytorch as L
from lightning.pytorch.callbacks import BaseFinetuning
from torch.optim import Optimizer

from emowatch.models.backbones import freeze, keep_frozen_bn_eval


class BackboneFinetuning(BaseFinetuning):
    """Freeze the backbone, then unfreeze its top blocks at a lower learning rate."""

    def __init__(self, frozen_epochs: int, trainable_blocks: int, lr_factor: float) -> None:
        super().__init__()
        self.frozen_epochs, self.trainable_blocks = frozen_epochs, trainable_blocks
        self.lr_factor = lr_factor

    def freeze_before_training(self, pl_module: L.LightningModule) -> None:
        freeze(pl_module.net, trainable_blocks=0)

    def finetune_function(
        self, pl_module: L.LightningModule, epoch: int, optimizer: Optimizer
    ) -> None:
        if epoch == self.frozen_epochs and self.trainable_blocks > 0:
            blocks = pl_module.net.blocks()[-self.trainable_blocks :]
            lr = optimizer.param_groups[0]["lr"] * self.lr_factor
            self.unfreeze_and_add_param_group(blocks, optimizer, lr=lr, train_bn=True)
            extend_schedulers(pl_module.trainer, lr)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        keep_frozen_bn_eval(pl_module.net)  # Lightning put every module in train mode


def extend_schedulers(trainer: L.Trainer, lr: float) -> None:
    """Give the learning-rate schedulers a slot for the parameter group just added (they keep
    one entry per group): the new group follows the first group's schedule from its own lr."""
    for config in trainer.lr_scheduler_configs:
        scheduler = config.scheduler
        if hasattr(scheduler, "base_lrs"):
            scheduler.base_lrs.append(lr)
        if hasattr(scheduler, "lr_lambdas"):
            scheduler.lr_lambdas.append(scheduler.lr_lambdas[0])
        if hasattr(scheduler, "min_lrs"):  # ReduceLROnPlateau
            scheduler.min_lrs.append(scheduler.min_lrs[0])
        if hasattr(scheduler, "_last_lr"):
            scheduler._last_lr.append(lr)
