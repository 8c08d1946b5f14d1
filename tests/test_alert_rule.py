"""The alert rule `watch` runs: the one the scenarios stage tagged on the served registry version,
else the configured one (`deploy.alert_rule`)."""

from __future__ import annotations

import json

import mlflow
import pytest

from emowatch.deploy import alert_rule, watch
from emowatch.deploy.tracker import AlertRule, rule_of
from tests.test_robustness import champion_of
from tests.test_watch import events_of, write_video

CONFIGURED = (
    "deploy.watch.alerts.k=3",
    "deploy.watch.alerts.n=5",
    "deploy.watch.alerts.cooldown_s=30",
)


def test_a_tag_holds_a_rule_and_a_bad_one_is_refused():
    rule = AlertRule(2, 8, 10.0, "mean")
    assert alert_rule.from_tag(alert_rule.as_tag(rule, "seen on 40 visits")) == (
        rule,
        "seen on 40 visits",
    )
    for bad in (
        "3 of 5",
        json.dumps({"k": 3, "n": 5}),
        json.dumps({"k": 6, "n": 5, "cooldown_s": 1, "smoothing": "votes"}),
        json.dumps({"k": 1, "n": 5, "cooldown_s": -1, "smoothing": "votes"}),
        json.dumps({"k": 1, "n": 5, "cooldown_s": 1, "smoothing": "max"}),
    ):
        with pytest.raises(ValueError, match="alert"):
            alert_rule.from_tag(bad)


def alerts_of(cfg, uri: str, video, capsys) -> list[dict]:
    watch.main(cfg, str(video), model=uri)
    captured = capsys.readouterr()
    return [e for e in events_of(captured.out) if e["event"] == "alert"], captured.err


def test_watch_alerts_by_the_rule_tagged_on_its_version(make_cfg, tmp_path, capsys):
    """Every face is angry (threshold 0) in the 9 frames that show one: the configured 3 of 5
    with a 30 s cooldown alerts once; the tagged 1 of 1 without cooldown alerts in each frame;
    an unreadable tag, or `rule: configured`, is the configured rule again."""
    cfg = make_cfg(*CONFIGURED, "deploy.watch.tracker.max_missing=2")
    uri = champion_of(cfg, tmp_path, threshold=0.0)
    name, version = uri.removeprefix("models:/").split("/")
    video = write_video(tmp_path / "desk.mp4", n=12, blank_from=9)
    client = mlflow.MlflowClient()

    alerts, err = alerts_of(cfg, uri, video, capsys)
    assert [a["rule"] for a in alerts] == ["3 of 5, cooldown 30 s"]
    assert "carries no chosen rule" in err

    tag = alert_rule.as_tag(AlertRule(1, 1, 0.0), "a test's choice")
    client.set_model_version_tag(name, version, alert_rule.TAG, tag)
    alerts, err = alerts_of(cfg, uri, video, capsys)
    assert [a["frame"] for a in alerts] == list(range(9))
    assert {a["rule"] for a in alerts} == {"1 of 1, cooldown 0 s"} and "a test's choice" in err
    assert {a["angry_frames"] for a in alerts} == {"1/1"}  # the rule's own window

    cfg.deploy.watch.alerts.rule = "configured"
    alerts, _ = alerts_of(cfg, uri, video, capsys)
    assert len(alerts) == 1

    cfg.deploy.watch.alerts.rule = "chosen"
    client.set_model_version_tag(name, version, alert_rule.TAG, "{not json")
    alerts, err = alerts_of(cfg, uri, video, capsys)
    assert len(alerts) == 1 and "unreadable" in err


def test_a_model_folder_or_an_unknown_setting(make_cfg, tmp_path):
    cfg = make_cfg(*CONFIGURED)
    rule, why = alert_rule.for_model(cfg, str(tmp_path))
    assert rule == rule_of(cfg.deploy.watch.alerts) and "carries no chosen rule" in why
    cfg.deploy.watch.alerts.rule = "best"
    with pytest.raises(ValueError, match="one of chosen, configured"):
        alert_rule.for_model(cfg, str(tmp_path))
