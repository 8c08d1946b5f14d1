"""DVC stage `scenarios` and `emowatch scenarios`: alerts as the business sees them.

Customer visits at a counter (`evaluation.visits`: calm, angry or not for a few seconds, calm
again; several people at once, at their own size and light) are made from the deciding people's
photos and, apart, from the test people's; each set is rendered to a video and run through
`watch`'s own Watcher with the site's model (`deploy.site_model`, as `watch` picks it). Every
face's decision per frame is recorded and replayed under each alert rule of
`scenarios.rules` × `scenarios.cooldowns_s` and under `deploy.watch.alerts` (the replay of
that one equals the Watcher's own alerts, and the report says so); the rules count angry frames
or average P(angry) over a track (`deploy.tracker.AlertRule`). The rule is chosen on the
deciding people's visits; the test people's are reported only. In a production run the chosen
rule is then tagged on the watched registry version, and `watch` alerts by it
(`deploy.alert_rule`). The videos are written to a temporary folder and deleted.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import cv2
import mlflow
from omegaconf import DictConfig

from emowatch.config import resolve_path
from emowatch.data import photos
from emowatch.data.images import load_gray
from emowatch.deploy import alert_rule, site_model
from emowatch.deploy.sources import read_video
from emowatch.deploy.tracker import AlertRule, replay, rule_of
from emowatch.deploy.watcher import Watcher
from emowatch.evaluation import deployed, visits
from emowatch.evaluation.conditions import reference_box
from emowatch.evaluation.scenes import Portrait
from emowatch.files import write_json
from emowatch.inference.face_classifier import FaceClassifier
from emowatch.layout import Layout
from emowatch.tracking import production
from emowatch.tracking.registry import version_of
from emowatch.tracking.runs import stage_run, tracking_uri

STAGE = "scenarios"
Decision = tuple[float, int, bool, float, tuple[int, int, int, int]]  # time, track, angry, P, box


class Collected:
    """A sink that keeps the events it is sent."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def send(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def close(self) -> dict[str, int]:
        return {}


def people_of(photo_root: Path, items: list[deployed.Photo]) -> tuple[dict, int]:
    """{person: their looks} with each photo's true face box (`reference_box`), and how many
    photos had no face or could not be read (left out, and counted)."""
    people: dict[str, list[visits.Look]] = {}
    missed = 0
    for p in items:
        gray = load_gray(photo_root / p.file).gray
        box = reference_box(gray) if gray is not None else None
        if box is None:
            missed += 1
            continue
        people.setdefault(p.person, []).append(visits.Look(Portrait(gray, box), p.label))
    return people, missed


def settings_of(scfg: DictConfig) -> visits.Settings:
    return visits.Settings(
        visits=int(scfg.visits),
        angry_share=float(scfg.angry_share),
        lanes=int(scfg.lanes),
        visit_s=tuple(scfg.visit_s),
        gap_s=tuple(scfg.gap_s),
        expression_s=tuple(scfg.expression_s),
        face_px=tuple(scfg.face_px),
        light=tuple(scfg.light),
    )


def render(scenario: list[visits.Visit], scfg: DictConfig, path: Path, seed: int) -> int:
    """The scenario written as an mp4 video at `path`; its number of frames."""
    size = tuple(scfg.size)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(scfg.fps), size)
    if not writer.isOpened():
        raise OSError(f"cannot write a video to {path}")
    n = 0
    for frame in visits.frames(scenario, size, int(scfg.lanes), scfg.fps, scfg.noise, seed):
        writer.write(frame)
        n += 1
    writer.release()
    return n


def watched(
    classifier: FaceClassifier, wcfg: DictConfig, video: Path
) -> tuple[list[Decision], list[dict]]:
    """The video run through the Watcher: each classified face's decision, in order, and the
    alerts the Watcher itself raised."""
    sink = Collected()
    watcher = Watcher(classifier, wcfg, sink)
    decisions: list[Decision] = []
    last = None
    for frame in read_video(str(video)):
        before = watcher.summary.frames_classified
        watcher.step(frame)
        if watcher.summary.frames_classified > before:
            tracks, preds = watcher.last
            decisions += [
                (frame.time_s, t.id, p.angry, p.p_angry, p.box)
                for t, p in zip(tracks, preds, strict=True)
            ]
        last = frame
    watcher.close(last)
    return decisions, [e for e in sink.events if e["event"] == "alert"]


def rules_of(cfg: DictConfig) -> tuple[AlertRule, list[AlertRule]]:
    """The configured rule (deploy.watch.alerts: what a model without a chosen rule alerts by,
    and what the Watcher runs here) and every rule compared (it included)."""
    ours = rule_of(cfg.deploy.watch.alerts)
    scfg = cfg.scenarios
    windows = [(int(k), int(n), "votes") for k, n in scfg.rules]
    windows += [(int(n), int(n), "mean") for n in scfg.means]
    grid = [AlertRule(k, n, float(c), how) for k, n, how in windows for c in scfg.cooldowns_s]
    return ours, [ours, *[r for r in grid if r != ours]]


def alerted(decisions: list[Decision], rule: AlertRule, threshold: float) -> list[int]:
    """The indices of the recorded decisions at which `rule` alerts."""
    return replay([d[:4] for d in decisions], rule, threshold)


def under(
    rule: AlertRule,
    scenario: list[visits.Visit],
    decisions: list[Decision],
    threshold: float,
    scfg: DictConfig,
) -> dict:
    """The scenario's figures with the alerts `rule` raises on the recorded decisions."""
    alerts = [
        visits.Alert(decisions[i][0], decisions[i][4]) for i in alerted(decisions, rule, threshold)
    ]
    return visits.score(
        alerts,
        scenario,
        tuple(scfg.size),
        int(scfg.lanes),
        float(scfg.within_s),
        float(scfg.grace_s),
        float(scfg.stated_share),
    )


def chosen(rows: dict[AlertRule, dict], max_per_hour: float) -> AlertRule:
    """The rule with the most angry visits alerted in time among those with at most
    `max_per_hour` false alarms per camera-hour at the stated share (ties: fewer false alarms,
    then the shorter median delay, then the order given); with none that low, the rule with the
    fewest false alarms (ties: the most alerted in time)."""

    def delay(f: dict) -> float:
        return f["median_delay_s"] if f["median_delay_s"] is not None else float("inf")

    ok = [r for r, f in rows.items() if f["false_alarms_per_hour_stated"] <= max_per_hour]
    if ok:
        return max(
            ok,
            key=lambda r: (
                rows[r]["alerted_within"],
                -rows[r]["false_alarms_per_hour_stated"],
                -delay(rows[r]),
            ),
        )
    return min(
        rows, key=lambda r: (rows[r]["false_alarms_per_hour_stated"], -rows[r]["alerted_within"])
    )


def scenario_of(
    cfg: DictConfig,
    classifier: FaceClassifier,
    people: dict[str, list[visits.Look]],
    rules: list[AlertRule],
    tmp: Path,
    seed: int,
) -> tuple[dict, dict[AlertRule, dict], list[dict], list[Decision]]:
    """One set of people's visits, rendered and watched: (what it was, figures per rule, the
    Watcher's alerts, the decisions)."""
    scfg = cfg.scenarios
    scenario = visits.plan(people, settings_of(scfg), seed)
    video = tmp / f"visits-{seed}.mp4"
    n_frames = render(scenario, scfg, video, seed)
    decisions, alerts = watched(classifier, cfg.deploy.watch, video)
    video.unlink()
    about = {
        "people": sorted(people),
        "visits": len(scenario),
        "angry_visits": sum(v.angry for v in scenario),
        "frames": n_frames,
        "minutes": round(visits.duration(scenario) / 60, 2),
    }
    threshold = classifier.threshold
    figures = {r: under(r, scenario, decisions, threshold, scfg) for r in rules}
    return about, figures, alerts, decisions


def as_dict(rule: AlertRule) -> dict:
    return {
        "k": rule.k,
        "n": rule.n,
        "cooldown_s": rule.cooldown_s,
        "smoothing": rule.smoothing,
        "rule": str(rule),
    }


def measure(cfg: DictConfig, classifier: FaceClassifier, dataset: str, root: Path | None) -> dict:
    """The deciding and the test people's scenarios, the rule chosen on the first."""
    photo_root = resolve_path(cfg.data.photos.root, root)
    items = deployed.photo_set(
        cfg, classifier.classes, list(cfg.evaluate.deployed.decide_splits[dataset]), root
    )
    ours, rules = rules_of(cfg)
    out: dict[str, Any] = {"configured_rule": as_dict(ours), "parts": {}}
    with tempfile.TemporaryDirectory(prefix="emowatch-scenarios-") as tmp:
        figures = {}
        for part, which in (("decide", deployed.DECIDE), ("test", deployed.REPORT)):
            people, missed = people_of(photo_root, [p for p in items if p.part == which])
            if not people:
                out["parts"][part] = {"skipped": f"no photos of {part} people with a face"}
                continue
            seed = int(cfg.seed) + (0 if part == "decide" else 1)
            try:
                about, rows, alerts, decisions = scenario_of(
                    cfg, classifier, people, rules, Path(tmp), seed
                )
            except visits.NoVisits as err:  # e.g. no angry photo among these people: said
                out["parts"][part] = {"skipped": str(err)}
                continue
            watcher_alerts = [(a["source_time_s"], a["track"]) for a in alerts]
            replayed = [
                (round(decisions[i][0], 3), decisions[i][1])
                for i in alerted(decisions, ours, classifier.threshold)
            ]
            figures[part] = rows
            out["parts"][part] = about | {
                "no_face": missed,
                "replay_matches_watch": watcher_alerts == replayed,
                "rules": [as_dict(r) | {"figures": f} for r, f in rows.items()],
            }
    if "decide" in figures:
        cap = float(cfg.scenarios.max_false_alarms_per_hour)
        best = chosen(figures["decide"], cap)
        out["chosen_rule"] = as_dict(best)
        # the best of each way of smoothing, by the same choice, so both can be compared
        best_of = {
            how: chosen({r: f for r, f in figures["decide"].items() if r.smoothing == how}, cap)
            for how in sorted({r.smoothing for r in rules})
        }
        out["best_rule"] = {how: as_dict(r) for how, r in best_of.items()}
        for part, rows in figures.items():
            out["parts"][part]["configured"] = rows[ours]
            out["parts"][part]["chosen"] = rows[best]
            out["parts"][part]["best"] = {how: rows[r] for how, r in best_of.items()}
    return out


def evidence_of(out: dict, scfg: DictConfig) -> str:
    """One line: what the chosen rule did on the deciding people's visits."""
    part = out["parts"]["decide"]
    f = part["chosen"]
    capped = f["false_alarms_per_hour_stated"] <= float(scfg.max_false_alarms_per_hour)
    return (
        f"{f['alerted_within']} of {f['angry_visits']} angry visits alerted within "
        f"{float(scfg.within_s):g} s, {f['false_alarms']} false alarms in {part['minutes']} min "
        f"({f['false_alarms_per_hour_stated']:.1f} per camera-hour at "
        f"{float(scfg.stated_share):.0%} angry visits; cap "
        f"{float(scfg.max_false_alarms_per_hour):g}{'' if capped else ', no rule within it'}) "
        f"on the visits of {', '.join(part['people'])}"
    )


def adopt(cfg: DictConfig, uri: str, out: dict, root: Path | None) -> dict:
    """The chosen rule tagged on the watched registry version (`deploy.alert_rule`: what `watch`
    then alerts by), where this run may change production; says what it did."""
    if "chosen_rule" not in out:
        return {"skipped": "no rule chosen"}
    ctx = production.context(cfg, root)
    if not ctx.may_move_production:
        return {"skipped": f"not a production run ({ctx.experiment}): the version keeps its rule"}
    client = mlflow.tracking.MlflowClient()
    version = version_of(client, uri)
    rule = AlertRule(**{k: out["chosen_rule"][k] for k in ("k", "n", "cooldown_s", "smoothing")})
    tag = alert_rule.as_tag(rule, evidence_of(out, cfg.scenarios))
    client.set_model_version_tag(version.name, version.version, alert_rule.TAG, tag)
    return {"version": f"{version.name}/{version.version}", "rule": str(rule)}


def main(cfg: DictConfig, root: Path | None = None) -> dict:
    """Watch the scenarios with the site's model; write the report."""
    scfg = cfg.scenarios
    mlflow.set_tracking_uri(tracking_uri(cfg, root))
    with stage_run(cfg, STAGE, root=root):
        out: dict[str, Any]
        if photos.no_photos(Layout(cfg, root).photo_splits):
            out = {"skipped": "no photos of people: no visits to make"}
        elif not deployed.splits_of(cfg, root)[1]:
            out = {"skipped": "the photos carry no person ids: a visit needs one person's looks"}
        else:
            choice = site_model.choose(cfg, root)
            names = cfg.registry.names
            dataset = "photos" if choice.uri.startswith(f"models:/{names.photos}@") else "fer2013"
            try:
                classifier = site_model.load(cfg, choice.uri, root=root)
            except site_model.ModelError as err:  # no champion yet: said, not a crash
                out = {"skipped": f"no site model to watch with: {err}"}
            else:
                out = {"model": choice.uri, "dataset": dataset, "why": choice.reason}
                out |= measure(cfg, classifier, dataset, root)
                out["adopted"] = adopt(cfg, choice.uri, out, root)
                for part in ("decide", "test"):
                    f = out["parts"].get(part, {}).get("chosen")
                    if f:
                        mlflow.log_metrics(
                            {
                                f"{part}/recall_within": f["recall_within"] or 0.0,
                                f"{part}/false_alarms_per_hour": f["false_alarms_per_hour_stated"],
                            }
                        )
        path = write_json(resolve_path(scfg.path, root), out)
        mlflow.log_artifact(str(path))
    print(f"scenarios: {out.get('skipped') or out.get('chosen_rule', {}).get('rule')}")
    return out
