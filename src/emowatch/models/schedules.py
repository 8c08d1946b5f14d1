"""Learning-rate schedules that torch does not ship under a config-friendly name."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def constant_then_exp(
    optimizer: Optimizer, constant_epochs: int = 10, decay: float = 0.1
) -> LambdaLR:
    """The seed's schedule: the initial rate for `constant_epochs`, then × exp(-decay) per epoch."""

    def factor(epoch: int) -> float:
        return 1.0 if epoch < constant_epochs else math.exp(-decay * (epoch - constant_epochs + 1))

    return LambdaLR(optimizer, factor)
