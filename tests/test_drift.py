"""Drift: the watcher's hourly counts (no images), the reference on the camera path, the PSI
verdict on generated logs on both sides of the threshold, and `retrain --if-drift`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from emowatch import drift
from emowatch.config import resolve_path
from emowatch.deploy import watch
from emowatch.deploy.hourly import HourlyStats, histogram
from emowatch.deploy.retention import DailyLog
from emowatch.errors import DataError
from emowatch.inference.face_classifier import FacePrediction
from emowatch.layout import Layout
from tests.conftest import make_people_photos
from tests.deployment import deploy, origin, publish_photo, sh
from tests.test_schedule import latest, retrain
from tests.test_watch import trained, write_video  # noqa: F401 (fixture)

NOW = datetime(2026, 12, 1, 18, 30, tzinfo=UTC)
BINS = 10


def pred(emotion: str, p_angry: float) -> FacePrediction:
    return FacePrediction((0, 0, 10, 10), {emotion: 1.0}, emotion, p_angry > 0.5, p_angry)


def test_psi_is_zero_for_the_same_shape_and_grows_with_the_shift():
    assert drift.psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0)
    small = drift.psi([50, 50], [55, 45])
    large = drift.psi([50, 50], [90, 10])
    assert 0 < small < 0.1 < 0.25 < large


def test_hourly_stats_flush_when_the_hour_turns_and_hold_no_image(tmp_path):
    clock = [NOW]
    log = DailyLog(tmp_path / "hourly.jsonl", 30, lambda: clock[0])
    stats = HourlyStats(log, "front", "models:/m@champion", BINS, lambda: clock[0])
    stats.add([pred("angry", 0.95), pred("happy", 0.05)])
    stats.add([pred("happy", 0.15)])
    assert not log.files()  # the hour is not over
    clock[0] = NOW + timedelta(hours=1)
    stats.add([pred("sad", 0.3)])
    stats.flush()
    (day,) = [p for _, p in log.files()]
    assert day.name == "hourly.2026-12-01.jsonl"  # one file per UTC day, expired after 30
    first, second = (json.loads(x) for x in day.read_text().splitlines())
    assert first["hour"] == "2026-12-01T18:00Z" and second["hour"] == "2026-12-01T19:00Z"
    assert first["faces"] == 3 and first["emotions"] == {"angry": 1, "happy": 2}
    assert first["p_angry_bins"] == histogram([0.95, 0.05, 0.15], BINS)
    assert set(first) == {"event", "hour", "camera", "model", "faces", "emotions", "p_angry_bins"}


def hourly_log(path: Path, model: str, hours: int, emotions: dict[str, int], bins: list[int]):
    """A generated watcher log: `hours` records ending at NOW with the same counts each hour,
    a torn line and a record from two days ago (outside any window used here)."""
    with path.open("a") as f:
        for h in range(hours):
            hour = (NOW - timedelta(hours=h)).strftime("%Y-%m-%dT%H:00Z")
            record = {"event": "hourly_stats", "hour": hour, "camera": "c", "model": model}
            record |= {"faces": sum(emotions.values()), "emotions": emotions}
            f.write(json.dumps(record | {"p_angry_bins": bins}) + "\n")
        f.write("{not json\n")
        old = (NOW - timedelta(hours=48)).strftime("%Y-%m-%dT%H:00Z")
        f.write(
            json.dumps({"event": "hourly_stats", "hour": old, "model": model, "faces": 10**6})
            + "\n"
        )


SEEN = {"angry": 0.9, "happy": 0.05, "neutral": 0.2, "sad": 0.3}
CALM = {"angry": 20, "happy": 50, "neutral": 60, "sad": 20}
RAGE = {"angry": 110, "happy": 10, "neutral": 20, "sad": 10}


def test_watch_logs_hours_and_drift_sits_on_either_side_of_the_threshold(trained, tmp_path):  # noqa: F811
    cfg, model_dir = trained
    make_people_photos(tmp_path / "data", resolve_path(cfg.data.photos.splits))
    spec = str(model_dir)
    result = watch.main(
        cfg, str(write_video(tmp_path / "shop.mp4", n=6)), model=spec, threshold=0.5
    )
    summary = result.summaries["shop"]
    (day,) = [p for _, p in DailyLog(resolve_path(cfg.deploy.watch.stats_log), 30).files()]
    (record,) = [json.loads(x) for x in day.read_text().splitlines()]
    assert record["faces"] == summary.faces == 6 and record["camera"] == "shop"
    assert sum(record["p_angry_bins"]) == 6 and record["model"] == spec

    chosen = Layout(cfg).model("fer2013", "cnn1").metrics  # as evaluate writes
    chosen.parent.mkdir(parents=True, exist_ok=True)
    chosen.write_text(json.dumps({"threshold_angry": 0.5, "tta": {"chosen": "none"}}))
    ref = drift.reference(cfg, spec)  # the model on the camera path over the decide photos
    assert ref["faces"] == ref["photos"] == 12  # PA, PB (train), PC (val) x 4: no test person
    assert sum(ref["p_angry_bins"]) == 12 and sum(ref["emotions"].values()) == 12
    cached = list(resolve_path(cfg.retrain.drift.reference_dir).glob("fer2013-cnn1-*.json"))
    assert len(cached) == 1

    # Generated logs: the reference's own shape (no drift), then a shop full of angry faces
    # (written as an emowatch before daily files did: the single file is read too).
    day.unlink()
    log = resolve_path(cfg.deploy.watch.stats_log)
    emotions = {e: 25 * n for e, n in ref["emotions"].items()}
    hourly_log(log, spec, 6, emotions, [25 * c for c in ref["p_angry_bins"]])
    calm = drift.check(cfg, hours=24, model=spec, now=NOW)
    assert calm["records"] == 6 and calm["faces"] == 6 * 25 * 12
    assert not calm["drifted"] and "is within" in calm["reason"], calm
    hourly_log(log, spec, 6, {"angry": 900}, histogram([0.99] * 900, BINS))
    stormy = drift.check(cfg, hours=24, model=spec, now=NOW)
    assert stormy["drifted"] and "exceeds" in stormy["reason"], stormy
    assert stormy["psi_p_angry"] > cfg.retrain.drift.psi_threshold
    few = drift.check(cfg, hours=1, model=spec, now=NOW + timedelta(hours=30))
    assert not few["drifted"] and "too few faces" in few["reason"]


def test_compare_on_generated_windows():
    def window(counts: dict[str, int]) -> dict:
        p = [SEEN[e] for e, n in counts.items() for _ in range(n)]
        return {
            "faces": sum(counts.values()),
            "emotions": counts,
            "p_angry_bins": histogram(p, BINS),
        }

    ref = window(CALM)
    near = drift.compare(
        ref, window({"angry": 22, "happy": 48, "neutral": 58, "sad": 22}), 0.2, 100
    )
    far = drift.compare(ref, window(RAGE), 0.2, 100)
    assert not near["drifted"] and far["drifted"]
    assert near["psi_emotions"] < 0.2 < far["psi_emotions"]


def test_retrain_if_drift_runs_only_past_the_threshold(tmp_path, mlflow_template):
    bare, _ = origin(tmp_path)
    shop = deploy(bare, tmp_path / "opt" / "emowatch", mlflow_template)
    assert retrain(shop).returncode == 0  # the first champion: emowatch-photos v1
    spec = "models:/emowatch-photos@champion"
    reference = shop / ".emowatch/drift/emowatch-photos-v1.json"  # as `emowatch drift` caches it
    p = [SEEN[e] for e, n in CALM.items() for _ in range(n)]
    reference.parent.mkdir(parents=True, exist_ok=True)
    reference.write_text(
        json.dumps({"faces": 150, "emotions": CALM, "p_angry_bins": histogram(p, BINS)})
    )
    publish_photo(bare, tmp_path, "angry/BB.0.txt")  # there is something to retrain on
    sh(["git", "pull", "-q"], shop)
    log = shop / "reports/watch/hourly.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    model = f"deploy.watch.model={spec}"

    def log_hours(counts: dict[str, int]) -> None:
        """Three hours up to now of the watcher seeing `counts` faces per hour."""
        p = [SEEN[e] for e, n in counts.items() for _ in range(n)]
        now = datetime.now(UTC)
        with log.open("a") as f:
            for h in range(3):
                hour = (now - timedelta(hours=h)).strftime("%Y-%m-%dT%H:00Z")
                rec = {"event": "hourly_stats", "hour": hour, "model": spec, "emotions": counts}
                rec |= {"faces": sum(counts.values()), "p_angry_bins": histogram(p, BINS)}
                f.write(json.dumps(rec) + "\n")

    log_hours(CALM)
    calm = retrain(shop, "--if-drift", model)
    assert calm.returncode == 11, calm.stdout + calm.stderr
    assert latest(shop)["outcome"] == "nothing to do (no drift)"
    assert not latest(shop)["drift"]["drifted"]
    log_hours({e: 10 * n for e, n in RAGE.items()})
    stormy = retrain(shop, "--if-drift", model)
    assert stormy.returncode == 0, stormy.stdout + stormy.stderr  # ran: the stage promoted v2
    assert latest(shop)["drift"]["drifted"] and latest(shop)["outcome"] == "promoted"


def test_drift_without_a_champion_says_what_to_do(make_cfg, tmp_path):
    cfg = make_cfg()
    with pytest.raises(DataError, match=r"no such registered model version.*make run"):
        drift.check(cfg, tmp_path)
