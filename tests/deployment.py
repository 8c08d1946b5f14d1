"""A scratch deployment for the schedule tests: a git origin and a DVC remote holding a small
project (this checkout's conf/, a few data files, a one-stage pipeline), cloned where a
scheduler would find it, with `.venv` pointing at this environment.

The stage stands in for the real pipeline (tests/test_retrain.py runs that): it counts the data
files and makes a new version of emowatch-photos champion, as the real promote stage does, so
`emowatch retrain` exits 0 after it ran and 11 when nothing changed. It hangs (ignoring SIGTERM,
with a child of its own) while a file `hang` exists, and fails while a file `fail` exists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

BIN = Path(sys.executable).parent
VENV = Path(sys.prefix)

STAGE = '''"""A stand-in stage: count the data files, make a new emowatch-photos champion."""
import json, os, signal, subprocess, sys, time
from pathlib import Path

from mlflow.tracking import MlflowClient

from emowatch import config
from emowatch.tracking.runs import stage_run, tracking_uri

root = Path.cwd()
cfg = config.load(None, [])
if Path("fail").exists():
    sys.exit("stub stage: failing on purpose")
with stage_run(cfg, "stub", root=root) as run:
    if Path("hang").exists():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only SIGKILL stops this one
        worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        ids = {"stage": os.getpid(), "worker": worker.pid, "run": run.info.run_id}
        Path("pids.json").write_text(json.dumps(ids))
        time.sleep(600)
    client = MlflowClient(tracking_uri(cfg, root))
    name = cfg.registry.names.photos
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    v = client.create_model_version(name, f"{run.info.artifact_uri}/model", run.info.run_id)
    client.set_registered_model_alias(name, "champion", v.version)
    Path("out").mkdir(exist_ok=True)
    n = sum(1 for p in Path("data").rglob("*") if p.is_file())
    Path("out/count.json").write_text(json.dumps({"files": n}))
    Path("docs").mkdir(exist_ok=True)  # the results page: committed, not cached
    Path("docs/results.md").write_text(f"# Results\\n\\n{n} data files\\n")
'''

PIPELINE = """stages:
  stub:
    cmd: python stub_stage.py
    deps: [data, stub_stage.py]
    outs:
      - out/count.json
      - docs/results.md:
          cache: false
"""

IGNORED = """/data
/out
/reports
/mlflow.db
/mlartifacts
/.emowatch
/.venv
/hang
/fail
/pids.json
__pycache__/"""


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without the variables that would point emowatch elsewhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "EMOWATCH_"))}
    return env | extra


def sh(cmd: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    ident = ["-c", "user.name=emowatch tests", "-c", "user.email=tests@emowatch.invalid"]
    if cmd[0] == "git":
        cmd = ["git", *ident, *cmd[1:]]
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True, env=clean_env())


def origin(base: Path, remote_in_config: bool = True) -> tuple[Path, Path]:
    """(a bare git origin, a DVC remote folder) holding the project and its data. The
    project's committed DVC remote is the folder, or (`remote_in_config=False`) a path that
    does not exist, as on a CI runner before its remote is configured."""
    seed, bare, remote = base / "seed", base / "origin.git", base / "dvc-remote"
    shutil.copytree(REPO / "conf", seed / "conf", ignore=shutil.ignore_patterns("__pycache__"))
    (seed / "dvc.yaml").write_text(PIPELINE)
    (seed / "stub_stage.py").write_text(STAGE)
    (seed / ".gitignore").write_text(IGNORED + "\n")
    for i, cls in enumerate(("angry", "happy")):
        path = seed / "data" / "photos" / cls / f"AA.{i}.txt"
        path.parent.mkdir(parents=True)
        path.write_text(f"photo {i}\n")
    sh(["git", "init", "-q", "-b", "main"], seed)
    dvc = str(BIN / "dvc")
    sh([dvc, "init", "-q"], seed)
    sh([dvc, "remote", "add", "-d", "team", str(remote)], seed)
    sh([dvc, "add", "-q", "data"], seed)
    sh([dvc, "push", "-q"], seed)
    if not remote_in_config:
        sh([dvc, "remote", "modify", "team", "url", str(base / "no-such-remote")], seed)
    sh(["git", "add", "-A"], seed)
    sh(["git", "commit", "-q", "-m", "a shop's emowatch"], seed)
    sh(["git", "clone", "-q", "--bare", str(seed), str(bare)], base)
    return bare, remote


def deploy(bare: Path, where: Path, mlflow_db: Path | None = None) -> Path:
    """A fresh clone at `where` with `.venv` -> this environment (and an MLflow database)."""
    where.parent.mkdir(parents=True, exist_ok=True)
    sh(["git", "clone", "-q", str(bare), str(where)], where.parent)
    (where / ".venv").symlink_to(VENV)
    if mlflow_db is not None:
        shutil.copy(mlflow_db, where / "mlflow.db")
    return where


def scheduler_env(**extra: str) -> dict[str, str]:
    """What cron and systemd give a job: a bare PATH, HOME, a locale."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    return env | {"LANG": "C.UTF-8", "SHELL": "/bin/sh"} | extra


def publish_photo(bare: Path, base: Path, rel: str) -> None:
    """Someone elsewhere adds a photo: dvc add, dvc push, git commit, git push to the origin."""
    elsewhere = base / "elsewhere"
    if not elsewhere.exists():
        sh(["git", "clone", "-q", str(bare), str(elsewhere)], base)
    sh(["git", "pull", "-q"], elsewhere)
    sh([str(BIN / "dvc"), "pull", "-q", "data.dvc"], elsewhere)
    path = elsewhere / "data" / "photos" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"photo {rel}\n")
    sh([str(BIN / "dvc"), "add", "-q", "data"], elsewhere)
    sh([str(BIN / "dvc"), "push", "-q", "data.dvc"], elsewhere)
    sh(["git", "commit", "-q", "-am", f"photo {rel}"], elsewhere)
    sh(["git", "push", "-q", "origin", "HEAD:main"], elsewhere)
