"""What `emowatch watch` reads: a camera index, a video file, a stream URL, or images.

Files (videos, images) are read once, in order, and end; one that cannot be opened raises
`SourceError` at once. A frame that cannot be read comes with `image=None` and an error (the
loop reports it and goes on).

Live sources (a camera index, a stream URL) are never given up by default: when one stops
delivering frames, or cannot be opened at all, it yields a `SourceDown` (with the reason) and
is reopened after a capped exponential backoff with jitter, for as long as it takes; when frames
come again it yields a `SourceUp`. Only where `Backoff.max_attempts` is set does an outage end
the source, with a last `SourceDown` whose `retry_in_s` is None. Credentials in a URL never
leave this module: frames and statuses name the source as `redact.source` shows it.
"""

from __future__ import annotations

import glob
import os
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from emowatch.data.images import load_gray
from emowatch.deploy import redact

# FFmpeg's and OpenCV's own messages can name a stream's URL, password included: silenced (the
# watcher reports what happened itself, through redact).
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".pgm"}


class SourceError(Exception):
    """A file source cannot be opened (the watcher cannot start on it)."""


@dataclass
class Frame:
    """One frame: its number, time in seconds from the start of the source, and pixels (BGR or
    grayscale), or None with the error that explains why."""

    index: int
    time_s: float
    image: np.ndarray | None
    name: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class SourceDown:
    """A live source delivers no frames (`reason`); `attempt` reopenings so far in this outage,
    the next in `retry_in_s` seconds, or None when the source is given up."""

    reason: str
    attempt: int
    retry_in_s: float | None


@dataclass(frozen=True)
class SourceUp:
    """Frames again after an outage of `down_s` seconds and `attempts` reopenings."""

    down_s: float
    attempts: int


Item = Frame | SourceDown | SourceUp


@dataclass(frozen=True)
class Backoff:
    """When to reopen a live source: after `initial_s`, then `factor` times longer each
    attempt, never longer than `max_s`, each wait spread by ±`jitter` (so that cameras that
    dropped together do not hammer a recovering switch together); `max_attempts` reopenings per
    outage, None for no limit. `open_timeout_s`/`read_timeout_s` bound a stream's connect and
    read (FFmpeg), so a stalled stream counts as down instead of hanging."""

    initial_s: float = 1.0
    max_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2
    max_attempts: int | None = None
    open_timeout_s: float = 10.0
    read_timeout_s: float = 10.0

    def wait(self, attempt: int, rng: random.Random) -> float:
        """The wait before reopening attempt `attempt` (1, 2, ...)."""
        base = min(self.max_s, self.initial_s * self.factor ** max(0, attempt - 1))
        return max(0.0, base * (1.0 + self.jitter * rng.uniform(-1.0, 1.0)))


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


def is_live(spec: str) -> bool:
    return kind_of(spec) in ("camera", "stream")


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


def read_video(path: str) -> Iterator[Frame]:
    """A video file, frame by frame, with the file's own timestamps."""
    if not Path(path).is_file():
        raise SourceError(f"{path}: no such file")
    cap = cv2.VideoCapture(path)
    ok, first = cap.read() if cap.isOpened() else (False, None)
    if not ok:
        cap.release()
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


def open_capture(target: int | str, backoff: Backoff) -> cv2.VideoCapture | None:
    """An opened capture of a camera or stream, or None. Streams get FFmpeg's connect and read
    timeouts, so that a dead or stalled peer returns instead of hanging."""
    if isinstance(target, str):
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(backoff.open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(backoff.read_timeout_s * 1000),
        ]
        cap = cv2.VideoCapture(target, cv2.CAP_FFMPEG, params)
    else:
        cap = cv2.VideoCapture(target)
    if cap.isOpened():
        return cap
    cap.release()
    return None


def read_live(
    target: int | str,
    backoff: Backoff | None = None,
    stop: threading.Event | None = None,
    rng: random.Random | None = None,
) -> Iterator[Item]:
    """Frames of a camera or stream, with a `SourceDown` when it stops (or cannot start) and a
    `SourceUp` when it is back; reopened by `backoff` until `stop` is set (or, with
    `max_attempts`, until an outage has used them up)."""
    backoff, stop = backoff or Backoff(), stop or threading.Event()
    rng = rng or random.Random()
    name = redact.source(str(target))
    start = time.monotonic()
    cap = open_capture(target, backoff)
    reason = "cannot open it (no such camera, or the stream is unreachable)"
    index, attempt, down_since = 0, 0, None
    try:
        while not stop.is_set():
            if cap is not None:
                ok, image = cap.read()
                if ok:
                    if down_since is not None:
                        yield SourceUp(round(time.monotonic() - down_since, 3), attempt)
                        down_since, attempt = None, 0
                    yield Frame(index, time.monotonic() - start, image, name)
                    index += 1
                    continue
                reason = "no frame (the stream ended, stalled or the camera went away)"
                cap.release()
                cap = None
            down_since = down_since or time.monotonic()
            attempt += 1
            if backoff.max_attempts is not None and attempt > backoff.max_attempts:
                yield SourceDown(reason, attempt - 1, None)
                return
            wait = backoff.wait(attempt, rng)
            yield SourceDown(reason, attempt, round(wait, 3))
            if stop.wait(wait):
                return
            cap = open_capture(target, backoff)
            if cap is None:
                reason = "cannot reopen it (the camera or stream is unreachable)"
    finally:
        if cap is not None:
            cap.release()


def open_source(
    spec: str, backoff: Backoff | None = None, stop: threading.Event | None = None
) -> Iterator[Item]:
    """The items of SOURCE. A file source is opened now and raises SourceError when it cannot
    be; a live source never raises (it reports SourceDown and keeps trying)."""
    kind = kind_of(spec)
    if kind in ("camera", "stream"):
        return read_live(int(spec) if kind == "camera" else spec, backoff, stop)
    frames = read_images(spec) if kind == "images" else read_video(spec)
    first = next(frames, None)  # open now, so a bad file fails before the loop starts

    def chained() -> Iterator[Item]:
        if first is not None:
            yield first
            yield from frames

    return chained()
