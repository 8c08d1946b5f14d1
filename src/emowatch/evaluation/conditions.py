"""Camera conditions: what a counter's camera does to a face that evenly lit photos do not.

Each condition is a fixed, seeded change of a grayscale photo whose face box is known (the
reference box), returning the changed image and where the face now is, so that a detector and
the camera path can be scored under it: light (dim, light from one side), motion and defocus
blur, sensor noise, JPEG blocks, a tilted head, a face partly covered, and a small face in a
whole camera frame (48 px at 640×480 and at 1920×1080). The image changes are albumentations'
own at one fixed strength each (`STRENGTH` says which), so a table row means one thing.
"""

from __future__ import annotations

from collections.abc import Callable

import albumentations as A
import cv2
import numpy as np

from emowatch.inference.faces import Box, HaarDetector, largest

# name -> (what it is, the albumentations transform at its fixed strength)
STRENGTH: dict[str, tuple[str, Callable[[], A.BasicTransform]]] = {
    "dim": ("gamma 2.5 (shadows crushed)", lambda: A.RandomGamma((250, 250), p=1)),
    "motion_blur": ("motion blur, 9 px kernel", lambda: A.MotionBlur((9, 9), False, p=1)),
    "defocus": ("defocus blur, radius 3", lambda: A.Defocus((3, 3), (0.1, 0.1), p=1)),
    "noise": ("sensor noise, σ 8% of range", lambda: A.GaussNoise((0.08, 0.08), p=1)),
    "jpeg": ("JPEG quality 15", lambda: A.ImageCompression("jpeg", (15, 15), p=1)),
    "tilt": (
        "head tilted 20°",
        lambda: A.Rotate((20, 20), border_mode=cv2.BORDER_REPLICATE, p=1),
    ),
}
FRAMES = {"small_640x480": (640, 480), "small_1920x1080": (1920, 1080)}
SMALL_FACE = 48  # face side in the frame's pixels for the FRAMES conditions
COVER = 0.4  # the covered condition hides the lower share of the face box (a hand, a scarf)
FAR_SIDE = 0.3  # side_light: the brightness left on the face's far side
CONDITIONS = ("plain", "dim", "side_light", *list(STRENGTH)[1:], "covered", *FRAMES)


def reference_box(gray: np.ndarray) -> Box | None:
    """The photo's true face box, as every condition and scene takes it: the largest face the
    Haar cascade finds at full resolution (None: no face)."""
    face = largest(HaarDetector(max_side=None)(gray))
    return face.box if face is not None else None


def describe(name: str) -> str:
    """One line saying what the condition does."""
    if name in STRENGTH:
        return STRENGTH[name][0]
    if name in FRAMES:
        w, h = FRAMES[name]
        return f"the photo scaled so the face is {SMALL_FACE} px, centred in a {w}×{h} frame"
    if name == "covered":
        return f"the lower {COVER:.0%} of the face covered (mouth and chin)"
    if name == "side_light":
        return f"lit from the image's left: brightness falls to {FAR_SIDE:.0%} across the face"
    if name == "plain":
        return "the photo as it is"
    raise ValueError(f"unknown condition {name!r} (known: {', '.join(CONDITIONS)})")


def apply(name: str, gray: np.ndarray, box: Box, seed: int) -> tuple[np.ndarray, Box]:
    """The photo under condition `name` (seeded) and the face's box in the result."""
    describe(name)  # an unknown name: ValueError
    if name == "plain":
        return gray, box
    if name == "covered":
        x, y, w, h = box
        out = gray.copy()
        out[y + round(h * (1 - COVER)) : y + h, x : x + w] = int(np.median(gray))
        return out, box
    if name == "side_light":
        x, _, w, _ = box
        ramp = np.clip(1 - (1 - FAR_SIDE) * (np.arange(gray.shape[1]) - x) / max(w, 1), FAR_SIDE, 1)
        return (gray * ramp[None, :]).round().astype(np.uint8), box
    if name in FRAMES:
        return in_frame(gray, box, SMALL_FACE, FRAMES[name])
    transform = STRENGTH[name][1]()
    if not isinstance(transform, A.DualTransform):  # pixels only: the face stays where it was
        return A.Compose([transform], seed=seed)(image=gray)["image"], box
    moving = A.Compose([transform], bbox_params=A.BboxParams("coco", label_fields=[]), seed=seed)
    out = moving(image=gray, bboxes=np.array([box], dtype=np.float32))
    moved = tuple(round(float(v)) for v in out["bboxes"][0])
    return out["image"], moved  # type: ignore[return-value]


def in_frame(
    gray: np.ndarray, box: Box, side: int, size: tuple[int, int], background: int = 100
) -> tuple[np.ndarray, Box]:
    """The photo scaled so its face box has `side` px, the face centred in a frame of `size`
    (w, h) filled with `background` elsewhere; returns the frame and the face's box in it."""
    x, y, w, h = box
    s = side / max(w, h)
    small = cv2.resize(
        gray,
        (max(1, round(gray.shape[1] * s)), max(1, round(gray.shape[0] * s))),
        interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
    )
    sx, sy = small.shape[1] / gray.shape[1], small.shape[0] / gray.shape[0]
    fw, fh = size
    dx, dy = round(fw / 2 - sx * (x + w / 2)), round(fh / 2 - sy * (y + h / 2))
    m = np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float64)
    frame = cv2.warpAffine(small, m, size, flags=cv2.INTER_NEAREST, borderValue=background)
    return frame, (round(sx * x) + dx, round(sy * y) + dy, round(sx * w), round(sy * h))
