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


def test_yunet_finds_the_astronaut_with_landmarks_in_input_pixels():
    gray = grey(astronaut_rgb())
    (face,) = faces.YuNetDetector(max_side=None)(gray)
    assert overlap(face.box, ASTRONAUT_FACE) > 0.5 and 0.6 <= face.score <= 1.0
    (small,) = faces.YuNetDetector(max_side=256)(gray)  # detected smaller, given back in input px
    assert overlap(small.box, face.box) > 0.7
    left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
    x, y, w, h = face.box
    assert all(x <= px <= x + w and y <= py <= y + h for px, py in face.landmarks)
    assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
    assert faces.YuNetDetector()(np.full((200, 200), 128, np.uint8)) == []


def test_yunet_skips_faces_under_its_minimum_and_keeps_a_face_cut_by_the_edge():
    gray = grey(astronaut_rgb())
    assert faces.YuNetDetector(max_side=64, min_size=40)(gray) == []
    x, _, w, _ = ASTRONAUT_FACE
    (cut,) = faces.YuNetDetector(max_side=None)(np.ascontiguousarray(gray[:, x + w // 3 :]))
    assert cut.box[0] == 0 and min(cut.box) >= 0  # the part inside the image, never negative


def test_every_detector_is_built_from_its_conf_file():
    from emowatch import config

    for name in faces.DETECTORS:
        cfg = config.compose([f"detector={name}"]).detector
        detector = faces.build_detector(cfg)
        assert isinstance(detector, faces.DETECTORS[name])
        assert set(cfg) - {"name"} == set(faces.detector_settings(name))


def test_an_aligned_crop_levels_the_eyes_and_frames_them_as_asked():
    import cv2

    image = np.full((300, 400), 100, np.uint8)
    eyes = ((150, 120), (230, 160))  # 89 px apart, the line tilted 26.6 degrees
    for ex, ey in eyes:
        cv2.circle(image, (ex, ey), 4, 255, -1)
    face = faces.Face((120, 80, 150, 150), 0.9, (*eyes, (190, 170), (160, 200), (220, 220)))
    framing = faces.Framing(eye_distance=0.375, eye_y=0.378, eye_x=0.49)
    out = faces.cut(image, face, 0.2, 192, framing)
    assert out.shape == (192, 192)
    n, _, _, centres = cv2.connectedComponentsWithStats((out > 200).astype(np.uint8))
    (lx, ly), (rx, ry) = sorted(map(tuple, centres[1:n]))
    assert abs(ly - ry) < 1.0  # level
    assert abs((rx - lx) / 192 - 0.375) < 0.01  # as far apart as asked
    assert abs((lx + rx) / 2 / 192 - 0.49) < 0.01 and abs(ly / 192 - 0.378) < 0.01
    boxed = faces.Face(face.box)  # no landmarks (Haar): the box grown by the margin, as before
    expected = faces.crop(image, faces.expand_box(face.box, 0.2, image.shape), 48)
    assert np.array_equal(faces.cut(image, boxed, 0.2, 48, framing), expected)
    assert np.array_equal(faces.cut(image, face, 0.2, 48, None), expected)  # alignment off
