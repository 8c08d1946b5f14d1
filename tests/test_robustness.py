"""The robustness stage: each champion's camera path under a camera's conditions, per detector,
on the deciding people only, and its table on the results page."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import torch

from emowatch.deploy import pyfunc
from emowatch.files import read_json, write_json
from emowatch.inference.face_classifier import spec_of
from emowatch.inference.loading import build_network
from emowatch.layout import Layout
from emowatch.stages import report, robustness
from tests.conftest import make_people_photos

CLASSES = ["angry", "happy", "sad", "neutral"]
NET = {
    "net": {"_target_": "emowatch.models.nets.ConvNet", "filters": [8, 16], "units": [16]},
    "classes": CLASSES,
    "input_shape": [1, 48, 48],
    "normalize": {"mean": 0.5, "std": 0.25},
}


def champion_of(cfg, tmp: Path, threshold: float) -> str:
    """A tiny network registered as the FER2013 model's version 1, its promotion report saying
    it is the champion; the photos' report says skipped."""
    model_dir = tmp / "model"
    model_dir.mkdir()
    (model_dir / "model.json").write_text(json.dumps(NET))
    torch.manual_seed(0)
    torch.save(build_network(NET).state_dict(), model_dir / "model.ckpt")
    spec = spec_of(NET, threshold, "none", 0.2, cfg.detector, finder=cfg.deploy.watch.detect)
    mlflow.set_tracking_uri(f"sqlite:///{cfg.tracking.db}")
    mlflow.set_experiment("robustness-test")
    with mlflow.start_run():
        uri = pyfunc.log_model(model_dir, spec, "model", {})
    version = mlflow.register_model(uri, cfg.registry.names.fer2013).version
    layout = Layout(cfg)
    write_json(layout.promotion_report("fer2013"), {"champion_after": version})
    write_json(layout.promotion_report("photos"), {"skipped": "test: no photos model"})
    return f"models:/{cfg.registry.names.fer2013}/{version}"


def test_the_champion_is_scored_under_every_condition_with_every_detector(make_cfg, tmp_path):
    cfg = make_cfg("robustness.conditions=[tilt,small_640x480]")
    make_people_photos(Path(cfg.paths.data_dir), Path(cfg.data.photos.splits))
    uri = champion_of(cfg, tmp_path, threshold=0.0)  # every face said angry
    out = robustness.main(cfg)
    assert read_json(Path(cfg.robustness.path)) == json.loads(json.dumps(out))
    fer = out["fer2013"]
    assert fer["model"] == uri and fer["splits"] == ["train", "val"]
    assert fer["people"] == ["PA", "PB", "PC"]  # the test person PD is not scored
    assert fer["photos"] == 12 and fer["no_true_face"] == 0
    assert set(fer["table"]) == {"haar", "yunet", "yunet aligned"}
    for rows in fer["table"].values():
        assert list(rows) == ["plain", "tilt", "small_640x480"]
        plain = rows["plain"]
        assert plain["face_rate"] == 1.0 and plain["n"] == 12 and plain["n_angry"] == 3
        # threshold 0: every face found is said angry, so recall = the share found
        for row in rows.values():
            assert row["recall_angry"] == row["angry_caught"] / 3
            assert row["holds"] == (row["recall_angry"] >= plain["recall_angry"] - 0.05)
    assert out["photos"] == {"skipped": "no champion"}
    page = "\n".join(report.robustness_lines(cfg, None))
    assert f"fer2013 champion `{uri}`: 12 photos of 3 people" in page
    assert "| condition | haar | yunet | yunet aligned (deployed) |" in page
    cfg.deploy.align.enabled = False  # YuNet's grown boxes ship: that column is marked
    assert "| condition | haar | yunet (deployed) | yunet aligned |" in "\n".join(
        report.robustness_lines(cfg, None)
    )
    assert "| tilt: head tilted 20° |" in page
    assert "photos: not scored (no champion)" in page


def test_the_test_people_decide_nothing_here(make_cfg, tmp_path):
    """Swapping the test person's photos for blank ones and relabelling them changes nothing."""
    import numpy as np
    from PIL import Image

    cfg = make_cfg("robustness.conditions=[jpeg]", "robustness.detectors=[haar]")
    make_people_photos(Path(cfg.paths.data_dir), Path(cfg.data.photos.splits))
    champion_of(cfg, tmp_path, threshold=0.5)
    before = robustness.main(cfg)
    photos = Path(cfg.data.photos.root)
    moved = list(photos.glob("*/PD.*"))
    assert len(moved) == 4
    for i, path in enumerate(moved):  # a blank image, in the next class's folder
        Image.fromarray(np.full((256, 256), 90, np.uint8)).save(path)
        path.rename(photos / CLASSES[(CLASSES.index(path.parent.name) + 1) % 4] / f"{i}{path.name}")
    assert robustness.main(cfg) == before


def test_thinning_keeps_every_class_and_at_most_the_asked_number():
    samples = [(c, i) for c in "abcd" for i in range(10)]
    assert robustness.thinned(samples, None) == samples
    kept = robustness.thinned(samples, 8)
    assert len(kept) <= 8 and {c for c, _ in kept} == set("abcd")


def test_a_failing_condition_is_marked_on_the_page(make_cfg):
    cfg = make_cfg()
    row = {"face_rate": 1.0, "accuracy": 0.5, "angry_caught": 3, "n_angry": 4}
    table = {
        "haar": {
            "plain": row | {"recall_angry": 0.75, "precision_angry": 0.5, "holds": True},
            "dim": row
            | {"angry_caught": 1, "recall_angry": 0.25, "precision_angry": 0.5}
            | {"holds": False},
        }
    }
    write_json(
        Path(cfg.robustness.path),
        {
            "conditions": {"dim": "gamma 2.5 (shadows crushed)"},
            "fer2013": {"model": "models:/m/1", "photos": 4, "people": ["A"], "splits": ["val"]}
            | {"table": table},
            "photos": {"skipped": "no champion"},
        },
    )
    lines = report.robustness_lines(cfg, None)
    assert "| plain: the photos as they are | 100% / 0.50 / 3 of 4 / 0.50 |" in lines
    assert "| dim: gamma 2.5 (shadows crushed) | 100% / 0.50 / 1 of 4 ✗ / 0.50 |" in lines


def test_the_detectors_scored_are_those_named_with_their_settings_from_params(make_cfg):
    cfg = make_cfg("robustness.detectors=[yunet]", "robustness.aligned=false")
    detectors, framing = robustness.scored(cfg)
    assert list(detectors) == ["yunet"] and framing is None
    assert detectors["yunet"] == cfg.robustness.settings.yunet  # from params, not from conf/
    cfg = make_cfg("robustness.detectors=[haar,mtcnn]")
    with pytest.raises(ValueError, match=r"\['mtcnn'\].*it has: haar, yunet"):
        robustness.scored(cfg)
