"""Camera conditions of the robustness suite: each a fixed, seeded change that says where the
face went."""

from __future__ import annotations

import numpy as np
import pytest

from emowatch.evaluation import conditions
from emowatch.inference import faces
from tests.conftest import ASTRONAUT_FACE, astronaut_rgb


def gray() -> np.ndarray:
    rgb = astronaut_rgb()
    return (rgb @ np.array([0.299, 0.587, 0.114])).round().astype(np.uint8)


@pytest.mark.parametrize("name", conditions.CONDITIONS)
def test_each_condition_is_seeded_changes_the_photo_and_keeps_the_face_in_view(name):
    image = gray()
    out, box = conditions.apply(name, image, ASTRONAUT_FACE, seed=3)
    again, _ = conditions.apply(name, image, ASTRONAUT_FACE, seed=3)
    assert np.array_equal(out, again) and out.dtype == np.uint8
    assert conditions.describe(name)
    x, y, w, h = box
    assert min(x, y) >= 0 and x + w <= out.shape[1] and y + h <= out.shape[0]
    if name == "plain":
        assert out is image and box == ASTRONAUT_FACE
    elif name in conditions.FRAMES:
        assert out.shape[::-1] == conditions.FRAMES[name]
        assert max(w, h) == conditions.SMALL_FACE
    else:
        assert out.shape == image.shape and not np.array_equal(out, image)


def test_the_small_face_is_centred_and_found_by_the_camera_sweep_only():
    from emowatch.inference.finder import FaceFinder, FinderSettings

    frame, box = conditions.apply("small_640x480", gray(), ASTRONAUT_FACE, seed=0)
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    assert abs(cx - 320) <= 1 and abs(cy - 240) <= 1
    assert faces.HaarDetector(max_side=320)(frame) == []  # too small at 320 px
    sweep = FaceFinder(faces.HaarDetector(), FinderSettings(min_face=48)).sweep(frame)
    assert any(faces.iou(f.box, box) >= 0.3 for f in sweep)


def test_covered_and_side_light_change_the_face_where_they_say():
    image = gray()
    x, y, w, h = ASTRONAUT_FACE
    covered, _ = conditions.apply("covered", image, ASTRONAUT_FACE, 0)
    cut = y + round(h * (1 - conditions.COVER))
    assert np.array_equal(covered[:cut], image[:cut])
    assert len(np.unique(covered[cut : y + h, x : x + w])) == 1
    lit, _ = conditions.apply("side_light", image, ASTRONAUT_FACE, 0)
    assert np.array_equal(lit[:, :x], image[:, :x])  # the lit side as it was
    far = lit[:, x + w :].astype(float) / np.maximum(image[:, x + w :], 1)
    assert np.allclose(far[image[:, x + w :] > 50], conditions.FAR_SIDE, atol=0.02)


def test_an_unknown_condition_is_refused_by_name():
    with pytest.raises(ValueError, match=r"unknown condition .fog.*plain"):
        conditions.apply("fog", gray(), ASTRONAUT_FACE, 0)
