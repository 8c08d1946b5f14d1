"""Live sources are never given up by default: reopened with capped, jittered backoff, their
outages reported (SourceDown/SourceUp), credentials never shown; files end as they end."""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest

from emowatch.deploy import redact, sources
from emowatch.deploy.sources import Backoff, Frame, SourceDown, SourceUp


def test_backoff_grows_to_its_cap_and_spreads_by_the_jitter():
    b = Backoff(initial_s=1, max_s=30, factor=2, jitter=0.2)
    rng = random.Random(0)
    waits = [b.wait(n, rng) for n in range(1, 9)]
    for n, w in enumerate(waits, start=1):
        base = min(30, 2 ** (n - 1))
        assert 0.8 * base <= w <= 1.2 * base
    assert waits[-1] <= 36 and len({round(w, 3) for w in waits[-3:]}) == 3  # capped, spread


class FlakyCamera:
    """A capture whose connections deliver `plan[i]` frames each (None: cannot connect)."""

    def __init__(self, plan: list[int | None]) -> None:
        self.plan, self.opened = list(plan), 0

    def __call__(self, target, *args):
        n = self.plan[min(self.opened, len(self.plan) - 1)]
        self.opened += 1
        return Capture(n)


class Capture:
    def __init__(self, frames: int | None) -> None:
        self.left = frames

    def isOpened(self):
        return self.left is not None

    def read(self):
        if self.left:
            self.left -= 1
            return True, np.zeros((48, 48, 3), np.uint8)
        return False, None

    def release(self):
        pass


FAST = Backoff(initial_s=0.001, max_s=0.004, jitter=0.0)


def take(items, n: int) -> list:
    return [next(items) for _ in range(n)]


def test_a_dropping_stream_is_reopened_for_as_long_as_it_takes(monkeypatch):
    # Two frames, then seven failed reconnections, then frames again: never given up.
    camera = FlakyCamera([2, *[None] * 7, 3])
    monkeypatch.setattr(sources.cv2, "VideoCapture", camera)
    items = take(sources.open_source("rtsp://user:secret@cam.local/1", FAST), 14)
    kinds = [type(i).__name__ for i in items]
    assert kinds == ["Frame"] * 2 + ["SourceDown"] * 8 + ["SourceUp"] + ["Frame"] * 3
    downs = [i for i in items if isinstance(i, SourceDown)]
    assert [d.attempt for d in downs] == list(range(1, 9))
    assert all(d.retry_in_s is not None and d.retry_in_s <= 0.004 for d in downs)
    assert "stalled" in downs[0].reason and "reopen" in downs[1].reason
    (up,) = [i for i in items if isinstance(i, SourceUp)]
    assert up.attempts == 8 and up.down_s >= 0
    frames = [i for i in items if isinstance(i, Frame)]
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert all(f.name == "rtsp://***@cam.local/1" for f in frames)  # no credential


def test_a_camera_that_cannot_start_is_retried_not_refused(monkeypatch):
    monkeypatch.setattr(sources.cv2, "VideoCapture", FlakyCamera([None, None, 1]))
    items = take(sources.open_source("0", FAST), 4)
    assert [type(i) for i in items] == [SourceDown, SourceDown, SourceUp, Frame]


def test_only_a_configured_limit_gives_a_source_up(monkeypatch):
    monkeypatch.setattr(sources.cv2, "VideoCapture", FlakyCamera([1, None]))
    limited = Backoff(initial_s=0.001, max_s=0.001, max_attempts=3)
    items = list(sources.open_source("rtsp://cam/1", limited))
    downs = [i for i in items if isinstance(i, SourceDown)]
    assert [d.retry_in_s is None for d in downs] == [False, False, False, True]
    assert downs[-1].attempt == 3


def test_stop_ends_a_waiting_source_at_once(monkeypatch):
    monkeypatch.setattr(sources.cv2, "VideoCapture", FlakyCamera([None]))
    stop = threading.Event()
    items = sources.open_source("rtsp://cam/1", Backoff(initial_s=60, max_s=60), stop)
    assert isinstance(next(items), SourceDown)  # it would now wait a minute
    threading.Timer(0.1, stop.set).start()
    assert list(items) == []  # the wait is cut short, the source ends


def test_files_fail_at_once_and_end(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(sources.SourceError, match="not a video"):
        sources.open_source(str(text))
    with pytest.raises(sources.SourceError, match="no such file"):
        sources.open_source(str(tmp_path / "missing.mp4"))
    with pytest.raises(sources.SourceError, match="no files match"):
        sources.open_source(str(tmp_path / "*.png"))
    assert sources.kind_of("0") == "camera" and sources.kind_of("rtsp://cam/1") == "stream"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rtsp://user:secret@10.0.0.5:554/live", "rtsp://***@10.0.0.5:554/live"),
        ("http://cam.local/mjpg?token=abc&fps=5", "http://cam.local/mjpg?token=***&fps=***"),
        ("rtsp://admin@[fe80::1]/ch1", "rtsp://***@[fe80::1]/ch1"),
        ("0", "0"),
        ("videos/desk.mp4", "videos/desk.mp4"),
    ],
)
def test_credentials_in_a_source_are_masked(url, shown):
    assert redact.source(url) == shown
    assert redact.text(f"cannot open {url} (refused)") == f"cannot open {shown} (refused)"


def test_a_webhook_url_is_shown_as_its_host_only():
    shown = redact.endpoint("https://hooks.example.com/services/T0/B0/s3cr3t?x=1")
    assert shown == "https://hooks.example.com/***"
