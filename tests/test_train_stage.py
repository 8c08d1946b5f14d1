"""The `train` stage on tiny arrays: outputs, MLflow run, and resume after a crash."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as L
import mlflow
import pytest
from mlflow.tracking import MlflowClient

from emowatch.stages import train
from emowatch.training import fit


def runs_of(cfg, stage):
    client = MlflowClient(f"sqlite:///{cfg.tracking.db}")
    exp = client.get_experiment_by_name(cfg.tracking.experiment).experiment_id
    return client, client.search_runs([exp], filter_string=f"tags.`emowatch.stage` = '{stage}'")


def test_train_writes_model_reports_metrics_and_mlflow_run(tiny_fer, tmp_path):
    cfg = tiny_fer()
    metrics = train.main(cfg, "fer2013", "cnn1")
    for split in ("val", "test"):
        assert {"accuracy", "macro_f1", "recall_angry", "precision_angry"} <= set(metrics[split])
    model_dir = tmp_path / "artifacts/models/fer2013/cnn1"
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
    assert "best_test/accuracy" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {
        "confusion_val.png",
        "learning_curves.png",
        "classification_report_val.txt",
        "checkpoint",
    } <= artifacts
    net = mlflow.pytorch.load_model(run.data.tags["emowatch.model_uri"])
    import torch

    assert net(torch.zeros(3, 1, 48, 48)).shape == (3, 7)  # any batch size


class Crash(L.Callback):
    """Dies early in the second epoch, after the first epoch's checkpoint was written."""

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise RuntimeError("power cut")


def test_a_crashed_run_resumes_from_its_last_checkpoint(tiny_fer, tmp_path, monkeypatch, capsys):
    cfg = tiny_fer("train.fer2013.max_epochs=3")
    original = fit.build_trainer

    def crashing(cfg, dataset, max_epochs, ckpt_dir, logger, history, extra=()):
        return original(cfg, dataset, max_epochs, ckpt_dir, logger, history, [*extra, Crash()])

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
    from emowatch.data.fer2013 import DataError

    with pytest.raises(DataError, match="dvc repro tune@fer2013"):
        train.main(tiny_fer(), "fer2013", "cnn3")
