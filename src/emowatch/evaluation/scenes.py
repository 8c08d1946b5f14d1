"""Camera scenes made from real face photos: for the watcher's benchmark and tests, and the
customer visits of `evaluation.scenarios`.

A photo is scaled so that its face box (as the Haar cascade finds it at full resolution) has
the asked side in the scene's pixels, and pasted onto a plain background of the camera's size,
drifting a few pixels per frame as a customer at a counter does. The true face boxes come with
each frame, so a finder can be scored: a frame counts as found when a found box overlaps the
true one (IoU ≥ 0.3).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from emowatch.evaluation.conditions import reference_box
from emowatch.inference.faces import Box


@dataclass(frozen=True)
class Portrait:
    """A grayscale photo and its face box in it."""

    image: np.ndarray
    box: Box


def portrait(gray: np.ndarray) -> Portrait:
    """The photo with its true face box (`conditions.reference_box`)."""
    box = reference_box(gray)
    if box is None:
        raise ValueError("no face in this photo")
    return Portrait(gray, box)


def scaled(p: Portrait, face_side: int) -> Portrait:
    """The photo resized so its face box side is `face_side` pixels."""
    s = face_side / max(p.box[2], p.box[3])
    size = (max(1, round(p.image.shape[1] * s)), max(1, round(p.image.shape[0] * s)))
    interpolation = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    image = cv2.resize(p.image, size, interpolation=interpolation)
    return Portrait(image, tuple(round(v * s) for v in p.box))  # type: ignore[arg-type]


def paste(canvas: np.ndarray, image: np.ndarray, x: int, y: int) -> None:
    """Draw `image` onto `canvas` with its top left corner at (x, y), cut at the canvas edges."""
    h, w = canvas.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(w, x + image.shape[1]), min(h, y + image.shape[0])
    if x1 > x0 and y1 > y0:
        canvas[y0:y1, x0:x1] = image[y0 - y : y1 - y, x0 - x : x1 - x]


def frames(
    people: list[Portrait], face_side: int, size: tuple[int, int], n: int, background: int = 100
) -> Iterator[tuple[np.ndarray, list[Box]]]:
    """`n` BGR frames of `size` (w, h) with each person's face `face_side` px, side by side and
    drifting; yields (frame, true face boxes)."""
    w, h = size
    placed = [scaled(p, face_side) for p in people]
    slot = w // max(1, len(placed))
    for i in range(n):
        canvas = np.full((h, w), background, np.uint8)
        boxes = []
        for j, p in enumerate(placed):
            ph, pw = p.image.shape
            dx = int(0.1 * face_side * np.sin(i / 8 + j))
            x = max(0, min(w - pw, j * slot + (slot - pw) // 2 + dx))
            y = max(0, (h - ph) // 2)
            paste(canvas, p.image, x, y)
            boxes.append((x + p.box[0], y + p.box[1], p.box[2], p.box[3]))
        yield cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR), boxes
