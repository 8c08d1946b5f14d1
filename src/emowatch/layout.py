"""Where every artifact lives: the one module that turns the config's folders into the paths the
stages read and write. dvc.yaml names the same paths for DVC (it cannot import Python);
`tests/test_dvc_yaml.py` holds the two together.

    artifacts/models/<dataset>/<model>/        model.ckpt + model.json   (train, finetune)
    artifacts/checkpoints/<dataset>/<model>/   last.ckpt, state.json     (resumable training)
    artifacts/tune/<dataset>/                  study.db, best_params.yaml
    reports/train/<dataset>/<model>/           curves, val report, confusion matrix
    reports/tune/<dataset>/                    trials, history and importance plots
    reports/evaluate/<dataset>/<model>/        metrics.json and every figure of evaluate
    reports/registry/<dataset>_{register,promotion}.json, <dataset>_model_card.md
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from emowatch.config import resolve_path


@dataclass(frozen=True)
class ModelPaths:
    """Every folder and file of one trained model (`dataset`, `model`)."""

    dataset: str
    model: str
    model_dir: Path  # the trained network: model.ckpt (state dict) + model.json (its spec)
    checkpoints: Path  # Lightning's checkpoints and the resume fingerprint
    train_reports: Path  # the train stage's curves and val report
    evaluation: Path  # the evaluate stage's metrics and figures

    @property
    def name(self) -> str:
        return f"{self.dataset}-{self.model}"

    @property
    def weights(self) -> Path:
        return self.model_dir / "model.ckpt"

    @property
    def spec(self) -> Path:
        return self.model_dir / "model.json"

    @property
    def metrics(self) -> Path:
        """The evaluate stage's metrics (threshold, TTA, CLAHE chosen; every figure)."""
        return self.evaluation / "metrics.json"


@dataclass(frozen=True)
class Layout:
    """The project's artifact paths under a composed config, relative paths against `root`."""

    cfg: DictConfig
    root: Path | None = None

    def _path(self, value: str) -> Path:
        return resolve_path(value, self.root)

    def model(self, dataset: str, model: str) -> ModelPaths:
        tcfg = self.cfg.train
        return ModelPaths(
            dataset,
            model,
            self._path(tcfg.models_dir) / dataset / model,
            self._path(tcfg.checkpoints_dir) / dataset / model,
            self._path(tcfg.reports_dir) / dataset / model,
            self._path(self.cfg.evaluate.dir) / dataset / model,
        )

    def model_of(self, model_dir: Path) -> ModelPaths:
        """The paths of a trained model given by its folder (`artifacts/models/<d>/<m>`)."""
        return self.model(model_dir.parent.name, model_dir.name)

    @property
    def models_dir(self) -> Path:
        return self._path(self.cfg.train.models_dir)

    def tune_dir(self, dataset: str) -> Path:
        return self._path(self.cfg.tune.dir) / dataset

    def best_params(self, dataset: str) -> Path:
        return self.tune_dir(dataset) / "best_params.yaml"

    def tune_reports(self, dataset: str) -> Path:
        return self._path(self.cfg.paths.reports_dir) / "tune" / dataset

    def register_report(self, dataset: str) -> Path:
        return self._path(self.cfg.registry.dir) / f"{dataset}_register.json"

    def promotion_report(self, dataset: str) -> Path:
        return self._path(self.cfg.registry.dir) / f"{dataset}_promotion.json"

    def model_card(self, dataset: str) -> Path:
        return self._path(self.cfg.registry.dir) / f"{dataset}_model_card.md"

    def fer2013_split(self, split: str) -> Path:
        return self._path(self.cfg.data.fer2013.out_dir) / f"{split}.npz"

    @property
    def photo_splits(self) -> Path:
        return self._path(self.cfg.data.photos.splits)

    @property
    def photo_crops(self) -> Path:
        return self._path(self.cfg.data.photos.out_dir)

    @property
    def photos_root(self) -> Path:
        return self._path(self.cfg.data.photos.root)

    @property
    def augment_pipeline(self) -> Path:
        return self._path(self.cfg.augment.pipeline)

    @property
    def results_page(self) -> Path:
        return self._path(self.cfg.report.path)
