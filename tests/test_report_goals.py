"""The results page's goals table: each goal of report.goals, read from the metrics files, says
whether it holds; a missing report is 'not measured', never a pass."""

from __future__ import annotations

from pathlib import Path

from emowatch.files import write_json
from emowatch.layout import Layout
from emowatch.stages import report


def figures(recall: float, precision: float, accuracy: float, caught: int, n: int) -> dict:
    return {
        "recall_angry": recall,
        "precision_angry": precision,
        "accuracy": accuracy,
        "angry_caught": caught,
        "n_angry": n,
        "recall_angry_low": recall - 0.2,
        "recall_angry_high": min(1.0, recall + 0.1),
    }


def champions(cfg, fer_deployed: dict, ours_deployed: dict, test_accuracy: float) -> None:
    layout = Layout(cfg)
    for dataset, model, deployed in (
        ("fer2013", "vgg", fer_deployed),
        ("photos", "cnn3", ours_deployed),
    ):
        write_json(layout.register_report(dataset), {"versions": {model: {"version": 2}}})
        write_json(layout.promotion_report(dataset), {"champion_after": 2})
        write_json(
            layout.model(dataset, model).metrics,
            {"accuracy": test_accuracy, "deployed": {"decide": deployed}},
        )


def robustness(cfg, holds: bool, small: float, setting: str = "yunet aligned") -> None:
    """The robustness report with one detector setting's table: the deployed one by default."""
    row = {"angry_caught": 6, "n_angry": 6, "holds": True, "face_rate": 1.0}
    table = {c: dict(row) for c in ("plain", "dim", "tilt", "noise", "jpeg")}
    table["dim"] |= {"angry_caught": 6 if holds else 3, "holds": holds}
    for c in ("small_640x480", "small_1920x1080"):
        table[c] = row | {"face_rate": small}
    write_json(
        Path(cfg.robustness.path),
        {d: {"table": {setting: table}} for d in ("fer2013", "photos")},
    )


def scenarios(cfg, within: int, per_hour: float) -> None:
    chosen = {"alerted_within": within, "angry_visits": 20, "recall_within": within / 20}
    chosen["false_alarms_per_hour_stated"] = per_hour
    parts = {p: {"chosen": chosen} for p in ("decide", "test")}
    write_json(Path(cfg.scenarios.path), {"parts": parts})


def verdicts(cfg) -> list[str]:
    rows = [line for line in report.goals_lines(cfg, None) if line.startswith("| ")][1:]
    return [row.split(" | ")[1] for row in rows]


def test_every_goal_met_says_yes_and_each_shortfall_says_no(make_cfg):
    cfg = make_cfg()
    champions(cfg, figures(0.6, 0.5, 0.6, 6, 10), figures(0.85, 0.7, 0.7, 17, 20), 0.70)
    robustness(cfg, holds=True, small=0.96)
    scenarios(cfg, within=19, per_hour=0.5)
    assert verdicts(cfg) == ["yes"] * 6
    champions(cfg, figures(0.4, 0.5, 0.6, 4, 10), figures(0.85, 0.5, 0.7, 17, 20), 0.67)
    robustness(cfg, holds=False, small=0.94)
    scenarios(cfg, within=19, per_hour=1.5)
    assert verdicts(cfg) == ["no"] * 6
    page = "\n".join(report.goals_lines(cfg, None))
    assert "| no | dim 3 of 6, tilt 6 of 6, noise 6 of 6, jpeg 6 of 6 (plain 6 of 6) |" in page
    assert "19 of 20 at 1.5/h" in page


def test_a_goal_without_its_report_is_not_measured(make_cfg):
    cfg = make_cfg()
    assert verdicts(cfg) == ["not measured"] * 6


def test_the_goals_read_the_deployed_detector_and_crops_only(make_cfg):
    """The default deploys YuNet with eye-aligned crops: the table of YuNet's grown boxes (or
    Haar's) is not what ships, so it makes the robustness goals 'not measured', not a pass."""
    cfg = make_cfg()
    champions(cfg, figures(0.6, 0.5, 0.6, 6, 10), figures(0.85, 0.7, 0.7, 17, 20), 0.70)
    scenarios(cfg, within=19, per_hour=0.5)
    robustness(cfg, holds=True, small=0.96, setting="yunet")
    assert verdicts(cfg)[2:4] == ["not measured"] * 2
    cfg.deploy.align.enabled = False
    assert verdicts(cfg)[2:4] == ["yes"] * 2
