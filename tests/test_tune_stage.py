"""The `tune` stage: trials with pruning, MLflow child runs, resumable study, tuned training."""

from __future__ import annotations

import optuna
import yaml
from mlflow.tracking import MlflowClient

from emowatch.stages import train, tune
from emowatch.training.fit import apply_params

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
    best = yaml.safe_load((tmp_path / "artifacts/tune/fer2013/best_params.yaml").read_text())
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
