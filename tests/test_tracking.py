"""MLflow helper: URI precedence, tags, and runs that never stay RUNNING."""

from __future__ import annotations

import os
import subprocess
import sys

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from emowatch.tracking import runs


def test_tracking_uri_precedence(make_cfg, monkeypatch, tmp_path):
    cfg = make_cfg()
    assert runs.tracking_uri(cfg) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg.tracking.uri = "http://127.0.0.1:5999"
    assert runs.tracking_uri(cfg) == "http://127.0.0.1:5999"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    assert runs.tracking_uri(cfg) == "sqlite:///elsewhere.db"


def test_embedded_store_keeps_artifacts_in_the_project(make_cfg, tmp_path):
    cfg = make_cfg()
    exp_id = runs.setup(cfg)
    location = MlflowClient().get_experiment(exp_id).artifact_location
    assert location == (tmp_path / "mlartifacts").as_uri()
    # The UI opens it on its training runs, not on a GenAI overview.
    assert MlflowClient().get_experiment(exp_id).tags["mlflow.experimentKind"] == (
        "custom_model_development"
    )


def test_run_is_tagged_and_finished(make_cfg, monkeypatch):
    monkeypatch.setenv("EMOWATCH_PIPELINE_ID", "repro-1")
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    cfg = make_cfg()
    with runs.stage_run(cfg, "unit", params={"a": [1, 2], "long": "x" * 7000}) as run:
        mlflow.log_metric("m", 1.0)
    got = MlflowClient().get_run(run.info.run_id)
    assert got.info.status == "FINISHED"
    tags = got.data.tags
    assert tags["emowatch.stage"] == "unit" and tags["emowatch.pipeline_id"] == "repro-1"
    assert tags["emowatch.data_hash"] == runs.data_hash()
    assert tags["mlflow.source.git.commit"] == tags["emowatch.git_commit"]
    assert got.data.params["a"] == "[1, 2]" and got.data.params["long"].endswith("...")
    assert tags["emowatch.dvc_experiment"] == "workspace"
    monkeypatch.setenv("DVC_EXP_NAME", "swa")  # what `dvc exp run` sets for its stages
    assert runs.run_tags("unit")["emowatch.dvc_experiment"] == "swa"


@pytest.mark.parametrize(
    ("error", "status"), [(ValueError, "FAILED"), (KeyboardInterrupt, "KILLED")]
)
def test_errors_end_the_run_failed_or_killed(make_cfg, error, status):
    cfg = make_cfg()
    with pytest.raises(error), runs.stage_run(cfg, "unit") as run:
        raise error("boom")
    assert MlflowClient().get_run(run.info.run_id).info.status == status


def test_run_of_a_dead_process_is_closed_as_killed(make_cfg):
    cfg = make_cfg()
    uri = runs.tracking_uri(cfg)
    runs.setup(cfg)
    # A child process opens a run and dies without closing it (like SIGKILL).
    code = (
        "import mlflow, os; mlflow.set_tracking_uri(os.environ['URI']);"
        f"mlflow.set_experiment({cfg.tracking.experiment!r});"
        "from emowatch.tracking.runs import run_tags;"
        "r = mlflow.start_run(tags=run_tags('unit')); print(r.info.run_id); os._exit(9)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "URI": uri}, capture_output=True, text=True
    )
    orphan = out.stdout.strip().splitlines()[-1]
    assert MlflowClient(uri).get_run(orphan).info.status == "RUNNING"
    with runs.stage_run(cfg, "unit"):
        pass
    assert MlflowClient(uri).get_run(orphan).info.status == "KILLED"
