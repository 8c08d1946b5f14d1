"""DVC stage `finetune` (one per backbone): transfer learning of a torchvision backbone
(conf/net/mobilenet_v2.yaml, resnet50.yaml) on FER2013.

The same Lightning training as the CNN series (stages/train.py: early stopping and checkpoints
on val, MLflow run, resume, model files that evaluate/register read), with the two phases of
the model's `finetune:` config: the backbone frozen with BatchNorm in eval mode, then its top
blocks unfrozen at a lower learning rate. The run records which weights were used.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from emowatch.models.backbones import resolve_weights
from emowatch.stages import train

DATASET = "fer2013"


def main(cfg: DictConfig, backbone: str, root: Path | None = None) -> dict:
    """Fine-tune `backbone` (a model in cfg.models with a `finetune:` section) on FER2013."""
    if backbone not in cfg.models or not cfg.models[backbone].get("finetune"):
        names = [m for m in cfg.models if cfg.models[m].get("finetune")]
        raise ValueError(f"{backbone!r} is not a backbone model (configured: {', '.join(names)})")
    net = cfg.models[backbone].net
    resolve_weights(net.arch, net.weights, net.allow_download)  # fail before loading any data
    return train.main(cfg, DATASET, backbone, root)
