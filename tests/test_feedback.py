"""Staff feedback: a marked alert's face is kept only with feedback.save_faces, reviewed,
accepted or declined, and imported into data/photos/<class>/ where the crop stage finds it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from omegaconf import OmegaConf

from emowatch import config
from emowatch.deploy.alerts import Fanout
from emowatch.deploy.feedback import FeedbackError, FeedbackStore, face_region, subject_id
from emowatch.deploy.retention import DailyLog
from emowatch.deploy.server import LivePage, ServeOptions
from emowatch.inference import faces
from tests.conftest import ASTRONAUT_FACE, REPO, astronaut_rgb
from tests.test_live import alert, request
from tests.test_serving import free_port

CLASSES = ["angry", "happy", "neutral", "sad"]


def astronaut_face() -> np.ndarray:
    gray = cv2.cvtColor(astronaut_rgb(), cv2.COLOR_RGB2GRAY)
    return face_region(gray, ASTRONAUT_FACE, 0.5)


def test_store_decides_imports_and_expires(tmp_path):
    store = FeedbackStore(tmp_path / "pending", keep_days=14)
    face = astronaut_face()
    store.save(alert("a1"), face, "angry", "Ana", "front desk")
    store.save(alert("a2"), face, "not_angry", "Ben", "front desk")
    store.save(alert("a3"), face, "angry", "Ana", "front desk")
    store.save(alert("a4"), face, "angry", "Ana", "front desk")
    assert [m["status"] for m in store.items()] == ["pending"] * 4
    with pytest.raises(FeedbackError, match="say which class"):
        store.decide(["a2"], True, None, CLASSES)  # a not-angry face needs its class
    with pytest.raises(FeedbackError, match="no pending crop zz"):
        store.decide(["zz"], False, None, CLASSES)
    assert store.decide(["a1"], True, None, CLASSES) == 1
    assert store.decide(["a2"], True, "neutral", CLASSES) == 1
    assert store.decide(["a3"], False, None, CLASSES) == 1
    old = json.loads((tmp_path / "pending/a4.json").read_text())
    (tmp_path / "pending/a4.json").write_text(
        json.dumps(old | {"marked_at": time.time() - 15 * 86400})
    )
    assert store.expire() == ["a4"]  # pending longer than keep_days: deleted
    done = store.import_into(tmp_path / "photos", "FB")
    subject = subject_id("FB", "front desk")
    assert subject == "FBfrontdesk"
    assert sorted(
        Path(p).relative_to(tmp_path / "photos").as_posix() for p in done["imported"]
    ) == [
        f"angry/{subject}.AN1.a1.png",
        f"neutral/{subject}.NE1.a2.png",
    ]
    assert done["deleted_declined"] == 1
    assert list((tmp_path / "pending").iterdir()) == []  # nothing of a face is left behind
    kept = cv2.imread(
        str(tmp_path / "photos/angry" / f"{subject}.AN1.a1.png"), cv2.IMREAD_GRAYSCALE
    )
    assert np.array_equal(kept, face)  # lossless


def page(tmp_path: Path, store: FeedbackStore | None) -> LivePage:
    scfg = OmegaConf.create(
        {
            "host": "127.0.0.1",
            "port": free_port(),
            "token_env": None,
            "alert_log": str(tmp_path / "alerts.jsonl"),
            "max_alerts": 10,
            "stall_s": 3.0,
            "jpeg_quality": 80,
        }
    )
    events = Fanout([])
    return LivePage(scfg, ServeOptions(), events, Fanout([]), tmp_path, store, "front desk")


def test_marking_an_alert_keeps_its_face_only_with_consent(tmp_path):
    face = astronaut_face()
    for save_faces in (False, True):
        folder = tmp_path / f"save_{save_faces}"
        store = FeedbackStore(folder / "pending") if save_faces else None
        live = page(folder, store)
        try:
            live.alert_sinks.send(alert("a1"))  # the watch loop's alert reaches the page
            live.state.hold_face("a1", face)
            url = live.server.url + "api/alerts/a1/feedback"
            assert request(url, "POST", {"label": "maybe"})[0] == 422
            status, body, _ = request(url, "POST", {"label": "angry", "by": "Ana"})
            assert status == 200
            event = json.loads(body)
            assert event["event"] == "alert_feedback" and event["face_saved"] is save_faces
            assert request(url, "POST", {"label": "not_angry"})[0] == 409  # once per alert
            view = json.loads(request(live.server.url + "api/state")[1])
            assert view["alerts"][0]["feedback"]["label"] == "angry"
        finally:
            live.stop()
        (day,) = [p for _, p in DailyLog(folder / "alerts.jsonl", 30).files()]
        logged = [json.loads(x) for x in day.read_text().splitlines()]
        assert [e["event"] for e in logged] == ["alert", "alert_feedback"]
        assert "snapshot_jpeg_base64" not in logged[1]  # the log holds no image
        pending = folder / "pending"
        if save_faces:
            assert sorted(p.name for p in pending.iterdir()) == ["a1.json", "a1.png"]
        else:
            assert not pending.exists()
        assert live.state.faces_held == {}


def emowatch(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "EMOWATCH_"))}
    return subprocess.run(
        [sys.executable, "-m", "emowatch.cli", *args],
        cwd=cwd,
        env=env | {"EMOWATCH_ROOT": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def feedback_overrides(tmp_path: Path) -> list[str]:
    return [
        f"deploy.watch.feedback.dir={tmp_path / 'pending'}",
        f"paths.data_dir={tmp_path / 'data'}",
    ]


def test_review_accept_import_commands_put_the_face_where_the_crop_stage_finds_it(tmp_path):
    store = FeedbackStore(tmp_path / "pending")
    store.save(alert("c0ffee"), astronaut_face(), "angry", "Ana", "cam0")
    store.save(alert("bad"), astronaut_face(), "not_angry", "Ben", "cam0")
    ov = feedback_overrides(tmp_path)
    review = emowatch("feedback", "review", *ov, cwd=tmp_path)
    assert review.returncode == 0 and "c0ffee  pending" in review.stdout
    assert "marked not_angry by Ben" in review.stdout
    opts = [x for o in ov for x in ("-o", o)]
    refused = emowatch("feedback", "accept", "bad", *opts, cwd=tmp_path)
    assert refused.returncode == 1 and "say which class" in refused.stderr
    assert emowatch("feedback", "accept", "c0ffee", *opts, cwd=tmp_path).returncode == 0
    assert emowatch("feedback", "decline", "bad", *opts, cwd=tmp_path).returncode == 0
    done = emowatch("feedback", "import", *ov, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "imported 1, deleted 1 declined and 0 expired; 0 still pending" in done.stdout
    photo = tmp_path / "data/photos/angry/FBcamA.AN1.c0ffee.png"
    assert photo.is_file() and not (tmp_path / "pending/bad.png").exists()
    gray = cv2.imread(str(photo), cv2.IMREAD_GRAYSCALE)
    detector = faces.build_detector(config.compose([], root=REPO).detector)
    assert len(detector(gray)) == 1  # the crop stage's detector finds the face again


def test_a_corrupt_record_is_named_not_a_traceback(tmp_path):
    store = FeedbackStore(tmp_path / "pending")
    store.save(alert("c0ffee"), astronaut_face(), "angry", "Ana", "cam0")
    (tmp_path / "pending" / "torn.json").write_text('{"alert_id": "torn", "mark')  # cut short
    review = emowatch("feedback", "review", *feedback_overrides(tmp_path), cwd=tmp_path)
    assert review.returncode == 0 and "Traceback" not in review.stderr
    assert "1 unreadable feedback record(s)" in review.stderr and "torn.json" in review.stderr
    assert "c0ffee  pending" in review.stdout  # the others are listed as before
    assert (tmp_path / "pending" / "torn.json").exists()  # left for a person to look at
