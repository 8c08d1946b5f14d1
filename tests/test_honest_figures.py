"""Cross-fitting on val, the paired bootstrap, the TTA rule and deployed-path figures, on
synthetic data whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from emowatch.evaluation import crossfit, deployed, paired
from emowatch.evaluation.paired import wilson
from emowatch.inference.predict import choose_tta
from emowatch.inference.threshold import angry_scores, choose_threshold, predict_with_threshold


def noisy_probs(n: int, seed: int, signal: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Two-class scores (0 = angry) where angry faces score higher by `signal` on average."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.7).astype(int)  # 30% angry
    logit = rng.normal(0, 1, n) + signal * (y == 0)
    p = 1 / (1 + np.exp(-logit))
    return np.stack([p, 1 - p], axis=1), y


def test_cross_fitted_figures_are_not_flattered_like_in_sample_ones():
    # Pure noise: any threshold fitted on these faces "reaches" the target recall there, but
    # decided on held-out folds the recall falls back to what the noise allows.
    gaps = []
    for seed in range(20):
        probs, y = noisy_probs(200, seed, signal=0.0)
        point = choose_threshold(probs[:, 0], y == 0, 0.8)
        in_sample, _ = angry_scores(predict_with_threshold(probs, 0, point.threshold), y, 0)
        parts = crossfit.folds(y == 0, None, 5, seed)
        oof, _ = angry_scores(crossfit.out_of_fold(probs, y, 0, 0.8, parts), y, 0)
        assert in_sample >= 0.8
        gaps.append(in_sample - oof)
    assert np.mean(gaps) > 0  # in-sample recall is optimistic on average


def test_folds_cover_val_once_and_keep_people_whole():
    y = np.array([0, 1, 1, 0, 1, 1, 0, 1, 1, 0, 1, 1])
    people = np.repeat(["A", "B", "C", "D"], 3)
    parts = crossfit.folds(y == 0, people, 5, 0)
    assert len(parts) == 4  # no more folds than people with an angry face
    assert sorted(np.concatenate(parts).tolist()) == list(range(12))
    for held in parts:
        assert len(set(people[held])) == 1
    assert len(crossfit.folds(y == 0, None, 5, 0)) == 4  # no more folds than angry faces
    with pytest.raises(ValueError, match=">= 2 angry"):
        crossfit.folds(np.array([True, False, False]), None, 5, 0)


def test_paired_bootstrap_separates_a_real_difference_from_noise():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 2000)
    right = rng.random(2000) < 0.70
    pred_a = np.where(right, y, (y + 1) % 3)
    pred_b = pred_a.copy()
    worse_on, better_on = np.flatnonzero(right)[:10], np.flatnonzero(~right)[:8]
    pred_b[worse_on] = (y[worse_on] + 1) % 3  # b is wrong where a was right on 10 faces
    pred_b[better_on] = y[better_on]  # and right where a was wrong on 8
    tiny = paired.compare(y, pred_b, pred_a, paired.accuracy, n_boot=1000)
    assert tiny["diff"] == pytest.approx(-0.001) and tiny["low"] < 0 <= tiny["high"]
    much_worse = pred_a.copy()
    idx = np.flatnonzero(right)[:200]
    much_worse[idx] = (y[idx] + 1) % 3
    r = paired.compare(y, much_worse, pred_a, paired.accuracy, n_boot=1000)
    assert r["diff"] == pytest.approx(-0.1) and r["high"] < 0
    # paired: identical decisions give a zero-width interval, whatever the accuracy
    same = paired.compare(y, pred_a, pred_a, paired.accuracy, n_boot=200)
    assert same["low"] == same["high"] == 0.0


def test_paired_angry_metrics():
    y = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, 0, 1, 2])
    m = paired.metrics_for(0)
    assert m["recall_angry_at_threshold"](y[None], pred[None])[0] == pytest.approx(2 / 3)
    assert m["precision_angry_at_threshold"](y[None], pred[None])[0] == pytest.approx(2 / 3)
    assert m["accuracy_at_threshold"](y[None], pred[None])[0] == pytest.approx(4 / 6)


def test_tta_rule_needs_the_margin_on_val():
    y = np.array([0, 1, 0, 1] * 50)
    good = np.eye(2)[y].astype(float)
    worse = good.copy()
    worse[:2] = worse[:2, ::-1]  # 2 of 200 wrong: 0.99
    chosen, acc = choose_tta({"none": worse, "hflip": good}, y, margin=0.005)
    assert chosen == "hflip" and acc == {"none": 0.99, "hflip": 1.0}
    chosen, _ = choose_tta({"none": worse, "hflip": good}, y, margin=0.02)
    assert chosen == "none"  # +0.01 on val does not pay for a second forward pass
    with pytest.raises(ValueError, match="none"):
        choose_tta({"hflip": good}, y, 0.0)


def test_deployed_figures_count_missed_faces_as_misses():
    def rec(person, part, label, predicted):
        return {"person": person, "part": part, "label": label, "predicted": predicted}

    records = [
        rec("A", "decide", "angry", "angry"),
        rec("A", "decide", "angry", None),  # no face found: an angry customer missed
        rec("A", "decide", "happy", "angry"),  # a false alarm
        rec("A", "decide", "happy", "happy"),
        rec("B", "report", "angry", "sad"),
    ]
    s = deployed.summary(records)
    assert s["decide"] == {
        "n": 4,
        "face_rate": 0.75,
        "accuracy": 0.5,
        "n_angry": 2,
        "angry_caught": 1,
        "recall_angry": 0.5,
        "said_angry": 2,
        "precision_angry": 0.5,
        # 1 of 2 says little: 95% Wilson intervals, which the floors and the site model read
        "recall_angry_low": pytest.approx(wilson(1, 2)[0]),
        "recall_angry_high": pytest.approx(wilson(1, 2)[1]),
        "precision_angry_low": pytest.approx(wilson(1, 2)[0]),
        "precision_angry_high": pytest.approx(wilson(1, 2)[1]),
    }
    assert s["decide"]["recall_angry_low"] < 0.1 < 0.9 < s["decide"]["recall_angry_high"]
    assert s["report"]["recall_angry"] == 0.0 and s["people"] == {"decide": ["A"], "report": ["B"]}
    assert s["per_person"]["B"]["part"] == "report"


def test_a_val_too_small_to_cross_fit_is_flagged_not_hidden():
    from omegaconf import OmegaConf

    from emowatch.stages.evaluate import operating_point

    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.1, 0.9]])
    y = np.array([0, 1, 1, 1])  # one angry face: nothing can be held out
    ecfg = OmegaConf.create({"target_recall": 0.8, "crossfit_folds": 5})
    val = operating_point(probs, y, ["angry", "happy"], None, ecfg, seed=0)
    assert val["crossfit"]["folds"] == 0 and val["crossfit"]["by"].startswith("none: ")
    assert val["recall_angry_at_threshold"] == val["fitted"]["recall_angry_at_threshold"] == 1.0


def test_photos_without_person_ids_are_parted_by_photo(make_cfg, tmp_path):
    """No person ids: each photo is in the part of the split `crop_faces` gave it (test:
    reported; val: deciding for photos models), one whose face was missed in none; no person
    table, as there are no people to tell apart."""
    import json

    from emowatch.layout import Layout

    cfg = make_cfg("data.photos.subject_regex=null")
    for rel in ("angry/a1.png", "angry/a2.png", "happy/h1.png", "happy/h2.png", "sad/x.png"):
        (tmp_path / "data/photos" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "data/photos" / rel).write_bytes(b"")
    lists = {"by_subject": False, "subjects": {}, "classes": ["angry", "happy"]}
    lists |= {"train": [{"file": "angry/a1.png"}], "val": [{"file": "happy/h1.png"}]}
    lists |= {"test": [{"file": "angry/a2.png"}]}
    splits = Layout(cfg).photo_splits
    splits.parent.mkdir(parents=True, exist_ok=True)
    splits.write_text(json.dumps(lists))
    parts = {p.file: p.part for p in deployed.photo_set(cfg, ["angry", "happy"], ["val"])}
    assert parts == {
        "angry/a1.png": deployed.UNASSIGNED,  # train: neither decides nor reports
        "angry/a2.png": deployed.REPORT,
        "happy/h1.png": deployed.DECIDE,
        "happy/h2.png": deployed.UNASSIGNED,  # its face was missed: in no split
    }
    records = [
        {"person": "?", "part": p, "label": f.split("/")[0], "predicted": "angry"}
        for f, p in parts.items()
    ]
    s = deployed.summary(records)
    assert s["per_person"] == {} and s["people"] == {"decide": [], "report": []}
    assert s["report"]["angry_caught"] == 1 and s["unassigned"] == 2
