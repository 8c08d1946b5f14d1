"""evaluate -> register -> promote on tiny data, against a real sqlite MLflow."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from emowatch.layout import Layout
from emowatch.stages import evaluate, promote, register, train
from emowatch.tracking import registry

KEYS = registry.KEYS  # the keys the issue asks every metrics JSON to hold


def test_evaluate_writes_the_metric_keys_and_figures(tiny_fer, tmp_path):
    cfg = tiny_fer()
    train.main(cfg, "fer2013", "cnn1")
    metrics = evaluate.main(cfg, "fer2013", "cnn1")
    paths = Layout(cfg).model("fer2013", "cnn1")
    saved = json.loads(paths.metrics.read_text())
    assert saved == metrics
    for key in KEYS:
        assert key in metrics and key in metrics["val"], key
    assert metrics["threshold_angry"] == metrics["val"]["threshold_angry"]  # chosen on val
    assert metrics["val"]["fitted"]["recall_angry_at_threshold"] >= 0.8  # in-sample, by design
    assert metrics["val"]["crossfit"] == {"folds": 4, "by": "angry"}  # 4 angry faces in val
    assert metrics["tta"]["chosen"] in ("none", "hflip")
    assert set(metrics["tta"]["val_accuracy"]) == {"none", "hflip"}
    assert 0 <= metrics["behaviour"]["flip_consistency"] <= 1
    # The deployed path on the full photos: PA, PB (train) and PC (val) may decide for a FER2013
    # model, PD (test) is reported; every photo shows a face the detector finds.
    found = metrics["deployed"]
    assert found["people"] == {"decide": ["PA", "PB", "PC"], "report": ["PD"]}
    assert found["decide"]["n"] == 12 and found["report"]["n"] == 4
    assert found["decide"]["face_rate"] == 1.0 and found["decide"]["n_angry"] == 3
    assert found["per_person"]["PD"]["part"] == "report"
    # CLAHE kept or dropped by the rule on the deciding people (both scored), never on PD: on
    # their 12 photos as they are and under each of evaluate.clahe_conditions (dim, side light).
    assert set(found["clahe"]["decide_accuracy"]) == {"false", "true"}
    off, on = (found["clahe"]["decide_accuracy"][k] for k in ("false", "true"))
    assert found["decide"]["accuracy"] == (on if found["clahe"]["chosen"] else off)
    judged = found["clahe"]["decided_on"]
    assert judged["false"]["n"] == judged["true"]["n"] == 12 * 3
    keep = (
        judged["true"]["accuracy"] >= judged["false"]["accuracy"] + cfg.evaluate.clahe_margin
        and judged["true"]["recall_angry"] >= judged["false"]["recall_angry"]
    )
    assert found["clahe"]["chosen"] is keep and "dim, side_light" in found["clahe"]["rule"]
    out = paths.evaluation
    for name in (
        "confusion.png",
        "predictions.csv",
        "pr_curve.csv",
        "pr_curve.png",
        "faces.png",
        "feature_maps.png",
        "gradcam.png",
        "classification_report.json",
        "deployed_predictions.csv",
    ):
        assert (out / name).stat().st_size > 0, name
    header = (out / "predictions.csv").read_text().splitlines()[0]
    assert header == "actual,predicted,predicted_argmax"
    info = json.loads(paths.spec.read_text())
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
    assert deployed.spec["detector"]["name"] == cfg.detector.name == "yunet"
    assert deployed.spec["align"]["eye_distance"] == cfg.deploy.align.eye_distance
    assert deployed.spec["tta"] == challenger.tags["tta"]

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
    assert "beyond noise" in decision["reason"]
    paired = decision["compared"]["paired"]["accuracy_at_threshold"]
    assert paired["high"] < 0 and paired["n"] == 28  # every val face, none of test
    assert client.get_model_version_by_alias(name, "champion").version == challenger.version
    saved = json.loads((tmp_path_of(cfg) / "fer2013_promotion.json").read_text())
    assert saved["reason"] == decision["reason"]

    # The results page is generated from these files: the champion is marked, the gate's
    # paired comparison is spelled out.
    from emowatch.stages import report

    text = report.main(cfg)
    row = next(line for line in text.splitlines() if line.startswith("| cnn1 (challenger)"))
    evaluated = tmp_path_of(cfg).parent / "evaluate/fer2013/cnn1/metrics.json"
    assert f"**{json.loads(evaluated.read_text())['accuracy']:.3f}**" in row
    assert "worse than the champion beyond noise" in text and "paired-bootstrap interval" in text
    assert (tmp_path_of(cfg).parent / "results.md").read_text().strip() == text.strip()

    # `emowatch info` (the end of `make run`) shows the champion
    from typer.testing import CliRunner

    from emowatch.cli import app

    shown = CliRunner().invoke(app, ["info", f"tracking.db={cfg.tracking.db}"]).output
    assert f"emowatch-fer2013@champion: v{challenger.version}" in shown
    assert "emowatch-photos" not in shown  # never registered here
    assert "model card: runs:/" in shown

    # The audit trail and the model card of the promotion.
    moves = (
        CliRunner()
        .invoke(app, ["history", "-d", "fer2013", f"tracking.db={cfg.tracking.db}"])
        .output.splitlines()
    )
    assert (
        len(moves) == 1 and f"-> v{challenger.version}" in moves[0] and "first champion" in moves[0]
    )
    card = (tmp_path_of(cfg) / "fer2013_model_card.md").read_text()
    assert card.startswith(f"# Model card: {name} v{challenger.version} (cnn1)")
    assert "false alarms per angry" in card and "non-commercial" in card
    assert "| angry |" in card  # the confusion matrix at the deployed rule
    assert client.get_model_version(name, challenger.version).description == card


def tags_of(client, version):
    return client.get_model_version("emowatch-fer2013", version).tags


def tmp_path_of(cfg):
    from pathlib import Path

    return Path(cfg.registry.dir)


def test_changed_evaluation_settings_make_new_versions(tiny_fer, tmp_path):
    """A version is one behaviour: a new TTA or target recall is a new version, and the
    challenger's tags are those of the metrics.json it was chosen from."""
    cfg = tiny_fer("registry.candidates.fer2013=[cnn1]")
    train.main(cfg, "fer2013", "cnn1")
    client = MlflowClient(f"sqlite:///{cfg.tracking.db}")
    metrics_path = Layout(cfg).model("fer2013", "cnn1").metrics
    seen = []
    for change in ({}, {"tta": "none"}, {"tta": "hflip"}, {"target_recall": 0.5}, {"clahe": None}):
        for key, value in change.items():
            cfg.evaluate[key] = value
        if change == {"clahe": None}:  # forced the other way than the rule chose just before
            cfg.evaluate.clahe = not json.loads(metrics_path.read_text())["deployed"]["clahe"][
                "chosen"
            ]
        evaluate.main(cfg, "fer2013", "cnn1")
        version = register.main(cfg, "fer2013")["challenger"]["version"]
        tags = client.get_model_version("emowatch-fer2013", version).tags
        m = json.loads(metrics_path.read_text())
        assert tags["threshold_angry"] == f"{m['threshold_angry']:.6f}"
        assert tags["tta"] == m["tta"]["chosen"]
        assert tags["val_precision_angry_at_threshold"] == (
            f"{m['val']['precision_angry_at_threshold']:.6f}"
        )
        seen.append(version)
    assert len({seen[1], seen[2], seen[3], seen[4]}) == 4  # each a behaviour: four versions
    assert seen[0] == seen[1 if tags_of(client, seen[0])["tta"] == "none" else 2]  # auto: reused
    forced = str(cfg.evaluate.clahe).lower()  # CLAHE on the camera path, forced
    assert tags_of(client, seen[4])["clahe"] == forced
    assert register.main(cfg, "fer2013")["challenger"]["version"] == seen[4]  # nothing changed
