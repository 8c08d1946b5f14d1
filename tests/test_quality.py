"""Duplicate, cross-split, conflicting-label and blank-image checks."""

from __future__ import annotations

import numpy as np

from emowatch.data import quality
from emowatch.data.fer2013 import SPLITS


def test_flags_duplicates_leaks_conflicts_and_blanks():
    rng = np.random.default_rng(0)
    a, b, c = (rng.integers(0, 256, (48, 48), dtype=np.uint8) for _ in range(3))
    blank = np.zeros((48, 48), np.uint8)
    images = np.stack([a, a, b, b, c, blank])
    labels = np.array([0, 0, 3, 4, 5, 6])
    split = np.array([0, 2, 0, 0, 1, 0])  # a: train+test; b: train twice, two labels
    f = quality.inspect(images, labels, split, blank_max_std=1.0)
    assert f.duplicate.tolist() == [True, True, True, True, False, False]
    assert f.cross_split.tolist() == [True, True, False, False, False, False]
    assert f.conflicting.tolist() == [False, False, True, True, False, False]
    assert f.blank.tolist() == [False] * 5 + [True]

    groups = quality.duplicate_groups(f, labels, split, [f"row {i}" for i in range(6)], SPLITS)
    assert len(groups) == 2
    by_first = {g["where"][0]: g for g in groups}
    assert by_first["row 0"]["splits"] == ["test", "train"] and by_first["row 0"]["cross_split"]
    assert by_first["row 2"]["labels"] == [3, 4] and by_first["row 2"]["conflicting"]
