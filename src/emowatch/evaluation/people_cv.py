"""Evidence from every person: a photos model scored by subject-wise cross-validation.

A photos model's val people hold a handful of angry faces: too few to prove a floor. Here every
non-test person is held out once. scikit-learn's GroupKFold cuts the people into folds; the
model of fold i is a full seeded fine-tune from the FER2013 start on the people of every other
fold but one, the next (i + 1), whose people stop it early; so the held-out people steer nothing
in the model that scores them. Their full photos then run the camera path, and the out-of-fold
(OOF) scores of all folds are pooled (`stages/crossval`). From the pool:

- the angry threshold is fitted on every OOF score (the deployed photos model's threshold), and
  its figures are cross-fitted by fold: each fold decided at the threshold fitted on the others;
- recall and precision on angry come with Wilson intervals, and a floor is met only when the
  interval's lower end reaches it; `angry_photos_needed` says how many more angry photos, at the
  recall seen, would prove it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig
from sklearn.model_selection import GroupKFold

from emowatch.config import resolve_path
from emowatch.errors import DataError
from emowatch.evaluation.paired import wilson
from emowatch.inference.threshold import choose_threshold, predict_with_threshold

MIN_FOLDS = 3  # a fold's model needs people to train on, to stop on, and to be scored on


def reports_dir(cfg: DictConfig, model: str, root: Path | None = None) -> Path:
    """Where the crossval stage of photos model `model` writes oof.csv and folds.json."""
    return resolve_path(cfg.evaluate.people_cv.dir, root) / "photos" / model


def state_dir(cfg: DictConfig, model: str, root: Path | None = None) -> Path:
    """Its finished folds, kept so that a killed stage resumes."""
    return resolve_path(cfg.evaluate.people_cv.state_dir, root) / "photos" / model


@dataclass(frozen=True)
class Fold:
    """The people (or, without person ids, the photos) of one fold, by role."""

    index: int
    train: list[str]
    stop: list[str]  # early stopping and the checkpoint choice
    held: list[str]  # scored out of fold


def plan(groups: Sequence[str], n_folds: int) -> list[Fold]:
    """The folds over `groups` (one entry per face: its person): GroupKFold into
    min(n_folds, people) parts; fold i holds part i out and stops on part i + 1. A pure function
    of the groups: every model of a run is cut the same way."""
    people = sorted(set(groups))
    k = min(n_folds, len(people))
    if k < MIN_FOLDS:
        raise DataError(
            f"cross-validation by person needs >= {MIN_FOLDS} non-test people, found "
            f"{len(people)} ({', '.join(people)}): add photos of more people"
        )
    codes = np.array([people.index(g) for g in groups])
    parts = [
        sorted({people[c] for c in codes[held]})
        for _, held in GroupKFold(n_splits=k).split(codes, groups=codes)
    ]
    return [
        Fold(
            i,
            sorted(p for j, part in enumerate(parts) if j not in (i, (i + 1) % k) for p in part),
            parts[(i + 1) % k],
            parts[i],
        )
        for i in range(k)
    ]


def fitted_threshold(probs: np.ndarray, y: np.ndarray, angry: int, target: float) -> float:
    """The threshold on P(angry) of the found faces (rows without NaN) reaching `target` recall
    with the best precision (`inference.threshold.choose_threshold`); infinity (never angry)
    where no angry face was found at all: such an option catches nothing."""
    found = ~np.isnan(probs[:, angry])
    if not (y[found] == angry).any():
        return math.inf
    return choose_threshold(probs[found, angry], y[found] == angry, target).threshold


def decide(probs: np.ndarray, angry: int, threshold: float) -> np.ndarray:
    """Predicted class per photo at the threshold rule; -1 where no face was found."""
    found = ~np.isnan(probs[:, angry])
    pred = np.full(len(probs), -1, dtype=np.int64)
    if found.any():
        pred[found] = predict_with_threshold(probs[found], angry, threshold)
    return pred


def cross_fitted(
    probs: np.ndarray, y: np.ndarray, folds: np.ndarray, angry: int, target: float
) -> np.ndarray:
    """Each fold's photos decided at the threshold fitted on the other folds' OOF scores."""
    pred = np.full(len(y), -1, dtype=np.int64)
    for f in np.unique(folds):
        mine = folds == f
        t = fitted_threshold(probs[~mine], y[~mine], angry, target)
        pred[mine] = decide(probs[mine], angry, t)
    return pred


def angry_photos_needed(
    caught: int, n_angry: int, floor: float, confidence: float, most: int = 10_000
) -> int | None:
    """How many more angry photos, caught at the recall seen, would lift the lower end of the
    recall's Wilson interval to `floor`: 0 when it is there, None when the recall seen is not
    above the floor (no number of photos proves it then)."""
    if n_angry == 0 or caught / n_angry <= floor:
        return None
    rate = caught / n_angry
    for more in range(most + 1):
        n = n_angry + more
        if wilson(round(rate * n), n, confidence)[0] >= floor:
            return more
    return None


def pooled(rows: list[dict], classes: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probabilities, NaN rows where no face was found; label indices; folds) of OOF records
    (`stages/crossval` rows of one CLAHE and TTA option)."""
    probs = np.array(
        [[float(r[f"p_{c}"]) if r[f"p_{c}"] not in (None, "") else np.nan for c in classes]
         for r in rows],
        dtype=np.float64,
    ).reshape(len(rows), len(classes))  # fmt: skip
    y = np.array([classes.index(r["label"]) for r in rows], dtype=np.int64)
    folds = np.array([int(r["fold"]) for r in rows], dtype=np.int64)
    return probs, y, folds


def evidence(rows: list[dict], classes: list[str], target: float) -> tuple[float, list[dict]]:
    """(the threshold fitted on every OOF score, each photo's record decided at its fold's
    cross-fitted threshold), the records in `evaluation.deployed`'s form (part `decide`)."""
    probs, y, folds = pooled(rows, classes)
    angry = classes.index("angry")
    threshold = fitted_threshold(probs, y, angry, target)
    pred = cross_fitted(probs, y, folds, angry, target)
    records = [
        {
            "file": r["file"],
            "person": r["person"],
            "part": "decide",
            "label": r["label"],
            "status": r["status"],
            "predicted": classes[p] if p >= 0 else None,
            "p_angry": None if np.isnan(pa) else round(float(pa), 5),
            "fold": int(f),
        }
        for r, p, pa, f in zip(rows, pred, probs[:, angry], folds, strict=True)
    ]
    return threshold, records
