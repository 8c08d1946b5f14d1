"""`emowatch retrain`: the lock, the report, and the whole pipeline end to end on the tiny
profile: first champions, nothing to do, a new person promoted and refused with exact exit
codes, and an experiment that never moves production."""

from __future__ import annotations

import gzip
import json
import os
import re
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


def emowatch(project: Path, *args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
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


PINS = "      test: [FF, GG]\n      val: [AA, HH]\n      train: [BB, CC, DD, EE, II, JJ]\n"


def tiny_project(root: Path, remote: Path | None = None) -> Path:
    """A git + DVC checkout of this project (conf/, dvc.yaml, src/ as stage deps) on the tiny
    profile, with a tiny FER2013 CSV and photos of 10 people x 4 expressions (as many people as
    JAFFE: val and test get 2 each, so the operating point can be cross-fitted by person).
    With `remote`, data/ is tracked by data.dvc and pushed there."""
    for name in ("conf", "src"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(REPO / name, root / name)
    config = root / "conf" / "config.yaml"
    config.write_text(config.read_text().replace("- profile: cpu", "- profile: tiny"))
    data = root / "conf" / "data" / "default.yaml"  # the shop's first people, pinned 2/2/6
    data.write_text(re.sub(r"(    pinned:\n)(      .*\n)+", "\\1" + PINS, data.read_text()))
    rows = good_rows(n_per_split=14)
    csv = write_csv(root / "data" / "fer2013" / "fer2013.csv", rows)
    with gzip.open(root / "data" / "fer2013" / "fer2013.csv.gz", "wb") as f:
        f.write(csv.read_bytes())
    csv.unlink()
    for s, subject in enumerate(("AA", "BB", "CC", "DD", "EE", "FF", "GG", "HH", "II", "JJ")):
        add_person(root, subject, s)
    for cmd in (["git", "init", "-q", "-b", "main"], [str(BIN / "dvc"), "init", "-q"]):
        subprocess.run(cmd, cwd=root, check=True)
    if remote is not None:  # the data tracked by data.dvc and pushed, as a shop would keep it
        dvc(root, "remote", "add", "-d", "shop", str(remote))
        dvc(root, "add", "-q", "data")
        dvc(root, "push", "-q")
    assert emowatch(root, "params").returncode == 0
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "a shop's emowatch")  # a clean checkout on main: production
    return root


def dvc(root: Path, *args: str) -> None:
    subprocess.run([str(BIN / "dvc"), *args], cwd=root, check=True)


def add_person(root: Path, subject: str, s: int) -> list[str]:
    """Four photos of one person (the astronaut, a little brighter per person and class) under
    data/photos/<class>/; returns their paths relative to data/photos."""
    gray = np.asarray(Image.fromarray(astronaut_rgb()).convert("L"), np.int16)
    added = []
    for c, (cls, code) in enumerate(
        (("angry", "AN"), ("happy", "HA"), ("neutral", "NE"), ("sad", "SA"))
    ):
        face = np.clip(gray + 4 * s - 4 * c, 0, 255).astype(np.uint8)
        rel = f"{cls}/{subject}.{code}1.{s * 4 + c}.png"
        path = root / "data" / "photos" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(face).save(path)
        added.append(rel)
    return added


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
def test_retrain_end_to_end_on_the_tiny_profile(tmp_path):
    """The business's scenario on one scratch git + DVC project (one first reproduction shared
    by every step): a dry run plans, the first retrain makes the first champions (0), the next
    has nothing to do (11). Photos of a new person arrive, committed with DVC; retrain crops
    them, retrains and re-evaluates the photo models, lists the new files and the gate's
    decision: with a gate the challenger passes by construction it is promoted (0), with a floor
    no model can reach the next one is refused (10), and then nothing is left to do (11). Last, a
    `dvc exp run` retrains vgg, registers it as the challenger and runs a gate it passes, but
    never moves production."""
    project = tiny_project(tmp_path / "shop", remote=tmp_path / "remote")
    plan = emowatch(project, "retrain", "--dry-run")
    assert plan.returncode == retrain.Outcome.WOULD_RUN == 12, plan.stderr
    assert "train@fer2013-vgg" in plan.stdout and "promote@photos" in plan.stdout
    assert not (project / "reports" / "retrain").exists()  # a dry run writes nothing

    first = emowatch(project, "retrain")
    assert first.returncode == retrain.Outcome.PROMOTED, first.stdout[-3000:] + first.stderr
    report = json.loads((project / "reports/retrain/latest.json").read_text())
    assert report["outcome"] == "promoted"  # the first champions, on a clean checkout of main
    assert report["data"]["source"] == "pulled" and report["photos"]["first_run"]
    assert "train@fer2013-vgg" in report["changes"] and report["promotion"]["fer2013"]
    assert (project / "reports/retrain/latest.md").read_text().startswith("# emowatch retrain")
    assert subprocess.run([str(BIN / "dvc"), "status", "-q"], cwd=project).returncode == 0

    second = emowatch(project, "retrain")
    assert second.returncode == retrain.Outcome.NOTHING_TO_DO, second.stdout + second.stderr
    again = json.loads((project / "reports/retrain/latest.json").read_text())
    assert again["outcome"] == "nothing to do" and again["changes"] == {}
    assert again["champions_after"] == report["champions_after"]  # the champion kept
    before = report["champions_after"]["photos"]["version"]

    # Kim's photos; the gate: floors off (tiny), no comparison with the champion.
    people = json.loads((project / "artifacts/photos/splits.json").read_text())["subjects"]
    kim = commit_person_and_gate(
        project, "KK", 10, {"  promotion:\n": "  promotion:\n    compare: []\n"}
    )
    better = emowatch(project, "retrain")
    assert better.returncode == retrain.Outcome.PROMOTED, better.stdout[-3000:] + better.stderr
    report = json.loads((project / "reports/retrain/latest.json").read_text())
    assert [a["file"] for a in report["photos"]["added"]] == sorted(kim)
    assert {a["status"] for a in report["photos"]["added"]} <= {"ok", "multiple_faces"}
    assert len({a["split"] for a in report["photos"]["added"]}) == 1  # one person, one split
    grown = json.loads((project / "artifacts/photos/splits.json").read_text())["subjects"]
    assert {s: [p for p in grown[s] if p != "KK"] for s in grown} == people  # nobody moved
    assert "crop_faces" in report["changes"]  # stale before the run: the photos changed
    ran = set(report["ran"])  # what dvc repro re-ran: the photo models, trained and evaluated
    assert {"crop_faces", "train@photos-cnn1", "evaluate@photos-cnn1", "promote@photos"} <= ran
    assert "train@fer2013-vgg" not in ran  # FER2013 training saw nothing new
    assert report["promotion"]["photos"]["promoted"] is True
    assert report["champions_after"]["photos"]["version"] > before
    text = (project / "reports/retrain/latest.md").read_text()
    assert "4 new: " in text and kim[0] in text and "## Promotion gate" in text

    # Lee's photos; the gate: a deployed-path floor above 1 (no model can reach it).
    champion = report["champions_after"]
    worse = {"photos: 0.0}": "photos: 1.01}"}
    lee = commit_person_and_gate(project, "LL", 11, worse)
    refused = emowatch(project, "retrain")
    assert refused.returncode == retrain.Outcome.KEPT_CHAMPION, refused.stdout[-3000:]
    report = json.loads((project / "reports/retrain/latest.json").read_text())
    assert [a["file"] for a in report["photos"]["added"]] == sorted(lee)
    assert "train@photos-cnn1" in report["ran"]
    assert report["promotion"]["photos"]["promoted"] is False
    assert "does not reach the floor 1.01" in report["promotion"]["photos"]["reason"]
    assert report["champions_after"] == champion

    quiet = emowatch(project, "retrain")
    assert quiet.returncode == retrain.Outcome.NOTHING_TO_DO, quiet.stdout[-3000:]

    # An experiment trains a new vgg (another label smoothing), registers it as the only
    # candidate (so it is the challenger) and runs a gate it passes (the floors lowered again):
    # the gate would promote it, and production does not move.
    fer_champion = champion["fer2013"]["version"]
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")
    env.pop("MLFLOW_TRACKING_URI", None)
    setting = [
        "models.vgg.label_smoothing=0.05",
        "registry.candidates.fer2013=[vgg]",
    ]
    exp = subprocess.run(
        [str(BIN / "dvc"), "exp", "run", "-n", "vgg-ls", *(a for s in setting for a in ("-S", s))],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert exp.returncode == 0, exp.stdout[-3000:] + exp.stderr[-3000:]
    ran = exp.stdout + exp.stderr  # only what the setting changes re-ran
    assert "Running stage 'train@fer2013-vgg'" in ran
    assert "Running stage 'train@fer2013-cnn1'" not in ran
    decision = json.loads((project / "reports/registry/fer2013_promotion.json").read_text())
    assert decision["production"]["experiment"] == "inside `dvc exp run` (experiment vgg-ls)"
    assert decision["would_promote"] is True and decision["promoted"] is False
    assert int(decision["champion_after"]) == int(decision["champion_before"]) == fer_champion
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    name = "emowatch-fer2013"
    assert int(client.get_model_version_by_alias(name, "champion").version) == fer_champion
    challenger = client.get_model_version_by_alias(name, "challenger")
    assert int(challenger.version) == int(decision["challenger"]) != fer_champion
    assert challenger.tags["experiment"] == "inside `dvc exp run` (experiment vgg-ls)"


def commit_person_and_gate(project: Path, subject: str, s: int, gate: dict[str, str]) -> list[str]:
    """A new person's photos committed with DVC (dvc add, dvc push, git commit), and the tiny
    profile's gate set as `gate` says (old text -> new text), committed with them."""
    added = add_person(project, subject, s)
    tiny = project / "conf" / "profile" / "tiny.yaml"
    text = tiny.read_text()
    for old, new in gate.items():
        assert old in text, old
        text = text.replace(old, new)
    tiny.write_text(text)
    assert emowatch(project, "params").returncode == 0
    dvc(project, "add", "-q", "data")
    dvc(project, "push", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", f"photos of {subject}; the gate")
    return added
