"""Logs that rotate and expire: JSON lines in one file per UTC day, deleted after `keep_days`.

`DailyLog(reports/watch/alerts.jsonl, 30)` writes `reports/watch/alerts.2026-12-04.jsonl`,
`alerts.2026-12-05.jsonl`, ... beside the configured path, and deletes the day files older than
30 days (at start and whenever the day turns). A file at the configured path itself (written by
an emowatch before rotation) is read as the oldest day and expires by its modification time.
Readers ask for a window (`lines(since=...)`, or newest first until they have enough), so a
start never reads more than it needs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def utc_now() -> datetime:
    return datetime.now(UTC)


class DailyLog:
    """Append-only JSON lines, one file per UTC day, expired after `keep_days`."""

    def __init__(
        self,
        path: Path,
        keep_days: float,
        clock: Callable[[], datetime] = utc_now,
        fsync: bool = False,
    ) -> None:
        self.path, self.keep_days, self.clock, self.fsync = path, float(keep_days), clock, fsync
        self.day: date | None = None
        self.file = None

    def day_path(self, day: date) -> Path:
        return self.path.with_name(f"{self.path.stem}.{day.isoformat()}{self.path.suffix}")

    def files(self) -> list[tuple[date, Path]]:
        """(day, file) of every kept file, oldest first (a legacy single file by its mtime)."""
        found = []
        if self.path.parent.is_dir():
            for p in self.path.parent.glob(f"{self.path.stem}.*{self.path.suffix}"):
                stamp = p.name[len(self.path.stem) + 1 : len(p.name) - len(self.path.suffix)]
                if DAY.match(stamp):
                    found.append((date.fromisoformat(stamp), p))
        if self.path.is_file():
            mtime = datetime.fromtimestamp(self.path.stat().st_mtime, UTC).date()
            found.append((mtime, self.path))
        return sorted(found, key=lambda f: (f[0], f[1] != self.path))

    def expire(self) -> list[Path]:
        """Delete the files of days older than keep_days; returns them."""
        oldest = (self.clock() - timedelta(days=self.keep_days)).date()
        gone = [p for day, p in self.files() if day < oldest]
        for p in gone:
            p.unlink(missing_ok=True)
        return gone

    def append(self, event: dict[str, Any]) -> None:
        today = self.clock().date()
        if today != self.day:
            self.close()
            self.day = today
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.expire()
            self.file = self.day_path(today).open("a", encoding="utf-8")
        self.file.write(json.dumps(event, separators=(",", ":"), default=str) + "\n")
        self.file.flush()
        if self.fsync:
            import os

            os.fsync(self.file.fileno())

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
            self.day = None

    def lines(self, since: datetime | None = None, newest_first: bool = False) -> Iterator[str]:
        """The lines of the files from `since`'s day on (all kept files without it), in order
        within a file; files oldest first, or newest first."""
        files = [p for day, p in self.files() if since is None or day >= since.date()]
        for p in reversed(files) if newest_first else files:
            with p.open(encoding="utf-8") as f:
                yield from (line.rstrip("\n") for line in f)

    def records(self, since: datetime | None = None) -> tuple[list[dict[str, Any]], int]:
        """The JSON records from `since`'s day on, and how many lines were unreadable."""
        out, bad = [], 0
        for line in self.lines(since):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                bad += 1
        return out, bad
