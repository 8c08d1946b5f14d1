"""Customer visits made from photos (evaluation/visits.py) and the alert rules replayed on them
(deploy/tracker.replay): the plan, the truth in each frame, and the business's figures."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from emowatch.deploy.tracker import AlertRule, Track, replay, should_alert
from emowatch.evaluation import visits
from emowatch.evaluation.scenes import Portrait
from emowatch.inference.faces import iou

SIZE, LANES = (640, 480), 2
SETTINGS = visits.Settings(
    visits=12,
    angry_share=0.5,
    lanes=LANES,
    visit_s=(6.0, 8.0),
    gap_s=(1.0, 2.0),
    expression_s=(2.0, 3.0),
    face_px=(60, 100),
    light=(0.5, 1.0),
)


def look(label: str, shade: int) -> visits.Look:
    image = np.full((120, 100), shade, np.uint8)
    image[30:90, 20:80] = 255 - shade  # the "face"
    return visits.Look(Portrait(image, (20, 30, 60, 60)), label)


def people() -> dict[str, list[visits.Look]]:
    return {
        "P1": [look("neutral", 40), look("angry", 60), look("happy", 80)],
        "P2": [look("neutral", 50), look("angry", 70), look("disgust", 90)],
        "P3": [look("happy", 30), look("sad", 100)],  # no neutral, never angry
    }


def said(plan: list[visits.Visit]) -> list[tuple]:
    return [
        (v.person, v.lane, v.start_s, v.end_s, v.onset_s, v.calm.label, v.middle.label, v.face)
        for v in plan
    ]


def test_the_plan_is_seeded_and_holds_its_shares_lanes_and_people():
    plan = visits.plan(people(), SETTINGS, seed=3)
    assert said(plan) == said(visits.plan(people(), SETTINGS, seed=3))
    assert said(plan) != said(visits.plan(people(), SETTINGS, seed=4))
    assert len(plan) == 12 and sum(v.angry for v in plan) == 6
    assert {v.person for v in plan if v.angry} <= {"P1", "P2"}
    for v in plan:
        assert v.start_s < v.onset_s < v.offset_s <= v.end_s
        assert v.calm.label == "neutral" or v.person == "P3"  # P3 has no neutral photo
        assert v.calm.label != "angry" and (v.middle.label == "angry") == v.angry
        assert 60 <= v.face <= 100 and 0.5 <= v.gain <= 1.0
    for lane in range(LANES):  # one visitor per lane at a time
        mine = sorted((v for v in plan if v.lane == lane), key=lambda v: v.start_s)
        assert all(a.end_s <= b.start_s for a, b in itertools.pairwise(mine))


def test_a_plan_without_an_angry_person_is_refused():
    calm_only = {"P3": people()["P3"]}
    with pytest.raises(ValueError, match="both an angry and a non-angry photo"):
        visits.plan(calm_only, SETTINGS, seed=0)


def test_each_frame_shows_the_look_of_the_moment_where_its_true_box_says():
    plan = visits.plan(people(), SETTINGS, seed=1)
    v = plan[0]
    rng = np.random.default_rng(0)
    for t in (v.start_s + 0.1, (v.onset_s + v.offset_s) / 2):
        frame = visits.frame_at(plan, t, SIZE, LANES, noise=0, rng=rng)
        (box,) = [b for i, b in visits.true_boxes(plan, t, SIZE, LANES) if i == 0]
        x, y, w, h = box
        expected = v.look_at(t)
        shade = 255 - int(expected.portrait.image[0, 0])  # the face's own grey, times the light
        assert abs(int(frame[y + h // 2, x + w // 2, 0]) - round(shade * v.gain)) <= 1
        assert w == v.face or h == v.face
    assert 0 not in [i for i, _ in visits.true_boxes(plan, v.end_s + 0.01, SIZE, LANES)]


def alert_on(plan, i: int, t: float) -> visits.Alert:
    ((box,),) = [[b for j, b in visits.true_boxes(plan, t, SIZE, LANES) if j == i]]
    return visits.Alert(t, box)


def test_alerts_are_scored_as_the_business_sees_them():
    plan = visits.plan(people(), SETTINGS, seed=2)
    angry = [i for i, v in enumerate(plan) if v.angry]
    calm = [i for i, v in enumerate(plan) if not v.angry]
    a0, a1, a2 = (plan[i] for i in angry[:3])
    alerts = [
        alert_on(plan, angry[0], a0.onset_s + 1.0),  # in time
        alert_on(plan, angry[0], a0.onset_s + 2.0),  # a second one on the same visit: fine
        alert_on(plan, angry[1], a1.onset_s + 2.5),  # in time, later ...
        alert_on(plan, angry[2], a2.start_s + 0.01),  # before anger: a false alarm
        alert_on(plan, calm[0], plan[calm[0]].onset_s + 0.5),  # on a calm visit: false
        visits.Alert(1.0, (0, 0, 10, 10)),  # on no face at all: false
    ]
    if a1.offset_s - a1.onset_s < 2.5:  # the anger ended: inside grace it still counts
        assert a1.offset_s + 1.0 >= a1.onset_s + 2.5
    f = visits.score(alerts, plan, SIZE, LANES, within_s=2.0, grace_s=1.0, stated_share=0.05)
    assert (f["angry_visits"], f["alerted"], f["alerted_within"]) == (6, 2, 1)
    assert f["recall_within"] == 1 / 6 and f["median_delay_s"] == pytest.approx(1.75)
    assert f["false_alarm_kinds"] == {"calm": 1, "angry_outside": 1, "none": 1}
    hours = visits.duration(plan) / 3600
    assert f["false_alarms_per_hour"] == pytest.approx(3 / hours)
    calm_s = sum(v.end_s - v.start_s for v in plan if not v.angry)
    angry_s = sum(v.end_s - v.start_s for v in plan if v.angry)
    in_view = (calm_s + angry_s) / visits.duration(plan)
    stated = 3600 * in_view * (0.95 * 2 / calm_s + 0.05 * 1 / angry_s)
    assert f["false_alarms_per_hour_stated"] == pytest.approx(stated)


def test_replay_raises_the_alerts_the_watcher_rule_raises():
    rng = np.random.default_rng(0)
    decisions = []
    for i in range(300):
        p = float(rng.random())
        decisions.append((i / 10, int(rng.integers(1, 4)), p >= 0.4, p))
    for rule in (AlertRule(3, 5, 2.0), AlertRule(5, 5, 2.0, "mean")):
        tracks: dict[int, Track] = {}
        expected = []
        for i, (t, tid, angry, p) in enumerate(decisions):
            track = tracks.setdefault(tid, Track(tid, (0, 0, 1, 1), 0, 0, 0))
            if should_alert(track, angry, p, t, rule, 0.4):
                expected.append(i)
        assert replay(decisions, rule, 0.4) == expected and expected
    assert len(replay(decisions, AlertRule(1, 1, 0.0), 0.4)) == sum(d[2] for d in decisions)
    assert replay(decisions, AlertRule(6, 5, 0.0), 0.4) == []  # k above n: never
    assert replay(decisions, AlertRule(1, 1, 0.0, "mean"), 0.4) == replay(
        decisions, AlertRule(1, 1, 0.0), 0.4
    )  # the mean of one frame is that frame's decision


def test_votes_count_frames_at_the_threshold_and_the_mean_weighs_them():
    """Three frames just over the threshold among low ones: 3 of 5 votes alert, their mean
    stays low. Frames just under it with one clear one: no 3 votes, but the mean reaches it."""
    threshold = 0.5
    just_over = [0.1, 0.55, 0.1, 0.55, 0.55]  # mean 0.37
    just_under = [0.48, 0.49, 0.9, 0.48, 0.49]  # mean 0.568
    for ps, votes, mean in ((just_over, [4], []), (just_under, [], [4])):
        decisions = [(float(i), 1, p >= threshold, p) for i, p in enumerate(ps)]
        assert replay(decisions, AlertRule(3, 5, 60.0), threshold) == votes
        assert replay(decisions, AlertRule(5, 5, 60.0, "mean"), threshold) == mean
        assert replay(decisions, AlertRule(6, 6, 60.0, "mean"), threshold) == []  # never full
    with pytest.raises(ValueError, match="one of votes, mean"):
        AlertRule(3, 5, 30.0, "median")


def test_iou_of_true_boxes_tells_lanes_apart():
    plan = visits.plan(people(), SETTINGS, seed=5)
    t = next(v.onset_s for v in plan if v.lane == 0)
    boxes = visits.true_boxes(plan, t, SIZE, LANES)
    for (_, a), (_, b) in itertools.pairwise(boxes):
        assert iou(a, b) == 0
