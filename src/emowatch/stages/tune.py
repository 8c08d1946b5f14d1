"""DVC stage `tune` (one per dataset): an Optuna study over the base model's family.

Per-layer filters and dense units, dropout rates, learning rate and batch size (conf/tune) are
searched with a seeded TPE sampler; a MedianPruner stops poor trials through optuna-integration's
`PyTorchLightningPruningCallback`. The objective is measured on the validation split only. The
study lives in a sqlite file (or the RDB at `tune.storage`, shared by several workers), so a
killed study continues where it stopped (`load_if_exists`); each trial is an MLflow child run
under one parent (one per worker). The best params go to
`<tune.dir>/<dataset>/best_params.yaml`, which the tuned model's `train` stage reads.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import matplotlib.pyplot as plt
import mlflow
import optuna
import sqlalchemy
import yaml
from lightning.pytorch.loggers import MLFlowLogger
from omegaconf import DictConfig
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState
from optuna_integration.pytorch_lightning import PyTorchLightningPruningCallback

from emowatch.config import flatten
from emowatch.data import augmentation
from emowatch.data.datamodule import subsample
from emowatch.data.splits import SplitArrays, load_dataset
from emowatch.files import file_hash, fingerprint
from emowatch.layout import Layout
from emowatch.stages import no_photos
from emowatch.stages.train import best_params_path, input_files
from emowatch.tracking.runs import run_tags, stage_run, tracking_uri
from emowatch.training import transfer
from emowatch.training.fit import (
    EpochHistory,
    apply_params,
    build_datamodule,
    build_module,
    build_trainer,
)

STAGE = "tune"
# fail_stale_trials and the matplotlib plots are marked experimental since Optuna 2.x.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def suggest(
    trial: optuna.Trial, space: DictConfig, base: DictConfig, architecture: bool = True
) -> dict[str, Any]:
    """Sample one point: a size per conv block and dense layer (unless the network is a given,
    transferred one), dropouts, lr, batch size."""
    params: dict[str, Any] = {}
    for i in range(len(base.net.filters) if architecture else 0):
        params[f"filters_{i}"] = trial.suggest_categorical(f"filters_{i}", list(space.filters))
    for i in range(len(base.net.units) if architecture else 0):
        params[f"units_{i}"] = trial.suggest_categorical(f"units_{i}", list(space.units))
    params["conv_dropout"] = trial.suggest_float("conv_dropout", *space.conv_dropout)
    params["dense_dropout"] = trial.suggest_float("dense_dropout", *space.dense_dropout)
    params["lr"] = trial.suggest_float("lr", *space.lr, log=True)
    params["batch_size"] = trial.suggest_categorical("batch_size", list(space.batch_size))
    return params


def score(rows: list[dict[str, float]], metric: str, tie_break: float) -> float:
    """The best epoch's objective: metric + tie_break × val accuracy."""
    values = [r[metric] + tie_break * r.get("val/acc", 0.0) for r in rows if metric in r]
    if not values:
        raise RuntimeError(f"{metric} was never logged: is the angry class in the dataset?")
    return max(values)


def study_base(
    cfg: DictConfig, dataset: str, root: Path | None
) -> tuple[DictConfig, transfer.Source | None]:
    """The model config trials start from: the base model's family, or, where the dataset's
    models start from another dataset's (`train.<dataset>.init_from`), the target model's
    source network, whose fine-tuning (lr, dropouts, batch size) is then what is searched."""
    tcfg = cfg.tune
    source = transfer.find_source(cfg, dataset, tcfg.target_model, root)
    if source is None:
        return cfg.models[tcfg.base_model], None
    lr_factor = cfg.train[dataset].init_lr_factor
    return transfer.adopt(cfg.models[tcfg.target_model], source, lr_factor), source


class Objective:
    """Train one trial of the base model's family and return its validation objective."""

    def __init__(
        self, cfg: DictConfig, dataset: str, arrays: SplitArrays, augment: Any, root: Path | None
    ):
        self.cfg, self.dataset, self.arrays, self.augment, self.root = (
            cfg,
            dataset,
            arrays,
            augment,
            root,
        )
        self.base, self.source = study_base(cfg, dataset, root)

    def __call__(self, trial: optuna.Trial) -> float:
        cfg, tcfg = self.cfg, self.cfg.tune
        params = suggest(trial, tcfg.space, self.base, architecture=self.source is None)
        mcfg, batch = apply_params(self.base, int(cfg.train[self.dataset].batch_size), params)
        child = mlflow.start_run(
            run_name=f"trial-{trial.number}",
            nested=True,
            tags=run_tags(STAGE, self.root)
            | {"emowatch.dataset": self.dataset, "optuna.trial": str(trial.number)},
        )
        status = "FAILED"
        try:
            mlflow.log_params(params)
            L.seed_everything(cfg.seed + trial.number, workers=True)
            augmentation.seed(self.augment, cfg.seed + trial.number)
            datamodule = build_datamodule(cfg, self.arrays, self.dataset, batch, self.augment)
            module = build_module(cfg, mcfg, self.arrays, self.dataset, datamodule.loss_weights())
            if self.source:
                transfer.load_weights(module.net, self.source, self.arrays.classes)
            logger = MLFlowLogger(
                experiment_name=cfg.tracking.experiment,
                tracking_uri=tracking_uri(cfg, self.root),
                run_id=child.info.run_id,
            )
            history = EpochHistory()
            pruning = PyTorchLightningPruningCallback(trial, monitor=tcfg.metric)
            epochs = tcfg[self.dataset].epochs
            trainer = build_trainer(
                cfg, self.dataset, epochs, None, logger, history, extra=[pruning]
            )
            try:
                trainer.fit(module, datamodule=datamodule)
                pruning.check_pruned()  # where the callback only flagged the trial
            except optuna.TrialPruned:
                mlflow.set_tag("optuna.state", "PRUNED")
                status = "FINISHED"
                raise
            value = score(history.rows, tcfg.metric, tcfg.tie_break)
            mlflow.log_metric("objective", value)
            mlflow.set_tag("optuna.state", "COMPLETE")
            status = "FINISHED"
            return value
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            mlflow.end_run(status=status)


def study_plots(study: optuna.Study, out_dir: Path) -> list[Path]:
    """Optimisation history and parameter importances (a note instead where there are too few)."""
    from optuna.visualization import matplotlib as ov

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, plot in (
        ("optimization_history", ov.plot_optimization_history),
        ("param_importances", ov.plot_param_importances),
    ):
        path = out_dir / f"{name}.png"
        try:
            ax = plot(study)
            fig = ax.figure if hasattr(ax, "figure") else ax
        except (ValueError, RuntimeError) as err:
            fig, axis = plt.subplots(figsize=(6, 2))
            axis.axis("off")
            axis.text(0, 0.5, f"{name}: not available ({err})", fontsize=8, wrap=True)
        fig.set_size_inches(8, 5)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def study_storage(url: str | None, out_dir: Path) -> optuna.storages.RDBStorage:
    """The study's storage: `url` (an RDB URL several workers share, e.g. PostgreSQL) or, when
    null, a sqlite file in `out_dir`. Heartbeats let a killed worker's trial be marked failed."""
    url = url or f"sqlite:///{out_dir / 'study.db'}"
    # sqlite serialises writers: wait for the lock instead of failing when workers collide
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    for attempt in range(3):
        try:
            return optuna.storages.RDBStorage(
                url, engine_kwargs=kwargs, heartbeat_interval=10, grace_period=30
            )
        except sqlalchemy.exc.DatabaseError:
            # workers starting together on an empty database race to create its tables
            if attempt == 2:
                raise
            time.sleep(1 + attempt)
    raise AssertionError("unreachable")


def snapshot(name: str, storage: optuna.storages.BaseStorage, path: Path) -> None:
    """Copy a shared study into the stage's sqlite file (its DVC output): the study as it was
    when this worker finished, next to the best params it chose."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")  # workers sharing a folder: atomic
    tmp.unlink(missing_ok=True)
    optuna.copy_study(from_study_name=name, from_storage=storage, to_storage=f"sqlite:///{tmp}")
    os.replace(tmp, path)


def main(cfg: DictConfig, dataset: str, root: Path | None = None) -> dict:
    """Run (or continue) the study for `dataset`; returns the best-params record."""
    if (skipped := no_photos.skip(cfg, STAGE, dataset, None, root)) is not None:
        return skipped  # a site without photos: every output written, saying so
    tcfg = cfg.tune
    arrays = load_dataset(cfg, dataset, root)
    x, y = subsample(arrays.x["train"], arrays.y["train"], tcfg[dataset].train_fraction, cfg.seed)
    arrays = SplitArrays({**arrays.x, "train": x}, {**arrays.y, "train": y}, arrays.classes)
    augment = augmentation.for_model(cfg, None, root)
    base, source = study_base(cfg, dataset, root)
    base_name = f"{source.dataset}/{tcfg.target_model}" if source else tcfg.base_model
    # What defines the study (not how many trials to run: raising n_trials continues it).
    setting = {k: v for k, v in tcfg[dataset].items() if k != "n_trials"}
    key = fingerprint(
        tcfg.space,
        setting,
        tcfg.metric,
        tcfg.tie_break,
        tcfg.sampler_seed,
        tcfg.pruner,
        base,
        cfg.train[dataset],
        cfg.train.monitor,
        cfg.scheduler,
        cfg.trainer,
        cfg.seed,
        arrays.image_size,
        [file_hash(p) for p in input_files(cfg, dataset, root, source)],
    )
    out_dir = Layout(cfg, root).tune_dir(dataset)
    out_dir.mkdir(parents=True, exist_ok=True)
    shared = bool(tcfg.get("storage"))
    storage = study_storage(tcfg.get("storage"), out_dir)
    study = optuna.create_study(
        study_name=f"{dataset}-{key}",
        storage=storage,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=tcfg.sampler_seed),
        pruner=optuna.pruners.MedianPruner(**tcfg.pruner),
        load_if_exists=True,
    )
    optuna.storages.fail_stale_trials(study)
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    done = len(study.get_trials(deepcopy=False, states=finished))
    remaining = max(0, int(tcfg[dataset].n_trials) - done)
    params = (
        flatten(tcfg.space, "tune.space")
        | flatten(setting, "tune")
        | {
            "dataset": dataset,
            "base_model": base_name,
            "metric": tcfg.metric,
            "study": study.study_name,
        }
    )
    with stage_run(
        cfg,
        STAGE,
        run_name=f"tune-{dataset}",
        params=params,
        root=root,
        tags={"emowatch.dataset": dataset},
        # One parent run per study, reopened on resume; with a shared storage, one per worker.
        run_id=None if shared else study.user_attrs.get("mlflow_run_id"),
    ) as run:
        if not shared:
            study.set_user_attr("mlflow_run_id", run.info.run_id)
        mlflow.set_tag("tune.n_trials", str(tcfg[dataset].n_trials))  # may grow on a resumed study
        if done:
            print(f"study {study.study_name}: {done} trials already finished, {remaining} to go")
        # Several workers may share the study (`tune.storage`): each stops once the study as a
        # whole has n_trials finished trials, not after its own share.
        enough = MaxTrialsCallback(int(tcfg[dataset].n_trials), states=finished)
        study.optimize(
            Objective(cfg, dataset, arrays, augment, root),
            n_trials=remaining,
            callbacks=[enough],
            gc_after_trial=True,
        )
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not complete:
            raise RuntimeError(
                f"study {study.study_name}: no trial completed; see the MLflow child runs"
            )
        best = study.best_trial
        record = {
            "study": study.study_name,
            "dataset": dataset,
            "base_model": base_name,
            "metric": tcfg.metric,
            "value": best.value,
            "trial": best.number,
            "params": best.params,
            "n_complete": len(complete),
            "n_pruned": len(study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))),
        }
        path = best_params_path(cfg, dataset, root)
        path.write_text(yaml.safe_dump(record, sort_keys=False))
        if shared:
            snapshot(study.study_name, storage, out_dir / "study.db")
        report_dir = Layout(cfg, root).tune_reports(dataset)
        plots = study_plots(study, report_dir)
        trials_csv = report_dir / "trials.csv"
        study.trials_dataframe().to_csv(trials_csv, index=False)
        mlflow.log_metrics(
            {
                "best_value": best.value,
                "n_complete": record["n_complete"],
                "n_pruned": record["n_pruned"],
            }
        )
        mlflow.log_params({f"best.{k}": v for k, v in best.params.items()})
        for p in (path, trials_csv, *plots):
            mlflow.log_artifact(str(p))
        print(
            f"tune {dataset}: best trial {best.number} value {best.value:.4f} params {best.params}"
        )
    return record
