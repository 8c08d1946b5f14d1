"""Load a trained model from the files the `train` stage writes (model.ckpt + model.json)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from hydra.utils import instantiate


def load_trained(model_dir: Path) -> tuple[torch.nn.Module, dict]:
    """The network in eval mode and its description (classes, input shape, normalisation, ...)."""
    info_path, ckpt_path = model_dir / "model.json", model_dir / "model.ckpt"
    if not info_path.is_file() or not ckpt_path.is_file():
        raise FileNotFoundError(
            f"{model_dir} lacks model.json/model.ckpt: run its train stage first"
        )
    info = json.loads(info_path.read_text())
    channels, size, _ = info["input_shape"]
    net = instantiate(
        info["net"], num_classes=len(info["classes"]), in_channels=channels, input_size=size
    )
    state = torch.load(ckpt_path, map_location="cpu", weights_only=False)["state_dict"]
    net.load_state_dict(
        {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
    )
    return net.eval(), info
