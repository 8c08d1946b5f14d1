"""Where watch events and alerts go: stdout JSON lines, a log file, an HTTP webhook.

The webhook sink never blocks the video loop: events wait in a bounded queue and a background
thread POSTs them, retrying with exponential back-off; when the queue is full the oldest event
is dropped, and drops and failures are counted in the sink's stats.
"""

from __future__ import annotations

import contextlib
import json
import queue
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TextIO


class Sink(Protocol):
    def send(self, event: dict[str, Any]) -> None: ...

    def close(self) -> dict[str, int]: ...


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def dumps(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), default=str)


class StreamSink:
    """JSON lines on a text stream (stdout by default)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def send(self, event: dict[str, Any]) -> None:
        self.stream.write(dumps(event) + "\n")
        self.stream.flush()

    def close(self) -> dict[str, int]:
        return {}


class FileSink:
    """JSON lines appended to a file (created with its folder)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.file = path, path.open("a", encoding="utf-8")

    def send(self, event: dict[str, Any]) -> None:
        self.file.write(dumps(event) + "\n")
        self.file.flush()

    def close(self) -> dict[str, int]:
        self.file.close()
        return {}


class WebhookSink:
    """POST each event as JSON to `url` from a background thread, with retries and back-off."""

    def __init__(
        self,
        url: str,
        timeout_s: float = 2.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        queue_size: int = 100,
        log: TextIO | None = None,
    ) -> None:
        self.url, self.timeout_s, self.retries, self.backoff_s = url, timeout_s, retries, backoff_s
        self.queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=queue_size)
        self.stats = {"sent": 0, "failed": 0, "dropped": 0}
        self.log = log or sys.stderr
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="emowatch-webhook", daemon=True)
        self.thread.start()

    def send(self, event: dict[str, Any]) -> None:
        while True:
            try:
                self.queue.put_nowait(event)
                return
            except queue.Full:
                try:
                    self.queue.get_nowait()
                    self.stats["dropped"] += 1
                except queue.Empty:
                    pass

    def _post(self, event: dict[str, Any]) -> None:
        body = dumps(event).encode()
        request = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            response.read()

    def _run(self) -> None:
        while True:
            event = self.queue.get()
            if event is None:
                return
            for attempt in range(self.retries + 1):
                try:
                    self._post(event)
                    self.stats["sent"] += 1
                    break
                except (urllib.error.URLError, OSError, ValueError) as err:
                    if attempt == self.retries or self._stop.is_set():
                        self.stats["failed"] += 1
                        print(
                            f"webhook {self.url}: giving up on a {event.get('event')} event "
                            f"after {attempt + 1} tries: {err}",
                            file=self.log,
                        )
                        break
                    self._stop.wait(self.backoff_s * 2**attempt)

    def close(self, wait_s: float = 5.0) -> dict[str, int]:
        """Send what is queued (for at most `wait_s`), then stop; returns the counts."""
        deadline = time.monotonic() + wait_s
        while not self.queue.empty() and time.monotonic() < deadline:
            time.sleep(0.02)
        self._stop.set()
        with contextlib.suppress(queue.Full):
            self.queue.put(None, timeout=max(0.1, deadline - time.monotonic()))
        self.thread.join(timeout=max(0.1, deadline - time.monotonic()))
        return dict(self.stats)


class Fanout:
    """Send every event to several sinks."""

    def __init__(self, sinks: list[Sink]) -> None:
        self.sinks = sinks
        self.lock = threading.Lock()  # the watch loop and the live page's server both send

    def send(self, event: dict[str, Any]) -> None:
        with self.lock:
            for sink in self.sinks:
                sink.send(event)

    def close(self) -> dict[str, int]:
        stats: dict[str, int] = {}
        for sink in self.sinks:
            stats |= {f"webhook_{k}": v for k, v in sink.close().items()}
        return stats
