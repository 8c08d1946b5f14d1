"""The `tune` stage: trials with pruning, MLflow child runs, resumable study, tuned training."""

from __future__ import annotations

import os
import subprocess
import sys

import optuna
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from emowatch.layout import Layout
from emowatch.stages import train, tune
from emowatch.training.fit import apply_params
from tests.conftest import REPO, TINY_TRAINING, isolated

TINY_TUNE = (
    "tune.fer2013.n_trials=2",
    "tune.fer2013.epochs=2",
    "tune.fer2013.train_fraction=0.5",
    "tune.space.filters=[4,8]",
    "tune.space.units=[8,16]",
    "tune.space.batch_size=[8]",
    "tune.pruner.n_startup_trials=0",
    "tune.pruner.n_warmup_steps=0",
)


def test_study_runs_resumes_and_feeds_the_tuned_model(tiny_fer, tmp_path):
    cfg = tiny_fer(*TINY_TUNE)
    record = tune.main(cfg, "fer2013")
    best = yaml.safe_load(Layout(cfg).best_params("fer2013").read_text())
    assert best == record and set(best["params"]) == {
        "filters_0",
        "filters_1",
        "units_0",
        "conv_dropout",
        "dense_dropout",
        "lr",
        "batch_size",
    }
    assert best["n_complete"] + best["n_pruned"] == 2
    for name in ("optimization_history.png", "param_importances.png", "trials.csv"):
        assert (tmp_path / "reports/tune/fer2013" / name).is_file()

    client = MlflowClient(f"sqlite:///{cfg.tracking.db}")
    exp = client.get_experiment_by_name("emowatch").experiment_id
    children = client.search_runs([exp], filter_string="tags.`optuna.trial` != ''")
    parents = [
        r
        for r in client.search_runs([exp], filter_string="tags.`emowatch.stage` = 'tune'")
        if "optuna.trial" not in r.data.tags
    ]
    assert len(parents) == 1 and len(children) == 2
    assert all(c.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for c in children)

    # a study continues: asking for 3 trials runs one more, in the same study file
    cfg.tune.fer2013.n_trials = 3
    tune.main(cfg, "fer2013")
    study = optuna.load_study(
        study_name=record["study"], storage=f"sqlite:///{tmp_path}/artifacts/tune/fer2013/study.db"
    )
    assert len(study.trials) == 3

    metrics = train.main(cfg, "fer2013", "cnn3")
    assert metrics["val"]["n"] == 28


def test_pruned_trials_are_marked(tiny_fer):
    cfg = tiny_fer(*TINY_TUNE, "tune.fer2013.n_trials=4")
    tune.main(cfg, "fer2013")
    client = MlflowClient(f"sqlite:///{cfg.tracking.db}")
    exp = client.get_experiment_by_name("emowatch").experiment_id
    states = [
        r.data.tags.get("optuna.state")
        for r in client.search_runs([exp], filter_string="tags.`optuna.trial` != ''")
    ]
    assert len(states) == 4 and set(states) <= {"COMPLETE", "PRUNED"}


def test_apply_params_maps_per_layer_sizes(make_cfg):
    cfg = make_cfg()
    tuned, batch = apply_params(
        cfg.models.cnn2,
        128,
        {
            "filters_0": 16,
            "filters_1": 96,
            "units_0": 256,
            "conv_dropout": 0.1,
            "lr": 0.01,
            "batch_size": 32,
        },
    )
    assert list(tuned.net.filters) == [16, 96] and list(tuned.net.units) == [256]
    assert tuned.net.conv_dropout == 0.1 and tuned.net.dense_dropout == 0.5
    assert tuned.optimizer.lr == 0.01 and batch == 32
    assert list(cfg.models.cnn2.net.filters) == [32, 64]  # the original is untouched


def test_two_workers_share_one_study(tiny_fer, tmp_path):
    """Two `emowatch tune` processes on one RDB storage URL: together they run the study's
    n_trials, every trial once, none lost, each an MLflow child run."""
    cfg = tiny_fer()  # writes the tiny arrays and the augmentation pipeline
    url = f"sqlite:///{tmp_path / 'shared-study.db'}"
    overrides = [
        *isolated(tmp_path, tmp_path / "data"),
        *TINY_TRAINING,
        *TINY_TUNE,
        "tune.fer2013.n_trials=6",
        "tune.pruner.n_startup_trials=10",  # no pruning: every trial completes
        f"tune.storage={url}",
    ]
    cmd = [sys.executable, "-m", "emowatch.cli", "tune", "--dataset", "fer2013", *overrides]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    workers = [
        subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=600)[0].decode() for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]

    (name,) = optuna.get_all_study_names(url)
    trials = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    numbers = sorted(t.number for t in trials)
    # MaxTrialsCallback: a worker may finish the trial it had started when the other one
    # completed the sixth, so 6 or 7 trials; none is lost, failed, or run twice
    assert numbers == list(range(len(trials))) and len(trials) in (6, 7)
    assert all(t.state == TrialState.COMPLETE for t in trials)
    client = MlflowClient(f"sqlite:///{cfg.tracking.db}")
    exp = client.get_experiment_by_name("emowatch").experiment_id
    children = client.search_runs([exp], filter_string="tags.`optuna.trial` != ''")
    assert sorted(int(r.data.tags["optuna.trial"]) for r in children) == numbers
    parents = {r.data.tags["mlflow.parentRunId"] for r in children}
    assert len(parents) <= 2
    # the stage's DVC output is a snapshot of the shared study
    local = f"sqlite:///{tmp_path / 'artifacts/tune/fer2013/study.db'}"
    assert len(optuna.load_study(study_name=name, storage=local).trials) >= 6
