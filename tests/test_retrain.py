"""`emowatch retrain`: the lock, and the whole pipeline end to end on the tiny profile, twice
(the second run finds nothing changed and keeps the champion)."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emowatch import retrain
from tests.conftest import REPO, astronaut_rgb, good_rows, write_csv

BIN = Path(sys.executable).parent


def emowatch(project: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", EMOWATCH_ROOT=str(project))
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("EMOWATCH_PIPELINE_ID", None)
    return subprocess.run(
        [str(BIN / "emowatch"), *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def tiny_project(root: Path) -> Path:
    """A git + DVC checkout of this project (conf/, dvc.yaml, src/ as stage deps) on the tiny
    profile, with a tiny FER2013 CSV and photos of 10 people x 4 expressions (as many people as
    JAFFE: val and test get 2 each, so the operating point can be cross-fitted by person)."""
    for name in ("conf", "src"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(REPO / name, root / name)
    config = root / "conf" / "config.yaml"
    config.write_text(config.read_text().replace("- profile: cpu", "- profile: tiny"))
    rows = good_rows(n_per_split=14)
    csv = write_csv(root / "data" / "fer2013" / "fer2013.csv", rows)
    with gzip.open(root / "data" / "fer2013" / "fer2013.csv.gz", "wb") as f:
        f.write(csv.read_bytes())
    csv.unlink()
    gray = np.asarray(Image.fromarray(astronaut_rgb()).convert("L"), np.int16)
    for s, subject in enumerate(("AA", "BB", "CC", "DD", "EE", "FF", "GG", "HH", "II", "JJ")):
        for c, (cls, code) in enumerate(
            (("angry", "AN"), ("happy", "HA"), ("neutral", "NE"), ("sad", "SA"))
        ):
            face = np.clip(gray + 4 * s - 4 * c, 0, 255).astype(np.uint8)
            path = root / "data" / "photos" / cls / f"{subject}.{code}1.{s * 4 + c}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(face).save(path)
    for cmd in (["git", "init", "-q", "-b", "main"], [str(BIN / "dvc"), "init", "-q"]):
        subprocess.run(cmd, cwd=root, check=True)
    assert emowatch(root, "params").returncode == 0
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "a shop's emowatch")  # a clean checkout on main: production
    return root


def git(root: Path, *args: str) -> None:
    ident = ["-c", "user.name=emowatch tests", "-c", "user.email=tests@emowatch.invalid"]
    subprocess.run(["git", *ident, *args], cwd=root, check=True)


def test_a_second_retrain_refuses_while_one_holds_the_lock(tmp_path, make_cfg):
    cfg = make_cfg(f"retrain.lock_file={tmp_path / 'retrain.lock'}")
    with retrain.retrain_lock(tmp_path / "retrain.lock"):
        outcome = retrain.main(cfg, REPO, dry_run=True)
    assert outcome == retrain.Outcome.LOCKED == 75
    lock = tmp_path / "a.lock"
    with (
        pytest.raises(retrain.Locked, match=f"pid {os.getpid()}"),
        retrain.retrain_lock(lock),
        retrain.retrain_lock(lock),
    ):
        pass


def test_report_markdown_says_what_changed_and_the_decision():
    report = retrain.Report(outcome="kept champion", finished="now")
    report.changes = {"train@fer2013-vgg": [{"changed deps": {"conf/net/vgg.yaml": "modified"}}]}
    report.champions_before = {"fer2013": {"version": 3, "model": "vgg", "accuracy": 0.66}}
    report.champions_after = report.champions_before
    report.promotion = {"fer2013": {"promoted": False, "reason": "not better"}}
    text = retrain.markdown(report)
    assert "train@fer2013-vgg" in text and "conf/net/vgg.yaml" in text
    assert "| fer2013 | v3 vgg (test acc 0.660) | v3 vgg (test acc 0.660) |" in text
    assert "Gate: kept — not better" in text


@pytest.mark.slow
def test_retrain_twice_end_to_end_on_the_tiny_profile(tmp_path):
    project = tiny_project(tmp_path / "shop")
    plan = emowatch(project, "retrain", "--dry-run", "--no-pull")
    assert plan.returncode == retrain.Outcome.WOULD_RUN == 12, plan.stderr
    assert "train@fer2013-vgg" in plan.stdout and "promote@photos" in plan.stdout
    assert not (project / "reports" / "retrain").exists()  # a dry run writes nothing

    first = emowatch(project, "retrain", "--no-pull")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    report = json.loads((project / "reports/retrain/latest.json").read_text())
    assert report["outcome"] == "promoted"  # the first champions, on a clean checkout of main
    assert "train@fer2013-vgg" in report["changes"] and report["promotion"]["fer2013"]
    assert (project / "reports/retrain/latest.md").read_text().startswith("# emowatch retrain")
    assert subprocess.run([str(BIN / "dvc"), "status", "-q"], cwd=project).returncode == 0

    second = emowatch(project, "retrain", "--no-pull")
    assert second.returncode == retrain.Outcome.NOTHING_TO_DO, second.stdout + second.stderr
    again = json.loads((project / "reports/retrain/latest.json").read_text())
    assert again["outcome"] == "nothing to do" and again["changes"] == {}
    assert again["champions_after"] == report["champions_after"]  # the champion kept

    # An experiment re-evaluates, registers and runs the gate, but never moves production.
    champion = report["champions_after"]["fer2013"]["version"]
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")
    env.pop("MLFLOW_TRACKING_URI", None)
    exp = subprocess.run(
        [str(BIN / "dvc"), "exp", "run", "-n", "no-tta", "-S", "evaluate.tta=none"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert exp.returncode == 0, exp.stdout[-3000:] + exp.stderr[-3000:]
    decision = json.loads((project / "reports/registry/fer2013_promotion.json").read_text())
    assert decision["production"]["experiment"] == "inside `dvc exp run` (experiment no-tta)"
    assert not decision["promoted"]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    name = "emowatch-fer2013"
    assert int(client.get_model_version_by_alias(name, "champion").version) == champion
    challenger = client.get_model_version_by_alias(name, "challenger")
    assert challenger.tags["experiment"].startswith("inside `dvc exp run`")
    assert challenger.tags["tta"] == "none"
