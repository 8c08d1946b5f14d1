"""evaluate -> register -> promote on tiny data, against a real sqlite MLflow."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from emowatch.stages import evaluate, promote, register, train
from emowatch.tracking import registry

KEYS = registry.KEYS  # the keys the issue asks every metrics JSON to hold


def test_evaluate_writes_the_metric_keys_and_figures(tiny_fer, tmp_path):
    cfg = tiny_fer()
    train.main(cfg, "fer2013", "cnn1")
    metrics = evaluate.main(cfg, "fer2013", "cnn1")
    saved = json.loads((tmp_path / "reports/evaluate/fer2013/cnn1/metrics.json").read_text())
    assert saved == metrics
    for key in KEYS:
        assert key in metrics and key in metrics["val"], key
    assert metrics["threshold_angry"] == metrics["val"]["threshold_angry"]  # chosen on val
    assert metrics["val"]["recall_angry_at_threshold"] >= 0.8
    assert 0 <= metrics["behaviour"]["flip_consistency"] <= 1
    out = tmp_path / "reports/evaluate/fer2013/cnn1"
    for name in (
        "confusion.png",
        "predictions.csv",
        "pr_curve.csv",
        "pr_curve.png",
        "faces.png",
        "feature_maps.png",
        "gradcam.png",
        "classification_report.json",
    ):
        assert (out / name).stat().st_size > 0, name
    assert (out / "predictions.csv").read_text().splitlines()[0] == "actual,predicted"
    info = json.loads((tmp_path / "artifacts/models/fer2013/cnn1/model.json").read_text())
    run = MlflowClient(f"sqlite:///{cfg.tracking.db}").get_run(info["mlflow_run_id"])
    assert float(run.data.tags["emowatch.threshold_angry"]) == pytest.approx(
        metrics["threshold_angry"], abs=1e-6
    )


def test_register_and_promote_keep_a_worse_model_out(tiny_fer):
    cfg = tiny_fer("registry.candidates.fer2013=[cnn1,cnn2]", "train.fer2013.max_epochs=3")
    for model in ("cnn1", "cnn2"):
        train.main(cfg, "fer2013", model)
        evaluate.main(cfg, "fer2013", model)
    report = register.main(cfg, "fer2013")
    client = MlflowClient(f"sqlite:///{cfg.tracking.db}")
    name = "emowatch-fer2013"
    assert set(report["versions"]) == {"cnn1", "cnn2"}
    challenger = client.get_model_version_by_alias(name, "challenger")
    assert challenger.tags["test_data_hash"] and challenger.tags["threshold_angry"]
    assert register.main(cfg, "fer2013")["versions"] == report["versions"]  # nothing new registered
    # A version is the deployable face model, carrying the threshold chosen on val.
    from emowatch.deploy.pyfunc import load_classifier

    deployed = load_classifier(f"models:/{name}@challenger")
    assert deployed.threshold == pytest.approx(float(challenger.tags["threshold_angry"]), abs=1e-6)
    assert deployed.spec["detector"]["name"] == "haar" and deployed.spec["tta"] == cfg.evaluate.tta

    cfg.registry.promotion.recall_tolerance = 1.0  # tiny data: any recall passes the floor
    first = promote.main(cfg, "fer2013")
    assert (
        first["promoted"]
        and client.get_model_version_by_alias(name, "champion").version == challenger.version
    )
    assert not promote.main(cfg, "fer2013")["promoted"]  # no new model: nothing changes

    # a deliberately worse model: an untrained cnn1 (zero epochs of learning, lr 0)
    cfg.models.cnn1.optimizer.lr = 0.0
    train.main(cfg, "fer2013", "cnn1")
    evaluate.main(cfg, "fer2013", "cnn1")
    cfg.registry.candidates.fer2013 = ["cnn1"]
    register.main(cfg, "fer2013")
    decision = promote.main(cfg, "fer2013")
    versions = client.search_model_versions(f"name = '{name}'")
    assert len(versions) == 3 and not decision["promoted"]
    assert client.get_model_version_by_alias(name, "champion").version == challenger.version
    saved = json.loads((tmp_path_of(cfg) / "fer2013_promotion.json").read_text())
    assert saved["reason"] == decision["reason"]

    # `emowatch info` (the end of `make run`) shows the champion
    from typer.testing import CliRunner

    from emowatch.cli import app

    shown = CliRunner().invoke(app, ["info", f"tracking.db={cfg.tracking.db}"]).output
    assert f"emowatch-fer2013@champion: v{challenger.version}" in shown
    assert "emowatch-photos" not in shown  # never registered here


def tmp_path_of(cfg):
    from pathlib import Path

    return Path(cfg.registry.dir)
