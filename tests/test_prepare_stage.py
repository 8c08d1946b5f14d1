"""The `prepare` stage end to end on tiny files: arrays, report, metrics, MLflow run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from emowatch.errors import DataError
from emowatch.stages import prepare
from tests.conftest import good_rows, pixels, write_csv
from tests.test_ferplus import write_ferplus


def runs(cfg):
    client = MlflowClient(f"sqlite:///{cfg.tracking.db}")
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    return client.search_runs([exp.experiment_id])


def test_writes_arrays_report_metrics_and_mlflow_run(make_cfg, tmp_path, capsys):
    rows = good_rows(7)
    leak = rows[14][1]  # a test image copied into train with the same label
    blank = " ".join(["0"] * 2304)
    rows += [("0", leak, "Training"), ("6", blank, "Training"), ("2", "1 2 3", "Training")]
    write_csv(tmp_path / "data/fer2013/fer2013.csv.gz", rows)
    cfg = make_cfg("data.fer2013.max_bad_fraction=0.1")
    report = prepare.main(cfg)

    out = tmp_path / "artifacts/fer2013"
    train, val, test = (np.load(out / f"{s}.npz") for s in ("train", "val", "test"))
    assert (
        train["x"].shape == (7, 48, 48)
        and val["x"].shape == (7, 48, 48)
        and test["x"].shape == (7, 48, 48)
    )
    assert list(train["classes"]) == list(cfg.data.fer2013.classes)
    assert 21 not in train["row"] and 22 not in train["row"]  # leak and blank dropped from train
    assert test["row"].tolist() == list(range(14, 21))  # test untouched

    saved = json.loads((tmp_path / "reports/prepare/fer2013_report.json").read_text())
    assert saved["rejected"]["items"] == [
        {"where": "line 25", "row": 23, "line": 25, "reason": "3 pixel values, expected 2304"}
    ]
    assert saved["quality"]["cross_split_groups"] == 1 and saved["quality"]["blank_images"] == 1
    assert saved["dropped_from_train"] == {
        "cross_split_duplicate": 1,
        "near_duplicate_of_val_or_test": 1,
        "conflicting_duplicate": 0,
        "blank": 1,
        "total": 2,
    }
    assert saved["quality"]["split_pairs"]["train-test"]["exact"] == 1
    assert saved["counts_read"]["train"]["angry"] == 2 and saved["counts"]["train"]["angry"] == 1
    assert report["counts"] == saved["counts"]
    metrics = json.loads((tmp_path / "reports/prepare/metrics.json").read_text())
    assert metrics["n_train"] == 7 and metrics["rejected"] == 1

    printed = capsys.readouterr().out
    assert "angry" in printed and "rejected rows/files: 1" in printed

    (run,) = runs(cfg)
    assert run.info.status == "FINISHED"
    assert run.data.tags["emowatch.stage"] == "prepare"
    assert (
        len(run.data.tags["emowatch.git_commit"]) in (7, 40)
        or run.data.tags["emowatch.git_commit"] == "unknown"
    )
    assert run.data.metrics["n_test"] == 7
    assert run.data.params["data.fer2013.labels"] == "fer2013"
    artifacts = [
        a.path for a in MlflowClient(f"sqlite:///{cfg.tracking.db}").list_artifacts(run.info.run_id)
    ]
    assert "fer2013_report.json" in artifacts


def test_cleaning_can_be_switched_off(make_cfg, tmp_path):
    rows = good_rows(7)
    rows.append(("0", rows[14][1], "Training"))
    write_csv(tmp_path / "data/fer2013/fer2013.csv.gz", rows)
    cfg = make_cfg(
        "data.fer2013.clean.drop_cross_split_duplicates=false",
        "data.fer2013.clean.drop_near_duplicates=false",
    )
    report = prepare.main(cfg)
    assert report["dropped_from_train"]["total"] == 0
    assert report["counts"]["train"]["angry"] == 2


def nudged(pixel_string: str, delta: int = 3) -> str:
    """The same image a little brighter, with one pixel changed: a near copy, not a byte copy."""
    v = np.clip(np.array(pixel_string.split(), dtype=np.int64) + delta, 0, 255)
    v[0] = 255 - v[0]
    return " ".join(map(str, v))


def test_near_copies_of_test_images_leave_train_and_val(make_cfg, tmp_path):
    rows = good_rows(7)
    test_face = rows[15][1]
    rows += [("1", nudged(test_face), "Training"), ("1", nudged(test_face, 5), "PublicTest")]
    write_csv(tmp_path / "data/fer2013/fer2013.csv.gz", rows)
    report = prepare.main(make_cfg())
    pairs = report["quality"]["split_pairs"]
    assert pairs["train-test"] == pairs["train-test"] | {"exact": 0, "near": 1}
    assert pairs["val-test"]["exact"] == 0 and pairs["val-test"]["near"] == 1
    assert pairs["train-val"]["near"] == 1  # the two copies are near each other too
    assert pairs["train-test"]["examples"][0]["copy"] == "row 15"
    assert report["dropped_from_train"]["near_duplicate_of_val_or_test"] == 1
    assert report["dropped_from_val"] == {"val_copy_of_test": 1}
    out = tmp_path / "artifacts/fer2013"
    assert 21 not in np.load(out / "train.npz")["row"] and 22 not in np.load(out / "val.npz")["row"]
    metrics = json.loads((tmp_path / "reports/prepare/metrics.json").read_text())
    assert metrics["near_val-test"] == 1 and metrics["dropped_from_val"] == 1


def test_too_many_bad_rows_fails_with_report_and_failed_run(make_cfg, tmp_path):
    rows = good_rows(7) + [("1", "1 2", "Training")] * 3
    write_csv(tmp_path / "data/fer2013/fer2013.csv.gz", rows)
    cfg = make_cfg("data.fer2013.max_bad_fraction=0.05")
    with pytest.raises(DataError, match=r"3 of 24 .* malformed"):
        prepare.main(cfg)
    saved = json.loads((tmp_path / "reports/prepare/fer2013_report.json").read_text())
    assert saved["rejected"]["count"] == 3 and saved["error"]
    (run,) = runs(cfg)
    assert run.info.status == "FAILED"


def test_missing_input_fails_clearly(make_cfg):
    with pytest.raises(DataError, match="dvc pull"):
        prepare.main(make_cfg())


def test_empty_split_fails(make_cfg, tmp_path):
    write_csv(
        tmp_path / "data/fer2013/fer2013.csv.gz", [r for r in good_rows(3) if r[2] != "PrivateTest"]
    )
    with pytest.raises(DataError, match="empty splits"):
        prepare.main(make_cfg())


def test_ferplus_labels_relabel_and_count_drops(make_cfg, tmp_path):
    rows = [
        ("0", pixels(i), u) for i, u in enumerate(["Training"] * 3 + ["PublicTest", "PrivateTest"])
    ]
    write_csv(tmp_path / "data/fer2013/fer2013.csv.gz", rows)
    write_ferplus(
        tmp_path / "data/fer2013/fer2013new.csv",
        [
            "Training,a.png,0,9,0,0,0,0,0,0,1,0",  # happy
            "Training,,0,0,0,0,0,0,0,0,0,10",  # not a face
            "Training,c.png,4,4,0,0,2,0,0,0,0,0",  # no majority
            "PublicTest,d.png,10,0,0,0,0,0,0,0,0,0",  # neutral
            "PrivateTest,e.png,0,0,0,0,7,0,0,0,3,0",  # angry
        ],
    )
    report = prepare.main(make_cfg("data.fer2013.labels=ferplus"))
    assert report["ferplus_dropped"]["train"] == {"no_majority": 1, "not_a_face": 1}
    assert report["counts"]["train"]["happy"] == 1 and report["counts"]["val"]["neutral"] == 1
    test = np.load(tmp_path / "artifacts/fer2013/test.npz")
    assert test["y"].tolist() == [0]


def test_folder_source(make_cfg, tmp_path):
    from tests.test_fer2013_folders import make_layout

    make_layout(tmp_path / "data/fer2013_images")
    report = prepare.main(
        make_cfg("data.fer2013.source=folders", "data.fer2013.max_bad_fraction=0.5")
    )
    assert report["rejected"]["count"] == 3
    assert sum(report["counts_read"]["test"].values()) == 8
