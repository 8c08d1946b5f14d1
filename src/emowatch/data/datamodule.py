"""Datasets for training: FER2013 arrays (from `prepare`) and face crops (from `crop_faces`),
served by one LightningDataModule. The serialised albumentations pipeline (from `augment`)
applies to the training split only."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import albumentations as A
import cv2
import lightning.pytorch as L
import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from emowatch.config import resolve_path
from emowatch.data import faces
from emowatch.data.fer2013 import SPLITS
from emowatch.errors import DataError

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
    out = resolve_path(cfg.data.fer2013.out_dir, root)
    x, y = {}, {}
    for split in SPLITS:
        path = out / f"{split}.npz"
        if not path.is_file():
            raise DataError(f"{path} not found: run `dvc repro prepare` first")
        with np.load(path) as data:
            x[split], y[split] = data["x"], data["y"].astype(np.int64)
    return SplitArrays(x, y, list(cfg.data.fer2013.classes))


def load_photos(cfg: DictConfig, root: Path | None = None) -> SplitArrays:
    """The crops and split lists `crop_faces` wrote, resized to `data.photos.image_size`."""
    pcfg = cfg.data.photos
    splits_path = resolve_path(pcfg.splits, root)
    if not splits_path.is_file():
        raise DataError(f"{splits_path} not found: run `dvc repro crop_faces` first")
    lists = json.loads(splits_path.read_text())
    crops = resolve_path(pcfg.out_dir, root)
    size = int(pcfg.image_size)
    x, y = {}, {}
    for split in SPLITS:
        images = [cv2.imread(str(crops / it["crop"]), cv2.IMREAD_GRAYSCALE) for it in lists[split]]
        missing = [it["crop"] for it, img in zip(lists[split], images, strict=True) if img is None]
        if missing:
            raise DataError(
                f"{len(missing)} crops listed in {splits_path} are missing, e.g. {missing[:3]}"
            )
        images = [faces.resize(img, size) for img in images]
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


class FaceDataset(Dataset):
    """uint8 faces -> normalised float tensors (1, H, W), with an optional augmentation."""

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        mean: float,
        std: float,
        transform: A.Compose | None = None,
    ) -> None:
        self.x, self.y, self.mean, self.std, self.transform = x, y, mean, std, transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = self.x[i]
        if self.transform is not None:
            img = self.transform(image=img)["image"]
        return to_tensor(img, self.mean, self.std), torch.tensor(self.y[i])


def to_tensor(img: np.ndarray, mean: float, std: float) -> torch.Tensor:
    """uint8 (H, W) or (N, H, W) -> float (1, H, W) / (N, 1, H, W), (x / 255 - mean) / std."""
    t = torch.from_numpy(np.ascontiguousarray(img)).float().div_(255.0).sub_(mean).div_(std)
    return t.unsqueeze(-3)


def class_weights(y: np.ndarray, n_classes: int) -> list[float]:
    """Inverse-frequency weights, normalised to average 1 over the samples."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, len(y) / (n_classes * np.maximum(counts, 1)), 0.0)
    return weights.tolist()


def subsample(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded, class-stratified fraction of a split (for cheap tuning trials)."""
    if fraction >= 1.0:
        return x, y
    rng = np.random.default_rng(seed)
    keep = np.concatenate(
        [
            rng.permutation(np.flatnonzero(y == c))[: max(1, round(fraction * (y == c).sum()))]
            for c in np.unique(y)
        ]
    )
    keep.sort()
    return x[keep], y[keep]


class FaceDataModule(L.LightningDataModule):
    """Train/val/test loaders over in-memory arrays; `balance` = none | weights | sampler."""

    def __init__(
        self,
        arrays: SplitArrays,
        batch_size: int,
        mean: float,
        std: float,
        augment: A.Compose | None = None,
        balance: str = "none",
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if balance not in ("none", "weights", "sampler"):
            raise ValueError(f"balance must be none, weights or sampler, not {balance!r}")
        self.arrays, self.batch_size, self.balance = arrays, batch_size, balance
        self.mean, self.std, self.augment = mean, std, augment
        self.num_workers, self.seed = num_workers, seed

    def dataset(self, split: str) -> FaceDataset:
        transform = self.augment if split == "train" else None  # never augment val/test
        return FaceDataset(
            self.arrays.x[split], self.arrays.y[split], self.mean, self.std, transform
        )

    def _loader(self, split: str, shuffle: bool = False, sampler=None) -> DataLoader:
        return DataLoader(
            self.dataset(split),
            batch_size=self.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed) if shuffle else None,
        )

    def train_dataloader(self) -> DataLoader:
        if self.balance == "sampler":
            y = self.arrays.y["train"]
            w = np.asarray(class_weights(y, len(self.arrays.classes)))[y]
            gen = torch.Generator().manual_seed(self.seed)
            return self._loader(
                "train", sampler=WeightedRandomSampler(w.tolist(), len(y), generator=gen)
            )
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def loss_weights(self) -> list[float] | None:
        if self.balance != "weights":
            return None
        return class_weights(self.arrays.y["train"], len(self.arrays.classes))
