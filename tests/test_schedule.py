"""The scheduling files in deploy/schedule parse: the crontab line, the systemd service + timer
(`systemd-analyze verify` where it exists) and the GitHub Actions workflow (YAML)."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

SCHEDULE = REPO / "deploy" / "schedule"
FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*$")
RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]


def cron_fields_ok(fields: list[str]) -> bool:
    for value, (low, high) in zip(fields, RANGES, strict=True):
        if not FIELD.match(value):
            return False
        numbers = [int(n) for n in re.findall(r"\d+", value.split("/")[0])]
        if any(not low <= n <= high for n in numbers):
            return False
    return True


def test_crontab_line_is_valid_and_runs_retrain():
    lines = [
        line
        for line in (SCHEDULE / "emowatch-retrain.cron").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert len(lines) == 1
    fields = lines[0].split(None, 5)
    assert cron_fields_ok(fields[:5]), fields[:5]
    assert "emowatch retrain" in fields[5]
    assert not cron_fields_ok(["61", "3", "*", "*", "*"])  # the checker does check


def systemd_units(tmp_path: Path) -> tuple[Path, Path]:
    """The unit files with the install paths pointed at this checkout (verify checks them)."""
    exe = Path(sys.executable).with_name("emowatch")
    service = (SCHEDULE / "emowatch-retrain.service").read_text()
    service = service.replace("/opt/emowatch/.venv/bin/emowatch", str(exe))
    service = service.replace("/opt/emowatch", str(REPO)).replace("User=emowatch", "User=root")
    (tmp_path / "emowatch-retrain.service").write_text(service)
    shutil.copy(SCHEDULE / "emowatch-retrain.timer", tmp_path)
    return tmp_path / "emowatch-retrain.service", tmp_path / "emowatch-retrain.timer"


def test_systemd_service_and_timer(tmp_path):
    service, timer = systemd_units(tmp_path)
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(service)
    assert unit["Service"]["Type"] == "oneshot"
    assert unit["Service"]["ExecStart"].endswith("emowatch retrain")
    assert set(unit["Service"]["SuccessExitStatus"].split()) == {"10", "11"}
    tick = configparser.ConfigParser(strict=False, interpolation=None)
    tick.read(timer)
    assert tick["Timer"]["Unit"] == "emowatch-retrain.service" and tick["Timer"]["OnCalendar"]
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: parsed the units only")
    out = subprocess.run(
        [analyze, "verify", str(service), str(timer)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    broken = tmp_path / "broken.service"
    broken.write_text(service.read_text().replace("ExecStart=/", "ExecStart=no/"))
    assert subprocess.run([analyze, "verify", str(broken)], capture_output=True).returncode != 0


def test_github_actions_workflow():
    flow = yaml.safe_load((SCHEDULE / "github-retrain.yml").read_text())
    triggers = flow.get("on", flow.get(True))  # YAML 1.1 reads a bare `on` as true
    (schedule,) = triggers["schedule"]
    assert cron_fields_ok(schedule["cron"].split())
    steps = flow["jobs"]["retrain"]["steps"]
    runs = "\n".join(step.get("run", "") for step in steps)
    assert "emowatch retrain" in runs and "GITHUB_STEP_SUMMARY" in runs
    assert any(step.get("uses", "").startswith("actions/upload-artifact") for step in steps)
