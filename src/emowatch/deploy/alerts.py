"""Where watch events and alerts go: stdout JSON lines, a log file, the rotating alert log,
an HTTP webhook (deploy/webhook.py: spooled on disk, signed, delivered in order)."""

from __future__ import annotations

import json
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TextIO

from emowatch.deploy.retention import DailyLog


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


class LogSink:
    """JSON lines in a daily log that rotates and expires (deploy/retention.py)."""

    def __init__(self, log: DailyLog) -> None:
        self.log = log

    def send(self, event: dict[str, Any]) -> None:
        self.log.append(event)

    def close(self) -> dict[str, int]:
        self.log.close()
        return {}


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
        """Close every sink; their counts (the webhook's), as webhook_<count>."""
        stats: dict[str, int] = {}
        for sink in self.sinks:
            stats |= {f"webhook_{k}": v for k, v in sink.close().items()}
        return stats
