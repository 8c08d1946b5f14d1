"""Hourly statistics of what the watcher saw, for drift checks: no images, no tracks.

Per camera and UTC hour: how many faces were classified, how many of each predicted emotion,
and a histogram of P(angry) over `bins` equal bins of [0, 1]. One JSON line per camera and hour
goes to `deploy.watch.stats_log` (a daily file, expired after deploy.watch.keep_days) when the
hour turns and when the watch ends; `emowatch drift` compares a window of them with the
champion's validation faces.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import numpy as np

from emowatch.deploy.retention import DailyLog
from emowatch.inference.face_classifier import FacePrediction


def hour_of(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:00Z")


def histogram(p_angry: Iterable[float], bins: int) -> list[int]:
    """Counts of P(angry) in `bins` equal bins of [0, 1] (1.0 falls in the last)."""
    counts, _ = np.histogram(np.asarray(list(p_angry), float), bins=bins, range=(0.0, 1.0))
    return [int(c) for c in counts]


class HourlyStats:
    """Counts of the current hour; appended to `log` (a daily log that expires after its
    keep_days) when the hour turns."""

    def __init__(
        self,
        log: DailyLog,
        camera: str,
        model: str,
        bins: int = 10,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.log, self.camera, self.model, self.bins, self.clock = log, camera, model, bins, clock
        self.hour: str | None = None
        self.emotions: Counter[str] = Counter()
        self.hist = [0] * bins
        self.faces = 0

    def add(self, preds: list[FacePrediction]) -> None:
        hour = hour_of(self.clock())
        if self.hour is not None and hour != self.hour:
            self.flush()
        self.hour = hour
        self.faces += len(preds)
        self.emotions.update(p.emotion for p in preds)
        self.hist = [
            a + b
            for a, b in zip(
                self.hist, histogram((p.p_angry for p in preds), self.bins), strict=True
            )
        ]

    def record(self) -> dict[str, Any]:
        return {
            "event": "hourly_stats",
            "hour": self.hour,
            "camera": self.camera,
            "model": self.model,
            "faces": self.faces,
            "emotions": dict(self.emotions),
            "p_angry_bins": list(self.hist),
        }

    def flush(self) -> None:
        """Append the hour's record (if any face was seen) and start counting afresh."""
        if self.hour is not None and self.faces:
            self.log.append(self.record())
        self.emotions, self.hist, self.faces = Counter(), [0] * self.bins, 0

    def close(self) -> None:
        self.flush()
        self.log.close()
