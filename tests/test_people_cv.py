"""Evidence from every person: the fold plan, the out-of-fold threshold and figures, the photos
needed to prove a floor, and the crossval stage on tiny people photos."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from emowatch.errors import DataError
from emowatch.evaluation import people_cv
from emowatch.evaluation.paired import wilson
from emowatch.stages import crop_faces, crossval, evaluate, train
from tests.conftest import make_people_photos

PEOPLE = {"PA": "train", "PB": "train", "PC": "val", "PE": "val", "PD": "test"}
PINS = "data.photos.split.pinned={train: [PA, PB], val: [PC, PE], test: [PD]}"


def test_every_person_is_held_out_once_and_steers_nothing_in_their_fold():
    groups = [p for p in "ABCDEFGH" for _ in range(3)]
    folds = people_cv.plan(groups, 4)
    assert len(folds) == 4
    held = [p for f in folds for p in f.held]
    assert sorted(held) == list("ABCDEFGH")  # each person held out exactly once
    for f in folds:
        assert not set(f.held) & (set(f.train) | set(f.stop))
        assert not set(f.stop) & set(f.train) and f.train and f.stop
        assert set(f.train) | set(f.stop) | set(f.held) == set("ABCDEFGH")
    assert people_cv.plan(list(reversed(groups)), 4) == folds  # a function of the people


def test_too_few_people_for_cross_validation_is_a_clear_error():
    with pytest.raises(DataError, match=r"needs >= 3 non-test people, found 2 \(A, B\)"):
        people_cv.plan(["A", "A", "B"], 4)
    assert len(people_cv.plan(["A", "B", "C"], 5)) == 3  # fewer folds with fewer people


def test_each_fold_is_decided_at_the_threshold_fitted_on_the_others():
    rng = np.random.default_rng(0)
    y = np.array([0, 1, 2] * 8)
    probs = rng.dirichlet(np.ones(3), len(y))
    probs[y == 0, 0] += 0.5  # angry faces score higher
    probs /= probs.sum(axis=1, keepdims=True)
    probs[5] = np.nan  # no face found: counted, never decided
    folds = np.repeat(np.arange(4), 6)
    pred = people_cv.cross_fitted(probs, y, folds, 0, 0.8)
    assert pred[5] == -1
    for f in range(4):
        others = folds != f
        t = people_cv.fitted_threshold(probs[others], y[others], 0, 0.8)
        assert np.array_equal(pred[folds == f], people_cv.decide(probs[folds == f], 0, t))
    # Changing a fold's own scores changes no other fold's threshold's input: only its own
    # decisions may move.
    moved = probs.copy()
    moved[folds == 0, 0] = 0.0
    again = people_cv.cross_fitted(moved, y, folds, 0, 0.8)
    for f in (1, 2, 3):
        t = people_cv.fitted_threshold(moved[folds != f], y[folds != f], 0, 0.8)
        assert np.array_equal(again[folds == f], people_cv.decide(moved[folds == f], 0, t))


def test_angry_photos_needed_is_the_least_that_proves_the_floor():
    assert people_cv.angry_photos_needed(6, 6, 0.5, 0.95) == 0  # lower bound 0.61 already
    assert people_cv.angry_photos_needed(3, 6, 0.5, 0.95) is None  # 0.5 never proves > 0.5
    assert people_cv.angry_photos_needed(0, 0, 0.5, 0.95) is None
    more = people_cv.angry_photos_needed(5, 6, 0.5, 0.95)
    assert more is not None and more > 0
    rate = 5 / 6
    n = 6 + more
    assert wilson(round(rate * n), n)[0] >= 0.5
    assert wilson(round(rate * (n - 1)), n - 1)[0] < 0.5


def test_crossval_and_evaluate_judge_photos_models_out_of_fold(tiny_fer):
    cfg = tiny_fer(PINS, "train.photos.max_epochs=2", "train.photos.batch_size=4")
    make_people_photos(Path(cfg.paths.data_dir), Path(cfg.data.photos.splits), PEOPLE)
    crop_faces.main(cfg)
    train.main(cfg, "fer2013", "cnn1")  # the photos models' start
    summary = crossval.main(cfg, "cnn1")
    folds = summary["folds"]
    assert sorted(p for f in folds for p in f["held"]) == ["PA", "PB", "PC", "PE"]
    assert all("PD" not in f["train"] + f["stop"] + f["held"] for f in folds)  # test: never
    out = people_cv.reports_dir(cfg, "cnn1") / "oof.csv"
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    fold_of = {p: f["fold"] for f in folds for p in f["held"]}
    assert {r["person"] for r in rows} == {"PA", "PB", "PC", "PE"}
    assert all(int(r["fold"]) == fold_of[r["person"]] for r in rows)
    options = {(r["clahe"], r["tta"]) for r in rows}
    assert options == {(c, t) for c in ("False", "True") for t in ("none", "hflip")}
    # 4 people x 4 photos, each option once, as they are and under each CLAHE condition
    assert {r["condition"] for r in rows} == {"plain", "dim", "side_light"}
    for condition in ("plain", "dim", "side_light"):
        assert len([r for r in rows if r["condition"] == condition]) == 4 * 4 * len(options)
    before = out.read_bytes()
    crossval.main(cfg, "cnn1")  # a rerun keeps every finished fold
    assert out.read_bytes() == before

    train.main(cfg, "photos", "cnn1")
    m = evaluate.main(cfg, "photos", "cnn1")
    d = m["deployed"]
    assert d["people"] == {"decide": ["PA", "PB", "PC", "PE"], "report": ["PD"]}
    assert d["evidence"]["folds"] == 4 and d["decide"]["n"] == 16 and d["report"]["n"] == 4
    chosen = [
        r
        for r in rows
        if r["tta"] == m["tta"]["chosen"]
        and r["clahe"] == str(d["clahe"]["chosen"])
        and r["condition"] == "plain"
    ]
    threshold, records = people_cv.evidence(chosen, ["angry", "happy", "sad", "neutral"], 0.8)
    assert m["threshold_angry"] == threshold  # fitted on the out-of-fold scores
    caught = sum(r["label"] == r["predicted"] == "angry" for r in records)
    assert d["decide"]["angry_caught"] == caught and d["decide"]["n_angry"] == 4
    low, high = wilson(caught, 4)
    assert (d["decide"]["recall_angry_low"], d["decide"]["recall_angry_high"]) == (low, high)


def test_too_few_people_is_said_and_leaves_the_photos_model_without_evidence(tiny_fer):
    """Three people (one per split): nobody to cross-validate on. crossval says why, evaluate
    falls back to the val people with the evidence flagged, and the tags carry the reason that
    the gate refuses on (tests/test_registry.py)."""
    few = {"PA": "train", "PC": "val", "PD": "test"}
    cfg = tiny_fer(
        "data.photos.split.pinned={train: [PA], val: [PC], test: [PD]}",
        "train.photos.max_epochs=1",
        "train.photos.batch_size=4",
    )
    photos = Path(cfg.data.photos.root)
    for f in photos.glob("*/PB.*"):
        f.unlink()  # tiny_fer's fourth person
    make_people_photos(Path(cfg.paths.data_dir), Path(cfg.data.photos.splits), few)
    crop_faces.main(cfg)
    train.main(cfg, "fer2013", "cnn1")
    said = crossval.main(cfg, "cnn1")
    assert "needs >= 3 non-test people, found 2 (PA, PC)" in said["insufficient"]
    assert all(p.exists() for p in crossval.outputs(cfg, "cnn1"))
    train.main(cfg, "photos", "cnn1")
    m = evaluate.main(cfg, "photos", "cnn1")
    assert m["deployed"]["evidence"] == {"insufficient": said["insufficient"]}
    assert m["threshold_angry"] == m["val"]["threshold_angry"]  # val decides, as before
    from emowatch.tracking import registry

    tags = registry.version_tags(
        {"metrics": m, "model": "cnn1", "train_run": "r", "spec": {}, "weights_md5": "x"}
    )
    assert tags["deployed_insufficient"] == said["insufficient"]


def test_the_results_page_says_what_the_evidence_proves():
    from emowatch.stages.report import people_lines

    def metrics(caught: int, n: int, needed: int | None) -> dict:
        low, high = wilson(caught, n)
        decide = {"angry_caught": caught, "n_angry": n, "recall_angry_low": low}
        person = {"n": 4, "face_rate": 1.0, "accuracy": 0.5, "angry_caught": 1, "n_angry": 1}
        return {
            "deployed": {
                "decide": decide | {"recall_angry_high": high},
                "evidence": {
                    "folds": 4,
                    "by": "person",
                    "people": 8,
                    "threshold": "fitted out of fold",
                    "floor": 0.5,
                    "angry_photos_needed": needed,
                },
                "per_person": {"KA": person | {"part": "decide", "said_angry": 2}},
            }
        }

    proven = people_lines("cnn3", metrics(22, 24, 0))
    assert "4 folds over 8 people" in proven[0] and "reaches the floor 0.5" in proven[0]
    assert "| KA | out of fold | 4 | 1.00 | 0.50 | 1 of 1 | 2 |" in proven
    short = people_lines("cnn1", metrics(5, 6, 9))
    assert "about 9 more angry photos" in short[0]
    assert "no number of photos" in people_lines("cnn2", metrics(2, 6, None))[0]
    said = people_lines("cnn1", {"deployed": {"evidence": {"insufficient": "found 2 (PA, PC)"}}})
    assert said[0] == "cnn1: no out-of-fold evidence (found 2 (PA, PC))."
