"""Duplicate, cross-split, conflicting-label and blank-image checks."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

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


def test_perceptual_hash_finds_near_copies_and_keeps_different_faces_apart():
    from tests.conftest import astronaut_rgb

    face = astronaut_rgb()[64:162, 174:272].mean(axis=2).astype(np.uint8)
    face = np.asarray(Image.fromarray(face).resize((48, 48)))
    brighter = np.clip(face.astype(int) + 6, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(face).save(buf, format="JPEG", quality=70)
    reencoded = np.asarray(Image.open(buf))
    rng = np.random.default_rng(0)
    others = rng.integers(0, 256, (50, 48, 48)).astype(np.uint8)
    h = quality.phash(np.stack([face, brighter, reencoded, *others]))
    dist, idx = quality.nearest(h[1:3], h[:1])
    assert dist.max() <= 4 and (idx == 0).all()
    far, _ = quality.nearest(h[:1], h[3:])
    assert far[0] > 16  # nothing random comes near a face


def test_split_pairs_count_exact_and_near_per_pair():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 200, (6, 48, 48)).astype(np.uint8)
    images[3] = images[0]  # val holds a byte copy of train 0
    images[5] = np.clip(images[4].astype(int) + 2, 0, 255)  # test holds a near copy of val 4
    split = np.array([0, 0, 1, 1, 1, 2])
    labels = np.zeros(6, int)
    found = quality.inspect(images, labels, split, blank_max_std=1.0)
    pairs = quality.split_pairs(
        found, quality.phash(images), split, [f"r{i}" for i in range(6)], SPLITS, 4
    )
    by = {(p.first, p.second): p for p in pairs}
    assert np.flatnonzero(by[("train", "val")].exact).tolist() == [0]
    assert np.flatnonzero(by[("val", "test")].near).tolist() == [4]
    assert not by[("val", "test")].exact.any() and not by[("train", "test")].near.any()
    assert by[("val", "test")].examples == [{"where": "r4", "copy": "r5", "bits": 0}]
