"""Load a trained network without running anything a file says: weights come from a plain
tensor file (`weights_only=True`, never a pickle), and the network is rebuilt from a JSON spec
whose class must be one of emowatch's own networks (`targets.NETWORKS`), never an arbitrary
`_target_`.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from emowatch import targets
from emowatch.errors import UnsafeModelError


def build_network(info: Mapping[str, Any]) -> torch.nn.Module:
    """The network a spec (model.json: `net`, `classes`, `input_shape`) describes, untrained.
    Refuses a spec that names any class outside `targets.NETWORKS`, at any depth."""
    net_cfg = dict(info["net"])
    targets.check(net_cfg, "network", "the model spec")
    if str(net_cfg.get("_target_", "")).endswith("Backbone"):
        net_cfg["weights"] = "none"  # the trained weights follow; no ImageNet file is needed
    channels, size, _ = info["input_shape"]
    return targets.build(
        net_cfg,
        "network",
        "the model spec",
        num_classes=len(info["classes"]),
        in_channels=channels,
        input_size=size,
    )


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a checkpoint or state-dict file, loaded with `weights_only=True`: a file that
    holds anything but tensors and plain containers is refused, and nothing in it runs."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeModelError(
            f"refused to load {path}: it is not a plain weights file ({str(err).splitlines()[0]})"
        ) from None
    if isinstance(state, Mapping) and "state_dict" in state:  # a Lightning checkpoint
        state = {
            k.removeprefix("net."): v
            for k, v in state["state_dict"].items()
            if k.startswith("net.")
        }
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise UnsafeModelError(f"refused to load {path}: not a state dict of tensors")
    return dict(state)


def load_network(info: Mapping[str, Any], weights: Path) -> torch.nn.Module:
    """An allow-listed network with its trained weights, in eval mode."""
    net = build_network(info)
    net.load_state_dict(load_weights(weights))
    return net.eval()


def load_trained(model_dir: Path) -> tuple[torch.nn.Module, dict]:
    """The network in eval mode and its description (classes, input shape, normalisation, ...)
    from the files the `train` stage writes (model.ckpt + model.json)."""
    info_path, ckpt_path = model_dir / "model.json", model_dir / "model.ckpt"
    if not info_path.is_file() or not ckpt_path.is_file():
        raise FileNotFoundError(
            f"{model_dir} lacks model.json/model.ckpt: run its train stage first"
        )
    info = json.loads(info_path.read_text())
    return load_network(info, ckpt_path), info
