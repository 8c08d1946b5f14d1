"""The `train` stage on tiny arrays: outputs, MLflow run, and resume after a crash."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as L
import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from emowatch.layout import Layout
from emowatch.stages import train
from emowatch.training import fit
from tests.conftest import REPO, TINY_TRAINING, isolated


def runs_of(cfg, stage):
    client = MlflowClient(f"sqlite:///{cfg.tracking.db}")
    exp = client.get_experiment_by_name(cfg.tracking.experiment).experiment_id
    return client, client.search_runs([exp], filter_string=f"tags.`emowatch.stage` = '{stage}'")


def test_train_writes_model_reports_metrics_and_mlflow_run(tiny_fer, tmp_path):
    cfg = tiny_fer()
    metrics = train.main(cfg, "fer2013", "cnn1")
    for split in ("val", "test"):
        assert {"accuracy", "macro_f1", "recall_angry", "precision_angry"} <= set(metrics[split])
    model_dir = Layout(cfg).model("fer2013", "cnn1").model_dir
    info = json.loads((model_dir / "model.json").read_text())
    assert (model_dir / "model.ckpt").is_file() and info["classes"][0] == "angry"
    assert info["input_shape"] == [1, 48, 48]
    reports = tmp_path / "reports/train/fer2013/cnn1"
    for name in (
        "metrics.json",
        "curves.csv",
        "learning_curves.png",
        "confusion_val.png",
        "classification_report_val.json",
        "classification_report_val.txt",
    ):
        assert (reports / name).is_file(), name
    import csv

    rows = list(csv.DictReader((reports / "curves.csv").open()))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert all(
        r["train/acc"] and r["val/acc"] and r["val/recall_angry"] for r in rows
    )  # same epoch

    client, (run,) = runs_of(cfg, "train")
    assert run.info.status == "FINISHED" and run.info.run_name == "train-fer2013-cnn1"
    assert (
        run.data.tags["emowatch.dataset"] == "fer2013"
        and run.data.params["model.net.filters"] == "[8, 16]"
    )
    history = client.get_metric_history(run.info.run_id, "val/recall_angry")
    assert len(history) == 2  # per epoch
    # Each split is a dataset input of the run, its digest the hash of the faces trained on.
    from emowatch.data.splits import load_dataset

    digests = train.split_digests(load_dataset(cfg, "fer2013"))
    inputs = {
        next(t.value for t in d.tags if t.key == "mlflow.data.context"): d.dataset
        for d in run.inputs.dataset_inputs
    }
    assert set(inputs) == {"train", "val", "test"}
    assert {k: d.digest for k, d in inputs.items()} == {k: v[:36] for k, v in digests.items()}
    assert inputs["val"].name == "fer2013-val"
    assert "best_test/accuracy" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {
        "confusion_val.png",
        "learning_curves.png",
        "classification_report_val.txt",
        "checkpoint",
    } <= artifacts
    # The run's network is plain files (a state dict and its spec), rebuilt without unpickling.
    import torch

    from emowatch.inference.loading import load_network

    folder = Path(mlflow.artifacts.download_artifacts(run.data.tags["emowatch.model_uri"]))
    net = load_network(json.loads((folder / "model.json").read_text()), folder / "weights.pt")
    assert net(torch.zeros(3, 1, 48, 48)).shape == (3, 7)  # any batch size


class Crash(L.Callback):
    """Dies early in an epoch (the second by default), after the one before was checkpointed."""

    def __init__(self, at_epoch: int = 1):
        self.at_epoch = at_epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.at_epoch:
            raise RuntimeError("power cut")


class Worsening(L.LightningModule):
    """A model whose validation monitor only gets worse: epoch 0 is the best there is."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum()

    def validation_step(self, batch, batch_idx):
        self.log("val/worse", float(self.current_epoch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_the_latest_epoch_is_checkpointed_even_without_a_new_best(tmp_path):
    """A kill after epochs that did not beat the best loses at most one epoch: last.ckpt is
    the latest epoch, best.ckpt the best one (Lightning's save_last alone keeps the best)."""
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.rand(8, 4)), 4)

    def trainer(max_epochs, extra=()):
        return L.Trainer(
            max_epochs=max_epochs, callbacks=[*fit.checkpoints(tmp_path, "val/worse", "min"),
                                              *extra],
            logger=False, enable_progress_bar=False, enable_model_summary=False,
            default_root_dir=tmp_path,
        )  # fmt: skip

    crashing = trainer(4, [Crash(at_epoch=3)])
    with pytest.raises(RuntimeError, match="power cut"):
        crashing.fit(Worsening(), data, data)
    assert crashing.checkpoint_callback.best_model_path == str(tmp_path / "best.ckpt")
    epoch = {p.stem: torch.load(p, weights_only=True)["epoch"] for p in tmp_path.glob("*.ckpt")}
    assert epoch == {"best": 0, "last": 2}

    resumed = trainer(4)
    resumed.fit(Worsening(), data, data, ckpt_path=str(tmp_path / "last.ckpt"))
    assert resumed.current_epoch == 4 and resumed.global_step == 8  # only epoch 3 re-run
    assert torch.load(tmp_path / "best.ckpt", weights_only=True)["epoch"] == 0


def test_a_crashed_run_resumes_from_its_last_checkpoint(tiny_fer, tmp_path, monkeypatch, capsys):
    cfg = tiny_fer("train.fer2013.max_epochs=3")
    original = fit.build_trainer

    def crashing(cfg, dataset, max_epochs, ckpt_dir, logger, history, extra=(), patience=None,
                 **kwargs):  # fmt: skip
        extra = [*extra, Crash()]
        return original(
            cfg, dataset, max_epochs, ckpt_dir, logger, history, extra, patience, **kwargs
        )

    monkeypatch.setattr(train, "build_trainer", crashing)
    with pytest.raises(RuntimeError, match="power cut"):
        train.main(cfg, "fer2013", "cnn1")
    ckpts = Path(cfg.train.checkpoints_dir) / "fer2013/cnn1"
    assert (ckpts / "last.ckpt").is_file()
    client, (crashed,) = runs_of(cfg, "train")
    assert crashed.info.status == "FAILED"

    monkeypatch.setattr(train, "build_trainer", original)
    train.main(cfg, "fer2013", "cnn1")
    assert "resuming fer2013-cnn1" in capsys.readouterr().out
    client, (resumed,) = runs_of(cfg, "train")  # the same MLflow run, continued
    assert resumed.info.run_id == crashed.info.run_id and resumed.info.status == "FINISHED"
    assert len(client.get_metric_history(resumed.info.run_id, "val/acc")) == 3
    assert json.loads((ckpts / "state.json").read_text())["done"] is True

    # a finished run is not resumed: changed params start afresh
    cfg.models.cnn1.optimizer.lr = 0.002
    train.main(cfg, "fer2013", "cnn1")
    _, runs = runs_of(cfg, "train")
    assert len(runs) == 2 and "resuming" not in capsys.readouterr().out


def test_tuned_model_needs_the_study(tiny_fer):
    from emowatch.errors import DataError

    with pytest.raises(DataError, match="dvc repro tune@fer2013"):
        train.main(tiny_fer(), "fer2013", "cnn3")


def test_vgg_uses_its_own_one_cycle_schedule_smoothing_and_augmentations(tiny_fer):
    cfg = tiny_fer(
        "models.vgg.net.filters=[4,8,8,8]",
        "models.vgg.max_epochs=2",
        "train.fer2013.label_smoothing=0.0",
    )
    mcfg = cfg.models.vgg
    assert fit.scheduler_config(cfg, mcfg).max_lr == mcfg.optimizer.lr  # its own, not global
    assert fit.scheduler_config(cfg, cfg.models.cnn1) == cfg.scheduler
    assert fit.label_smoothing(cfg, mcfg, "fer2013") == 0.1
    assert fit.label_smoothing(cfg, cfg.models.cnn1, "fer2013") == 0.0

    train.main(cfg, "fer2013", "vgg")
    _, (run,) = runs_of(cfg, "train")
    params = run.data.params
    assert params["scheduler._target_"] == "torch.optim.lr_scheduler.OneCycleLR"
    assert params["model.augment"] == "['hflip', 'shift_scale']"
    client = MlflowClient(f"sqlite:///{cfg.tracking.db}")
    lrs = [m.value for m in client.get_metric_history(run.info.run_id, "lr-SGD")]
    assert len(lrs) == 2 and lrs[0] != lrs[1]  # the one-cycle schedule moved the rate


def test_augmentation_subset_by_name(make_cfg, tmp_path):
    from emowatch.data import augmentation

    cfg = make_cfg()
    pipeline = augmentation.build(cfg.augment, seed=0)
    chosen = augmentation.select(pipeline, cfg.augment, ["shift_scale", "hflip"])
    assert [type(t).__name__ for t in chosen.transforms] == ["HorizontalFlip", "Affine"]
    assert augmentation.select(pipeline, cfg.augment, None) is pipeline
    with pytest.raises(ValueError, match="unknown augmentation"):
        augmentation.select(pipeline, cfg.augment, ["mixup"])


@pytest.mark.slow
def test_ddp_two_processes_log_one_run(tiny_fer, tmp_path):
    """`trainer=ddp` on two CPU processes (gloo): both train, rank 0 alone writes the model,
    the reports and the one MLflow run."""
    cfg = tiny_fer()
    cmd = [
        sys.executable, "-m", "emowatch.cli", "train", "--dataset", "fer2013", "-m", "cnn1",
        *isolated(tmp_path, tmp_path / "data"), *TINY_TRAINING,
        "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
        "trainer.precision=32-true", "trainer.enable_progress_bar=false",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in done.stdout + done.stderr
    assert Layout(cfg).model("fer2013", "cnn1").weights.is_file()
    _, runs = runs_of(cfg, "train")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.params["trainer.precision"] == "32-true"
    assert "best_test/accuracy" in runs[0].data.metrics


def test_swa_mixing_and_class_weight_train_and_val_chooses_the_checkpoint(tiny_fer, tmp_path):
    """The options of issue 17 on a tiny vgg: SWA over the last epochs (Lightning adds one
    epoch that refreshes BatchNorm under the averaged weights), MixUp/CutMix batches, angry's
    loss weight. The kept checkpoint is the best on val among all epochs, the average's too."""
    cfg = tiny_fer(
        "models.vgg.max_epochs=3",
        "models.vgg.swa={lr: 0.01, epoch_start: 2, annealing_epochs: 1}",
        "models.vgg.mix={mixup_alpha: 0.2, cutmix_alpha: 1.0, p: 1.0}",
        "models.vgg.class_weight={angry: 2.0}",
    )
    metrics = train.main(cfg, "fer2013", "vgg")
    rows = (tmp_path / "reports/train/fer2013/vgg/curves.csv").read_text().splitlines()[1:]
    assert metrics["epochs"] == len(rows) == 4  # 3 + the BatchNorm epoch of the average
    import csv

    curves = list(csv.DictReader((tmp_path / "reports/train/fer2013/vgg/curves.csv").open()))
    best = max(range(len(curves)), key=lambda i: float(curves[i]["val/acc"]))
    assert metrics["best_epoch"] == best
