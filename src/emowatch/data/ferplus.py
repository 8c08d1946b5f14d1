"""FER+ crowd labels (microsoft/FERPlus `fer2013new.csv`) as majority-vote FER2013 labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from emowatch.errors import DataError

# FER+ vote columns and the FER2013 class each one means (None: no FER2013 class).
VOTE_COLUMNS = {
    "neutral": "neutral",
    "happiness": "happy",
    "surprise": "surprise",
    "sadness": "sad",
    "anger": "angry",
    "disgust": "disgust",
    "fear": "fear",
    "contempt": None,
    "unknown": None,
    "NF": None,
}


def majority_labels(path: Path, classes: list[str]) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Return (Usage per row, label per row, drop reason per row) from the FER+ vote file.

    A row gets the class holding a strict majority (> half) of its votes. Otherwise the label is
    -1 and the reason says why: `not_a_face` (no image name, or NF wins), `no_majority`,
    `contempt` or `unknown` (majorities with no FER2013 class).
    """
    if not path.is_file():
        raise DataError(f"FER+ label file not found: {path} (run `dvc pull data.dvc`?)")
    table = pd.read_csv(path)
    missing = [c for c in ("Usage", "Image name", *VOTE_COLUMNS) if c not in table.columns]
    if missing:
        raise DataError(f"{path}: columns {missing} missing (expected microsoft/FERPlus format)")
    names = list(VOTE_COLUMNS)
    votes = table[names].to_numpy(dtype=np.int64)
    top = votes.argmax(axis=1)
    total = votes.sum(axis=1)
    has_majority = votes.max(axis=1) * 2 > total

    target = np.array([classes.index(c) if c else -1 for c in VOTE_COLUMNS.values()])
    labels = np.where(has_majority, target[top], -1)
    reasons = np.full(len(table), "", dtype=object)
    reasons[~has_majority] = "no_majority"
    for column in ("contempt", "unknown"):
        reasons[has_majority & (top == names.index(column))] = column
    not_a_face = table["Image name"].isna().to_numpy() | (has_majority & (top == names.index("NF")))
    reasons[not_a_face] = "not_a_face"
    labels[not_a_face] = -1
    return table["Usage"], labels, reasons
