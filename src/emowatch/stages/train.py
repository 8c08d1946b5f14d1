"""DVC stage `train` (one per dataset × model of the CNN series): Lightning training tracked in
MLflow.

Selection happens on val only: early stopping and the best checkpoint watch
`train.monitor`. The best checkpoint is then scored on val and test (test figures are reported,
never used to choose). A run killed mid-way resumes from its last checkpoint on the next
`dvc repro` when its config and inputs are unchanged, continuing the same MLflow run.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import lightning.pytorch as L
import mlflow
import mlflow.data
import numpy as np
import torch
import yaml
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from emowatch.config import flatten
from emowatch.data import augmentation
from emowatch.data.datamodule import subsample
from emowatch.data.splits import SplitArrays, load_dataset
from emowatch.errors import DataError
from emowatch.files import file_hash, fingerprint, write_json
from emowatch.inference.probabilities import predict_proba
from emowatch.layout import Layout
from emowatch.models.backbones import resolve_weights
from emowatch.stages import no_photos
from emowatch.tracking.runs import log_torch_model, stage_run, tracking_uri
from emowatch.training import reports, transfer
from emowatch.training.finetuning import BackboneFinetuning
from emowatch.training.fit import (
    EpochHistory,
    apply_params,
    build_datamodule,
    build_module,
    build_trainer,
    record_state,
    resume_point,
    scheduler_config,
)
from emowatch.training.transfer import Source

STAGE = "train"


def model_config(
    cfg: DictConfig, dataset: str, model: str, root: Path | None
) -> tuple[DictConfig, int, dict, Source | None]:
    """The model's config, batch size, tuned params and the model it starts from (if any).

    A model started from another dataset's model (`train.<dataset>.init_from`) takes that
    model's network and a learning rate scaled by `init_lr_factor`; tuned params then apply
    except the layer sizes.
    """
    if model not in cfg.models:
        raise ValueError(f"unknown model {model!r} (configured: {', '.join(cfg.models)})")
    mcfg, batch = cfg.models[model], int(cfg.train[dataset].batch_size)
    source = transfer.find_source(cfg, dataset, model, root)
    if source:
        mcfg = transfer.adopt(mcfg, source, cfg.train[dataset].init_lr_factor)
    if not mcfg.tuned:
        return mcfg, batch, {}, source
    path = best_params_path(cfg, dataset, root)
    if not path.is_file():
        raise DataError(f"{path} not found: run `dvc repro tune@{dataset}` first")
    best = yaml.safe_load(path.read_text())["params"]
    if source:
        best = transfer.without_architecture(best)
    tuned, batch = apply_params(mcfg, batch, best)
    return tuned, batch, best, source


def phases(mcfg: DictConfig) -> list[L.Callback]:
    """The transfer-learning phases of a backbone model (`finetune:` in its config), if any."""
    ft = mcfg.get("finetune")
    if not ft:
        return []
    return [BackboneFinetuning(ft.frozen_epochs, ft.trainable_blocks, ft.lr_factor)]


def weights_used(mcfg: DictConfig) -> dict[str, str]:
    """Which pretrained weights a backbone starts from: the file and its md5, or none."""
    net = mcfg.net
    if "weights" not in net:
        return {}
    path = resolve_weights(net.arch, net.weights, net.get("allow_download", False))
    return {
        "weights_file": str(path) if path else "none",
        "weights_md5": file_hash(path) if path else "none",
    }


def saved_net(mcfg: DictConfig) -> dict:
    """The network config stored beside the checkpoint; a backbone's pretrained weights are in
    the checkpoint, so loading it later needs no weights file."""
    net = OmegaConf.to_container(mcfg.net, resolve=True)
    if "weights" in net:
        net["weights"] = "none"
    return net


def best_params_path(cfg: DictConfig, dataset: str, root: Path | None = None) -> Path:
    return Layout(cfg, root).best_params(dataset)


def input_files(
    cfg: DictConfig, dataset: str, root: Path | None, source: Source | None = None
) -> list[Path]:
    """The files a training run reads (their hashes join the resume fingerprint)."""
    layout = Layout(cfg, root)
    files = [layout.augment_pipeline]
    if dataset == "fer2013":
        files += [layout.fer2013_split(s) for s in ("train", "val", "test")]
    else:
        files.append(layout.photo_splits)
    if source:
        files.append(source.checkpoint)
    return files


def training_share(arrays: SplitArrays, mcfg: DictConfig, seed: int) -> SplitArrays:
    """The training split cut to the model's `train_fraction` (stratified, seeded): how the CPU
    profile keeps ResNet50 from random weights to a run that only shows the stage working."""
    fraction = float(mcfg.get("train_fraction") or 1.0)
    if fraction >= 1.0:
        return arrays
    x, y = dict(arrays.x), dict(arrays.y)
    x["train"], y["train"] = subsample(arrays.x["train"], arrays.y["train"], fraction, seed)
    return SplitArrays(x, y, arrays.classes)


def log_inputs(arrays: SplitArrays, dataset: str, digests: dict[str, str]) -> None:
    """Each split as an MLflow dataset input (context = split, digest = its data hash), so the
    runs table can be filtered and compared by the data a run saw."""
    for split in ("train", "val", "test"):
        data = mlflow.data.from_numpy(
            arrays.x[split],
            targets=arrays.y[split],
            name=f"{dataset}-{split}",
            digest=digests[split],
        )
        mlflow.log_input(data, context=split)


def split_digests(arrays: SplitArrays) -> dict[str, str]:
    """The md5 of each split's images and labels as trained on (after any cut)."""
    digests = {}
    for split in ("train", "val", "test"):
        h = hashlib.md5(np.ascontiguousarray(arrays.x[split]).tobytes())
        h.update(np.ascontiguousarray(arrays.y[split]).tobytes())
        digests[split] = h.hexdigest()
    return digests


def evaluate_best(
    module: L.LightningModule, arrays: SplitArrays, mean: float, std: float
) -> dict[str, tuple]:
    """Probabilities and labels of val and test under the best weights."""
    return {
        split: (predict_proba(module.net, arrays.x[split], mean, std), arrays.y[split])
        for split in ("val", "test")
    }


def fit_model(
    cfg: DictConfig,
    dataset: str,
    model: str,
    mcfg: DictConfig,
    batch_size: int,
    arrays: SplitArrays,
    augment: object,
    ckpt_dir: Path,
    logger: MLFlowLogger | None,
    history: EpochHistory,
    source: Source | None,
    last: Path | None,
) -> tuple[L.LightningModule, L.Trainer]:
    """Build the data, the module (started from `source` unless resuming) and the Trainer, then
    fit, resuming from `last` when given."""
    L.seed_everything(cfg.seed, workers=True)
    augmentation.seed(augment, cfg.seed)
    datamodule = build_datamodule(cfg, arrays, dataset, batch_size, augment)
    module = build_module(cfg, mcfg, arrays, dataset, datamodule.loss_weights())
    if source and not last:
        copied = transfer.load_weights(module.net, source, arrays.classes)
        print(f"{dataset}-{model}: started from {source.model_dir} ({copied})")
    max_epochs = mcfg.get("max_epochs") or cfg.train[dataset].max_epochs
    patience = mcfg.get("early_stopping_patience")
    trainer = build_trainer(
        cfg, dataset, max_epochs, ckpt_dir, logger, history, phases(mcfg), patience,
        swa=mcfg.get("swa"),
    )  # fmt: skip
    if last:
        print(f"resuming {dataset}-{model} from {last}")
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(last) if last else None)
    return module, trainer


def main(cfg: DictConfig, dataset: str, model: str, root: Path | None = None) -> dict:
    """Train `model` on `dataset`; returns the metrics written to the stage's metrics JSON."""
    if (skipped := no_photos.skip(cfg, STAGE, dataset, model, root)) is not None:
        return skipped  # a site without photos: every output written, saying so
    tcfg = cfg.train
    mcfg, batch_size, tuned, source = model_config(cfg, dataset, model, root)
    arrays = training_share(load_dataset(cfg, dataset, root), mcfg, cfg.seed)
    augment = augmentation.for_model(cfg, mcfg.get("augment"), root)
    name = f"{dataset}-{model}"
    layout = Layout(cfg, root)
    paths = layout.model(dataset, model)
    ckpt_dir, model_dir, report_dir = paths.checkpoints, paths.model_dir, paths.train_reports
    key = fingerprint(
        mcfg,
        batch_size,
        tcfg[dataset],
        tcfg.monitor,
        scheduler_config(cfg, mcfg),
        cfg.trainer,
        cfg.seed,
        arrays.image_size,
        [file_hash(p) for p in input_files(cfg, dataset, root, source)],
    )
    if tcfg.resume:
        last, run_id = resume_point(ckpt_dir, key)
    else:
        if rank_zero_only.rank == 0:
            shutil.rmtree(ckpt_dir, ignore_errors=True)
        last, run_id = None, None
    if rank_zero_only.rank != 0:
        # Another DDP process (trainer=ddp): it trains its share; MLflow, the checkpoints, the
        # reports and the model files are rank 0's.
        fit_model(
            cfg, dataset, model, mcfg, batch_size, arrays, augment, ckpt_dir, None, EpochHistory(),
            source, last,
        )  # fmt: skip
        return {}
    params = (
        flatten(mcfg, "model")
        | flatten(tcfg[dataset], "train")
        | flatten(scheduler_config(cfg, mcfg) or {}, "scheduler")
    )
    params |= {"batch_size": batch_size, "dataset": dataset, "model_name": model, "seed": cfg.seed}
    params |= {"profile": cfg.get("profile", "cpu"), "trainer.precision": cfg.trainer.precision}
    params |= {"train.monitor": tcfg.monitor, "n_train": len(arrays.y["train"])}
    params |= weights_used(mcfg)
    tags = {"emowatch.dataset": dataset, "emowatch.model": model}
    if source:
        params |= {"init_from": source.dataset, "init_checkpoint_md5": file_hash(source.checkpoint)}
        tags["emowatch.init_from"] = f"{source.dataset}/{model}"
    if last:
        tags["emowatch.resumed_from"] = str(last)
    with stage_run(
        cfg,
        STAGE,
        run_name=f"train-{name}",
        params=params,
        root=root,
        tags=tags,
        run_id=run_id,
        system_metrics=True,
    ) as run:
        record_state(ckpt_dir, key, run.info.run_id, done=False)
        log_inputs(arrays, dataset, split_digests(arrays))
        logger = MLFlowLogger(
            experiment_name=cfg.tracking.experiment,
            tracking_uri=tracking_uri(cfg, root),
            run_id=run.info.run_id,
        )
        history = EpochHistory()
        module, trainer = fit_model(
            cfg, dataset, model, mcfg, batch_size, arrays, augment, ckpt_dir, logger, history,
            source, last,
        )  # fmt: skip

        best = Path(trainer.checkpoint_callback.best_model_path or ckpt_dir / "last.ckpt")
        state = torch.load(best, map_location="cpu", weights_only=True)
        module.load_state_dict(state["state_dict"])
        norm = tcfg[dataset].normalize
        scored = evaluate_best(module, arrays, norm.mean, norm.std)
        metrics = {
            split: reports.split_metrics(p, y, arrays.classes) for split, (p, y) in scored.items()
        }
        metrics |= {"best_epoch": int(state["epoch"]), "epochs": len(history.rows)}

        model_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(best, paths.weights)
        info = {
            "dataset": dataset,
            "model": model,
            "classes": arrays.classes,
            "input_shape": [1, arrays.image_size, arrays.image_size],
            "normalize": {"mean": norm.mean, "std": norm.std},
            "net": saved_net(mcfg),
            "tuned_params": tuned,
            "init_from": str(source.model_dir.relative_to(layout.models_dir)) if source else None,
            "mlflow_run_id": run.info.run_id,
        }
        write_json(paths.spec, info)
        p_val, y_val = scored["val"]
        files = [
            write_json(
                report_dir / "classification_report_val.json",
                reports.report_dict(p_val, y_val, arrays.classes),
            ),
            reports.confusion_png(
                p_val, y_val, arrays.classes, report_dir / "confusion_val.png", f"{name}: val"
            ),
            *reports.write_curves(
                history.rows, report_dir / "curves.csv", report_dir / "learning_curves.png", name
            ),
        ]
        text = reports.report_text(p_val, y_val, arrays.classes)
        (report_dir / "classification_report_val.txt").write_text(text)
        files.append(report_dir / "classification_report_val.txt")
        write_json(report_dir / "metrics.json", metrics)
        for split in ("val", "test"):
            mlflow.log_metrics(
                {f"best_{split}/{k}": v for k, v in metrics[split].items() if k != "n"}
            )
        for path in [*files, report_dir / "metrics.json", paths.spec]:
            mlflow.log_artifact(str(path))
        mlflow.log_artifact(str(paths.weights), artifact_path="checkpoint")
        model_uri = log_torch_model(module.net.eval(), tuple(info["input_shape"]), info)
        mlflow.set_tag("emowatch.model_uri", model_uri)
        record_state(ckpt_dir, key, run.info.run_id, done=True)
        v, t = metrics["val"], metrics["test"]
        nan = float("nan")
        print(
            f"{name}: best epoch {metrics['best_epoch']} | val acc {v['accuracy']:.3f} "
            f"recall_angry {v.get('recall_angry', nan):.3f} | test acc {t['accuracy']:.3f} "
            f"recall_angry {t.get('recall_angry', nan):.3f}"
        )
    return metrics
