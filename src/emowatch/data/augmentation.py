"""The training augmentation pipeline: built from config with albumentations, saved in
albumentations' own JSON format, and loaded by the training stages."""

from __future__ import annotations

from pathlib import Path

import albumentations as A
from hydra.utils import instantiate
from omegaconf import DictConfig


def build(acfg: DictConfig, seed: int | None = None) -> A.Compose:
    """Compose the configured transforms, in config order."""
    transforms = [instantiate(t) for t in acfg.transforms.values() if t is not None]
    return A.Compose(transforms, seed=seed)


def save(pipeline: A.Compose, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    A.save(pipeline, str(path), data_format="json")
    return path


def load(path: Path) -> A.Compose:
    """Load a pipeline written by `save` (the `augment` stage's output)."""
    if not path.is_file():
        raise FileNotFoundError(f"augmentation pipeline {path} not found: run `dvc repro augment`")
    return A.load(str(path), data_format="json")
