"""`emowatch watch SOURCE [SOURCE ...]`: one watch loop for one camera or many.

Set-up: the model, the event and alert sinks, the live page (`--serve`), a reader thread per
source (deploy/cameras.py) and a `Watcher` per camera (deploy/watcher.py). Rounds: a frame from
each camera that has one, its faces found per camera, every face of every camera classified in
one batch, each camera's watcher tracking and alerting. Outages of a live source become events
(`camera_down` with the reason, `camera_up` with how long it was down) and the state of its
tile on the page; a camera down longer than `deploy.watch.down_alert_s` raises an alert through
every sink; a camera that is down never stops the others. Shutdown (end of the sources, Ctrl-C,
or SIGTERM, which systemd sends): open tracks end, videos are finalised, summaries printed, the
webhook gets what it can in a few seconds (the rest stays spooled for the next run).

The exit status is an `Outcome`: the contract a service manager reads.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
from omegaconf import DictConfig

from emowatch.config import resolve_path
from emowatch.deploy import alert_rule, cameras, feedback, redact, site_model
from emowatch.deploy import alerts as sinks
from emowatch.deploy.alerts import now_iso
from emowatch.deploy.hourly import HourlyStats
from emowatch.deploy.retention import DailyLog
from emowatch.deploy.sources import Backoff, Frame, SourceDown, SourceError, SourceUp
from emowatch.deploy.tracker import AlertRule
from emowatch.deploy.watcher import Summary, VideoError, Watcher
from emowatch.deploy.webhook import WebhookError, WebhookSink
from emowatch.inference.face_classifier import FaceClassifier
from emowatch.processes import sigterm_as_keyboard_interrupt

if TYPE_CHECKING:
    from emowatch.deploy.server import LivePage, ServeOptions


class Outcome(IntEnum):
    """How a watch ended, as its exit status."""

    OK = 0  # the sources ended, or the watch was stopped (Ctrl-C, SIGTERM)
    FAILED = 1  # it could not start: no model, a bad option, no source could be opened
    # Every live source was given up (deploy.watch.reconnect.max_attempts is set and each
    # outage used them up): monitoring has stopped, so a service manager should restart it.
    SOURCES_LOST = 69  # EX_UNAVAILABLE in sysexits.h


class WatchError(Exception):
    """The watcher cannot start (no model, bad option, no source)."""


@dataclass
class Result:
    outcome: Outcome
    summaries: dict[str, Summary]


@dataclass
class CameraState:
    """A camera's outage bookkeeping."""

    down_since: float | None = None
    reason: str = ""
    alerted: bool = False
    given_up: bool = False
    ended: bool = False


def backoff_of(wcfg: DictConfig) -> Backoff:
    r = wcfg.reconnect
    attempts = None if r.max_attempts is None else int(r.max_attempts)
    return Backoff(
        float(r.initial_s), float(r.max_s), float(r.factor), float(r.jitter), attempts,
        float(r.open_timeout_s), float(r.read_timeout_s),
    )  # fmt: skip


def build_sinks(
    wcfg: DictConfig, log_file: Path | None, webhook: str | None, root: Path | None
) -> tuple[sinks.Fanout, sinks.Fanout]:
    """(events: stdout and/or a log file; alert sinks: the webhook, and the page's alert log
    and list when it is served)."""
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
        secret = os.environ.get(w.secret_env) if w.secret_env else None
        if not secret:
            print(
                f"WARNING: webhook posts are not signed: set {w.secret_env} to a shared secret",
                file=sys.stderr,
            )
        extra.append(
            WebhookSink(
                url, resolve_path(w.spool_dir, root), float(w.timeout_s), float(w.backoff_s),
                float(w.max_backoff_s), int(w.max_spooled), secret,
            )
        )  # fmt: skip
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


def camera_names(wcfg: DictConfig, sources: list[str]) -> list[str]:
    """`deploy.watch.camera` for a single source when set, else names from the sources."""
    if len(sources) == 1 and wcfg.get("camera"):
        return [str(wcfg.camera)]
    return cameras.camera_names(sources)


def feedback_store(wcfg: DictConfig, root: Path | None) -> feedback.FeedbackStore | None:
    """Where marked alerts' faces wait for review; None unless feedback.save_faces."""
    fcfg = wcfg.feedback
    if not fcfg.save_faces:
        return None
    return feedback.FeedbackStore(resolve_path(fcfg.dir, root), float(fcfg.keep_days))


def video_fps(source: str) -> float:
    """The frame rate to write the annotated video at: the source's, else 25."""
    cap = cv2.VideoCapture(source) if Path(source).is_file() else None
    fps = cap.get(cv2.CAP_PROP_FPS) if cap is not None and cap.isOpened() else 0.0
    if cap is not None:
        cap.release()
    return fps if fps and fps > 0 else 25.0


@dataclass
class Session:
    """One watch: its sinks, page, feeds, watchers and the cameras' states."""

    cfg: DictConfig
    classifier: FaceClassifier
    events: sinks.Fanout
    alert_sinks: sinks.Fanout
    root: Path | None
    page: LivePage | None = None
    feeds: list[cameras.Feed] = field(default_factory=list)
    watchers: dict[str, Watcher] = field(default_factory=dict)
    states: dict[str, CameraState] = field(default_factory=dict)
    several: bool = False
    model: str | None = None  # --model, else deploy.watch.model
    rule: AlertRule | None = None  # deploy.alert_rule's choice for the model
    show: bool = False
    on_frame: Any = None  # callback(annotated frame, tracks, predictions), e.g. a benchmark's

    @property
    def wcfg(self) -> DictConfig:
        return self.cfg.deploy.watch

    def emit(self, event: dict[str, Any], alert: bool = False) -> None:
        """An event on the events sinks, and with `alert` on the alert sinks too."""
        self.events.send(event)
        if alert:
            self.alert_sinks.send(event)

    def tile(self, camera: str, status: str, detail: str) -> None:
        if self.page is not None:
            self.page.state.source_state(status, detail, camera=camera if self.several else None)

    def add_feeds(
        self, feeds: list[cameras.Feed], failed: dict[str, str], out: Path | None
    ) -> None:
        """A watcher per feed; the sources that could not be opened are reported."""
        for name, error in failed.items():
            self.emit({"event": "camera_error", "time": now_iso(), "camera": name, "error": error})
            self.tile(name, "error", error)
        model_spec = site_model.resolve(self.cfg, self.model, self.root, say=False)
        for feed in feeds:
            self.feeds.append(feed)
            self.watchers[feed.name] = self.watcher_for(feed.name, feed.spec, out, model_spec)
            self.states[feed.name] = CameraState()

    def watcher_for(self, name: str, spec: str, out: Path | None, model_spec: str) -> Watcher:
        wcfg = self.wcfg
        path = out
        if out is not None and self.several:
            path = out.with_name(f"{out.stem}-{name}{out.suffix}")
        watcher = Watcher(
            self.classifier, wcfg, self.events, self.alert_sinks, path, self.show, rule=self.rule
        )
        watcher.camera = name if self.several else None
        if path is not None:
            watcher.fps = video_fps(spec)
        if wcfg.stats_log:
            log = DailyLog(resolve_path(wcfg.stats_log, self.root), float(wcfg.keep_days))
            watcher.stats = HourlyStats(log, name, model_spec, int(wcfg.stats_bins))
        if self.page is not None:
            publish = functools.partial(self.page.state.publish, camera=name)
            if not self.several:
                publish = self.page.state.publish
            watcher.on_frame = chain(self.on_frame, publish)
            if self.page.feedback_store is not None:
                watcher.face_keeper = self.page.state.hold_face
        elif self.on_frame is not None:
            watcher.on_frame = self.on_frame
        return watcher

    # Outages of live sources.
    def source_down(self, name: str, down: SourceDown) -> None:
        state = self.states[name]
        if state.down_since is None:  # a new outage: one camera_down
            state.down_since, state.reason, state.alerted = time.monotonic(), down.reason, False
            self.watchers[name].summary.outages += 1
            self.emit(
                {
                    "event": "camera_down",
                    "time": now_iso(),
                    "camera": name,
                    "reason": down.reason,
                    "retry_in_s": down.retry_in_s,
                }
            )
        state.reason = down.reason
        if down.retry_in_s is None:
            state.given_up = True
            error = f"given up after {down.attempt} reopening attempt(s): {down.reason}"
            self.emit({"event": "camera_error", "time": now_iso(), "camera": name, "error": error})
            self.tile(name, "error", error)
            return
        detail = f"{down.reason}; reopening (attempt {down.attempt}) in {down.retry_in_s:.0f} s"
        self.tile(name, "down", detail)

    def source_up(self, name: str, up: SourceUp) -> None:
        state = self.states[name]
        if state.down_since is None:
            return
        self.watchers[name].summary.down_s += up.down_s
        event = {
            "event": "camera_up",
            "time": now_iso(),
            "camera": name,
            "down_s": up.down_s,
            "attempts": up.attempts,
        }
        self.emit(event, alert=state.alerted)  # the receiver of the down alert hears it ended
        state.down_since, state.alerted = None, False

    def check_outages(self) -> None:
        """A camera down longer than down_alert_s: one alert through every sink."""
        limit = self.wcfg.down_alert_s
        if limit is None:
            return
        now = time.monotonic()
        for name, state in self.states.items():
            if state.down_since is None or state.alerted or now - state.down_since < limit:
                continue
            state.alerted = True
            self.watchers[name].summary.camera_alerts += 1
            alert = {
                "event": "alert",
                "kind": "camera_down",
                "alert_id": uuid.uuid4().hex[:12],
                "time": now_iso(),
                "camera": name,
                "down_s": round(now - state.down_since, 1),
                "reason": state.reason,
            }
            self.emit(alert, alert=True)

    # The rounds.
    def run(self) -> Outcome:
        """Rounds until every feed has ended (or max_frames per camera)."""
        for feed in self.feeds:
            feed.start()
        active, max_frames = list(self.feeds), self.wcfg.max_frames
        try:
            while active:
                rounds = []
                for feed in list(active):
                    watcher = self.watchers[feed.name]
                    item = feed.next(0.02)
                    done = max_frames and watcher.summary.frames >= max_frames
                    if item is cameras.END or done:
                        active.remove(feed)
                        self.ended(feed)
                    elif isinstance(item, SourceDown):
                        self.source_down(feed.name, item)
                    elif isinstance(item, SourceUp):
                        self.source_up(feed.name, item)
                    elif isinstance(item, Frame):
                        rounds.append((feed.name, item, watcher.look(item)))
                self.check_outages()
                if rounds:
                    self.classify(rounds)
        finally:
            for feed in self.feeds:
                feed.close()
        live = [n for n, f in zip(self.states, self.feeds, strict=True) if f.live]
        if live and all(self.states[n].given_up for n in live):
            return Outcome.SOURCES_LOST
        return Outcome.OK

    def classify(self, rounds: list) -> None:
        """Every face of the round's frames in one batch, then each camera's tracks."""
        batch = [(n, s) for n, _, s in rounds if s is not None and s.found is not None]
        t0 = time.perf_counter()
        found = [(s.gray, s.found) for _, s in batch]
        preds = self.classifier.classify_many(found) if batch else []
        share = (time.perf_counter() - t0) / max(1, len(batch))
        by_camera = {}
        for (name, _), p in zip(batch, preds, strict=True):
            by_camera[name] = p
            self.watchers[name].summary.classify_s += share
        for name, frame, seen in rounds:
            self.watchers[name].finish(frame, seen, by_camera.get(name))

    def ended(self, feed: cameras.Feed) -> None:
        state = self.states[feed.name]
        state.ended = True
        if state.given_up:
            return
        if feed.error:
            error = {"event": "camera_error", "time": now_iso(), "camera": feed.name}
            self.emit(error | {"error": feed.error})
            self.tile(feed.name, "error", feed.error)
        else:
            self.tile(feed.name, "ended", f"{self.watchers[feed.name].summary.frames} frames")

    def close(self, wall_s: float) -> dict[str, Summary]:
        """End open tracks, finalise videos, print the summaries, close page and sinks."""
        summaries = {}
        for name, watcher in self.watchers.items():
            summaries[name] = watcher.close(watcher.last_frame)
            summaries[name].wall_s = wall_s
            if self.several:
                self.events.send(summaries[name].as_event() | {"camera": name})
        if self.page is not None:
            self.page.stop()
        stats = self.alert_sinks.close()
        if self.several or not summaries:
            frames = sum(s.frames for s in summaries.values())
            total = {"event": "summary", "time": now_iso(), "cameras": list(summaries)}
            total |= {"frames": frames, "fps": round(frames / wall_s, 2) if wall_s else None}
            total |= {"alerts": sum(s.alerts for s in summaries.values())}
        else:
            total = next(iter(summaries.values())).as_event()
        self.events.send(total | stats)
        self.events.close()
        return summaries


def chain(*callbacks: Any) -> Any:
    """One on_frame callback calling each given one."""
    active = [c for c in callbacks if c is not None]

    def call(*args: Any, **kwargs: Any) -> None:
        for callback in active:
            callback(*args, **kwargs)

    return call


def open_feeds(
    wcfg: DictConfig, sources: list[str], names: list[str], paced: bool
) -> tuple[list[cameras.Feed], dict[str, str]]:
    """A feed per source that opens, and the error of each that does not (with one source,
    its SourceError is raised: the watch cannot start)."""
    backoff, feeds, failed = backoff_of(wcfg), [], {}
    for name, spec in zip(names, sources, strict=True):
        try:
            feeds.append(cameras.open_feed(name, spec, backoff, paced))
        except SourceError as err:
            if len(sources) == 1:
                raise
            failed[name] = str(err)
    return feeds, failed


def open_page(session: Session, serve: ServeOptions, names: list[str]) -> LivePage:
    """The live page beside the watch, one tile per camera when there are several."""
    from emowatch.deploy.server import LivePage

    wcfg = session.wcfg
    store = feedback_store(wcfg, session.root)
    several = names if session.several else None
    return LivePage(
        wcfg.serve, serve, session.events, session.alert_sinks, session.root, store, names[0],
        several, float(wcfg.keep_days),
    )  # fmt: skip


def main(
    cfg: DictConfig,
    sources: list[str] | str,
    model: str | None = None,
    threshold: float | None = None,
    out: Path | None = None,
    show: bool = False,
    log_file: Path | None = None,
    webhook: str | None = None,
    root: Path | None = None,
    on_frame: Any = None,
    serve: ServeOptions | None = None,
) -> Result:
    """Watch the sources until they end (or `deploy.watch.max_frames` each), are given up, or
    the watch is stopped; the last event printed is the summary. With `serve`, a live page runs
    beside it and (deploy.watch.serve.keep_serving) stays up after the sources end, until
    Ctrl-C or SIGTERM."""
    sources = [sources] if isinstance(sources, str) else list(sources)
    wcfg = cfg.deploy.watch
    if show and len(sources) > 1:
        raise WatchError("--show takes one source: use --serve to see several cameras")
    if show:
        check_show()
    names = camera_names(wcfg, sources)
    try:  # a file that cannot be read fails before the model is loaded
        feeds, failed = open_feeds(wcfg, sources, names, serve is not None and wcfg.serve.realtime)
    except SourceError as err:
        raise WatchError(redact.text(str(err))) from None
    spec = site_model.resolve(cfg, model, root)  # says which model and why
    classifier = site_model.load(cfg, spec, threshold, root)
    rule, why = alert_rule.for_model(cfg, spec, root)
    print(f"alert rule: {rule} — {why}", file=sys.stderr)
    try:
        events, alert_sinks = build_sinks(wcfg, log_file, webhook, root)
    except (WebhookError, OSError) as err:
        raise WatchError(str(err)) from None
    session = Session(cfg, classifier, events, alert_sinks, root, several=len(sources) > 1)
    session.model, session.show, session.on_frame, session.rule = spec, show, on_frame, rule
    start, outcome = time.perf_counter(), Outcome.OK
    # systemctl stop ends it as Ctrl-C does: videos finalised, summary printed, webhook spooled.
    with sigterm_as_keyboard_interrupt():
        try:
            if serve is not None:
                session.page = open_page(session, serve, names)
            session.add_feeds(feeds, failed, out)
            if not session.feeds:
                raise WatchError(f"none of the {len(sources)} sources could be opened (see above)")
            try:
                outcome = session.run()
                lost = outcome == Outcome.SOURCES_LOST
                if session.page is not None and wcfg.serve.keep_serving and not lost:
                    session.page.wait()
            except KeyboardInterrupt:
                print("interrupted", file=sys.stderr)
        except VideoError as err:
            raise WatchError(redact.text(str(err))) from None
        finally:
            with contextlib.suppress(KeyboardInterrupt):
                summaries = session.close(time.perf_counter() - start)
    if outcome == Outcome.SOURCES_LOST:
        print("every live source was given up: exiting for a restart", file=sys.stderr)
    return Result(outcome, summaries)
