"""DVC stage `augment`: build the training augmentation pipeline from config, save it in
albumentations' format (training loads it and applies it to training data only) and draw a
preview grid: one face, N augmented variants."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import mlflow
import numpy as np
from omegaconf import DictConfig

from emowatch.config import flatten, resolve_path
from emowatch.data import augmentation, photos
from emowatch.errors import DataError
from emowatch.figures import image_grid
from emowatch.layout import Layout
from emowatch.tracking.runs import stage_run

STAGE = "augment"


def preview_face(cfg: DictConfig, root: Path | None) -> tuple[np.ndarray, str]:
    """The first training crop of the photos, the face every preview shows (at a site without
    photos, the first FER2013 training face)."""
    splits_path = resolve_path(cfg.data.photos.splits, root)
    if not splits_path.is_file():
        raise DataError(f"{splits_path} not found: run `dvc repro crop_faces` first")
    if photos.no_photos(splits_path):
        train_npz = Layout(cfg, root).fer2013_split("train")
        if not train_npz.is_file():
            raise DataError(f"{train_npz} not found: run `dvc repro prepare` first")
        with np.load(train_npz) as data:
            return data["x"][0], "FER2013 train #0 (no photos at this site)"
    train = json.loads(splits_path.read_text())["train"]
    if not train:
        raise DataError(f"{splits_path} lists no training crop to preview")
    path = resolve_path(cfg.data.photos.out_dir, root) / train[0]["crop"]
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise DataError(f"cannot read the crop {path}")
    return img, train[0]["crop"]


def main(cfg: DictConfig, root: Path | None = None) -> Path:
    """Run the stage: returns the path of the saved pipeline."""
    acfg = cfg.augment
    with stage_run(cfg, STAGE, params=flatten(acfg.transforms, "augment.transforms"), root=root):
        pipeline = augmentation.build(acfg, seed=cfg.seed)
        saved = augmentation.save(pipeline, resolve_path(acfg.pipeline, root))
        face, name = preview_face(cfg, root)
        variants = [
            (pipeline(image=face)["image"], f"#{i + 1}") for i in range(acfg.preview_variants)
        ]
        per_row = 8
        rows = [("original", [(face, name)])]
        rows += [("augmented", variants[i : i + per_row]) for i in range(0, len(variants), per_row)]
        preview = image_grid(
            rows, resolve_path(acfg.preview, root), "augment: training-time variants"
        )
        mlflow.log_artifact(str(saved))
        mlflow.log_artifact(str(preview))
        names = [type(t).__name__ for t in pipeline.transforms]
        print(f"augmentation pipeline ({' -> '.join(names)}): {saved}")
        print(f"preview: {preview}")
    return saved
