"""The files in deploy/schedule, executed in a scratch deployment (tests/deployment.py) rather
than parsed: the crontab line through `sh -c` with cron's bare environment, the systemd
service's ExecStart judged by the unit's own exit-status and restart settings, and the GitHub
Actions workflow's steps in order on two fresh "runners" (the second night must find nothing to
do). Also: a failed pull, --dry-run, and SIGTERM to a running retrain."""

from __future__ import annotations

import configparser
import fcntl
import json
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import REPO
from tests.deployment import BIN, clean_env, deploy, origin, publish_photo, scheduler_env, sh

SCHEDULE = REPO / "deploy" / "schedule"


def latest(project: Path) -> dict:
    return json.loads((project / "reports/retrain/latest.json").read_text())


def retrain(project: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(project / ".venv/bin/emowatch"), "retrain", *args],
        cwd=project,
        env=scheduler_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def champion(project: Path) -> int | None:
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    try:
        return int(client.get_model_version_by_alias("emowatch-photos", "champion").version)
    except Exception:
        return None


@pytest.fixture
def shop(tmp_path: Path, mlflow_template: Path) -> Path:
    """A fresh deployment at <tmp>/opt/emowatch: no data, no outputs, no reports/ folder."""
    bare, _ = origin(tmp_path)
    return deploy(bare, tmp_path / "opt" / "emowatch", mlflow_template)


# --- cron ---------------------------------------------------------------------------------


def cron_command(project: Path) -> str:
    lines = [
        line
        for line in (SCHEDULE / "emowatch-retrain.cron").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert len(lines) == 1
    fields = lines[0].split(None, 5)
    assert len(fields) == 6 and all(re.fullmatch(r"[\d*/,-]+", f) for f in fields[:5])
    return fields[5].replace("/opt/emowatch", str(project))


def test_crontab_line_runs_on_a_fresh_deployment(shop):
    command = cron_command(shop)
    assert not (shop / "reports").exists()  # what broke the old line's redirect
    first = subprocess.run(["sh", "-c", command], env=scheduler_env(), cwd="/", timeout=300)
    assert first.returncode == 0  # pulled, ran the stage, a new champion
    assert latest(shop)["outcome"] == "promoted" and champion(shop) == 1
    assert (shop / "out/count.json").is_file()
    second = subprocess.run(["sh", "-c", command], env=scheduler_env(), cwd="/", timeout=300)
    assert second.returncode == 11  # nothing changed
    log = (shop / "reports/retrain/cron.log").read_text()
    assert "emowatch retrain: promoted" in log and "nothing to do" in log


# --- systemd ------------------------------------------------------------------------------


def unit(path: Path) -> configparser.ConfigParser:
    parsed = configparser.ConfigParser(strict=False, interpolation=None)
    parsed.optionxform = str  # systemd keys are case-sensitive
    parsed.read(path)
    return parsed


def systemd_verdict(service: configparser.SectionProxy, rc: int) -> str:
    """What systemd makes of a Type=oneshot exit code: success, restart (later) or failed."""
    if rc == 0 or str(rc) in service.get("SuccessExitStatus", "").split():
        return "success"
    retries = service.get("Restart", "no") in ("on-failure", "on-abnormal", "always")
    if retries and str(rc) not in service.get("RestartPreventExitStatus", "").split():
        return "restart"
    return "failed"


def exec_start(project: Path, **env: str) -> subprocess.CompletedProcess:
    service = unit(SCHEDULE / "emowatch-retrain.service")["Service"]
    assert service["Type"] == "oneshot"
    cmd = shlex.split(service["ExecStart"].replace("/opt/emowatch", str(project)))
    cwd = service["WorkingDirectory"].replace("/opt/emowatch", str(project))
    return subprocess.run(cmd, cwd=cwd, env=scheduler_env(**env), capture_output=True, text=True)


def test_systemd_service_exit_codes_mean_what_the_unit_says(shop, tmp_path):
    service = unit(SCHEDULE / "emowatch-retrain.service")["Service"]
    verdicts = []
    for _ in range(2):  # first night promotes, the second has nothing to do
        verdicts.append(systemd_verdict(service, exec_start(shop).returncode))
    assert verdicts == ["success", "success"] and champion(shop) == 1

    lock = shop / ".emowatch/retrain.lock"  # a manual retrain holds the lock: retry later
    with lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        locked = exec_start(shop)
    assert (locked.returncode, systemd_verdict(service, locked.returncode)) == (75, "restart")

    # New photos were committed elsewhere, and the remote holding them cannot be reached.
    publish_photo(tmp_path / "origin.git", tmp_path, "angry/BB.0.txt")
    shutil.move(tmp_path / "dvc-remote", tmp_path / "gone")
    sh(["git", "pull", "-q"], shop)
    pull = exec_start(shop)
    assert (pull.returncode, systemd_verdict(service, pull.returncode)) == (13, "restart")
    assert "dvc fetch data.dvc brought nothing" in latest(shop)["error"]
    shutil.move(tmp_path / "gone", tmp_path / "dvc-remote")

    (shop / "fail").touch()  # a stage fails: no retry, a person must look
    with (shop / "stub_stage.py").open("a") as f:
        f.write("# changed\n")
    failed = exec_start(shop)
    assert (failed.returncode, systemd_verdict(service, failed.returncode)) == (1, "failed")
    assert latest(shop)["outcome"] == "failed"


def test_an_unreachable_tracking_store_is_retried_in_one_line(shop):
    """The MLflow server of a site is down for the night: the retrain says so in one line,
    runs nothing, and exits 14, which the unit retries (not 1 through a traceback)."""
    service = unit(SCHEDULE / "emowatch-retrain.service")["Service"]
    down = exec_start(shop, MLFLOW_TRACKING_URI="http://mlflow:secret@127.0.0.1:9")
    assert (down.returncode, systemd_verdict(service, down.returncode)) == (14, "restart")
    assert "Traceback" not in down.stderr and "does not answer" in down.stderr
    assert "secret" not in down.stdout + down.stderr
    assert latest(shop)["outcome"] == "tracking store unreachable"
    assert not (shop / "out").exists()  # nothing ran
    up = exec_start(shop)  # the server is back (here: the local store)
    assert (up.returncode, systemd_verdict(service, up.returncode)) == (0, "success")


def test_systemd_units_verify(shop, tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    text = (SCHEDULE / "emowatch-retrain.service").read_text()
    text = text.replace("/opt/emowatch", str(shop)).replace("User=emowatch", "User=root")
    service = tmp_path / "emowatch-retrain.service"
    service.write_text(text)
    shutil.copy(SCHEDULE / "emowatch-retrain.timer", tmp_path)
    timer = tmp_path / "emowatch-retrain.timer"
    out = subprocess.run(
        [analyze, "verify", "--man=no", str(service), str(timer)], capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stderr == "", out.stderr  # no warning either
    broken = tmp_path / "broken.service"
    broken.write_text(text.replace("Restart=on-failure", "Restart=sometimes"))
    out = subprocess.run([analyze, "verify", "--man=no", str(broken)], capture_output=True)
    assert b"restart specifier" in out.stderr  # the checker does check


# --- GitHub Actions ------------------------------------------------------------------------

PUSH = "Push what ran and commit dvc.lock and the results page"  # the step's name

EXPR = re.compile(r"\$\{\{\s*([\w.-]+)\s*\}\}")


def run_workflow(project: Path, context: dict[str, str], tmp: Path) -> dict[str, dict]:
    """Run the workflow's `run:` steps in order as a runner would (bash -eo pipefail, the job's
    and step's env with `${{ }}` filled from `context` and earlier steps' outputs), skipping
    the `uses:` steps (the test cloned the checkout) and Install (.venv is this environment).
    Returns each step's exit code and outputs; stops at the first failing step."""
    flow = yaml.safe_load((SCHEDULE / "github-retrain.yml").read_text())
    job = flow["jobs"]["retrain"]
    outputs: dict[str, dict[str, str]] = {}
    results: dict[str, dict] = {}

    def fill(value: str) -> str:
        def one(m: re.Match) -> str:
            key = m.group(1)
            if key.startswith("steps."):
                _, step, _, name = key.split(".")
                return outputs.get(step, {}).get(name, "")
            return context.get(key, "")

        return EXPR.sub(one, str(value))

    for step in job["steps"]:
        if "run" not in step or step.get("name") == "Install":
            continue
        out_file, summary = tmp / "github_output", tmp / "step_summary"
        out_file.write_text("")
        env = clean_env(**{k: fill(v) for k, v in {**job["env"], **step.get("env", {})}.items()})
        env |= {"GITHUB_OUTPUT": str(out_file), "GITHUB_STEP_SUMMARY": str(summary)}
        env |= {"GITHUB_REF_NAME": "main", "CI": "true"}
        script = tmp / "step.sh"
        script.write_text(fill(step["run"]))
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        pairs = [line.split("=", 1) for line in out_file.read_text().splitlines() if "=" in line]
        outputs[step.get("id", step["name"])] = dict(pairs)
        results[step["name"]] = {"rc": done.returncode, "out": done.stdout + done.stderr}
        if done.returncode != 0:
            break
    return results | {"outputs": outputs}


def test_github_workflow_on_two_fresh_runners(tmp_path, mlflow_template):
    bare, remote = origin(tmp_path, remote_in_config=False)  # the runner must add the remote
    store = tmp_path / "mlflow-server.db"  # stands for the MLflow server of the secret
    shutil.copy(mlflow_template, store)
    context = {
        "vars.DVC_REMOTE_URL": str(remote),
        "secrets.MLFLOW_TRACKING_URI": f"sqlite:///{store}",
    }

    night1 = run_workflow(deploy(bare, tmp_path / "runner1"), context, tmp_path)
    assert night1["outputs"]["retrain"]["exit_code"] == "0", night1
    assert night1[PUSH]["rc"] == 0, night1
    log = sh(["git", "log", "--format=%s", "main"], bare).stdout.splitlines()
    assert log[0] == "retrain: dvc.lock after a scheduled run (new champion)"
    committed = sh(["git", "show", "--stat", "--format=", "main"], bare).stdout
    assert "dvc.lock" in committed and "docs/results.md" in committed

    runner2 = deploy(bare, tmp_path / "runner2")  # a fresh runner: empty cache, no outputs
    night2 = run_workflow(runner2, context, tmp_path)
    assert night2["outputs"]["retrain"]["exit_code"] == "11", night2  # restored, not re-run
    assert "nothing ran (exit 11)" in night2[PUSH]["out"]
    assert len(sh(["git", "log", "--format=%s", "main"], bare).stdout.splitlines()) == len(log)
    assert (tmp_path / "step_summary").read_text().count("# emowatch retrain") == 2

    # A runner whose remote is not configured fails loudly instead of "nothing to do".
    night3 = run_workflow(
        deploy(bare, tmp_path / "runner3"), {**context, "vars.DVC_REMOTE_URL": ""}, tmp_path
    )
    assert night3["outputs"]["retrain"]["exit_code"] == "13", night3
    assert PUSH not in night3  # the job stopped there
    assert "the remote lacks the files" in night3["Retrain"]["out"]


# --- failing loudly ------------------------------------------------------------------------


def test_failed_pull_has_its_own_exit_code_unless_stale_data_is_asked_for(shop, tmp_path):
    assert retrain(shop).returncode == 0
    publish_photo(tmp_path / "origin.git", tmp_path, "angry/BB.0.txt")
    shutil.move(tmp_path / "dvc-remote", tmp_path / "gone")
    sh(["git", "pull", "-q"], shop)
    failed = retrain(shop)
    assert failed.returncode == 13, failed.stderr
    assert (
        "dvc fetch data.dvc brought nothing" in failed.stderr
        and latest(shop)["outcome"] == "pull failed"
    )
    assert retrain(shop, "--no-pull").returncode == 11
    stale = retrain(shop, "retrain.stale_data_ok=true")
    assert stale.returncode == 11  # the stage saw the data present, as it did before
    assert "brought nothing" in latest(shop)["data"]["source"]
    shutil.move(tmp_path / "gone", tmp_path / "dvc-remote")
    assert retrain(shop).returncode == 0  # the remote is back: the new photo is trained on


def test_dry_run_has_its_own_exit_code_and_writes_nothing(shop):
    sh([str(BIN / "dvc"), "pull", "-q", "data.dvc"], shop)
    plan = retrain(shop, "--dry-run")
    assert plan.returncode == 12 and "stub" in plan.stdout
    assert not (shop / "reports").exists() and champion(shop) is None
    assert retrain(shop).returncode == 0
    assert retrain(shop, "--dry-run").returncode == 11


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigterm_stops_the_whole_pipeline_and_the_next_retrain_runs(shop):
    (shop / "hang").touch()
    proc = subprocess.Popen(
        [str(shop / ".venv/bin/emowatch"), "retrain", "retrain.stop_grace_s=2"],
        cwd=shop,
        env=scheduler_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (shop / "pids.json").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
        time.sleep(0.2)
    time.sleep(0.5)
    pids = json.loads((shop / "pids.json").read_text())
    proc.send_signal(signal.SIGTERM)  # what systemctl stop (KillMode=mixed) does
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, out
    assert not alive(pids["stage"]) and not alive(pids["worker"])  # no orphan (SIGKILLed)
    client = MlflowClient(f"sqlite:///{shop / 'mlflow.db'}")
    assert client.get_run(pids["run"]).info.status == "KILLED"
    report = latest(shop)
    assert report["outcome"] == "interrupted" and pids["run"] in report["error"]

    (shop / "hang").unlink()
    again = retrain(shop)  # the lock was released and the stage runs again
    assert again.returncode == 0, again.stderr
    assert champion(shop) == 1


def test_interrupted_exit_codes():
    from emowatch.processes import Interrupted

    assert Interrupted(signal.SIGTERM).exit_code == 143
    assert Interrupted(signal.SIGINT).exit_code == 130
