"""Where the faces are on a camera, down to small, far ones, at camera speed.

One detector pass over a whole frame at a resolution fine enough for a 48 px face costs tens of
milliseconds at 640×480 and far more at 1920×1080, too much for every frame. So the watcher
sweeps the whole frame on a schedule (every `full_every` frames, and whenever nothing is being
tracked), at the scale where a face of `min_face` pixels (at the source's own resolution) meets
the detector's `min_size`; in between it looks only in the regions around the faces it tracks
(grown by `roi_margin` of their side), each scaled so the face is about `roi_face` pixels. A new
face is found at the next sweep, at most `full_every - 1` frames late. The benchmark
(benchmarks/bench_watch.py) chose these settings by detection rate and frames/s.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from emowatch.inference.faces import Box, Detector, Face, iou


@dataclass
class FinderSettings:
    min_face: int = 48  # smallest face side to find, in source pixels
    full_every: int = 5  # a whole-frame sweep every n frames
    roi_margin: float = 0.6  # a tracked face's region: its box grown by this much of its side
    roi_face: int = 64  # a region is scaled so the face is about this big


class FaceFinder:
    """Whole-frame sweeps on a schedule, regions around tracked faces in between."""

    def __init__(self, detector: Detector, settings: FinderSettings) -> None:
        self.settings = settings
        self.detector = copy.copy(detector)  # the same detector; the scale is set per call
        self.min_size = detector.min_size
        self.sweeps = 0

    def _detect(self, gray: np.ndarray, scale: float) -> list[Face]:
        side = max(gray.shape)
        self.detector.max_side = max(1, round(side * scale)) if scale < 1.0 else None
        return self.detector(gray)

    def sweep(self, gray: np.ndarray) -> list[Face]:
        """The whole frame at the scale where a `min_face` face meets the detector's minimum."""
        self.sweeps += 1
        return self._detect(gray, self.min_size / self.settings.min_face)

    def around(self, gray: np.ndarray, box: Box) -> list[Face]:
        """The region around one tracked face."""
        x, y, w, h = box
        grow = self.settings.roi_margin * max(w, h)
        x0, y0 = max(0, int(x - grow)), max(0, int(y - grow))
        x1 = min(gray.shape[1], int(x + w + grow))
        y1 = min(gray.shape[0], int(y + h + grow))
        if x1 - x0 < self.min_size or y1 - y0 < self.min_size:
            return []
        scale = self.settings.roi_face / max(w, h, 1)
        found = self._detect(gray[y0:y1, x0:x1], scale)
        return [Face((f.box[0] + x0, f.box[1] + y0, f.box[2], f.box[3]), f.score) for f in found]

    def find(self, gray: np.ndarray, frame: int, tracked: Iterable[Box]) -> list[Face]:
        """The faces of this frame: a sweep when it is due or nothing is tracked, else the
        regions around the tracked boxes (overlapping finds merged, the surer kept)."""
        boxes = list(tracked)
        if not boxes or frame % max(1, self.settings.full_every) == 0:
            return self.sweep(gray)
        found = [f for box in boxes for f in self.around(gray, box)]
        return merge(found)


def merge(found: list[Face], overlap: float = 0.4) -> list[Face]:
    """One face per place: of finds overlapping more than `overlap` (IoU), the surer."""
    kept: list[Face] = []
    for face in sorted(found, key=lambda f: -(f.score or 0.0)):
        if all(iou(face.box, k.box) <= overlap for k in kept):
            kept.append(face)
    return kept
