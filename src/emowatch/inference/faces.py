"""Face detection and cropping, shared by the `crop_faces` stage and the live watcher.

The default detector is OpenCV's Haar cascade (`haarcascade_frontalface_default.xml`, shipped
in opencv-python-headless 4.x under `cv2.data`). Detection runs on a downscaled copy for speed;
boxes are returned in the input image's pixels. Nothing is ever drawn on the image.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from omegaconf import DictConfig

from emowatch.data.images import resize

Box = tuple[int, int, int, int]  # x, y, w, h


@dataclass(frozen=True)
class Face:
    """A detected face: box in input pixels and the detector's confidence, if it gives one."""

    box: Box
    score: float | None = None

    @property
    def area(self) -> int:
        return self.box[2] * self.box[3]


class Detector(Protocol):
    def __call__(self, gray: np.ndarray) -> list[Face]: ...


class HaarDetector:
    """OpenCV Haar cascade; `score` is the cascade's level weight (higher is surer)."""

    def __init__(
        self,
        cascade: str = "haarcascade_frontalface_default.xml",
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size: int = 30,
        max_side: int | None = 320,
        equalize: bool = False,
    ) -> None:
        path = Path(cascade)
        if not path.is_file():
            data = getattr(cv2, "data", None)
            if data is None or not hasattr(cv2, "CascadeClassifier"):
                raise RuntimeError(
                    f"OpenCV {cv2.__version__} ships no Haar cascades: install "
                    "opencv-python-headless==4.14.0.94 (see requirements.lock)"
                )
            path = Path(data.haarcascades) / cascade
        self.classifier = cv2.CascadeClassifier(str(path))
        if self.classifier.empty():
            raise RuntimeError(f"cannot load the Haar cascade {path}")
        self.scale_factor, self.min_neighbors = scale_factor, min_neighbors
        self.min_size, self.max_side, self.equalize = min_size, max_side, equalize

    def __call__(self, gray: np.ndarray) -> list[Face]:
        scale = 1.0
        small = gray
        if self.max_side and max(gray.shape) > self.max_side:
            scale = self.max_side / max(gray.shape)
            size = (round(gray.shape[1] * scale), round(gray.shape[0] * scale))
            small = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        if self.equalize:
            small = cv2.equalizeHist(small)
        rects, _, weights = self.classifier.detectMultiScale3(
            small,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size),
            outputRejectLevels=True,
        )
        faces = []
        for (x, y, w, h), weight in zip(rects, np.ravel(weights), strict=True):
            box = tuple(round(v / scale) for v in (x, y, w, h))
            faces.append(Face(box, float(weight)))  # type: ignore[arg-type]
        return faces


DETECTORS = {"haar": HaarDetector}


def detector_settings(name: str) -> list[str]:
    """The settings a detector takes (its constructor's parameters); unknown name: ValueError."""
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r} (available: {', '.join(DETECTORS)})")
    return [p for p in inspect.signature(DETECTORS[name]).parameters if p != "self"]


def installed_cascade(name: str) -> bool:
    """Whether `name` is a cascade file shipped inside the installed opencv package."""
    data = getattr(cv2, "data", None)
    return data is not None and (Path(data.haarcascades) / name).is_file()


def build_detector(cfg: DictConfig) -> Detector:
    """The detector named by `detector.name` with its parameters from config."""
    params = {k: v for k, v in cfg.items() if k != "name"}
    if cfg.name == "haar":
        return HaarDetector(**params)
    raise ValueError(f"unknown detector {cfg.name!r} (available: haar)")


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def largest(faces: list[Face]) -> Face | None:
    """The face with the largest box, or None."""
    return max(faces, key=lambda f: f.area, default=None)


def expand_box(box: Box, margin: float, shape: tuple[int, ...]) -> Box:
    """Square the box around its centre, grow each side by `margin` × size, clamp to the image."""
    x, y, w, h = box
    side = max(w, h) * (1 + 2 * margin)
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = max(0, round(cx - side / 2)), max(0, round(cy - side / 2))
    x1, y1 = min(shape[1], round(cx + side / 2)), min(shape[0], round(cy + side / 2))
    return x0, y0, x1 - x0, y1 - y0


def crop(gray: np.ndarray, box: Box, size: int) -> np.ndarray:
    """Cut `box` out of a grayscale image and resize it to size × size."""
    x, y, w, h = box
    return resize(gray[y : y + h, x : x + w], size)
