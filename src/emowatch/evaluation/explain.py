"""What the model looks at: correct and wrong faces, first-layer feature maps, Grad-CAM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from captum.attr import LayerAttribution, LayerGradCam

from emowatch.data.splits import to_tensor
from emowatch.figures import image_grid


def faces_grid(
    x: np.ndarray,
    y: np.ndarray,
    pred: np.ndarray,
    classes: list[str],
    path: Path,
    per_row: int = 8,
    seed: int = 0,
) -> Path:
    """A row of correctly and a row of wrongly classified test faces, with true/pred labels."""
    rng = np.random.default_rng(seed)
    rows = []
    for label, mask in (("correct", pred == y), ("wrong", pred != y)):
        idx = rng.permutation(np.flatnonzero(mask))[: per_row * 2]
        tiles = [(x[i], f"{classes[y[i]]} → {classes[pred[i]]}") for i in idx]
        rows += [(f"{label} ({mask.sum()})", tiles[:per_row]), ("", tiles[per_row:])]
    return image_grid(rows, path, "test faces: true → predicted")


def conv_layers(net: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]


def feature_maps(
    net: torch.nn.Module,
    face: np.ndarray,
    mean: float,
    std: float,
    path: Path,
    layers: int = 2,
    maps: int = 8,
) -> Path:
    """The activations of the first conv layers for one face."""
    captured: list[torch.Tensor] = []
    hooks = [
        c.register_forward_hook(lambda m, i, o: captured.append(o.detach().clone()))
        for c in conv_layers(net)[:layers]
    ]
    try:
        with torch.inference_mode():
            net(to_tensor(face[None], mean, std))
    finally:
        for h in hooks:
            h.remove()
    rows = [("input", [(face, "")])]
    for n, act in enumerate(captured):
        tiles = []
        for c in range(min(maps, act.shape[1])):
            a = act[0, c].relu().numpy()
            tiles.append(((255 * a / (a.max() or 1.0)).astype(np.uint8), f"ch {c}"))
        rows.append((f"conv {n + 1} ({act.shape[1]} maps, first {len(tiles)})", tiles))
    return image_grid(rows, path, "feature maps of the first conv layers")


def grad_cam(
    net: torch.nn.Module, faces: np.ndarray, target: int, mean: float, std: float
) -> np.ndarray:
    """Grad-CAM heat maps (N, H, W) in [0, 1] for class `target`, on the last conv layer."""
    layer = conv_layers(net)[-1]
    # The ReLU after it must not overwrite the hooked output in place.
    inplace = [m for m in net.modules() if isinstance(m, torch.nn.ReLU) and m.inplace]
    for m in inplace:
        m.inplace = False
    try:
        inputs = to_tensor(faces, mean, std).requires_grad_(True)
        attr = LayerGradCam(net, layer).attribute(inputs, target=target, relu_attributions=True)
        heat = LayerAttribution.interpolate(attr, faces.shape[-2:], interpolate_mode="bilinear")
    finally:
        for m in inplace:
            m.inplace = True
    heat = heat[:, 0].detach().numpy()
    peak = heat.reshape(len(heat), -1).max(axis=1).reshape(-1, 1, 1)
    return heat / np.where(peak > 0, peak, 1.0)


def overlay(face: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """Blend a heat map over a grey face as an RGB image (red = where the model looks)."""
    alpha = 0.5 * heat[..., None]
    grey = np.repeat(face[..., None], 3, axis=2).astype(np.float32)
    red = np.zeros_like(grey)
    red[..., 0] = 255.0
    return np.clip((1 - alpha) * grey + alpha * red, 0, 255).astype(np.uint8)


def grad_cam_grid(
    net: torch.nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    pred: np.ndarray,
    angry: int,
    mean: float,
    std: float,
    path: Path,
    n: int = 8,
) -> Path:
    """Grad-CAM for angry on a few angry faces and on faces wrongly called angry."""
    rows = []
    for label, mask in (
        ("angry faces", y == angry),
        ("wrongly called angry", (pred == angry) & (y != angry)),
    ):
        idx = np.flatnonzero(mask)[:n]
        tiles = []
        if len(idx):
            heat = grad_cam(net, x[idx], angry, mean, std)
            tiles = [(overlay(x[i], h), f"#{i}") for i, h in zip(idx, heat, strict=True)]
        rows.append((label, tiles))
    return image_grid(rows, path, "Grad-CAM for 'angry' (red: evidence the model uses)")
