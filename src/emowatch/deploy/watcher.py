"""One camera's watcher: faces found and classified in each frame, followed by an IoU tracker,
and the events of what it saw (track_started, emotion_changed, track_ended, alert, frame_error)
with its counters. The watch loop (deploy/watch.py) feeds it frames, one camera or many.

Privacy: no frame or face is written anywhere unless asked (`--out` writes the annotated video;
`alerts.include_snapshot` adds the face to alerts; `feedback.save_faces` keeps the faces of
alerts that staff mark on the live page, for review).
"""

from __future__ import annotations

import base64
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from omegaconf import DictConfig

from emowatch.deploy import alerts as sinks
from emowatch.deploy import feedback
from emowatch.deploy.alerts import now_iso
from emowatch.deploy.hourly import HourlyStats
from emowatch.deploy.sources import Frame
from emowatch.deploy.tracker import (
    AlertRule,
    Track,
    Tracker,
    rule_of,
    should_alert,
    smoothed_emotion,
)
from emowatch.inference import faces
from emowatch.inference.face_classifier import FaceClassifier, FacePrediction, to_gray
from emowatch.inference.finder import FaceFinder, FinderSettings
from emowatch.processes import signals_deferred

ANGRY_BGR, OTHER_BGR = (0, 0, 255), (0, 200, 0)


class VideoError(Exception):
    """The annotated video cannot be written where asked."""


@dataclass
class Summary:
    """What a watch run saw and how fast it went."""

    frames: int = 0
    frames_classified: int = 0
    frame_errors: Counter = field(default_factory=Counter)
    faces: int = 0
    tracks: int = 0
    alerts: int = 0
    outages: int = 0  # a live source's outages (camera_down ... camera_up)
    down_s: float = 0.0
    camera_alerts: int = 0  # outages longer than deploy.watch.down_alert_s
    detect_s: float = 0.0
    classify_s: float = 0.0
    wall_s: float = 0.0

    def as_event(self) -> dict[str, Any]:
        n = max(self.frames_classified, 1)
        return {
            "event": "summary",
            "time": now_iso(),
            "frames": self.frames,
            "frames_classified": self.frames_classified,
            "frame_errors": sum(self.frame_errors.values()),
            "frame_error_kinds": dict(self.frame_errors),
            "faces": self.faces,
            "tracks": self.tracks,
            "alerts": self.alerts,
            "outages": self.outages,
            "down_s": round(self.down_s, 1),
            "camera_alerts": self.camera_alerts,
            "fps": round(self.frames / self.wall_s, 2) if self.wall_s else None,
            "detect_ms_per_frame": round(1000 * self.detect_s / n, 2),
            "classify_ms_per_frame": round(1000 * self.classify_s / n, 2),
        }


def finder_for(classifier: FaceClassifier, wcfg: DictConfig) -> FaceFinder | None:
    """The camera's face finder over the model's detector, one per camera: the settings the
    model was evaluated and registered with (its spec's `finder`), else (a model registered
    before specs carried them) deploy.watch.detect."""
    if classifier.finder is not None:
        return FaceFinder(classifier.detector, classifier.finder.settings)
    if not wcfg.get("detect"):
        return None
    return FaceFinder(classifier.detector, FinderSettings(**wcfg.detect))


def annotate(image: np.ndarray, tracks: list[Track], preds: list[FacePrediction]) -> np.ndarray:
    """A BGR copy of the frame with a box and label per face (red when angry)."""
    out = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image.copy()
    for track, pred in zip(tracks, preds, strict=True):
        x, y, w, h = pred.box
        color = ANGRY_BGR if pred.angry else OTHER_BGR
        cv2.rectangle(out, (x, y), (x + w, y + h), color, 2)
        label = f"#{track.id} {pred.emotion} {pred.probabilities[pred.emotion]:.2f}"
        cv2.putText(out, label, (x, max(12, y - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1)
    return out


def snapshot(gray: np.ndarray, box: faces.Box) -> str:
    x, y, w, h = box
    ok, buf = cv2.imencode(".jpg", gray[y : y + h, x : x + w])
    return base64.b64encode(buf.tobytes()).decode() if ok else ""


@dataclass
class Seen:
    """A readable frame in gray, and its faces when it is to be classified (else None)."""

    gray: np.ndarray
    found: list[faces.Face] | None


class Watcher:
    """The watch loop's state: tracker, sinks, optional video writer, counters."""

    def __init__(
        self,
        classifier: FaceClassifier,
        wcfg: DictConfig,
        events: sinks.Sink,
        alert_sinks: sinks.Sink | None = None,
        out: Path | None = None,
        show: bool = False,
        on_frame: Any = None,
        rule: AlertRule | None = None,
    ) -> None:
        self.classifier, self.wcfg, self.events = classifier, wcfg, events
        self.alert_sinks = alert_sinks
        # the rule watch chose for its model (deploy.alert_rule), else the configured one
        self.rule = rule or rule_of(wcfg.alerts)
        # the history kept per track: the rule's window, and at least the configured n (the
        # window the track's emotion is smoothed over)
        history = max(self.rule.n, int(wcfg.alerts.n))
        self.tracker = Tracker(wcfg.tracker.iou, wcfg.tracker.max_missing, history)
        self.out, self.show, self.writer = out, show, None
        self.writer_size, self.fps = (0, 0), 25.0
        self.on_frame = on_frame  # callback(annotated BGR frame, tracks, preds) for a live page
        self.summary = Summary()
        self.enabled = set(wcfg.events)
        self.last: tuple[list[Track], list[FacePrediction]] = ([], [])
        # callback(alert_id, face) where staff feedback may keep alert faces (the live page)
        self.face_keeper: Any = None
        self.stats: HourlyStats | None = None  # hourly counts for drift checks
        self.finder = finder_for(classifier, wcfg)
        self.camera: str | None = None  # named in every event when several cameras run
        self.last_frame: Frame | None = None

    def emit(self, event: dict[str, Any], kind: str | None = None) -> None:
        if kind is None or kind in self.enabled:
            self.events.send(self.tagged(event))

    def tagged(self, event: dict[str, Any]) -> dict[str, Any]:
        """The event with this watcher's camera name (several cameras in one process)."""
        return event | {"camera": self.camera} if self.camera else event

    def track_event(self, name: str, frame: Frame, track: Track, **extra: Any) -> None:
        event = {"event": name, "time": now_iso(), "source_time_s": round(frame.time_s, 3)}
        event |= {"frame": frame.index, "track": track.id, "box": [int(v) for v in track.box]}
        self.emit(event | extra, name)

    def step(self, frame: Frame) -> None:
        """Process one frame (counted once done: a frame cut short by Ctrl-C is not)."""
        seen = self.look(frame)
        preds = None
        if seen is not None and seen.found is not None:
            t1 = time.perf_counter()
            preds = self.classifier.classify(seen.gray, seen.found)
            self.summary.classify_s += time.perf_counter() - t1
        self.finish(frame, seen, preds)

    def look(self, frame: Frame) -> Seen | None:
        """The frame in gray and, when it is to be classified, its faces; None for a frame
        that could not be read (reported and counted here)."""
        s = self.summary
        if frame.image is None:
            s.frames += 1
            kind = (frame.error or "unreadable").split(":")[0]
            s.frame_errors[kind] += 1
            self.emit(
                {
                    "event": "frame_error",
                    "time": now_iso(),
                    "frame": frame.index,
                    "source": frame.name,
                    "error": frame.error,
                }
            )
            return None
        gray = self.classifier.prepare(to_gray(frame.image))
        if frame.index % max(1, int(self.wcfg.every)) != 0 and self.last[0]:
            return Seen(gray, None)  # between classified frames: the last result stands
        t0 = time.perf_counter()
        if self.finder is not None:
            tracked = [t.box for t in self.tracker.tracks.values()]
            found = self.finder.find(gray, s.frames_classified, tracked)
        else:
            found = self.classifier.detect(gray)
        s.detect_s += time.perf_counter() - t0
        return Seen(gray, found)

    def finish(self, frame: Frame, seen: Seen | None, preds: list[FacePrediction] | None):
        """Track, alert and render with this frame's predictions (None: the last ones)."""
        if seen is None:
            return
        s = self.summary
        if preds is not None:
            s.frames_classified += 1
            s.faces += len(preds)
            if self.stats is not None:
                self.stats.add(preds)
            self.last = (self.update_tracks(frame, seen.gray, preds), preds)
        tracks, preds = self.last
        with signals_deferred():  # a Ctrl-C/SIGTERM lands between frames, never inside one
            if self.out or self.show or self.on_frame:
                self.render(frame, tracks, preds)
            s.frames += 1
        self.last_frame = frame

    def update_tracks(
        self, frame: Frame, gray: np.ndarray, preds: list[FacePrediction]
    ) -> list[Track]:
        tracks, started, ended = self.tracker.update([p.box for p in preds], frame.index)
        self.summary.tracks += len(started)
        for track in ended:
            self.track_event("track_ended", frame, track, frames=track.n, emotion=track.emotion)
        new = {t.id for t in started}
        threshold = self.classifier.threshold
        for track, pred in zip(tracks, preds, strict=True):
            conf = round(pred.probabilities[pred.emotion], 4)
            emotion = smoothed_emotion(track, pred.emotion)
            if track.id in new:
                self.track_event(
                    "track_started", frame, track, emotion=pred.emotion, confidence=conf
                )
            elif emotion != track.emotion:
                self.track_event(
                    "emotion_changed", frame, track, emotion=emotion, previous=track.emotion
                )
            track.emotion, track.p_angry = emotion, pred.p_angry
            if should_alert(track, pred.angry, pred.p_angry, frame.time_s, self.rule, threshold):
                self.alert(frame, gray, track, pred)
        return tracks

    def alert(self, frame: Frame, gray: np.ndarray, track: Track, pred: FacePrediction) -> None:
        acfg = self.wcfg.alerts
        votes = list(track.angry_history)[-self.rule.n :]  # the rule's window
        seen = list(track.p_history)[-self.rule.n :]
        event = {
            "event": "alert",
            "kind": "angry",
            "alert_id": uuid.uuid4().hex[:12],
            "time": now_iso(),
            "source_time_s": round(frame.time_s, 3),
            "frame": frame.index,
            "track": track.id,
            "box": [int(v) for v in pred.box],
            "emotion": "angry",
            "confidence": round(pred.p_angry, 4),
            "threshold_angry": round(self.classifier.threshold, 4),
            "angry_frames": f"{sum(votes)}/{len(votes)}",
            "mean_p_angry": round(sum(seen) / len(seen), 4),
            "rule": str(self.rule),
        }
        event = self.tagged(event)
        if acfg.include_snapshot:
            event["snapshot_jpeg_base64"] = snapshot(gray, pred.box)
        if self.face_keeper is not None:
            margin = self.wcfg.feedback.margin
            self.face_keeper(event["alert_id"], feedback.face_region(gray, pred.box, margin))
        self.summary.alerts += 1
        self.events.send(event)
        if self.alert_sinks is not None:
            self.alert_sinks.send(event)

    def render(self, frame: Frame, tracks: list[Track], preds: list[FacePrediction]) -> None:
        image = annotate(frame.image, tracks, preds)
        if self.out:
            if self.writer is None:
                h, w = image.shape[:2]
                self.out.parent.mkdir(parents=True, exist_ok=True)
                fourcc = cv2.VideoWriter_fourcc(*("mp4v" if self.out.suffix == ".mp4" else "MJPG"))
                self.writer = cv2.VideoWriter(str(self.out), fourcc, self.fps, (w, h))
                if not self.writer.isOpened():
                    raise VideoError(f"cannot write a video to {self.out}")
                self.writer_size = (w, h)
            if (image.shape[1], image.shape[0]) != self.writer_size:  # images of other sizes
                image = cv2.resize(image, self.writer_size)
            self.writer.write(image)
        if self.show:
            cv2.imshow("emowatch", image)
            cv2.waitKey(1)
        if self.on_frame:
            self.on_frame(image, tracks, preds)

    def close(self, last: Frame | None) -> Summary:
        for track in self.tracker.close():
            if last is not None:
                self.track_event("track_ended", last, track, frames=track.n, emotion=track.emotion)
        if self.writer is not None:
            self.writer.release()
        if self.stats is not None:
            self.stats.close()
        return self.summary
