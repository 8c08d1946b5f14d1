"""The test split decides nothing: with FER2013's test labels shuffled, and the photos' test
person's labels shuffled and images swapped, every decision of train, evaluate, register and
promote is the same for the FER2013 and the photos models (checkpoints, TTA, thresholds,
cross-fitted val figures, the photos models' out-of-fold folds and scores, deployed-path
figures of the deciding people, the challenger, the gate
and its paired comparison), while the test figures, which are reported, do change."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch

from emowatch import config
from emowatch.data import augmentation
from emowatch.layout import Layout
from emowatch.stages import crop_faces, crossval, evaluate, promote, register, train
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
            "registry.promotion.deployed_recall_floor.photos=0.0",
            "train.photos.max_epochs=2",
            "train.photos.batch_size=4",
            f"data.photos.split.pinned={PINS}",
        ],
        root=REPO,
    )
    out = make_fer_arrays(Path(cfg.data.fer2013.out_dir))
    if shuffle_test_labels:
        with np.load(out / "test.npz") as d:
            arrays = dict(d)
        arrays["y"] = np.random.default_rng(7).permutation(arrays["y"])
        np.savez(out / "test.npz", **arrays)
    make_people_photos(Path(cfg.paths.data_dir), Path(cfg.data.photos.splits), PEOPLE)
    if shuffle_test_labels:
        swap_test_person(Path(cfg.data.photos.root))
    crop_faces.main(cfg)  # the photos models' crops and splits
    augmentation.save(augmentation.build(cfg.augment, seed=0), Path(cfg.augment.pipeline))
    return cfg


# Two val people: the photos models' operating point is cross-fitted by person.
PEOPLE = {"PA": "train", "PB": "train", "PC": "val", "PE": "val", "PD": "test"}
PINS = "{train: [PA, PB], val: [PC, PE], test: [PD]}"


def swap_test_person(photos: Path, person: str = "PD", donor: str = "PA") -> None:
    """The test person's photos: each label moved to another class folder (a derangement) and
    each image replaced by the donor's photo of another class."""
    files = sorted(photos.glob(f"*/{person}.*"))
    classes = [f.parent.name for f in files]
    for f in files:
        f.unlink()
    for i in range(len(classes)):
        label = classes[(i + 1) % len(classes)]
        image = classes[(i + 2) % len(classes)]
        donor_photo = photos / image / f"{donor}.{image[:2].upper()}1.png"
        shutil.copy(donor_photo, photos / label / f"{person}.{label[:2].upper()}1.{i}.png")


def weights(cfg, dataset: str, model: str) -> dict[str, torch.Tensor]:
    path = Layout(cfg).model(dataset, model).weights
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def decisions(cfg) -> tuple[dict, dict]:
    """(every decision the pipeline makes, the test figures it reports)."""
    made, reported = {}, {}
    for dataset in ("fer2013", "photos"):  # the photo models start from the FER2013 ones
        for model in ("cnn1", "cnn2"):
            train.main(cfg, dataset, model)
            if dataset == "photos":  # every non-test person out of fold; PD in no fold
                made[f"crossval {model}"] = crossval.main(cfg, model)
            m = evaluate.main(cfg, dataset, model)
            made[f"{dataset} {model}"] = {
                "weights": weights(cfg, dataset, model),
                "tta": m["tta"],
                "val": m["val"],
                "deployed_decide": m["deployed"]["decide"],
            }
            # Reported: figures, and the hash of the test split scored (a tiny photos model may
            # call every face one class, so that its figures alone cannot tell the splits apart)
            reported[f"{dataset} {model}"] = {
                k: m[k] for k in ("accuracy", "recall_angry_at_threshold", "test_data_hash")
            }
        for round_, candidates in enumerate((["cnn1"], ["cnn2"], ["cnn1", "cnn2"])):
            cfg.registry.candidates[dataset] = candidates
            chosen = register.main(cfg, dataset)["challenger"]
            decision = promote.main(cfg, dataset)
            made[f"{dataset} round {round_}"] = {
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

    for dataset in ("fer2013", "photos"):  # the gate did compare with a champion
        assert made[f"{dataset} round 1"]["compared"]["paired"], made[f"{dataset} round 1"]
    assert made.keys() == made_shuffled.keys()
    for key in made:
        assert same(made[key], made_shuffled[key]), key
    for key in reported:  # the test split was read: to report
        assert reported[key] != reported_shuffled[key], key
    for dataset in ("fer2013", "photos"):
        saved = json.loads((tmp_path / f"b/reports/registry/{dataset}_promotion.json").read_text())
        assert saved["reason"] == made_shuffled[f"{dataset} round 2"]["reason"]
    crops = json.loads((tmp_path / "b/artifacts/photos/splits.json").read_text())
    assert crops["subjects"]["test"] == ["PD"] and len(crops["test"]) == 4  # swapped, kept
