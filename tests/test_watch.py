"""`emowatch watch`: tracker, debounced alerts, sources, sinks, on videos made in the test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from emowatch.config import resolve_path
from emowatch.deploy import site_model, sources, watch
from emowatch.deploy.retention import DailyLog
from emowatch.deploy.sources import SourceError
from emowatch.deploy.tracker import AlertRule, Tracker, should_alert
from emowatch.inference.faces import iou
from emowatch.layout import Layout
from emowatch.stages import train
from tests.conftest import ASTRONAUT_FACE, REPO, astronaut_rgb


def face_frame(shift: int = 0, size: tuple[int, int] = (640, 480)) -> np.ndarray:
    """A BGR frame with the astronaut's face pasted near the centre (moved by `shift` px)."""
    frame = np.full((size[1], size[0], 3), 90, np.uint8)
    x, y, w, h = ASTRONAUT_FACE
    head = cv2.cvtColor(
        astronaut_rgb()[y - 40 : y + h + 40, x - 40 : x + w + 40], cv2.COLOR_RGB2BGR
    )
    head = cv2.resize(head, (200, 200))
    top, left = 140, 220 + shift
    frame[top : top + 200, left : left + 200] = head
    return frame


def write_video(path: Path, n: int = 12, blank_from: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (640, 480))
    for i in range(n):
        frame = face_frame(shift=2 * i)
        if blank_from is not None and i >= blank_from:
            frame = np.full_like(frame, 90)
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture
def trained(tiny_fer, tmp_path):
    """A tiny trained FER2013 model folder and the config to watch with."""
    cfg = tiny_fer(
        "deploy.watch.alerts.k=3",
        "deploy.watch.alerts.n=5",
        "deploy.watch.tracker.max_missing=2",
    )
    train.main(cfg, "fer2013", "cnn1")
    return cfg, Layout(cfg).model("fer2013", "cnn1").model_dir


def events_of(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_iou_and_tracks_follow_a_moving_face():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    tracker = Tracker(iou_threshold=0.3, max_missing=1, n=5)
    (a,), started, _ = tracker.update([(100, 100, 50, 50)], 0)
    assert started == [a]
    (b, c), started, _ = tracker.update([(104, 100, 50, 50), (400, 100, 50, 50)], 1)
    assert b is a and started == [c] and c.id == 2
    _, _, ended = tracker.update([], 2)
    assert ended == []  # one missing frame is tolerated
    _, _, ended = tracker.update([], 3)
    assert {t.id for t in ended} == {1, 2}


def test_alert_needs_k_of_n_angry_frames_and_respects_the_cooldown():
    tracker = Tracker(n=5)
    (track,), _, _ = tracker.update([(0, 0, 10, 10)], 0)
    rule = AlertRule(3, 5, 10.0)
    decisions = [
        should_alert(track, angry, float(angry), float(t), rule, 0.5)
        for t, angry in enumerate([True, False, True, False, True, True, True])
    ]
    assert decisions == [False, False, False, False, True, False, False]
    for t in (20.0, 21.0):  # after the cooldown, angry still: one more alert
        assert should_alert(track, True, 1.0, t, rule, 0.5) is (t == 20.0)


def test_watch_a_video_prints_events_and_one_debounced_alert(trained, tmp_path, capsys):
    cfg, model_dir = trained
    video = write_video(tmp_path / "desk.mp4", n=12, blank_from=9)
    out = tmp_path / "annotated.mp4"
    # Threshold 0: every face is called angry, so the alert rule decides alone.
    result = watch.main(cfg, str(video), model=str(model_dir), threshold=0.0, out=out)
    assert result.outcome == watch.Outcome.OK
    summary = result.summaries["desk"]
    events = events_of(capsys.readouterr().out)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "track_started" and kinds[-1] == "summary"
    assert kinds.count("alert") == 1 and kinds.count("track_started") == 1
    alert = next(e for e in events if e["event"] == "alert")
    assert alert["frame"] == 2 and alert["track"] == 1 and alert["angry_frames"] == "3/3"
    assert len(alert["box"]) == 4 and 0 <= alert["confidence"] <= 1
    assert "snapshot_jpeg_base64" not in alert  # privacy by default
    ended = next(e for e in events if e["event"] == "track_ended")
    assert ended["track"] == 1 and ended["frame"] == 11  # face gone from frame 9, 2 misses
    assert summary.frames == 12 and summary.alerts == 1 and events[-1]["fps"] > 0
    cap = cv2.VideoCapture(str(out))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    cap.release()


def test_watch_writes_nothing_unless_asked(trained, tmp_path, capsys):
    cfg, model_dir = trained
    video = write_video(tmp_path / "in" / "v.mp4", n=4)
    before = {p for p in tmp_path.rglob("*") if p.is_file()}
    watch.main(cfg, str(video), model=str(model_dir), threshold=0.0)
    after = {p for p in tmp_path.rglob("*") if p.is_file()}
    new = {p for p in after - before if "mlflow" not in p.name and "mlartifacts" not in str(p)}
    (stats,) = [p for _, p in DailyLog(resolve_path(cfg.deploy.watch.stats_log), 30).files()]
    assert new == {stats}  # only the hourly counts for drift checks: no image, no box
    (record,) = [json.loads(line) for line in stats.read_text().splitlines()]
    assert set(record) == {"event", "hour", "camera", "model", "faces", "emotions", "p_angry_bins"}
    assert record["faces"] == 4


def test_a_folder_with_a_bad_file_reports_it_and_goes_on(trained, tmp_path, capsys):
    cfg, model_dir = trained
    folder = tmp_path / "shots"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), face_frame())
    (folder / "b.jpg").write_text("not an image")
    cv2.imwrite(str(folder / "c.png"), np.full((240, 320), 128, np.uint8))  # no face
    summary = watch.main(cfg, str(folder), model=str(model_dir), threshold=0.5).summaries["shots"]
    events = events_of(capsys.readouterr().out)
    errors = [e for e in events if e["event"] == "frame_error"]
    assert len(errors) == 1 and errors[0]["source"].endswith("b.jpg")
    assert summary.frames == 3 and summary.faces == 1
    assert events[-1]["frame_error_kinds"] == {"not_an_image": 1}


def test_sources_that_cannot_start_fail_clearly(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(SourceError, match="not a video"):
        sources.open_source(str(text))
    with pytest.raises(SourceError, match="no such file"):
        sources.open_source(str(tmp_path / "missing.mp4"))
    with pytest.raises(SourceError, match="no files match"):
        sources.open_source(str(tmp_path / "*.png"))
    assert sources.kind_of("0") == "camera" and sources.kind_of("rtsp://cam/1") == "stream"


def test_watch_without_a_registered_model_says_what_to_do(make_cfg):
    cfg = make_cfg()
    with pytest.raises(site_model.ModelError, match="make run"):
        site_model.load(cfg)


def test_cli_watch_exits_1_with_a_message_on_a_bad_source(tmp_path):
    from typer.testing import CliRunner

    from emowatch.cli import app

    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"\x00" * 100)
    result = CliRunner().invoke(app, ["watch", str(bad), "--model", str(tmp_path)])
    assert result.exit_code == 1
    assert "error:" in result.output and "not a video" in result.output


def test_a_borderline_frame_does_not_flip_the_track_emotion():
    from emowatch.deploy.tracker import smoothed_emotion

    tracker = Tracker(n=5)
    (track,), _, _ = tracker.update([(0, 0, 10, 10)], 0)
    seen = []
    for e in ["angry", "neutral", "angry", "neutral", "neutral", "happy"]:
        track.emotion = smoothed_emotion(track, e)
        seen.append(track.emotion)
    assert seen == ["angry", "angry", "angry", "angry", "neutral", "neutral"]


def test_sigterm_ends_a_plain_watch_like_ctrl_c(trained, tmp_path):
    """systemctl stop on `emowatch watch` (no --serve): the annotated video is finalised, the
    summary printed, the webhook queue flushed or given up on within a bounded time."""
    from tests.test_serving import free_port  # (test_serving imports this module)

    _, model_dir = trained
    video = tmp_path / "long.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (640, 480))
    for i in range(400):  # a customer swaying in front of the camera for 40 s
        writer.write(face_frame(shift=2 * (i % 12)))
    writer.release()
    out = tmp_path / "annotated.avi"
    dead = f"http://127.0.0.1:{free_port()}/hook"  # nobody listens: every post fails
    overrides = [
        f"paths.reports_dir={tmp_path / 'reports'}",
        f"deploy.watch.alerts.webhook.spool_dir={tmp_path / 'spool'}",
    ]
    cmd = [
        sys.executable, "-m", "emowatch.cli", "watch", str(video), "--model", str(model_dir),
        "--threshold", "0.0", "--out", str(out), "--webhook", dead, *overrides,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    first = proc.stdout.readline()  # the loop is running
    assert first.startswith("{"), proc.stderr.read()
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    rest, err = proc.communicate(timeout=30)
    assert time.monotonic() - stopped < 12  # webhook retries are cut short (5 s at most)
    assert proc.returncode == 0, err
    assert "interrupted" in err
    summary = events_of(rest)[-1]
    assert summary["event"] == "summary" and 0 < summary["frames"] < 400
    assert summary["alerts"] >= 1 and summary["webhook_spooled"] == summary["alerts"]  # kept
    cap = cv2.VideoCapture(str(out))
    written = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, _ = cap.read()
    cap.release()
    assert ok and written == summary["frames"]  # a playable file with every processed frame


def test_several_cameras_share_one_model_and_batch(trained, tmp_path, capsys):
    cfg, model_dir = trained
    a = write_video(tmp_path / "front.mp4", n=10)
    b = write_video(tmp_path / "back.mp4", n=6)
    batches: list[int] = []
    classify_many = watch.FaceClassifier.classify_many

    def counting(self, images):
        batches.append(len(images))
        return classify_many(self, images)

    watch.FaceClassifier.classify_many = counting
    try:
        summaries = watch.main(
            cfg,
            [str(a), str(b), str(tmp_path / "gone.mp4")],
            str(model_dir),
            0.0,
            tmp_path / "out.avi",
        ).summaries
    finally:
        watch.FaceClassifier.classify_many = classify_many
    events = events_of(capsys.readouterr().out)
    (error,) = [e for e in events if e["event"] == "camera_error"]
    assert error["camera"] == "gone" and "no such file" in error["error"]  # the others went on
    assert {n: s.frames for n, s in summaries.items()} == {"front": 10, "back": 6}
    assert batches[:6] == [2] * 6 and set(batches[6:]) == {1}  # both cameras in one batch
    tracked = [e for e in events if e["event"] in ("track_started", "alert", "track_ended")]
    assert tracked and all(e["camera"] in ("front", "back") for e in tracked)
    assert {e["camera"] for e in tracked if e["event"] == "track_started"} == {"front", "back"}
    per_camera = [e for e in events if e["event"] == "summary" and "camera" in e]
    assert sorted(e["camera"] for e in per_camera) == ["back", "front"]
    total = [e for e in events if e["event"] == "summary" and "cameras" in e][-1]
    assert total["frames"] == 16 and total["cameras"] == ["front", "back"]
    for name, n in (("front", 10), ("back", 6)):
        cap = cv2.VideoCapture(str(tmp_path / f"out-{name}.avi"))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == n
        cap.release()


def test_watch_command_takes_several_sources_then_overrides(trained, tmp_path):
    _, model_dir = trained
    a = write_video(tmp_path / "a.mp4", n=4)
    b = write_video(tmp_path / "b.mp4", n=4)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    done = subprocess.run(
        [
            sys.executable, "-m", "emowatch.cli", "watch", str(a), str(b), "--model",
            str(model_dir), "--threshold", "0.0", "deploy.watch.alerts.k=1",
            f"paths.reports_dir={tmp_path / 'reports'}",
        ],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    events = events_of(done.stdout)
    alerts = [e for e in events if e["event"] == "alert"]
    assert {e["camera"] for e in alerts} == {"a", "b"}  # k=1 reached the watcher


def test_a_signal_during_a_frame_lands_after_it():
    """The frame being written and counted when SIGTERM comes is finished first (the race
    behind a video with one frame more than the summary)."""
    from emowatch.processes import signals_deferred, sigterm_as_keyboard_interrupt

    done = []
    with sigterm_as_keyboard_interrupt(), pytest.raises(KeyboardInterrupt):
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the handler would have run here, without the deferral
            done.append("written")
            done.append("counted")
        done.append("next frame")
    assert done == ["written", "counted"]
