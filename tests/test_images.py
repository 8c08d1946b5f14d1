"""Image loading: palette TIFF, EXIF orientation, 16-bit, and the two failure statuses."""

from __future__ import annotations

import numpy as np
from PIL import Image

from emowatch.data.images import NOT_AN_IMAGE, UNREADABLE, load_gray
from tests.conftest import astronaut_rgb, save_exif_rotated, save_truncated


def test_palette_tiff_loads_as_grey(tmp_path):
    path = tmp_path / "p.tiff"
    Image.fromarray(astronaut_rgb()).convert("P").save(path)
    loaded = load_gray(path)
    assert (
        loaded.status is None and loaded.gray.shape == (512, 512) and loaded.gray.dtype == np.uint8
    )


def test_exif_orientation_is_honoured(tmp_path):
    rgb = np.zeros((40, 80, 3), np.uint8)  # landscape when upright
    rgb[:, :10] = 255  # a white band on the left edge
    loaded = load_gray(save_exif_rotated(tmp_path / "r.jpg", rgb))
    assert loaded.gray.shape == (40, 80)
    assert loaded.gray[:, :8].mean() > 200 and loaded.gray[:, -20:].mean() < 30


def test_sixteen_bit_is_scaled_to_eight(tmp_path):
    path = tmp_path / "d.png"
    Image.fromarray(np.linspace(0, 60000, 64 * 64).reshape(64, 64).astype(np.uint16)).save(path)
    gray = load_gray(path).gray
    assert gray.dtype == np.uint8 and gray.min() == 0 and gray.max() == 255


def test_text_file_and_truncated_file_get_statuses(tmp_path):
    text = tmp_path / "t.jpg"
    text.write_text("hello")
    assert load_gray(text).status == NOT_AN_IMAGE
    broken = load_gray(save_truncated(tmp_path / "b.png", astronaut_rgb()))
    assert broken.status == UNREADABLE and broken.gray is None and broken.error
