"""A soak test with faults, on 127.0.0.1 only: `emowatch watch` on a real MJPEG stream over HTTP
(served here), alerts to a real HTTP receiver (tests/receiver.py). During the run the stream is
killed and restarted three times, the receiver goes down, answers with a redirect, then comes
back, and the watcher gets SIGTERM and is started again once.

It asserts: no crash (exit 0 both times); one camera_down and one camera_up per outage; every
alert the watchers raised reaches the receiver exactly once (by idempotency key, each with a
valid signature), after it comes back; resident memory grows less than MEMORY_BOUND_MB; the
alert log is intact (every line JSON, every raised alert in it once); no credential printed.
The figures are printed (`pytest -m slow tests/test_soak.py -s`) for the README."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import psutil
import pytest

from emowatch.deploy.retention import DailyLog
from tests.conftest import REPO
from tests.receiver import Receiver
from tests.test_serving import free_port
from tests.test_watch import face_frame, trained  # noqa: F401 (fixture)

SECRET = "soak-secret"
MEMORY_BOUND_MB = 80  # growth of the watcher's RSS from its first minute to its end


class Stream:
    """An MJPEG stream over HTTP (multipart/x-mixed-replace, as IP cameras serve it) of a face
    swaying at a counter; `stop` closes the port and every open connection, `start` reopens."""

    def __init__(self, port: int, fps: float = 10.0) -> None:
        self.port, self.fps = port, fps
        self.frames = [
            cv2.imencode(".jpg", face_frame(2 * (i % 12)))[1].tobytes() for i in range(24)
        ]
        self.generation = 0
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://camuser:secret@127.0.0.1:{self.port}/video.mjpg"

    def start(self) -> None:
        stream = self
        self.generation += 1
        generation = self.generation

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                try:
                    while stream.generation == generation:
                        jpeg = stream.frames[i % len(stream.frames)]
                        head = "--frame\r\nContent-Type: image/jpeg\r\n"
                        head += f"Content-Length: {len(jpeg)}\r\n\r\n"
                        self.wfile.write(head.encode() + jpeg + b"\r\n")
                        i += 1
                        time.sleep(1 / stream.fps)
                except OSError:
                    pass

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.generation += 1  # open connections end
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


class Watcher:
    """`emowatch watch` in a process of its own; its stdout events collected as they come."""

    def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.events: list[dict] = []
        self.lines: list[str] = []
        self.err = ""
        self.rss: list[tuple[float, int]] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._errors, daemon=True).start()
        threading.Thread(target=self._memory, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith("{"):
                self.events.append(json.loads(line))

    def _errors(self) -> None:
        self.err = self.proc.stderr.read()

    def _memory(self) -> None:
        process = psutil.Process(self.proc.pid)
        while self.proc.poll() is None:
            try:
                self.rss.append((time.monotonic(), process.memory_info().rss))
            except psutil.Error:
                return
            time.sleep(1.0)

    def wait_for(self, event: str, count: int = 1, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while sum(e["event"] == event for e in self.events) < count:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {event} #{count}: {self.err[-2000:]}")
            time.sleep(0.1)

    def count(self, event: str) -> int:
        return sum(e["event"] == event for e in self.events)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        time.sleep(0.3)  # the reader threads drain the pipes
        return self.proc.returncode


def outage(watcher: Watcher, stream: Stream, down_s: float) -> None:
    """The stream goes away for `down_s` and comes back; the watcher must see both."""
    downs, ups = watcher.count("camera_down"), watcher.count("camera_up")
    stream.stop()
    watcher.wait_for("camera_down", downs + 1)
    time.sleep(down_s)
    stream.start()
    watcher.wait_for("camera_up", ups + 1)


@pytest.mark.slow
def test_a_watcher_survives_outages_and_loses_no_alert(trained, tmp_path):  # noqa: F811
    _, model_dir = trained
    stream = Stream(free_port())
    receiver = Receiver(secret=SECRET)
    stream.start()
    overrides = [
        f"paths.reports_dir={tmp_path / 'reports'}",
        f"deploy.watch.alerts.webhook.spool_dir={tmp_path / 'spool'}",
        "deploy.watch.alerts.k=2", "deploy.watch.alerts.n=3", "deploy.watch.alerts.cooldown_s=3",
        "deploy.watch.down_alert_s=3", "deploy.watch.reconnect.initial_s=0.5",
        "deploy.watch.reconnect.max_s=2", "deploy.watch.reconnect.read_timeout_s=2",
        "deploy.watch.reconnect.open_timeout_s=2", "deploy.watch.alerts.webhook.backoff_s=0.5",
        "deploy.watch.alerts.webhook.max_backoff_s=2", "deploy.watch.serve.keep_serving=false",
    ]  # fmt: skip
    cmd = [
        sys.executable, "-m", "emowatch.cli", "watch", stream.url, "--model", str(model_dir),
        "--threshold", "0.0", "--webhook", receiver.url, "--serve", "--port", str(free_port()),
        *overrides,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "EMOWATCH_"))}
    env["EMOWATCH_WEBHOOK_SECRET"] = SECRET
    started = time.monotonic()
    try:
        first = Watcher(cmd, env)
        first.wait_for("alert")
        time.sleep(45)  # a steady stretch: the memory baseline is taken after its first 20 s
        outage(first, stream, down_s=5)  # past down_alert_s: a camera_down alert too
        receiver.stop()  # the endpoint goes down; alerts keep coming and are spooled
        time.sleep(8)
        outage(first, stream, down_s=2)  # the camera drops while the endpoint is down
        receiver.start()
        receiver.mode = "redirect"  # back, but answering with a redirect
        time.sleep(6)
        receiver.mode = "ok"
        time.sleep(30)
        first_rc = first.stop()  # systemctl restart: SIGTERM, then a new process
        second = Watcher(cmd, env)
        second.wait_for("alert")
        outage(second, stream, down_s=2)
        time.sleep(10)
        second_rc = second.stop()
        deadline = time.monotonic() + 10  # what the second flushed at the end has arrived
        while time.monotonic() < deadline and len(receiver.delivered()) < 1:
            time.sleep(0.1)
    finally:
        stream.stop()
        receiver.stop()
    wall = time.monotonic() - started

    assert (first_rc, second_rc) == (0, 0), first.err[-3000:] + second.err[-3000:]
    events = first.events + second.events
    # One camera_down and one camera_up per outage: three outages.
    assert sum(e["event"] == "camera_down" for e in events) == 3
    assert sum(e["event"] == "camera_up" for e in events) == 3
    raised = [e["alert_id"] for e in events if e["event"] == "alert"]
    kinds = {e["kind"] for e in events if e["event"] == "alert"}
    assert kinds == {"angry", "camera_down"} and len(raised) == len(set(raised))
    # Every alert reached the receiver exactly once, signed; none arrived while it was down
    # or redirecting (those answers were not deliveries).
    delivered = [g for g in receiver.delivered() if g["event"]["event"] == "alert"]
    keys = [g["key"] for g in delivered]
    assert sorted(keys) == sorted(raised), (len(keys), len(raised))
    assert all(g["signed"] for g in receiver.delivered())
    assert all(g["method"] == "POST" for g in receiver.got)  # no redirect was followed
    lost, duplicated = len(set(raised) - set(keys)), len(keys) - len(set(keys))
    # Memory: from 20 s into the first (longer) watcher to its end.
    rss = first.rss
    t0 = rss[0][0]
    warm = [r for t, r in rss if t - t0 >= 20] or [r for _, r in rss]
    growth_mb = (max(warm) - warm[0]) / 2**20
    assert growth_mb < MEMORY_BOUND_MB, growth_mb
    # The alert log is intact: every line JSON, every raised alert in it once.
    log = DailyLog(tmp_path / "reports" / "watch" / "alerts.jsonl", 30)
    records, bad = log.records()
    logged = [r["alert_id"] for r in records if r.get("event") == "alert"]
    assert bad == 0 and sorted(logged) == sorted(raised)
    output = "".join(first.lines + second.lines) + first.err + second.err
    assert "secret" not in output.replace(SECRET, "")  # the camera's password never printed
    summaries = [e for e in events if e["event"] == "summary"]
    down_alerts = sum(e["event"] == "alert" and e["kind"] == "camera_down" for e in events)
    frames = sum(s["frames"] for s in summaries)
    print(
        f"\nsoak: {wall:.0f} s, {frames} frames, 3 outages survived (3 camera_down, 3 camera_up), "
        f"receiver down 1 time and redirecting 1 time, 1 SIGTERM and restart; "
        f"{len(raised)} alerts raised ({down_alerts} of them camera_down), "
        f"{len(keys)} delivered, lost {lost}, duplicated {duplicated}; RSS growth "
        f"{growth_mb:.1f} MiB from 20 s to {len(first.rss)} s of the first watcher "
        f"({max(r for _, r in rss) / 2**20:.0f} MiB peak); webhook summaries: "
        + ", ".join(
            f"delivered {s.get('webhook_delivered')} spooled {s.get('webhook_spooled')} "
            f"dropped {s.get('webhook_dropped')}"
            for s in summaries
        )
    )
