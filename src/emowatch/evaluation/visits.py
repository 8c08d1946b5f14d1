"""Customer visits at a counter, made from people's photos: what a camera would show, and how
the alerts raised on it score as the business sees them.

A visit is one person at one place of the frame (a lane): they come in calm (a neutral photo of
theirs), show one expression for a few seconds (an angry photo in an angry visit, another of
their photos otherwise), calm down and leave. Each visit has its own face size, light level and
length; a new visit starts in a lane after a gap, so several people are in view at once. Visits
are drawn with a seed, so one set of photos and settings gives one scenario.

An alert is for the visit whose face it lies on (IoU ≥ 0.3 with the true box at its time). It
catches an angry visit when it comes between the onset of anger and `grace_s` after its end; any
other alert is a false alarm. False alarms per camera-hour are stated at a given share of angry
visits from the rates per second of calm and of angry visits, times the faces in view.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from emowatch.evaluation.scenes import Portrait, paste, scaled
from emowatch.inference.faces import Box, iou

ANGRY = "angry"
CALM = "neutral"


class NoVisits(ValueError):
    """These people's photos cannot make the visits asked for."""


@dataclass(frozen=True)
class Look:
    """One photo of a person: the image, its true face box and its class."""

    portrait: Portrait
    label: str


@dataclass(frozen=True)
class Visit:
    person: str
    lane: int
    start_s: float
    end_s: float
    onset_s: float  # the expression's (anger's, in an angry visit) start ...
    offset_s: float  # ... and end
    calm: Look
    middle: Look
    face: int  # face side in pixels
    gain: float  # light: the photo's brightness times this

    @property
    def angry(self) -> bool:
        return self.middle.label == ANGRY

    def look_at(self, t: float) -> Look | None:
        if not self.start_s <= t < self.end_s:
            return None
        return self.middle if self.onset_s <= t < self.offset_s else self.calm


@dataclass(frozen=True)
class Settings:
    """How the visits are drawn (conf/scenarios)."""

    visits: int
    angry_share: float
    lanes: int
    visit_s: tuple[float, float]
    gap_s: tuple[float, float]
    expression_s: tuple[float, float]
    face_px: tuple[int, int]
    light: tuple[float, float]


def plan(people: dict[str, list[Look]], s: Settings, seed: int) -> list[Visit]:
    """`s.visits` visits (round(visits × angry_share) of them angry, by people who have angry
    photos), people taking turns, each in the lane that frees up first. A person's calm look is
    a neutral photo of theirs (else any non-angry one); a person with no non-angry photo cannot
    visit. Raises NoVisits when no visit (or no angry one) can be made."""
    rng = np.random.default_rng(seed)
    calm = {
        p: [x for x in looks if x.label == CALM] or [x for x in looks if x.label != ANGRY]
        for p, looks in people.items()
    }
    able = sorted(p for p in people if calm[p])
    angry_able = [p for p in able if any(x.label == ANGRY for x in people[p])]
    if not able:
        raise NoVisits("no person has a neutral (or other non-angry) photo to come in with")
    n_angry = round(s.visits * s.angry_share)
    if n_angry and not angry_able:
        raise NoVisits("no person has both an angry and a non-angry photo")
    kinds = rng.permutation([True] * n_angry + [False] * (s.visits - n_angry))
    free = [float(rng.uniform(0, s.gap_s[1])) for _ in range(s.lanes)]
    out = []
    for turn, angry in enumerate(kinds):
        pool = angry_able if angry else able
        person = pool[turn % len(pool)]
        # an angry visit shows one of their angry looks; a calm one another of their others
        middles = [x for x in people[person] if (x.label == ANGRY) == bool(angry)]
        lane = int(np.argmin(free))
        start = free[lane] + float(rng.uniform(*s.gap_s))
        length = float(rng.uniform(*s.visit_s))
        phase = min(float(rng.uniform(*s.expression_s)), 0.8 * length)
        onset = start + float(rng.uniform(0.2, 0.8)) * (length - phase)
        out.append(
            Visit(
                person,
                lane,
                start,
                start + length,
                onset,
                onset + phase,
                calm[person][int(rng.integers(len(calm[person])))],
                middles[int(rng.integers(len(middles)))],
                int(rng.integers(s.face_px[0], s.face_px[1] + 1)),
                float(rng.uniform(*s.light)),
            )
        )
        free[lane] = start + length
    return out


def duration(visits: Sequence[Visit]) -> float:
    """Seconds from the start to the last visit's end (plus one second of empty frame)."""
    return max(v.end_s for v in visits) + 1.0


def placed(
    visits: Sequence[Visit], t: float, size: tuple[int, int], lanes: int
) -> Iterator[tuple[int, Portrait, int, int]]:
    """(visit index, its look scaled to its face size, x, y) of each visit in view at `t`: in
    the middle of its lane, drifting a little as a customer at a counter does."""
    w, h = size
    slot = w // lanes
    for i, v in enumerate(visits):
        look = v.look_at(t)
        if look is None:
            continue
        p = scaled(look.portrait, v.face)
        dx = int(0.08 * v.face * math.sin(1.3 * t + i))
        dy = int(0.05 * v.face * math.sin(0.7 * t + 2 * i))
        cx, cy = v.lane * slot + slot // 2, h // 2
        x = cx - (p.box[0] + p.box[2] // 2) + dx
        y = cy - (p.box[1] + p.box[3] // 2) + dy
        yield i, p, x, y


def true_boxes(
    visits: Sequence[Visit], t: float, size: tuple[int, int], lanes: int
) -> list[tuple[int, Box]]:
    """(visit index, face box in the frame) of each visit in view at `t`."""
    return [
        (i, (x + p.box[0], y + p.box[1], p.box[2], p.box[3]))
        for i, p, x, y in placed(visits, t, size, lanes)
    ]


def frame_at(
    visits: Sequence[Visit],
    t: float,
    size: tuple[int, int],
    lanes: int,
    noise: float,
    rng: np.random.Generator,
    background: int = 110,
) -> np.ndarray:
    """The BGR frame at `t`: each visit's look in its lane (cut at the lane's edges) at its
    light level, over a plain background, with sensor noise of σ `noise` grey levels."""
    w, h = size
    slot = w // lanes
    canvas = np.full((h, w), background, np.float32)
    for i, p, x, y in placed(visits, t, size, lanes):
        lane = canvas[:, visits[i].lane * slot : (visits[i].lane + 1) * slot]
        paste(lane, p.image.astype(np.float32) * visits[i].gain, x - visits[i].lane * slot, y)
    if noise:
        canvas += rng.normal(0, noise, canvas.shape).astype(np.float32)
    gray = np.clip(canvas, 0, 255).astype(np.uint8)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


def frames(
    visits: Sequence[Visit], size: tuple[int, int], lanes: int, fps: float, noise: float, seed: int
) -> Iterator[np.ndarray]:
    """Every frame of the scenario at `fps`."""
    rng = np.random.default_rng(seed)
    for i in range(int(duration(visits) * fps)):
        yield frame_at(visits, i / fps, size, lanes, noise, rng)


@dataclass(frozen=True)
class Alert:
    time_s: float
    box: Box


def score(
    alerts: Sequence[Alert],
    visits: Sequence[Visit],
    size: tuple[int, int],
    lanes: int,
    within_s: float,
    grace_s: float,
    stated_share: float,
) -> dict:
    """The alerts as the business sees them: angry visits alerted within `within_s` of the
    onset (and at all), the delays, and false alarms (on calm visits, on angry visits outside
    their anger, on no visit), per camera-hour of this scenario and at `stated_share` angry
    visits."""
    delays: dict[int, float] = {}
    false_calm = false_angry = false_none = 0
    for a in alerts:
        on = [(iou(a.box, box), i) for i, box in true_boxes(visits, a.time_s, size, lanes)]
        overlap, i = max(on, default=(0.0, -1))
        v = visits[i] if overlap >= 0.3 else None
        if v is None:
            false_none += 1
        elif v.angry and v.onset_s <= a.time_s <= v.offset_s + grace_s:
            delays[i] = min(delays.get(i, math.inf), a.time_s - v.onset_s)
        elif v.angry:
            false_angry += 1
        else:
            false_calm += 1
    angry = [v for v in visits if v.angry]
    calm_s = sum(v.end_s - v.start_s for v in visits if not v.angry)
    angry_s = sum(v.end_s - v.start_s for v in angry)
    video_s = duration(visits)
    in_view = (calm_s + angry_s) / video_s
    calm_rate = (false_calm + false_none) / calm_s if calm_s else 0.0
    angry_rate = false_angry / angry_s if angry_s else 0.0
    stated = 3600 * in_view * ((1 - stated_share) * calm_rate + stated_share * angry_rate)
    within = sum(d <= within_s for d in delays.values())
    return {
        "visits": len(visits),
        "angry_visits": len(angry),
        "alerted_within": within,
        "recall_within": within / len(angry) if angry else None,
        "alerted": len(delays),
        "recall": len(delays) / len(angry) if angry else None,
        "median_delay_s": float(np.median(list(delays.values()))) if delays else None,
        "false_alarms": false_calm + false_angry + false_none,
        "false_alarm_kinds": {"calm": false_calm, "angry_outside": false_angry, "none": false_none},
        "hours": video_s / 3600,
        "faces_in_view": in_view,
        "false_alarms_per_hour": (false_calm + false_angry + false_none) / (video_s / 3600),
        "false_alarms_per_hour_stated": stated,
    }
