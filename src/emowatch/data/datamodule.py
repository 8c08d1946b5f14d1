"""Datasets for training: the split arrays (`data/splits.py`) served by one LightningDataModule.
The serialised albumentations pipeline (from `augment`) applies to the training split only."""

from __future__ import annotations

import albumentations as A
import lightning.pytorch as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from emowatch.data.splits import SplitArrays, to_tensor


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
