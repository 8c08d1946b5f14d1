"""The test split decides nothing: with the test labels shuffled, every decision of train,
evaluate, register and promote is the same (checkpoints, TTA, thresholds, cross-fitted val
figures, deployed-path figures of the deciding people, the challenger, the gate and its
paired comparison), while the test figures, which are reported, do change."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch

from emowatch import config
from emowatch.data import augmentation
from emowatch.layout import Layout
from emowatch.stages import evaluate, promote, register, train
from tests.conftest import REPO, TINY_TRAINING, isolated, make_fer_arrays, make_people_photos


def project(root: Path, mlflow_template: Path, shuffle_test_labels: bool):
    """A tiny project: FER2013-like arrays, people photos, the augmentation pipeline."""
    root.mkdir()
    shutil.copy(mlflow_template, root / "mlflow.db")
    cfg = config.compose(
        [
            *isolated(root, root / "data"),
            *TINY_TRAINING,
            "train.fer2013.max_epochs=3",
            "registry.promotion.recall_tolerance=1.0",
            "registry.promotion.deployed_recall_floor.fer2013=0.0",
        ],
        root=REPO,
    )
    out = make_fer_arrays(Path(cfg.data.fer2013.out_dir))
    if shuffle_test_labels:
        with np.load(out / "test.npz") as d:
            arrays = dict(d)
        arrays["y"] = np.random.default_rng(7).permutation(arrays["y"])
        np.savez(out / "test.npz", **arrays)
    make_people_photos(Path(cfg.paths.data_dir), Path(cfg.data.photos.splits))
    augmentation.save(augmentation.build(cfg.augment, seed=0), Path(cfg.augment.pipeline))
    return cfg


def weights(cfg, model: str) -> dict[str, torch.Tensor]:
    path = Layout(cfg).model("fer2013", model).weights
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def decisions(cfg) -> tuple[dict, dict]:
    """(every decision the pipeline makes, the test figures it reports)."""
    made, reported = {}, {}
    for model in ("cnn1", "cnn2"):
        train.main(cfg, "fer2013", model)
        m = evaluate.main(cfg, "fer2013", model)
        made[model] = {
            "weights": weights(cfg, model),
            "tta": m["tta"],
            "val": m["val"],
            "deployed_decide": m["deployed"]["decide"],
        }
        reported[model] = {k: m[k] for k in ("accuracy", "recall_angry_at_threshold")}
    for round_, candidates in enumerate((["cnn1"], ["cnn2"], ["cnn1", "cnn2"])):
        cfg.registry.candidates.fer2013 = candidates
        chosen = register.main(cfg, "fer2013")["challenger"]
        decision = promote.main(cfg, "fer2013")
        made[f"round {round_}"] = {
            "challenger": chosen,
            "promoted": decision["promoted"],
            "reason": decision["reason"],
            "compared": decision["compared"],
            "champion": decision["champion_after"],
        }
    return made, reported


def same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    return a == b


def test_shuffled_test_labels_change_no_decision(tmp_path, mlflow_template, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("EMOWATCH_PIPELINE_ID", raising=False)
    made, reported = decisions(project(tmp_path / "a", mlflow_template, False))
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # set by the first project's runs
    made_shuffled, reported_shuffled = decisions(project(tmp_path / "b", mlflow_template, True))

    assert made["round 1"]["compared"]["paired"]  # the gate did compare with a champion
    for key in made:
        assert same(made[key], made_shuffled[key]), key
    assert reported != reported_shuffled  # the test split was read: to report
    saved = json.loads((tmp_path / "b/reports/registry/fer2013_promotion.json").read_text())
    assert saved["reason"] == made_shuffled["round 2"]["reason"]
