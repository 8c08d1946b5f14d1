"""A simple IoU tracker for faces across frames, and the per-track debounced angry alert.

A detection continues the track whose last box overlaps it most (IoU ≥ a threshold, greedy by
overlap); unmatched detections start tracks; a track not seen for `max_missing` frames ends.
A track raises an alert by its `AlertRule`: angry in at least k of its last n classified frames
(`votes`), or its P(angry) averaged over its last n classified frames at the model's threshold
(`mean`); and not again within `cooldown_s` seconds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from emowatch.inference.faces import Box, iou


@dataclass
class Track:
    """One face followed across frames."""

    id: int
    box: Box
    first_frame: int
    last_frame: int
    n: int
    emotion: str | None = None
    p_angry: float = 0.0
    angry_history: deque[bool] = field(default_factory=deque)
    p_history: deque[float] = field(default_factory=deque)
    emotion_history: deque[str] = field(default_factory=deque)
    last_alert_time: float | None = None
    missing: int = 0

    @classmethod
    def started(cls, tid: int, box: Box, frame: int, n: int) -> Track:
        """A new track, first seen at `frame`, keeping the last n frames' histories."""
        return cls(
            tid,
            box,
            frame,
            frame,
            1,
            angry_history=deque(maxlen=n),
            p_history=deque(maxlen=n),
            emotion_history=deque(maxlen=n),
        )


class Tracker:
    """Greedy IoU matching of each frame's boxes to live tracks."""

    def __init__(self, iou_threshold: float = 0.3, max_missing: int = 15, n: int = 5) -> None:
        self.iou_threshold, self.max_missing, self.n = iou_threshold, max_missing, n
        self.tracks: dict[int, Track] = {}
        self._next_id = 1

    def update(self, boxes: list[Box], frame: int) -> tuple[list[Track], list[Track], list[Track]]:
        """Match `boxes` (in order) to tracks. Returns (track per box, started, ended)."""
        pairs = sorted(
            (
                (iou(t.box, b), tid, i)
                for tid, t in self.tracks.items()
                for i, b in enumerate(boxes)
            ),
            reverse=True,
        )
        assigned: dict[int, Track] = {}
        used: set[int] = set()
        for overlap, tid, i in pairs:
            if overlap < self.iou_threshold:
                break
            if tid in used or i in assigned:
                continue
            track = self.tracks[tid]
            track.box, track.last_frame, track.missing = boxes[i], frame, 0
            track.n += 1
            assigned[i], _ = track, used.add(tid)
        started = []
        for i, box in enumerate(boxes):
            if i not in assigned:
                track = Track.started(self._next_id, box, frame, self.n)
                self._next_id += 1
                self.tracks[track.id] = track
                assigned[i] = track
                started.append(track)
        ended = []
        for tid in list(self.tracks):
            track = self.tracks[tid]
            if track.last_frame != frame:
                track.missing += 1
                if track.missing > self.max_missing:
                    ended.append(self.tracks.pop(tid))
        return [assigned[i] for i in range(len(boxes))], started, ended

    def close(self) -> list[Track]:
        """End every live track (the source ended)."""
        ended, self.tracks = list(self.tracks.values()), {}
        return ended


def smoothed_emotion(track: Track, emotion: str) -> str:
    """Record this frame's emotion; the track's emotion is the most frequent of its last n
    (on a tie the current one stays, else the newest), so borderline frames do not flip it."""
    track.emotion_history.append(emotion)
    counts: dict[str, int] = {}
    for e in track.emotion_history:
        counts[e] = counts.get(e, 0) + 1
    best = max(counts.values())
    if track.emotion is not None and counts.get(track.emotion) == best:
        return track.emotion
    return next(e for e in reversed(track.emotion_history) if counts[e] == best)


SMOOTHINGS = ("votes", "mean")


@dataclass(frozen=True)
class AlertRule:
    """When a track alerts. `votes`: angry (P(angry) at the model's threshold) in at least k of
    its last n classified frames. `mean`: the mean P(angry) of its last n classified frames
    reaches the threshold, once it has at least k of them. Either way not again for the same
    track within cooldown_s seconds."""

    k: int
    n: int
    cooldown_s: float
    smoothing: str = "votes"

    def __post_init__(self) -> None:
        if self.smoothing not in SMOOTHINGS:
            raise ValueError(f"alert smoothing {self.smoothing!r}: one of {', '.join(SMOOTHINGS)}")
        if self.n < 1:
            raise ValueError(f"alert rule: n must be at least 1, not {self.n}")

    def holds(self, track: Track, threshold: float) -> bool:
        """Whether the track's recent frames call for an alert (the cooldown aside)."""
        if self.smoothing == "mean":
            seen = list(track.p_history)[-self.n :]
            return len(seen) >= self.k and sum(seen) / len(seen) >= threshold
        return sum(list(track.angry_history)[-self.n :]) >= self.k

    def __str__(self) -> str:
        if self.smoothing == "mean":
            early = f" (from {self.k} frames)" if self.k < self.n else ""
            return f"mean P(angry) of {self.n}{early}, cooldown {self.cooldown_s:g} s"
        return f"{self.k} of {self.n}, cooldown {self.cooldown_s:g} s"


def rule_of(acfg) -> AlertRule:
    """The rule of a `deploy.watch.alerts` config."""
    return AlertRule(int(acfg.k), int(acfg.n), float(acfg.cooldown_s), str(acfg.smoothing))


def should_alert(
    track: Track, angry: bool, p_angry: float, now: float, rule: AlertRule, threshold: float
) -> bool:
    """Record this frame's decision and P(angry); True when `rule` holds for the track and it is
    out of its cooldown (the alert time is then recorded)."""
    track.angry_history.append(angry)
    track.p_history.append(p_angry)
    if not rule.holds(track, threshold):
        return False
    if track.last_alert_time is not None and now - track.last_alert_time < rule.cooldown_s:
        return False
    track.last_alert_time = now
    return True


def replay(
    decisions: Iterable[tuple[float, int, bool, float]], rule: AlertRule, threshold: float
) -> list[int]:
    """The indices of the decisions (time in s, track id, angry, P(angry)), in time order, at
    which `rule` raises an alert: `should_alert` on the same faces, as the watcher would run
    it."""
    tracks: dict[int, Track] = {}
    out = []
    for i, (t, tid, angry, p_angry) in enumerate(decisions):
        track = tracks.get(tid)
        if track is None:
            track = tracks[tid] = Track.started(tid, (0, 0, 0, 0), 0, rule.n)
        if should_alert(track, angry, p_angry, t, rule, threshold):
            out.append(i)
    return out
