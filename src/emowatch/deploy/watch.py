"""`emowatch watch SOURCE`: faces and emotions on a camera, video, stream or images, with
debounced angry alerts.

Per frame: detect faces (downscaled), classify each, follow them with an IoU tracker, and emit
JSON-line events: track_started, emotion_changed (the most frequent emotion of the track's last
n frames changed), track_ended, alert (angry in k of the last n classified frames, then a
cooldown), frame_error, and a closing summary with the timings.
Privacy: no frame or face is written anywhere unless asked (`--out` writes the annotated video;
`alerts.include_snapshot` adds the face to alerts; `feedback.save_faces` keeps the faces of
alerts that staff mark on the live page, for review).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from omegaconf import DictConfig

from emowatch.config import resolve_path
from emowatch.deploy import alerts as sinks
from emowatch.deploy import cameras, feedback, site_model
from emowatch.deploy.alerts import now_iso
from emowatch.deploy.hourly import HourlyStats
from emowatch.deploy.sources import Frame
from emowatch.deploy.tracker import Track, Tracker, should_alert, smoothed_emotion
from emowatch.inference import faces
from emowatch.inference.face_classifier import FaceClassifier, FacePrediction, to_gray
from emowatch.inference.finder import FaceFinder, FinderSettings
from emowatch.processes import signals_deferred, sigterm_as_keyboard_interrupt

if TYPE_CHECKING:
    from emowatch.deploy.server import ServeOptions

ANGRY_BGR, OTHER_BGR = (0, 0, 255), (0, 200, 0)


class WatchError(Exception):
    """The watcher cannot start (no model, bad option)."""


@dataclass
class Summary:
    """What a watch run saw and how fast it went."""

    frames: int = 0
    frames_classified: int = 0
    frame_errors: Counter = field(default_factory=Counter)
    faces: int = 0
    tracks: int = 0
    alerts: int = 0
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
            "fps": round(self.frames / self.wall_s, 2) if self.wall_s else None,
            "detect_ms_per_frame": round(1000 * self.detect_s / n, 2),
            "classify_ms_per_frame": round(1000 * self.classify_s / n, 2),
        }


def finder_for(classifier: FaceClassifier, wcfg: DictConfig) -> FaceFinder | None:
    """The camera's face finder (deploy.watch.detect) over the model's Haar cascade; None for
    another detector (then every frame is searched whole, as the model's spec says)."""
    if not isinstance(classifier.detector, faces.HaarDetector) or not wcfg.get("detect"):
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
    ) -> None:
        self.classifier, self.wcfg, self.events = classifier, wcfg, events
        self.alert_sinks = alert_sinks
        self.tracker = Tracker(wcfg.tracker.iou, wcfg.tracker.max_missing, wcfg.alerts.n)
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
        acfg = self.wcfg.alerts
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
            if should_alert(track, pred.angry, frame.time_s, acfg.k, acfg.cooldown_s):
                self.alert(frame, gray, track, pred)
        return tracks

    def alert(self, frame: Frame, gray: np.ndarray, track: Track, pred: FacePrediction) -> None:
        acfg = self.wcfg.alerts
        event = {
            "event": "alert",
            "alert_id": uuid.uuid4().hex[:12],
            "time": now_iso(),
            "source_time_s": round(frame.time_s, 3),
            "frame": frame.index,
            "track": track.id,
            "box": [int(v) for v in pred.box],
            "emotion": "angry",
            "confidence": round(pred.p_angry, 4),
            "threshold_angry": round(self.classifier.threshold, 4),
            "angry_frames": f"{sum(track.angry_history)}/{len(track.angry_history)}",
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
                    raise WatchError(f"cannot write a video to {self.out}")
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
            self.stats.flush()
        return self.summary


def build_sinks(
    wcfg: DictConfig, log_file: Path | None, webhook: str | None
) -> tuple[sinks.Sink, sinks.Sink]:
    """(events sink: stdout and/or log file; alert-only sinks: webhook)."""
    acfg = wcfg.alerts
    events: list[sinks.Sink] = []
    if acfg.stdout:
        events.append(sinks.StreamSink(sys.stdout))
    path = log_file or (Path(acfg.log_file) if acfg.log_file else None)
    if path:
        events.append(sinks.FileSink(path))
    extra: list[sinks.Sink] = []
    url = webhook or acfg.webhook.url
    if url:
        w = acfg.webhook
        extra.append(sinks.WebhookSink(url, w.timeout_s, w.retries, w.backoff_s, w.queue_size))
    return sinks.Fanout(events), sinks.Fanout(extra)


def check_show() -> None:
    """`--show` needs an OpenCV build with a GUI; the headless wheel has none."""
    try:
        cv2.namedWindow("emowatch")
    except cv2.error as err:
        raise WatchError(
            "--show needs a display and an OpenCV build with a GUI (this one is headless); "
            "use --out annotated.mp4 instead"
        ) from err


def main(
    cfg: DictConfig,
    source: str,
    model: str | None = None,
    threshold: float | None = None,
    out: Path | None = None,
    show: bool = False,
    log_file: Path | None = None,
    webhook: str | None = None,
    root: Path | None = None,
    on_frame: Any = None,
    serve: ServeOptions | None = None,
) -> Summary:
    """Watch SOURCE until it ends (or `deploy.watch.max_frames`); returns the summary, which is
    also the last event printed. With `serve`, a live page runs beside it (and, by default,
    stays up after the source ends until Ctrl-C or SIGTERM)."""
    from emowatch.deploy.sources import kind_of, open_source

    wcfg = cfg.deploy.watch
    if show:
        check_show()
    frames = open_source(source, wcfg.reconnect_attempts, wcfg.reconnect_wait_s)
    classifier = site_model.load(cfg, model, threshold, root)
    events, alert_sinks = build_sinks(wcfg, log_file, webhook)
    page = None
    # systemctl stop ends it as Ctrl-C does: video finalised, summary printed, webhooks flushed.
    with sigterm_as_keyboard_interrupt():
        camera = camera_name(wcfg, source)
        if serve is not None:
            page = open_page(wcfg, serve, events, alert_sinks, root, [camera])
            on_frame = chain(on_frame, page.state.publish)
        watcher = Watcher(classifier, wcfg, events, alert_sinks, out, show, on_frame)
        equip(watcher, wcfg, site_model.resolve(cfg, model, root, say=False), root, camera, page)
        if out is not None:
            watcher.fps = video_fps(source)
        # A served video file plays at its own pace, as a camera would deliver it.
        realtime = page is not None and wcfg.serve.realtime and kind_of(source) == "video"
        start, last, interrupted, closed = time.perf_counter(), None, False, False
        try:
            try:
                for frame in frames:
                    if realtime:
                        time.sleep(max(0.0, frame.time_s - (time.perf_counter() - start)))
                    watcher.step(frame)
                    last = frame
                    if wcfg.max_frames and watcher.summary.frames >= wcfg.max_frames:
                        break
            except KeyboardInterrupt:
                interrupted = True
                print("interrupted", file=sys.stderr)
            watcher.summary.wall_s = time.perf_counter() - start
            watcher.close(last)  # open tracks end with the source, not with the page
            closed = True
            if page is not None and not interrupted:
                page.state.source_state("ended", f"{watcher.summary.frames} frames")
                if wcfg.serve.keep_serving:
                    with contextlib.suppress(KeyboardInterrupt):
                        page.wait()
        except Exception as err:
            if page is not None:
                page.state.source_state("error", str(err))
            raise
        finally:
            summary = watcher.summary if closed else watcher.close(last)
            summary.wall_s = summary.wall_s or time.perf_counter() - start
            if page is not None:
                page.stop()
            event = summary.as_event()
            event |= alert_sinks.close()
            events.send(event)
            events.close()
        return summary


def camera_name(wcfg: DictConfig, source: str) -> str:
    """`deploy.watch.camera`, else a name from the source (a file's stem, a device number)."""
    return str(wcfg.camera) if wcfg.get("camera") else cameras.camera_names([source])[0]


def open_page(wcfg, serve, events, alert_sinks, root, names: list[str]):
    """The live page beside the watch, one tile per camera when there are several."""
    from emowatch.deploy.server import LivePage

    store = feedback_store(wcfg, root)
    several = names if len(names) > 1 else None
    return LivePage(wcfg.serve, serve, events, alert_sinks, root, store, names[0], several)


def equip(watcher: Watcher, wcfg: DictConfig, spec: str, root, camera: str, page) -> None:
    """A camera's watcher gets its hourly statistics and, with a live page whose site keeps
    feedback faces, the hand-over of alert faces."""
    if wcfg.stats_log:
        path = resolve_path(wcfg.stats_log, root)
        watcher.stats = HourlyStats(path, camera, spec, int(wcfg.stats_bins))
    if page is not None and page.feedback_store is not None:
        watcher.face_keeper = page.state.hold_face


def feedback_store(wcfg: DictConfig, root: Path | None) -> feedback.FeedbackStore | None:
    """Where marked alerts' faces wait for review; None unless feedback.save_faces."""
    fcfg = wcfg.feedback
    if not fcfg.save_faces:
        return None
    return feedback.FeedbackStore(resolve_path(fcfg.dir, root), float(fcfg.keep_days))


def main_many(
    cfg: DictConfig,
    sources: list[str],
    model: str | None = None,
    threshold: float | None = None,
    out: Path | None = None,
    log_file: Path | None = None,
    webhook: str | None = None,
    root: Path | None = None,
    serve: ServeOptions | None = None,
) -> dict[str, Summary]:
    """Watch several sources in one process (deploy/cameras.py): one model, one batch per
    round, a tracker, alert rule and video file per camera, every event named by camera, and
    with `serve` one live page showing every camera. Each camera's summary is printed, then the
    total; returns the summaries by camera."""
    wcfg = cfg.deploy.watch
    classifier = site_model.load(cfg, model, threshold, root)
    events, alert_sinks = build_sinks(wcfg, log_file, webhook)
    with sigterm_as_keyboard_interrupt():
        names = cameras.camera_names(sources)
        page = open_page(wcfg, serve, events, alert_sinks, root, names) if serve else None

        def report(event: dict[str, Any]) -> None:
            events.send(event)
            if page is not None and event.get("event") == "camera_error":
                page.state.source_state("error", event["error"], camera=event["camera"])

        feeds = cameras.open_feeds(
            sources, names, wcfg.reconnect_attempts, wcfg.reconnect_wait_s, report
        )
        if not feeds:
            if page is not None:
                page.stop()
            events.close()
            raise WatchError(f"none of the {len(sources)} sources could be opened (see above)")
        spec = site_model.resolve(cfg, model, root, say=False)
        watchers: dict[str, Watcher] = {}
        for feed in feeds:
            path = out.with_name(f"{out.stem}-{feed.name}{out.suffix}") if out else None
            w = Watcher(classifier, wcfg, events, alert_sinks, path)
            w.camera = feed.name
            if path is not None:
                w.fps = video_fps(feed.spec)
            equip(w, wcfg, spec, root, feed.name, page)
            if page is not None:
                w.on_frame = functools.partial(page.state.publish, camera=feed.name)
            watchers[feed.name] = w

        def ended(name: str, error: str | None) -> None:
            if page is not None:
                done = f"{watchers[name].summary.frames} frames"
                page.state.source_state("error" if error else "ended", error or done, camera=name)

        start = time.perf_counter()
        try:
            cameras.run(feeds, watchers, classifier, report, wcfg.max_frames, ended)
            if page is not None and wcfg.serve.keep_serving:
                page.wait()
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
        finally:
            wall = time.perf_counter() - start
            summaries = {}
            for name, w in watchers.items():
                summaries[name] = w.close(w.last_frame)
                summaries[name].wall_s = wall
                events.send(summaries[name].as_event() | {"camera": name})
            frames = sum(x.frames for x in summaries.values())
            total = {"event": "summary", "time": now_iso(), "cameras": list(summaries)}
            total |= {"frames": frames, "fps": round(frames / wall, 2) if wall else None}
            events.send(total | {"alerts": sum(x.alerts for x in summaries.values())})
            if page is not None:
                page.stop()
            events.send(alert_sinks.close() | {"event": "sinks", "time": now_iso()})
            events.close()
        return summaries


def chain(*callbacks: Any) -> Any:
    """One on_frame callback calling each given one."""
    active = [c for c in callbacks if c is not None]

    def call(*args: Any) -> None:
        for callback in active:
            callback(*args)

    return call


def video_fps(source: str) -> float:
    """The frame rate to write the annotated video at: the source's, else 25."""
    cap = cv2.VideoCapture(source) if Path(source).is_file() else None
    fps = cap.get(cv2.CAP_PROP_FPS) if cap is not None and cap.isOpened() else 0.0
    if cap is not None:
        cap.release()
    return fps if fps and fps > 0 else 25.0
