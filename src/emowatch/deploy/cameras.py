"""The sources of one watch, one camera or many, each read in a thread of its own.

A file (video, images) is read in order with none dropped, at its own frame rate when `paced`
(a served video plays as a camera would deliver it). A live camera or stream keeps only its
newest frame, and its outages (`SourceDown`, `SourceUp`) are never dropped: the watch loop
turns them into events and the page's tile state. A source that cannot be opened is named in
a `camera_error` by the caller; the others go on.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emowatch.deploy import redact
from emowatch.deploy.sources import Backoff, Frame, Item, is_live, kind_of, open_source

END = object()


def camera_names(sources: list[str]) -> list[str]:
    """A short distinct name per source (a file's or stream path's stem, cam<N> for device N);
    never a part of a URL that could hold a credential."""
    names: list[str] = []
    for spec in sources:
        if spec.isdigit():
            base = f"cam{spec}"
        else:
            path = redact.source(spec).split("?")[0].split("://")[-1]
            base = Path(path.split("/", 1)[1] if "://" in spec and "/" in path else path).stem
            base = base or "camera"
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.append(name)
    return names


class Mailbox:
    """Items from a reader thread to the watch loop. A live source's frame replaces the one
    still waiting (the newest is what matters), statuses are kept in order; a file's frames
    wait for room (`size`), so none is lost."""

    def __init__(self, live: bool, size: int = 2) -> None:
        self.live, self.size = live, size
        self.items: deque[Any] = deque()
        self.cond = threading.Condition()

    def put(self, item: Any, stop: threading.Event) -> None:
        with self.cond:
            if isinstance(item, Frame):
                if self.live:
                    self.items = deque(i for i in self.items if not isinstance(i, Frame))
                else:
                    while len(self.items) >= self.size and not stop.is_set():
                        self.cond.wait(0.2)
            self.items.append(item)
            self.cond.notify_all()

    def get(self, wait_s: float) -> Any:
        """The next item, or None when none came within `wait_s`."""
        with self.cond:
            if not self.items:
                self.cond.wait(wait_s)
            if not self.items:
                return None
            item = self.items.popleft()
            self.cond.notify_all()
            return item


@dataclass
class Feed:
    """One source read in a background thread."""

    name: str
    spec: str
    items: Iterator[Item]
    live: bool
    paced: bool = False
    mailbox: Mailbox = field(init=False)
    stop: threading.Event = field(default_factory=threading.Event)
    error: str | None = None
    thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.mailbox = Mailbox(self.live)

    def start(self) -> None:
        self.thread = threading.Thread(target=self._read, name=f"feed-{self.name}", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        start = time.monotonic()
        try:
            for item in self.items:
                if self.stop.is_set():
                    return
                if self.paced and isinstance(item, Frame):
                    self.stop.wait(max(0.0, item.time_s - (time.monotonic() - start)))
                self.mailbox.put(item, self.stop)
        except Exception as err:  # the others go on; the loop reports it
            self.error = redact.text(f"{type(err).__name__}: {err}")
        finally:
            self.mailbox.put(END, self.stop)

    def next(self, wait_s: float) -> Any:
        """The next frame or status, END, or None when nothing new came within `wait_s`."""
        return self.mailbox.get(wait_s)

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=5)


def open_feed(name: str, spec: str, backoff: Backoff, paced: bool = False) -> Feed:
    """A feed of the source (SourceError at once for a file that cannot be opened)."""
    stop = threading.Event()
    items = open_source(spec, backoff, stop)
    paced = paced and kind_of(spec) == "video"
    return Feed(name, spec, items, is_live(spec), paced, stop=stop)
