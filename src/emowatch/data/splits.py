"""The train/val/test arrays of each dataset (what `prepare` and `crop_faces` wrote) and their
tensor form. Kept free of Lightning and albumentations: the stages and the watcher that only
predict (evaluate, register, promote, the registered model) import this, not the DataModule,
and start seconds sooner."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from omegaconf import DictConfig

from emowatch.data.fer2013 import SPLITS
from emowatch.data.images import resize
from emowatch.errors import DataError
from emowatch.layout import Layout

DATASETS = ("fer2013", "photos")


@dataclass
class SplitArrays:
    """uint8 images (N, H, W) and int64 labels (N,) of every split, with the class names."""

    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    classes: list[str]

    @property
    def image_size(self) -> int:
        return int(self.x["train"].shape[-1])


def load_fer2013(cfg: DictConfig, root: Path | None = None) -> SplitArrays:
    """The arrays `prepare` wrote."""
    layout = Layout(cfg, root)
    x, y = {}, {}
    for split in SPLITS:
        path = layout.fer2013_split(split)
        if not path.is_file():
            raise DataError(f"{path} not found: run `dvc repro prepare` first")
        with np.load(path) as data:
            x[split], y[split] = data["x"], data["y"].astype(np.int64)
    return SplitArrays(x, y, list(cfg.data.fer2013.classes))


def load_photos(cfg: DictConfig, root: Path | None = None) -> SplitArrays:
    """The crops and split lists `crop_faces` wrote, resized to `data.photos.image_size`."""
    pcfg = cfg.data.photos
    layout = Layout(cfg, root)
    splits_path = layout.photo_splits
    if not splits_path.is_file():
        raise DataError(f"{splits_path} not found: run `dvc repro crop_faces` first")
    lists = json.loads(splits_path.read_text())
    crops = layout.photo_crops
    size = int(pcfg.image_size)
    x, y = {}, {}
    for split in SPLITS:
        images = [cv2.imread(str(crops / it["crop"]), cv2.IMREAD_GRAYSCALE) for it in lists[split]]
        missing = [it["crop"] for it, img in zip(lists[split], images, strict=True) if img is None]
        if missing:
            raise DataError(
                f"{len(missing)} crops listed in {splits_path} are missing, e.g. {missing[:3]}"
            )
        images = [resize(img, size) for img in images]
        x[split] = np.stack(images) if images else np.zeros((0, size, size), np.uint8)
        y[split] = np.array([it["label"] for it in lists[split]], dtype=np.int64)
    return SplitArrays(x, y, list(lists["classes"]))


def load_dataset(cfg: DictConfig, name: str, root: Path | None = None) -> SplitArrays:
    """The train/val/test arrays of a dataset by name (fer2013 | photos)."""
    if name == "fer2013":
        return load_fer2013(cfg, root)
    if name == "photos":
        return load_photos(cfg, root)
    raise ValueError(f"unknown dataset {name!r} (available: {', '.join(DATASETS)})")


def to_tensor(img: np.ndarray, mean: float, std: float) -> torch.Tensor:
    """uint8 (H, W) or (N, H, W) -> float (1, H, W) / (N, 1, H, W), (x / 255 - mean) / std."""
    t = torch.from_numpy(np.ascontiguousarray(img)).float().div_(255.0).sub_(mean).div_(std)
    return t.unsqueeze(-3)


def val_groups(cfg: DictConfig, dataset: str, root: Path | None = None) -> np.ndarray | None:
    """The person of each val face where people are known (photos), else None."""
    if dataset != "photos":
        return None
    lists = json.loads(Layout(cfg, root).photo_splits.read_text())
    if not lists.get("by_subject"):
        return None
    return np.array([it["subject"] for it in lists["val"]])
