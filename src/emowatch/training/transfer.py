"""Start a model from another dataset's trained model of the same name (photos from FER2013).

A business has a few hundred photos at most: too few to learn faces from scratch. The photo
models therefore take the FER2013 model's network (architecture and weights) and fine-tune it at
a lower learning rate; the output rows of the classes both datasets share are kept, so the
starting model already predicts the photo classes.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from emowatch.errors import DataError
from emowatch.layout import Layout
from emowatch.targets import check

ARCHITECTURE_PARAMS = ("filters_", "units_")


@dataclass
class Source:
    """A trained model another one starts from: its folder (model.ckpt + model.json)."""

    dataset: str
    model_dir: Path
    info: dict

    @property
    def checkpoint(self) -> Path:
        return self.model_dir / "model.ckpt"


def find_source(cfg: DictConfig, dataset: str, model: str, root: Path | None) -> Source | None:
    """The model `model` of `train.<dataset>.init_from`, or None when training from scratch."""
    origin = cfg.train[dataset].get("init_from")
    if not origin:
        return None
    model_dir = Layout(cfg, root).model(origin, model).model_dir
    info_path = model_dir / "model.json"
    if not info_path.is_file() or not (model_dir / "model.ckpt").is_file():
        raise DataError(
            f"train.{dataset}.init_from={origin}: {model_dir} has no trained model; "
            f"run `dvc repro train@{origin}-{model}` first"
        )
    info = json.loads(info_path.read_text())
    check(info.get("net"), "network", str(info_path))  # pulled from the remote: nothing foreign
    norm = cfg.train[dataset].normalize
    if (norm.mean, norm.std) != (info["normalize"]["mean"], info["normalize"]["std"]):
        raise DataError(
            f"train.{dataset}.normalize {dict(norm)} differs from {origin}/{model}'s "
            f"{info['normalize']}: a transferred network needs its own input normalisation"
        )
    return Source(origin, model_dir, info)


def adopt(model_cfg: DictConfig, source: Source, lr_factor: float) -> DictConfig:
    """The model config with the source's network and the learning rate scaled for fine-tuning."""
    out = copy.deepcopy(model_cfg)
    out.net = OmegaConf.create(source.info["net"])
    out.optimizer.lr = float(out.optimizer.lr) * lr_factor
    return out


def without_architecture(params: dict) -> dict:
    """Tuned params minus the layer sizes (a transferred network keeps the source's)."""
    return {k: v for k, v in params.items() if not k.startswith(ARCHITECTURE_PARAMS)}


def load_weights(net: torch.nn.Module, source: Source, classes: list[str]) -> dict[str, int]:
    """Copy the source's weights into `net`, tensor by tensor in order (dropout layers may
    differ); the output layer keeps the rows of the shared classes. Returns what was copied."""
    state = torch.load(source.checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    src = [v for k, v in state.items() if k.startswith("net.")]
    own = net.state_dict()
    if len(src) != len(own):
        raise DataError(
            f"{source.checkpoint}: {len(src)} tensors, the network has {len(own)}: "
            "not the same architecture"
        )
    src_classes = list(source.info["classes"])
    shared = [c for c in classes if c in src_classes]
    theirs_rows = [src_classes.index(c) for c in shared]
    my_rows = [classes.index(c) for c in shared]
    new: dict[str, torch.Tensor] = {}
    # Every tensor but the output layer's weight and bias (the last two) must match as is.
    for i, ((key, mine), theirs) in enumerate(zip(own.items(), src, strict=True)):
        head = i >= len(own) - 2
        if head and mine.shape[1:] == theirs.shape[1:]:
            mine = mine.clone()
            mine[my_rows] = theirs[theirs_rows]
            new[key] = mine
        elif not head and mine.shape == theirs.shape:
            new[key] = theirs
        else:
            raise DataError(
                f"{source.checkpoint}: {key} is {tuple(theirs.shape)} there, "
                f"{tuple(mine.shape)} here: not the same architecture"
            )
    net.load_state_dict(new)
    return {"tensors_copied": len(own) - 2, "head_rows_copied": len(shared)}
