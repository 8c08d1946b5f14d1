"""The scenarios stage: customer visits made from people's photos, watched by the site's model
through `watch`'s own Watcher; alert rules replayed, chosen on the deciding people only."""

from __future__ import annotations

from pathlib import Path

import mlflow

from emowatch.deploy import alert_rule
from emowatch.deploy.tracker import AlertRule
from emowatch.stages import report, scenarios
from tests.conftest import make_people_photos
from tests.test_robustness import CLASSES, champion_of

SHORT = (
    "scenarios.visits=4",
    "scenarios.lanes=1",
    "scenarios.fps=4",
    "scenarios.visit_s=[3.0,4.0]",
    "scenarios.gap_s=[0.5,1.0]",
    "scenarios.expression_s=[1.5,2.0]",
    "scenarios.face_px=[90,120]",
    "scenarios.rules=[[1,1],[3,5],[9,10]]",
    "scenarios.means=[1,5]",
    "scenarios.cooldowns_s=[0.0]",
)


def site_with_champion(make_cfg, tmp_path: Path, threshold: float):
    cfg = make_cfg(*SHORT)
    make_people_photos(Path(cfg.paths.data_dir), Path(cfg.data.photos.splits))
    uri = champion_of(cfg, tmp_path, threshold)
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(cfg.registry.names.fer2013, "champion", uri.split("/")[-1])
    return cfg


def test_visits_are_watched_and_every_rule_scored(make_cfg, tmp_path):
    cfg = site_with_champion(make_cfg, tmp_path, threshold=0.0)  # every face said angry
    out = scenarios.main(cfg)
    assert out["dataset"] == "fer2013" and out["model"].endswith("@champion")
    decide, test = out["parts"]["decide"], out["parts"]["test"]
    assert decide["people"] == ["PA", "PB", "PC"] and test["people"] == ["PD"]
    assert decide["visits"] == test["visits"] == 4 and decide["angry_visits"] == 2
    for part in (decide, test):
        assert part["replay_matches_watch"] is True  # the replay is the Watcher's own rule
        rules = {
            (r["k"], r["n"], r["cooldown_s"], r["smoothing"]): r["figures"] for r in part["rules"]
        }
        votes = {(3, 5, 30.0), (1, 1, 0.0), (3, 5, 0.0), (9, 10, 0.0)}
        means = {(1, 1, 0.0), (5, 5, 0.0)}
        assert set(rules) == {(*r, "votes") for r in votes} | {(*r, "mean") for r in means}
        # the threshold is 0: every mean reaches it, so the mean of 1 alerts as 1 of 1 does
        assert rules[(1, 1, 0.0, "mean")] == rules[(1, 1, 0.0, "votes")]
        # every face angry and no cooldown: 1 of 1 alerts in every frame, so at each onset,
        # and on every calm visit
        once = rules[(1, 1, 0.0, "votes")]
        assert once["alerted_within"] == 2 and once["median_delay_s"] <= 0.25
        assert once["false_alarm_kinds"]["calm"] >= 2
    assert out["chosen_rule"]["rule"] == str(
        scenarios.chosen(
            {
                AlertRule(r["k"], r["n"], r["cooldown_s"], r["smoothing"]): r["figures"]
                for r in decide["rules"]
            },
            cfg.scenarios.max_false_alarms_per_hour,
        )
    )
    page = "\n".join(report.scenarios_lines(cfg, None))
    assert "| decide: 3 people, 4 visits" in page and "| test: 1 people, 4 visits" in page
    assert f"chosen: {out['chosen_rule']['rule']} |" in page
    assert set(out["best_rule"]) == {"votes", "mean"}
    for how, rule in out["best_rule"].items():  # the best of each smoothing, on the page
        assert rule["smoothing"] == how
        if rule["rule"] not in (out["chosen_rule"]["rule"], out["configured_rule"]["rule"]):
            assert f"{rule['rule']} |" in page


def test_the_test_people_decide_nothing_here(make_cfg, tmp_path):
    """Relabelling the test person's photos changes their figures, never the deciding people's
    or the rule chosen."""
    cfg = site_with_champion(make_cfg, tmp_path, threshold=0.5)
    before = scenarios.main(cfg)
    photos = Path(cfg.data.photos.root)
    for path in list(photos.glob("*/PD.*")):  # each photo of PD into the next class's folder
        path.rename(photos / CLASSES[(CLASSES.index(path.parent.name) + 1) % 4] / path.name)
    after = scenarios.main(cfg)
    assert after["parts"]["decide"] == before["parts"]["decide"]
    assert after["chosen_rule"] == before["chosen_rule"]


def test_the_rule_chosen_keeps_false_alarms_under_the_bound_then_catches_most():
    def f(within: int, fa: float, delay: float | None = 1.0) -> dict:
        return {
            "alerted_within": within,
            "false_alarms_per_hour_stated": fa,
            "median_delay_s": delay,
        }

    a, b, c, d = AlertRule(1, 1, 30), AlertRule(3, 5, 30), AlertRule(5, 5, 30), AlertRule(4, 5, 30)
    assert scenarios.chosen({a: f(9, 5.0), b: f(7, 0.8), c: f(4, 0.0)}, 1.0) == b
    assert scenarios.chosen({b: f(7, 0.8, 2.0), d: f(7, 0.8, 1.0)}, 1.0) == d  # the quicker
    assert scenarios.chosen({a: f(9, 5.0), b: f(7, 3.0)}, 1.0) == b  # none under: fewest


def test_a_site_without_person_ids_is_said_not_scored(make_cfg, tmp_path):
    import json

    cfg = make_cfg(*SHORT)
    make_people_photos(Path(cfg.paths.data_dir), Path(cfg.data.photos.splits))
    splits = Path(cfg.data.photos.splits)
    lists = json.loads(splits.read_text()) | {"by_subject": False}
    splits.write_text(json.dumps(lists | {"train": [{"file": "angry/PA.AN1.png"}]}))
    out = scenarios.main(cfg)
    assert "no person ids" in out["skipped"]
    assert "Not measured: the photos carry no person ids" in "\n".join(
        report.scenarios_lines(cfg, None)
    )


def test_the_watcher_runs_a_mean_rule_as_the_replay_does(make_cfg, tmp_path):
    """With `deploy.watch.alerts.smoothing=mean` the Watcher's own alerts (every face over the
    threshold 0, a 1 s cooldown: an alert per face per second once 3 frames are seen) are
    those the replay of the same rule raises on the recorded decisions."""
    cfg = site_with_champion(make_cfg, tmp_path, threshold=0.0)
    cfg.deploy.watch.alerts.smoothing = "mean"
    cfg.deploy.watch.alerts.cooldown_s = 1.0
    out = scenarios.main(cfg)
    assert out["configured_rule"]["rule"] == "mean P(angry) of 5 (from 3 frames), cooldown 1 s"
    for part in ("decide", "test"):
        assert out["parts"][part]["replay_matches_watch"] is True
        deployed = out["parts"][part]["configured"]
        assert deployed["alerted_within"] == deployed["angry_visits"] == 2


def test_the_chosen_rule_is_tagged_on_the_watched_version_in_production_only(
    make_cfg, tmp_path, monkeypatch
):
    """A production run tags the chosen rule on the champion's version, and `watch` then
    alerts by it; inside `dvc exp run` nothing is tagged and the page says so."""
    cfg = site_with_champion(make_cfg, tmp_path, threshold=0.5)
    cfg.registry.production.override = None
    monkeypatch.setenv("DVC_EXP_NAME", "try-a-rule")
    out = scenarios.main(cfg)
    assert "not a production run" in out["adopted"]["skipped"]
    rule, why = alert_rule.for_model(cfg, out["model"])
    assert rule == AlertRule(3, 5, 30.0) and "carries no chosen rule" in why
    assert "was not tagged (not a production run" in "\n".join(report.scenarios_lines(cfg, None))

    monkeypatch.delenv("DVC_EXP_NAME")
    cfg.registry.production.override = "test project"
    out = scenarios.main(cfg)
    version = mlflow.MlflowClient().get_model_version_by_alias(
        cfg.registry.names.fer2013, "champion"
    )
    chosen = out["chosen_rule"]
    assert out["adopted"] == {
        "version": f"{version.name}/{version.version}",
        "rule": chosen["rule"],
    }
    rule, why = alert_rule.for_model(cfg, out["model"])
    assert str(rule) == chosen["rule"] and "chosen for" in why
    assert "on the visits of PA, PB, PC" in why  # chosen on the deciding people's visits
    page = "\n".join(report.scenarios_lines(cfg, None))
    assert f"`watch` alerts by the chosen rule, {chosen['rule']}" in page
