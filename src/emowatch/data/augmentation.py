"""The training augmentation pipeline: built from config with albumentations, saved in
albumentations' own JSON format, and loaded by the training stages."""

from __future__ import annotations

from pathlib import Path

import albumentations as A
from omegaconf import DictConfig

from emowatch.layout import Layout
from emowatch.targets import build as build_target


def build(acfg: DictConfig, seed: int | None = None) -> A.Compose:
    """Compose the configured transforms, in config order."""
    transforms = [
        build_target(t, "transform", f"augment.transforms.{name}")
        for name, t in acfg.transforms.items()
        if t is not None
    ]
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


def seed(pipeline: A.Compose | None, value: int) -> A.Compose | None:
    """Seed the pipeline's own random generator. albumentations does not follow the global
    seeds that `seed_everything` sets, and a loaded pipeline has no seed: unseeded, two
    trainings of the same model on the same data differ."""
    if pipeline is not None:
        pipeline.set_random_seed(value)
    return pipeline


def select(pipeline: A.Compose, acfg: DictConfig, names: list[str] | None) -> A.Compose:
    """The transforms of `pipeline` named in `names` (keys of `augment.transforms`, the stage's
    config it was built from), in pipeline order; None: the whole pipeline."""
    if names is None:
        return pipeline
    built = [name for name, t in acfg.transforms.items() if t is not None]
    if len(built) != len(pipeline.transforms):
        raise ValueError(
            f"the augmentation pipeline has {len(pipeline.transforms)} transforms but "
            f"augment.transforms names {len(built)}: run `dvc repro augment`"
        )
    unknown = sorted(set(names) - set(built))
    if unknown:
        raise ValueError(f"unknown augmentation {unknown}: the pipeline has {built}")
    chosen = [t for name, t in zip(built, pipeline.transforms, strict=True) if name in names]
    return A.Compose(chosen, seed=getattr(pipeline, "seed", None))


def for_model(
    cfg: DictConfig,
    names: list[str] | None,
    root: Path | None = None,
    *,
    build_if_missing: bool = False,
) -> A.Compose:
    """The pipeline a model trains with: the `augment` stage's output (`augment.pipeline` under
    `root`), narrowed to the model's `names` (None: all of it). A stage must train with the
    stage's output, so it fails when the file is missing; a benchmark may build the same
    pipeline from config instead (`build_if_missing`) to run without `dvc repro augment`."""
    path = Layout(cfg, root).augment_pipeline
    if build_if_missing and not path.is_file():
        pipeline = build(cfg.augment, seed=cfg.seed)
    else:
        pipeline = load(path)
    return select(pipeline, cfg.augment, names)
