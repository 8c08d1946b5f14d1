"""Plain `nn.Module`s for the CNN series, built from config.

`ConvNet` covers the seed's series and deeper nets of the same family: blocks of 3×3
convolutions (optionally batch-normalised), each block closed by 2×2 max-pooling and optional
dropout, then either flatten + dense layers (the seed's models) or global average pooling (the
VGG-style nets that hold the best from-scratch FER2013 results). Input size, channels and number
of classes come from the data config.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ConvNet(nn.Module):
    """Conv blocks -> (flatten | global average pool) -> dense layers -> logits."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 1,
        input_size: int = 48,
        filters: Sequence[int] = (32, 64),
        convs_per_block: int = 1,
        batch_norm: bool = False,
        conv_dropout: float = 0.0,
        units: Sequence[int] = (64,),
        dense_dropout: float = 0.0,
        pool: str = "flatten",
    ) -> None:
        super().__init__()
        if pool not in ("flatten", "gap"):
            raise ValueError(f"pool must be flatten or gap, not {pool!r}")
        if input_size // 2 ** len(filters) < 1:
            raise ValueError(f"{len(filters)} pooling blocks do not fit a {input_size}px input")
        layers: list[nn.Module] = []
        channels = in_channels
        for width in filters:
            for _ in range(convs_per_block):
                layers.append(nn.Conv2d(channels, width, 3, padding=1, bias=not batch_norm))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(width))
                layers.append(nn.ReLU(inplace=True))
                channels = width
            layers.append(nn.MaxPool2d(2))
            if conv_dropout:
                layers.append(nn.Dropout(conv_dropout))
        self.features = nn.Sequential(*layers)
        side = input_size // 2 ** len(filters)
        if pool == "gap":
            head: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
            width_in = channels
        else:
            head = [nn.Flatten()]
            width_in = channels * side * side
        for width in units:
            head += [nn.Linear(width_in, width), nn.ReLU(inplace=True)]
            if dense_dropout:
                head.append(nn.Dropout(dense_dropout))
            width_in = width
        if not units and dense_dropout:
            head.append(nn.Dropout(dense_dropout))
        head.append(nn.Linear(width_in, num_classes))
        self.classifier = nn.Sequential(*head)
        self.input_shape = (in_channels, input_size, input_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
