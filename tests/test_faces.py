"""Face detection and crop geometry."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from emowatch.inference import faces
from tests.conftest import ASTRONAUT_FACE, astronaut_rgb


def grey(rgb):
    return np.asarray(Image.fromarray(rgb).convert("L"))


def overlap(a, b):
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


def test_haar_finds_the_astronaut_at_full_and_reduced_resolution():
    gray = grey(astronaut_rgb())
    (full,) = faces.HaarDetector(max_side=None)(gray)
    assert overlap(full.box, ASTRONAUT_FACE) > 0.8 and full.score > 0
    (small,) = faces.HaarDetector(max_side=256, min_size=20)(
        gray
    )  # boxes come back in input pixels
    assert overlap(small.box, ASTRONAUT_FACE) > 0.6


def test_blank_image_has_no_face():
    assert faces.HaarDetector()(np.full((200, 200), 128, np.uint8)) == []


def test_expand_box_squares_grows_and_clamps():
    assert faces.expand_box((100, 100, 40, 60), 0.0, (500, 500)) == (90, 100, 60, 60)
    assert faces.expand_box((100, 100, 50, 50), 0.2, (500, 500)) == (90, 90, 70, 70)
    assert faces.expand_box((0, 0, 50, 50), 0.5, (60, 500)) == (0, 0, 75, 60)


def test_crop_resizes_to_square():
    gray = grey(astronaut_rgb())
    out = faces.crop(gray, faces.expand_box(ASTRONAUT_FACE, 0.2, gray.shape), 48)
    assert out.shape == (48, 48) and out.dtype == np.uint8


def test_largest_and_builder():
    small, big = faces.Face((0, 0, 10, 10)), faces.Face((0, 0, 20, 20))
    assert faces.largest([small, big]) is big and faces.largest([]) is None
    detector = faces.build_detector(OmegaConf.create({"name": "haar", "min_neighbors": 3}))
    assert isinstance(detector, faces.HaarDetector) and detector.min_neighbors == 3
    with pytest.raises(ValueError, match="unknown detector"):
        faces.build_detector(OmegaConf.create({"name": "nope"}))


def test_missing_cascade_fails_clearly():
    with pytest.raises(RuntimeError, match="cannot load the Haar cascade"):
        faces.HaarDetector(cascade="no_such_cascade.xml")
