"""What the live page shows, shared between the watch loop and the web server's threads.

The loop hands each annotated frame, the tracked faces and the alerts to `LiveState`; the
server reads it. Privacy: only the latest frame is kept (as JPEG, replaced by the next one), and
nothing but alert, acknowledgement and feedback events reaches a file. With
feedback.save_faces, the faces of listed alerts are held in memory; one reaches the disk only
when staff mark its alert (deploy/feedback.py).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from emowatch.deploy.alerts import now_iso
from emowatch.deploy.feedback import LABELS as FEEDBACK_LABELS
from emowatch.deploy.retention import DailyLog
from emowatch.deploy.tracker import Track
from emowatch.inference.face_classifier import FacePrediction


class AckError(Exception):
    """An acknowledgement that cannot be taken (unknown or already acknowledged alert)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def staff_event(name: str, alert: dict[str, Any], by: str, **what: Any) -> dict[str, Any]:
    """What staff did with an alert, as an event to log and send (the name cut to 80 chars)."""
    event = {"event": name, "time": now_iso(), "alert_id": alert.get("alert_id")}
    return event | {"alert_time": alert.get("time"), **what, "by": by[:80] or "staff"}


@dataclass
class CameraView:
    """One camera's latest frame (JPEG), the faces tracked now and its status."""

    name: str
    jpeg: bytes | None = None
    seq: int = 0
    faces: list[dict[str, Any]] = field(default_factory=list)
    frames: int = 0
    last_frame_at: float | None = None
    status: str = "starting"
    detail: str = ""


class LiveState:
    """Per camera the latest frame, the faces tracked now and the source's status; and the
    alert log of every camera."""

    def __init__(
        self,
        stall_s: float = 3.0,
        max_alerts: int = 200,
        jpeg_quality: int = 80,
        cameras: list[str] | None = None,
    ):
        self.stall_s, self.jpeg_quality = stall_s, jpeg_quality
        self.cond = threading.Condition()
        self.cameras = {name: CameraView(name) for name in (cameras or [""])}
        self.alerts: deque[dict[str, Any]] = deque(maxlen=max_alerts)
        self.faces_held: dict[str, np.ndarray] = {}
        self.closed = False

    def camera(self, name: str | None) -> CameraView:
        """The named camera's view (the first one for None or an unknown name)."""
        return self.cameras.get(name or "", next(iter(self.cameras.values())))

    # The watch loop's side.
    def publish(
        self,
        image: np.ndarray,
        tracks: list[Track],
        preds: list[FacePrediction],
        camera: str | None = None,
    ) -> None:
        """A new annotated frame and its faces (the previous frame is dropped)."""
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        faces = [
            {
                "track": t.id,
                "emotion": t.emotion or p.emotion,
                "confidence": round(p.probabilities[p.emotion], 3),
                "p_angry": round(p.p_angry, 3),
                "angry": bool(p.angry),
                "box": [int(v) for v in p.box],
            }
            for t, p in zip(tracks, preds, strict=True)
        ]
        with self.cond:
            view = self.camera(camera)
            if ok:
                view.jpeg = buf.tobytes()
                view.seq += 1
            view.faces = faces
            view.frames += 1
            view.last_frame_at = time.monotonic()
            view.status, view.detail = "live", ""
            self.cond.notify_all()

    def source_state(self, status: str, detail: str = "", camera: str | None = None) -> None:
        """`ended` or `error` (with what happened) for one camera, or every camera when None;
        its faces are cleared."""
        with self.cond:
            views = [self.camera(camera)] if camera is not None else self.cameras.values()
            for view in views:
                view.status, view.detail, view.faces = status, detail, []
            self.cond.notify_all()

    def add_alert(self, event: dict[str, Any]) -> None:
        with self.cond:
            self.alerts.appendleft(dict(event, acknowledged=None, feedback=None))

    def hold_face(self, alert_id: str, face: np.ndarray) -> None:
        """Keep an alert's face in memory (only where feedback.save_faces), for as long as the
        alert is listed, so that staff feedback can keep it; nothing is written here."""
        with self.cond:
            self.faces_held[alert_id] = face
            listed = {a.get("alert_id") for a in self.alerts}
            for old in [k for k in self.faces_held if k not in listed and k != alert_id]:
                del self.faces_held[old]

    def mark(
        self, alert_id: str, label: str, by: str
    ) -> tuple[dict[str, Any], dict[str, Any], np.ndarray | None]:
        """Staff say whether an alert was right (`angry` / `not_angry`), once per alert;
        returns (the feedback event, the alert, its held face or None)."""
        if label not in FEEDBACK_LABELS:
            raise AckError(f"label must be one of {', '.join(FEEDBACK_LABELS)}", 422)
        with self.cond:
            alert = self._listed(alert_id)
            if alert.get("kind", "angry") != "angry":
                raise AckError("feedback is for alerts about a face, not about a camera", 422)
            if alert.get("feedback"):
                raise AckError(f"alert {alert_id!r} already has feedback", 409)
            event = staff_event("alert_feedback", alert, by, label=label)
            alert["feedback"] = {"label": label, "by": event["by"], "time": event["time"]}
            return event, dict(alert), self.faces_held.pop(alert_id, None)

    def _listed(self, alert_id: str) -> dict[str, Any]:
        """The listed alert (404 when it is not); call with the lock held."""
        alert = next((a for a in self.alerts if a.get("alert_id") == alert_id), None)
        if alert is None:
            raise AckError(f"no alert {alert_id!r}", 404)
        return alert

    def acknowledge(self, alert_id: str, by: str) -> dict[str, Any]:
        """Mark an alert acknowledged; returns the acknowledgement event to log and send."""
        with self.cond:
            alert = self._listed(alert_id)
            if alert["acknowledged"]:
                raise AckError(f"alert {alert_id!r} is already acknowledged", 409)
            event = staff_event("alert_acknowledged", alert, by, track=alert.get("track"))
            alert["acknowledged"] = {"time": event["time"], "by": event["by"]}
            return event

    def restore(self, log: DailyLog, keep: int) -> int:
        """The last `keep` alerts of earlier runs, with their acknowledgements and feedback,
        from the alert log (so a restart keeps the list): its day files are read newest first,
        only until `keep` alerts are found. Returns how many were restored; unreadable lines
        are skipped and counted."""
        alerts: dict[str, dict[str, Any]] = {}
        staff: dict[str, list[dict[str, Any]]] = {}
        bad = 0
        for _, path in reversed(log.files()):
            day_alerts = []
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    bad += 1
                    continue
                if event.get("event") == "alert" and event.get("alert_id"):
                    day_alerts.append(dict(event, acknowledged=None, feedback=None))
                elif event.get("event") in ("alert_feedback", "alert_acknowledged"):
                    staff.setdefault(str(event.get("alert_id")), []).append(event)
            for alert in reversed(day_alerts):  # newest first, until `keep`
                if len(alerts) < keep:
                    alerts[alert["alert_id"]] = alert
            if len(alerts) >= keep:
                break
        for alert_id, alert in alerts.items():
            for event in staff.get(alert_id, []):
                if event["event"] == "alert_feedback":
                    alert["feedback"] = {k: event.get(k) for k in ("label", "by", "time")}
                else:
                    alert["acknowledged"] = {"time": event.get("time"), "by": event.get("by")}
        if bad:
            print(f"{log.path}: {bad} unreadable line(s) skipped", file=sys.stderr)
        with self.cond:
            for alert in reversed(list(alerts.values())):  # oldest first: newest ends on top
                self.alerts.appendleft(alert)
        return len(alerts)

    # The server's side.
    def _camera_view(self, view: CameraView) -> dict[str, Any]:
        status, since = view.status, None
        if view.last_frame_at is not None:
            since = round(time.monotonic() - view.last_frame_at, 1)
            if status == "live" and since > self.stall_s:
                status = "stalled"
        return {
            "name": view.name,
            "source": {"status": status, "detail": view.detail, "frames": view.frames},
            "seconds_since_frame": since,
            "faces": list(view.faces) if status == "live" else [],
        }

    def view(self) -> dict[str, Any]:
        """The page's state: per camera its status (a live source without frames for stall_s
        is `stalled`) and faces now (the first camera's also at the top level), and the alert
        log, newest first."""
        with self.cond:
            cameras = [self._camera_view(v) for v in self.cameras.values()]
            return {
                **{k: cameras[0][k] for k in ("source", "seconds_since_frame", "faces")},
                "cameras": cameras,
                "alerts": [
                    {k: v for k, v in a.items() if k != "snapshot_jpeg_base64"} for a in self.alerts
                ],
                "unacknowledged": sum(1 for a in self.alerts if not a["acknowledged"]),
            }

    def next_frame(
        self, after: int, timeout: float, camera: str | None = None
    ) -> tuple[int, bytes | None]:
        """A camera's latest frame once it is newer than `after` (or the same one after
        `timeout`)."""
        with self.cond:
            view = self.camera(camera)
            self.cond.wait_for(lambda: view.seq > after or self.closed, timeout)
            return view.seq, view.jpeg

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()


class LiveSink:
    """An alert sink that puts alerts on the page."""

    def __init__(self, state: LiveState) -> None:
        self.state = state

    def send(self, event: dict[str, Any]) -> None:
        if event.get("event") == "alert":
            self.state.add_alert(event)

    def close(self) -> dict[str, int]:
        return {}
