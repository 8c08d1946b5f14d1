"""What `emowatch watch` reads: a camera index, a video file, a stream URL, or images.

Every source yields `Frame`s. A frame that cannot be read comes with `image=None` and an error
(the loop reports it and goes on); a source that cannot be opened at all raises `SourceError`.
A stream or camera that stops delivering frames is reopened a few times before it ends.
"""

from __future__ import annotations

import glob
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from emowatch.data.images import load_gray

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".pgm"}


class SourceError(Exception):
    """The source cannot be opened (the watcher cannot start)."""


@dataclass
class Frame:
    """One frame: its number, time in seconds from the start of the source, and pixels (BGR or
    grayscale), or None with the error that explains why."""

    index: int
    time_s: float
    image: np.ndarray | None
    name: str | None = None
    error: str | None = None


def kind_of(spec: str) -> str:
    """camera | stream | images | video, from the SOURCE argument."""
    if spec.isdigit():
        return "camera"
    if "://" in spec:
        return "stream"
    path = Path(spec)
    if path.is_dir() or any(c in spec for c in "*?["):
        return "images"
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return "images"
    return "video"


def image_paths(spec: str) -> list[Path]:
    path = Path(spec)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    if path.is_file():
        return [path]
    return sorted(Path(p) for p in glob.glob(spec) if Path(p).is_file())


def read_images(spec: str) -> Iterator[Frame]:
    """Every file of a folder/glob, in name order; files that are not images are reported."""
    paths = image_paths(spec)
    if not paths:
        raise SourceError(f"no files match {spec!r}")
    for i, path in enumerate(paths):
        loaded = load_gray(path)
        error = None if loaded.gray is not None else f"{loaded.status}: {loaded.error}"
        yield Frame(i, float(i), loaded.gray, str(path), error)


def _open(target: int | str) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(target)
    return cap if cap.isOpened() else None


def read_video(path: str) -> Iterator[Frame]:
    """A video file, frame by frame, with the file's own timestamps."""
    if not Path(path).is_file():
        raise SourceError(f"{path}: no such file")
    cap = _open(path)
    ok, first = cap.read() if cap is not None else (False, None)
    if not ok:
        raise SourceError(f"{path}: not a video OpenCV can read (or it has no frames)")
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    index, image = 0, first
    try:
        while ok:
            yield Frame(index, index / fps, image, path)
            index += 1
            ok, image = cap.read()
    finally:
        cap.release()


def read_live(
    target: int | str, reconnect_attempts: int = 3, reconnect_wait_s: float = 1.0
) -> Iterator[Frame]:
    """A camera or stream; when it stops delivering frames it is reopened, then given up."""
    cap = _open(target)
    if cap is None:
        raise SourceError(f"cannot open {target!r} (no such camera, or the stream is unreachable)")
    start, index, failures = time.monotonic(), 0, 0
    try:
        while True:
            ok, image = cap.read()
            if ok:
                failures = 0
                yield Frame(index, time.monotonic() - start, image, str(target))
                index += 1
                continue
            failures += 1
            if failures > reconnect_attempts:
                yield Frame(index, time.monotonic() - start, None, str(target), "stream ended")
                return
            yield Frame(
                index,
                time.monotonic() - start,
                None,
                str(target),
                f"no frame; reopening (attempt {failures} of {reconnect_attempts})",
            )
            cap.release()
            time.sleep(reconnect_wait_s * failures)
            cap = _open(target) or cv2.VideoCapture()
    finally:
        cap.release()


def open_source(
    spec: str, reconnect_attempts: int = 3, reconnect_wait_s: float = 1.0
) -> Iterator[Frame]:
    """The frames of SOURCE; raises SourceError at once when it cannot be opened."""
    kind = kind_of(spec)
    if kind == "images":
        frames = read_images(spec)
    elif kind == "video":
        frames = read_video(spec)
    else:
        target: int | str = int(spec) if kind == "camera" else spec
        frames = read_live(target, reconnect_attempts, reconnect_wait_s)
    first = next(frames, None)  # open now, so a bad source fails before the loop starts

    def chained() -> Iterator[Frame]:
        if first is not None:
            yield first
            yield from frames

    return chained()
