"""Several cameras in one process: one model, one classification batch per round, tracks and
alerts per camera.

Each source is read in a thread of its own (a live camera or stream keeps only its newest
frame; a file is read in order, none dropped). Each round takes one frame per camera that has
one, finds the faces per camera, classifies every face of every camera in one forward pass,
and hands each camera's predictions to that camera's `Watcher` (its own tracker, alert
debouncing, video file), whose events carry the camera's name. A source that cannot be opened
or fails later is reported (`camera_error`) and the others go on.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emowatch.deploy.alerts import now_iso
from emowatch.deploy.sources import Frame, SourceError, kind_of, open_source

END = object()


def camera_names(sources: list[str]) -> list[str]:
    """A short distinct name per source (a file's stem, cam<N> for device N)."""
    names: list[str] = []
    for spec in sources:
        base = f"cam{spec}" if spec.isdigit() else Path(spec.split("?")[0]).stem or "camera"
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.append(name)
    return names


@dataclass
class Feed:
    """One source read in a background thread."""

    name: str
    spec: str
    frames: Iterator[Frame]
    live: bool
    queue: queue.Queue = field(default_factory=lambda: queue.Queue(maxsize=2))
    stop: threading.Event = field(default_factory=threading.Event)
    error: str | None = None
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._read, name=f"feed-{self.name}", daemon=True)
        self.thread.start()

    def _put(self, item: Any) -> None:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.2)
                return
            except queue.Full:
                if self.live:  # a live camera keeps its newest frame
                    with contextlib.suppress(queue.Empty):
                        self.queue.get_nowait()

    def _read(self) -> None:
        try:
            for frame in self.frames:
                if self.stop.is_set():
                    return
                self._put(frame)
        except Exception as err:  # the others go on; the loop reports it
            self.error = f"{type(err).__name__}: {err}"
        finally:
            self._put(END)

    def next(self, wait_s: float) -> Any:
        """The next frame, END, or None when a live source has nothing new yet."""
        try:
            return self.queue.get(timeout=None if not self.live else wait_s)
        except queue.Empty:
            return None


def open_feeds(
    sources: list[str], names: list[str], attempts: int, wait_s: float, report
) -> list[Feed]:
    """The feeds of the sources that open; the others are reported (`report(event)`)."""
    feeds = []
    for name, spec in zip(names, sources, strict=True):
        try:
            frames = open_source(spec, attempts, wait_s)
        except SourceError as err:
            report({"event": "camera_error", "time": now_iso(), "camera": name, "error": str(err)})
            continue
        feeds.append(Feed(name, spec, frames, kind_of(spec) in ("camera", "stream")))
    return feeds


def run(
    feeds: list[Feed],
    watchers: dict[str, Any],
    classifier,
    report,
    max_frames=None,
    ended=None,
):
    """Rounds until every feed has ended (or `max_frames` per camera; `ended(name, error)` is
    called as each does); returns the wall time."""
    for feed in feeds:
        feed.start()
    active, start = list(feeds), time.perf_counter()
    try:
        while active:
            rounds = []
            for feed in list(active):
                item = feed.next(0.02)
                if item is END or (max_frames and watchers[feed.name].summary.frames >= max_frames):
                    active.remove(feed)
                    if ended is not None:
                        ended(feed.name, feed.error)
                    if feed.error:
                        report(
                            {
                                "event": "camera_error",
                                "time": now_iso(),
                                "camera": feed.name,
                                "error": feed.error,
                            }
                        )
                elif item is not None:
                    rounds.append((feed.name, item, watchers[feed.name].look(item)))
            batch = [(n, s) for n, _, s in rounds if s is not None and s.found is not None]
            if not rounds:
                continue
            t0 = time.perf_counter()
            preds = classifier.classify_many([(s.gray, s.found) for _, s in batch]) if batch else []
            share = (time.perf_counter() - t0) / max(1, len(batch))
            by_camera = {}
            for (name, _), p in zip(batch, preds, strict=True):
                by_camera[name] = p
                watchers[name].summary.classify_s += share
            for name, frame, seen in rounds:
                watchers[name].finish(frame, seen, by_camera.get(name))
    finally:
        for feed in feeds:
            feed.stop.set()
    return time.perf_counter() - start
