"""Build and run one Lightning training from config; shared by the `train` and `tune` stages."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import (
    Callback,
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
    StochasticWeightAveraging,
)
from omegaconf import DictConfig

from emowatch.data.datamodule import FaceDataModule
from emowatch.data.splits import SplitArrays
from emowatch.models.lightning_module import EmotionClassifier
from emowatch.targets import build
from emowatch.training import mixing, precision, progress


def apply_params(
    model_cfg: DictConfig, batch_size: int, params: dict[str, Any]
) -> tuple[DictConfig, int]:
    """Override a model config with tuned params (filters_<i>, units_<i>, dropouts, lr, batch)."""
    out = copy.deepcopy(model_cfg)
    filters = [params.get(f"filters_{i}", f) for i, f in enumerate(out.net.filters)]
    units = [params.get(f"units_{i}", u) for i, u in enumerate(out.net.units)]
    out.net.filters, out.net.units = filters, units
    for key in ("conv_dropout", "dense_dropout"):
        if key in params:
            out.net[key] = params[key]
    if "lr" in params:
        out.optimizer.lr = params["lr"]
    return out, int(params.get("batch_size", batch_size))


def build_net(model_cfg: DictConfig, arrays: SplitArrays) -> torch.nn.Module:
    """The network of a model config, sized for the dataset."""
    return build(
        model_cfg.net,
        "network",
        num_classes=len(arrays.classes),
        in_channels=1,
        input_size=arrays.image_size,
    )


def build_module(
    cfg: DictConfig,
    model_cfg: DictConfig,
    arrays: SplitArrays,
    dataset: str,
    weights: list[float] | None,
) -> EmotionClassifier:
    """The LightningModule with the network, optimizer and scheduler injected from config."""
    scfg = scheduler_config(cfg, model_cfg)
    scheduler = build(scfg, "scheduler") if scfg else None
    per_step = bool(scfg and "OneCycle" in scfg._target_)  # sized by the run, stepped per batch
    return EmotionClassifier(
        net=build_net(model_cfg, arrays),
        optimizer=build(model_cfg.optimizer, "optimizer"),
        classes=arrays.classes,
        scheduler=scheduler,
        scheduler_interval="step" if per_step else "epoch",
        scheduler_total_steps=per_step,
        class_weights=loss_weights(model_cfg, weights, arrays.classes),
        label_smoothing=label_smoothing(cfg, model_cfg, dataset),
        target_recall=cfg.train.target_recall,
        batch_transform=mixing.build(model_cfg.get("mix"), len(arrays.classes)),
        channels_last=bool(cfg.train.get("channels_last", False)),
    )


def loss_weights(
    model_cfg: DictConfig, weights: list[float] | None, classes: list[str]
) -> list[float] | None:
    """The dataset's class weights (`balance: weights`, else 1) times the model's own
    `class_weight:` per class name (class-aware loss, e.g. `{angry: 2.0}`)."""
    extra = model_cfg.get("class_weight") or {}
    unknown = sorted(set(extra) - set(classes))
    if unknown:
        raise ValueError(f"class_weight names unknown classes {unknown} (classes: {classes})")
    if not extra:
        return weights
    out = list(weights) if weights else [1.0] * len(classes)
    for name, factor in extra.items():
        out[classes.index(name)] *= float(factor)
    return out


def scheduler_config(cfg: DictConfig, model_cfg: DictConfig) -> DictConfig | None:
    """The model's own `scheduler:` if it has one (a VGG's one-cycle), else the global one."""
    return model_cfg.get("scheduler") or cfg.get("scheduler")


def label_smoothing(cfg: DictConfig, model_cfg: DictConfig, dataset: str) -> float:
    """The model's own `label_smoothing:` if set, else the dataset's."""
    own = model_cfg.get("label_smoothing")
    return float(cfg.train[dataset].label_smoothing if own is None else own)


def build_datamodule(
    cfg: DictConfig, arrays: SplitArrays, dataset: str, batch_size: int, augment: Any
) -> FaceDataModule:
    dcfg = cfg.train[dataset]
    return FaceDataModule(
        arrays,
        batch_size=batch_size,
        mean=dcfg.normalize.mean,
        std=dcfg.normalize.std,
        augment=augment,
        balance=dcfg.balance,
        num_workers=cfg.train.num_workers,
        seed=cfg.seed,
    )


class EpochHistory(Callback):
    """Per-epoch train/val metrics and learning rate, kept in checkpoints so resumes continue it."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        row = {"epoch": float(trainer.current_epoch)}
        for key, value in trainer.callback_metrics.items():
            if key.startswith(("train/", "val/")):
                row[key] = float(value)
        if trainer.optimizers:
            row["lr"] = float(trainer.optimizers[0].param_groups[0]["lr"])
        self.rows.append(row)

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict.get("rows", []))


def build_trainer(
    cfg: DictConfig,
    dataset: str,
    max_epochs: int,
    ckpt_dir: Path | None,
    logger: Any,
    history: EpochHistory,
    extra: Sequence[Callback] = (),
    patience: int | None = None,
    swa: DictConfig | None = None,
) -> L.Trainer:
    """A Trainer with early stopping and checkpoints (best and latest, see `checkpoints`);
    `patience` overrides the dataset's (a one-cycle schedule peaks mid-run); `swa` adds
    stochastic weight averaging over the last epochs (the stage then lets val choose between
    the average and the best checkpoint)."""
    tcfg = cfg.train
    patience = patience or tcfg[dataset].early_stopping_patience
    callbacks: list[Callback] = [
        EarlyStopping(monitor=tcfg.monitor, mode=tcfg.mode, patience=patience),
        history,
        *extra,
    ]
    if swa:
        callbacks.append(
            StochasticWeightAveraging(
                swa_lrs=float(swa.lr),
                swa_epoch_start=swa.epoch_start,
                annealing_epochs=int(swa.annealing_epochs),
            )
        )
    if cfg.trainer.get("enable_progress_bar", True):
        callbacks += progress.for_stdout()
    if logger:
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    if ckpt_dir is not None:
        callbacks += checkpoints(ckpt_dir, tcfg.monitor, tcfg.mode)
    return build(
        cfg.trainer,
        "trainer",
        max_epochs=max_epochs,
        callbacks=callbacks,
        logger=logger if logger else False,
        enable_checkpointing=ckpt_dir is not None,
        default_root_dir=str(ckpt_dir) if ckpt_dir else None,
        precision=precision.effective(cfg.trainer),
    )


# --- checkpoints and resume -------------------------------------------------------------------


def checkpoints(ckpt_dir: Path, monitor: str, mode: str) -> list[ModelCheckpoint]:
    """`best.ckpt` on the validation monitor (first: it is `trainer.checkpoint_callback`), and
    `last.ckpt` written after every epoch, so a killed run resumes losing at most one epoch.

    Lightning's `save_last` alone writes last.ckpt only on epochs that also save the monitored
    checkpoint: a run killed after epochs without a new best would go back to the best one.
    """
    best = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best",
        monitor=monitor,
        mode=mode,
        save_top_k=1,
        enable_version_counter=False,
    )
    latest = ModelCheckpoint(
        dirpath=ckpt_dir, filename="last", save_top_k=1, enable_version_counter=False
    )
    return [best, latest]


def resume_point(ckpt_dir: Path, print_key: str) -> tuple[Path | None, str | None]:
    """(last checkpoint, MLflow run id) of an unfinished run with the same fingerprint.

    Anything else in the folder (a finished run, another config) is cleared: DVC only re-runs a
    stage when something changed, so a finished run there is stale.
    """
    state_path, last = ckpt_dir / "state.json", ckpt_dir / "last.ckpt"
    if state_path.is_file() and last.is_file():
        state = json.loads(state_path.read_text())
        if state.get("fingerprint") == print_key and not state.get("done"):
            return last, state.get("run_id")
    if ckpt_dir.exists():
        shutil.rmtree(ckpt_dir)
    return None, None


def record_state(ckpt_dir: Path, print_key: str, run_id: str, done: bool) -> None:
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    state = {"fingerprint": print_key, "run_id": run_id, "done": done}
    (ckpt_dir / "state.json").write_text(json.dumps(state, indent=2))
