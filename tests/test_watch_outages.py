"""A watch that runs for months: cameras that drop are reopened for as long as it takes, their
outages are events and, past deploy.watch.down_alert_s, an alert through every sink; a camera
that is down never stops the others; credentials never reach the output; and the shipped
systemd unit, executed, restarts a watch whose cameras were all given up."""

from __future__ import annotations

import configparser
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emowatch.deploy import sources, watch
from tests.conftest import REPO
from tests.test_sources import FlakyCamera
from tests.test_watch import events_of, trained, write_video  # noqa: F401 (fixture)

UNIT = REPO / "deploy" / "service" / "emowatch-watch.service"
DEAD = "rtsp://user:secret@127.0.0.1:9/x"  # nothing listens on port 9 (discard)
FAST = [
    "deploy.watch.reconnect.initial_s=0.1",
    "deploy.watch.reconnect.max_s=0.3",
    "deploy.watch.reconnect.open_timeout_s=2",
    "deploy.watch.reconnect.read_timeout_s=2",
]


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "EMOWATCH_"))}


def test_an_outage_is_a_down_and_an_up_and_a_long_one_an_alert(trained, tmp_path, capsys):  # noqa: F811
    cfg, model_dir = trained
    cfg.deploy.watch.reconnect.initial_s = 0.05
    cfg.deploy.watch.down_alert_s = 0  # any outage is long enough here
    cfg.deploy.watch.max_frames = 6
    flaky = FlakyCamera([3, None, None, 10**6])  # 3 frames, two failed reopenings, then on
    real = sources.cv2.VideoCapture
    sources.cv2.VideoCapture = lambda t, *a: flaky(t) if str(t).startswith("rtsp") else real(t)
    try:
        result = watch.main(
            cfg, ["rtsp://user:secret@cam/1", str(write_video(tmp_path / "door.mp4", n=8))],
            model=str(model_dir), threshold=0.0,
        )  # fmt: skip
    finally:
        sources.cv2.VideoCapture = real
    out = capsys.readouterr()
    events = events_of(out.out)
    kinds = [e["event"] for e in events if e.get("camera") == "1"]
    assert kinds.count("camera_down") == 1 and kinds.count("camera_up") == 1
    down = next(e for e in events if e["event"] == "camera_down")
    assert "stalled" in down["reason"] and down["retry_in_s"] is not None
    (alarm,) = [e for e in events if e["event"] == "alert" and e["kind"] == "camera_down"]
    assert alarm["camera"] == "1" and alarm["alert_id"]
    assert result.summaries["1"].outages == 1 and result.summaries["1"].camera_alerts == 1
    assert result.summaries["door"].frames == 6  # the other camera went on
    assert result.outcome == watch.Outcome.OK
    assert "secret" not in out.out + out.err


def test_a_dead_stream_keeps_being_retried_and_its_password_is_never_printed(trained, tmp_path):  # noqa: F811
    _, model_dir = trained
    cmd = [
        sys.executable, "-m", "emowatch.cli", "watch", DEAD, "--model", str(model_dir),
        "--threshold", "0.5", f"paths.reports_dir={tmp_path}", "deploy.watch.down_alert_s=1",
        *FAST,
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    first = proc.stdout.readline()  # the watch runs: its first event
    time.sleep(4)  # several reopenings, and past down_alert_s
    assert proc.poll() is None, proc.communicate()  # still trying: never given up
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    out = first + out
    assert proc.returncode == 0, err
    events = events_of(out)
    assert [e["event"] for e in events].count("camera_down") == 1  # one outage, many retries
    assert any(e["event"] == "alert" and e["kind"] == "camera_down" for e in events)
    assert events[-1]["event"] == "summary" and events[-1]["outages"] == 1
    assert "secret" not in out + err


# --- the shipped systemd unit, executed -------------------------------------------------------


def unit() -> configparser.SectionProxy:
    parsed = configparser.ConfigParser(strict=False, interpolation=None)
    parsed.optionxform = str  # systemd keys are case-sensitive
    parsed.read(UNIT)
    return parsed["Service"]


def expand(line: str, variables: dict[str, str]) -> list[str]:
    """ExecStart as systemd expands it: $VAR splits into words, ${VAR} stays one argument."""
    words = []
    for word in line.split():
        whole = re.fullmatch(r"\$(\w+)", word)
        if whole:
            words += variables.get(whole.group(1), "").split()
        else:
            words.append(re.sub(r"\$\{(\w+)\}", lambda m: variables.get(m.group(1), ""), word))
    return words


def verdict(service: configparser.SectionProxy, rc: int) -> str:
    """What systemd does when a Type=simple service's process exits with `rc`."""
    if rc == 0 or str(rc) in service.get("SuccessExitStatus", "").split():
        return "stopped"
    prevent = service.get("RestartPreventExitStatus", "").split()
    if service.get("Restart") in ("on-failure", "always") and str(rc) not in prevent:
        return "restart"
    return "failed"


def exec_start(variables: dict[str, str], timeout_s: float | None = None) -> tuple[int, str]:
    service = unit()
    argv = expand(service["ExecStart"].replace("/opt/emowatch/.venv", sys.prefix), variables)
    cwd = service["WorkingDirectory"].replace("/opt/emowatch", str(REPO))
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env() | variables, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    first = ""
    if timeout_s is not None:
        first = proc.stdout.readline()  # running
        time.sleep(timeout_s)
        proc.send_signal(signal.SIGTERM)  # systemctl stop
    out, err = proc.communicate(timeout=120)
    return proc.returncode, first + out + err


def test_the_unit_restarts_a_watch_whose_cameras_were_all_given_up(trained, tmp_path):  # noqa: F811
    _, model_dir = trained
    service = unit()
    assert service["Type"] == "simple" and service["EnvironmentFile"].startswith("/etc/")
    options = [
        "--model", str(model_dir), "--threshold", "0.5", f"paths.reports_dir={tmp_path}", *FAST,
    ]  # fmt: skip
    variables = {
        "EMOWATCH_CAMERAS": f"{DEAD} rtsp://127.0.0.1:9/y",
        "EMOWATCH_WATCH_OPTIONS": " ".join([*options, "deploy.watch.reconnect.max_attempts=2"]),
    }
    rc, output = exec_start(variables)
    assert (rc, verdict(service, rc)) == (watch.Outcome.SOURCES_LOST, "restart")
    assert output.count('"event":"camera_error"') == 2 and "given up" in output
    assert "secret" not in output

    forever = {**variables, "EMOWATCH_WATCH_OPTIONS": " ".join(options)}
    rc, output = exec_start(forever, timeout_s=4)  # no limit: still trying when stopped
    assert (rc, verdict(service, rc)) == (0, "stopped") and "interrupted" in output


def test_the_unit_verifies():
    analyze = subprocess.run(["which", "systemd-analyze"], capture_output=True, text=True)
    if analyze.returncode != 0:
        pytest.skip("systemd-analyze is not installed")
    out = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(UNIT)], capture_output=True, text=True
    )
    assert "Unknown key" not in out.stderr and "restart specifier" not in out.stderr


def test_executable_paths_in_the_unit_are_the_checkouts():
    service = unit()
    assert Path(service["ExecStart"].split()[0]).name == "emowatch"
    assert service["ExecStart"].startswith(service["WorkingDirectory"] + "/.venv/bin/")
