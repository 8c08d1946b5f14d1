"""Batch-level MixUp/CutMix from torchvision's transforms v2, for a model's `mix:` config.

They act on whole batches (two faces and their labels blended), so they sit in the
LightningModule's training step, not in the per-image albumentations pipeline. Their random
draws come from torch's global generator, which `seed_everything` seeds.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from omegaconf import DictConfig
from torchvision.transforms import v2

BatchTransform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def build(mix: DictConfig | None, num_classes: int) -> BatchTransform | None:
    """MixUp and/or CutMix (alpha 0 leaves one out), one of them per batch, applied to a batch
    with probability `p`; None when `mix` is null or both alphas are 0."""
    if not mix:
        return None
    chosen = []
    if mix.get("mixup_alpha", 0):
        chosen.append(v2.MixUp(alpha=float(mix.mixup_alpha), num_classes=num_classes))
    if mix.get("cutmix_alpha", 0):
        chosen.append(v2.CutMix(alpha=float(mix.cutmix_alpha), num_classes=num_classes))
    if not chosen:
        return None
    mixer = chosen[0] if len(chosen) == 1 else v2.RandomChoice(chosen)
    p = float(mix.get("p", 1.0))

    def transform(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if p < 1.0 and torch.rand(()) >= p:
            return x, torch.nn.functional.one_hot(y, num_classes).to(x.dtype)
        return mixer(x, y)

    return transform
