"""`emowatch retrain`: one idempotent command for schedulers (cron, a systemd timer, CI).

Takes a lock (a second retrain exits at once), brings the data (`dvc pull`; a failed pull fails
the retrain unless stale data was asked for), asks DVC what changed, runs `dvc repro` (or
`dvc exp run --temp`, leaving the workspace alone), and reads the promotion gate's decision off
the registry: the champion alias moved or it did not. A report (data hash, new photos, what
changed, metrics against the champion, decision) goes to a JSON and a Markdown file and to an
MLflow run. The exit code tells a scheduler what happened (`Outcome`). SIGTERM or SIGINT stops
the whole child process group, marks the reproduction's MLflow runs KILLED, releases the lock
and exits 128 + the signal.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from emowatch import new_photos
from emowatch.config import resolve_path
from emowatch.files import read_json, write_json
from emowatch.processes import Interrupted, run_group, signals_as_interrupted

# How long a quick child (dvc status, dvc pull) gets to stop after SIGTERM before SIGKILL; the
# pipeline itself gets retrain.stop_grace_s.
GRACE_S = 10.0


class Outcome(IntEnum):
    """Exit codes of `emowatch retrain` (130 / 143: stopped by SIGINT / SIGTERM)."""

    PROMOTED = 0  # a new champion
    FAILED = 1  # a stage failed, or the data could not be read: a person must look
    KEPT_CHAMPION = 10  # the pipeline ran; the champion stayed
    NOTHING_TO_DO = 11  # data, code and params unchanged (or, with --if-drift, no drift)
    WOULD_RUN = 12  # --dry-run: stages are out of date and would run
    PULL_FAILED = 13  # `dvc pull` failed (the remote is unreachable?); nothing ran
    TRACKING_UNREACHABLE = 14  # the MLflow tracking store cannot be reached; nothing ran
    LOCKED = 75  # another retrain holds the lock (EX_TEMPFAIL: try again later)


class PullFailed(Exception):
    """`dvc pull` failed and stale data was not asked for."""


class TrackingUnreachable(Exception):
    """The MLflow tracking store (a server, a database) does not answer."""


def check_tracking(cfg: DictConfig, root: Path) -> str:
    """The tracking URI, once it answered a request (quickly: a few seconds, no long retry
    loop); raises TrackingUnreachable naming the URI (without its credentials)."""
    from emowatch.deploy import redact
    from emowatch.tracking.runs import tracking_uri

    uri = tracking_uri(cfg, root)
    quick = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    saved = {k: os.environ.get(k) for k in quick}
    os.environ.update(quick)
    try:
        from mlflow.tracking import MlflowClient

        MlflowClient(uri).search_experiments(max_results=1)
    except Exception as err:
        said = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
        raise TrackingUnreachable(
            f"the MLflow tracking store {redact.source(uri)} does not answer "
            f"({type(err).__name__}: {redact.text(said)}); nothing ran, try again later"
        ) from None
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return uri


class Locked(Exception):
    """Another retrain holds the lock."""


@contextlib.contextmanager
def retrain_lock(path: Path) -> Iterator[None]:
    """An exclusive, non-blocking lock on `path` (released when the process dies, too)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise Locked(f"another retrain is running ({holder}; lock {path})") from err
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {_now()}")
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def tool(name: str) -> str:
    """An executable of this environment (the venv's dvc), else from PATH."""
    here = Path(sys.executable).with_name(name)
    return str(here) if here.exists() else (shutil.which(name) or name)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of dvc and its stages: this venv's executables first on PATH (cron and
    systemd start with a bare PATH, and the stages call `emowatch` and `python`)."""
    env = dict(os.environ) | dict(extra or {})
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def run(
    cmd: list[str],
    root: Path,
    env: dict[str, str] | None = None,
    quiet: bool = False,
    grace_s: float = GRACE_S,
):
    """Run a command in the project root, in its own process group (stopped with us); its
    output streams through unless `quiet`."""
    return run_group(cmd, root, env or child_env(), grace_s, capture=quiet)


@dataclass
class Report:
    """What a retrain saw, did and decided."""

    started: str = field(default_factory=_now)
    finished: str | None = None
    mode: str = "workspace"
    outcome: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    code: dict[str, Any] = field(default_factory=dict)
    photos: dict[str, Any] = field(default_factory=dict)
    drift: dict[str, Any] = field(default_factory=dict)
    ran: list[str] = field(default_factory=list)
    changes: dict[str, Any] = field(default_factory=dict)
    champions_before: dict[str, Any] = field(default_factory=dict)
    champions_after: dict[str, Any] = field(default_factory=dict)
    promotion: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def git(root: Path, *args: str) -> str:
    out = run(["git", *args], root, quiet=True)
    return out.stdout.strip() if out.returncode == 0 else ""


def code_state(root: Path) -> dict[str, Any]:
    return {
        "git_commit": git(root, "rev-parse", "HEAD") or None,
        "git_dirty_files": [line[3:] for line in git(root, "status", "--porcelain").splitlines()],
    }


def data_state(root: Path) -> dict[str, Any]:
    """The md5 data.dvc records for the raw data, and whether the workspace differs from it."""
    dvc_file = root / "data.dvc"
    md5 = None
    if dvc_file.is_file():
        import yaml

        outs = yaml.safe_load(dvc_file.read_text()).get("outs", [])
        md5 = outs[0].get("md5") if outs else None
    status = run([tool("dvc"), "status", "--json", "data.dvc"], root, quiet=True)
    found = json.loads(status.stdout or "{}") if status.returncode == 0 else {}
    states = {
        state
        for entry in found.get("data.dvc", [])
        if isinstance(entry, dict)
        for state in entry.get("changed outs", {}).values()
    }
    # "modified"/"new": files a person put there, which a pull must not overwrite; "deleted" or
    # "not in cache" (a fresh deployment): nothing to lose.
    return {
        "data_dvc_md5": md5,
        "local_changes": bool(states & {"modified", "new"}),
        "in_cache": "not in cache" not in states,
    }


def sync_data(root: Path, pull: bool, targets: list[str], stale_ok: bool) -> dict[str, Any]:
    """`dvc pull` the raw data, unless it has local changes (new photos dropped in), which a
    pull would overwrite. A failed pull raises `PullFailed` unless `stale_ok` (then the data
    present is used and the report says so); no data at all is a failure either way."""
    state = data_state(root)
    if not pull:
        state["source"] = "present (--no-pull)"
    elif state["local_changes"]:
        state["source"] = "present (local changes: not overwritten by a pull)"
    else:
        # fetch, then checkout only what arrived: a failed `dvc pull` can empty data/, and
        # `dvc fetch` exits 0 when the remote lacks the files (it only warns).
        problem = fetch_and_checkout(root, targets)
        if problem is None:
            state["source"] = "pulled"
        elif stale_ok:
            state["source"] = f"present ({problem}; retrain.stale_data_ok)"
        else:
            raise PullFailed(
                f"{problem}. Check the DVC remote (`dvc remote list`), or retrain on the data "
                "present with --no-pull or retrain.stale_data_ok=true"
            )
    if not (root / "data").is_dir() or not any((root / "data").iterdir()):
        raise RuntimeError("no data: data/ is missing or empty (`dvc pull data.dvc`)")
    return state | {"after": data_state(root)}


def fetch_and_checkout(root: Path, targets: list[str]) -> str | None:
    """`dvc fetch`, then `dvc checkout` once the files are in the cache; None when it worked,
    else what went wrong (the workspace is left as it was when the fetch failed)."""
    names = " ".join(targets)

    def said(out) -> str:
        lines = ((out.stderr or "") + (out.stdout or "")).strip().splitlines() or [""]
        return next((x for x in lines if x.startswith(("ERROR", "WARNING"))), lines[-1])

    out = run([tool("dvc"), "fetch", *targets], root, quiet=True)
    if out.returncode != 0:
        return f"dvc fetch {names} failed: {said(out)}"
    if not data_state(root)["in_cache"]:
        return f"dvc fetch {names} brought nothing: the remote lacks the files ({said(out)})"
    out = run([tool("dvc"), "checkout", *targets], root, quiet=True)
    return None if out.returncode == 0 else f"dvc checkout {names} failed: {said(out)}"


def lock_entries(root: Path) -> dict[str, Any]:
    """dvc.lock's record per stage (what each last ran on and made); {} without one."""
    import yaml

    path = root / "dvc.lock"
    return (yaml.safe_load(path.read_text()) or {}).get("stages", {}) if path.is_file() else {}


def pipeline_changes(root: Path) -> dict[str, Any]:
    """What DVC says is stale, per stage: changed deps, params, outs (empty: up to date)."""
    out = run([tool("dvc"), "status", "--json"], root, quiet=True)
    if out.returncode != 0:
        raise RuntimeError(f"dvc status failed: {out.stderr.strip()}")
    status = json.loads(out.stdout or "{}")
    return {k: v for k, v in status.items() if k != "data.dvc"}


def champions(cfg: DictConfig, root: Path) -> dict[str, Any]:
    """Each registered model's champion: version, model, test metrics."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from emowatch.tracking.runs import tracking_uri

    client = mlflow.tracking.MlflowClient(tracking_uri(cfg, root))
    out: dict[str, Any] = {}
    for dataset, name in cfg.registry.names.items():
        try:
            v = client.get_model_version_by_alias(name, "champion")
        except MlflowException:
            out[dataset] = None
            continue
        keep = (
            "test_accuracy",
            "test_recall_angry_at_threshold",
            "test_precision_angry_at_threshold",
        )
        metrics = {k.removeprefix("test_"): float(v.tags[k]) for k in keep if k in v.tags}
        out[dataset] = {"version": int(v.version), "model": v.tags.get("model"), **metrics}
    return out


def promotions(cfg: DictConfig, root: Path) -> dict[str, Any]:
    """The promote stages' reports (the gate's reasons and compared metrics), if present."""
    out = {}
    for dataset in cfg.registry.names:
        found = read_json(resolve_path(cfg.registry.dir, root) / f"{dataset}_promotion.json")
        if found is not None:
            out[dataset] = found
    return out


def markdown(report: Report) -> str:
    r = report
    lines = [
        f"# emowatch retrain — {r.outcome}",
        "",
        f"- started {r.started}, finished {r.finished}, mode {r.mode}",
        f"- code: commit {r.code.get('git_commit')}, "
        f"{len(r.code.get('git_dirty_files', []))} uncommitted file(s)",
        f"- data: data.dvc md5 {r.data.get('data_dvc_md5')}, {r.data.get('source')}",
        *([f"- drift: {r.drift['reason']} ({r.drift['faces']} faces)"] if r.drift else []),
        "",
        *new_photos.markdown(r.photos),
        "## What changed",
        "",
    ]
    if not r.changes:
        lines.append("Nothing: every stage is up to date.")
    for stage, items in r.changes.items():
        what = []
        for item in items if isinstance(items, list) else [items]:
            if isinstance(item, dict):
                for kind, detail in item.items():
                    what.append(
                        f"{kind}: {', '.join(detail) if isinstance(detail, dict) else detail}"
                    )
            else:
                what.append(str(item))
        lines.append(f"- `{stage}`: {'; '.join(what)}")
    if r.ran:
        lines += ["", f"Stages that ran ({len(r.ran)}): " + ", ".join(f"`{x}`" for x in r.ran)]
    lines += ["", "## Champions", "", "| model | before | after |", "|---|---|---|"]
    for dataset in sorted(set(r.champions_before) | set(r.champions_after)):
        b, a = r.champions_before.get(dataset), r.champions_after.get(dataset)
        lines.append(f"| {dataset} | {_version(b)} | {_version(a)} |")
    if r.promotion:
        lines += ["", "## Promotion gate", ""]
        from emowatch.stages.report import gate_lines

        for dataset, p in r.promotion.items():
            lines += [f"{dataset}:", "", *gate_lines(p), ""]
    if r.error:
        lines += ["", "## Error", "", "```", r.error, "```"]
    return "\n".join(lines) + "\n"


def _version(champion: dict[str, Any] | None) -> str:
    if not champion:
        return "none"
    acc = champion.get("accuracy")
    return f"v{champion['version']} {champion.get('model') or ''}" + (
        f" (test acc {acc:.3f})" if isinstance(acc, float) else ""
    )


def write_report(cfg: DictConfig, report: Report, root: Path) -> tuple[Path, Path]:
    """reports/retrain/<time>.{json,md} and latest.{json,md}; also an MLflow run."""
    folder = resolve_path(cfg.retrain.report_dir, root)
    stamp = report.started.replace(":", "").replace("-", "")
    json_path = write_json(folder / f"{stamp}.json", report.as_dict())
    md_path = folder / f"{stamp}.md"
    md_path.write_text(markdown(report))
    shutil.copyfile(json_path, folder / "latest.json")
    shutil.copyfile(md_path, folder / "latest.md")
    if report.outcome != "tracking store unreachable":
        try:
            log_to_mlflow(cfg, report, [json_path, md_path], root)
        except Exception as err:  # the files are written; the exit code is the outcome's
            print(
                f"emowatch retrain: the report is not in MLflow ({type(err).__name__}); "
                f"it is in {md_path}",
                file=sys.stderr,
            )
    return json_path, md_path


def log_to_mlflow(cfg: DictConfig, report: Report, files: list[Path], root: Path) -> None:
    import mlflow

    from emowatch.tracking.runs import stage_run

    params = {
        "mode": report.mode,
        "data_dvc_md5": report.data.get("data_dvc_md5"),
        "data_source": report.data.get("source"),
        "stale_stages": ",".join(report.changes)[:500] or "none",
    }
    with stage_run(cfg, "retrain", run_name="retrain", params=params, root=root):
        mlflow.set_tags({"emowatch.retrain.outcome": report.outcome})
        for dataset, champ in report.champions_after.items():
            if champ:
                mlflow.log_metric(f"{dataset}_champion_version", champ["version"])
        for path in files:
            mlflow.log_artifact(str(path))


def main(
    cfg: DictConfig,
    root: Path,
    dry_run: bool = False,
    experiment: bool = False,
    pull: bool | None = None,
    force: bool = False,
    if_drift: bool = False,
) -> int:
    """Retrain if anything changed (with `if_drift`: and the cameras drifted); returns the exit
    code (an `Outcome`, or 128 + the signal that stopped it)."""
    rcfg = cfg.retrain
    pull = rcfg.pull if pull is None else pull
    try:
        with signals_as_interrupted(), retrain_lock(resolve_path(rcfg.lock_file, root)):
            return _retrain(cfg, root, dry_run, experiment, pull, force, if_drift)
    except Locked as err:
        print(f"emowatch retrain: {err}", file=sys.stderr)
        return Outcome.LOCKED
    except Interrupted as err:  # arrived outside the pipeline run (the lock is released)
        print(f"emowatch retrain: {err}", file=sys.stderr)
        return err.exit_code


def _retrain(
    cfg: DictConfig,
    root: Path,
    dry_run: bool,
    experiment: bool,
    pull: bool,
    force: bool,
    if_drift: bool = False,
) -> int:
    report = Report(mode="dvc experiment (--temp)" if experiment else "workspace")
    report.code = code_state(root)
    pipeline_id = os.environ.get(
        "EMOWATCH_PIPELINE_ID", f"retrain-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    )
    try:
        check_tracking(cfg, root)  # before anything runs: a store that is down fails fast
        if if_drift:
            from emowatch import drift

            report.drift = drift.check(cfg, root)
            print(f"emowatch retrain --if-drift: {report.drift['reason']}")
            if not report.drift["drifted"]:
                report.outcome = "nothing to do (no drift)"
                return Outcome.NOTHING_TO_DO
        rcfg = cfg.retrain
        report.data = sync_data(
            root, pull and not dry_run, list(rcfg.pull_targets), bool(rcfg.stale_data_ok)
        )
        if not dry_run:  # a site without photos: DVC tracks no empty folder, and crop_faces
            # reads an empty one as "FER2013 alone" (stages/no_photos)
            resolve_path(cfg.data.photos.root, root).mkdir(parents=True, exist_ok=True)
        report.changes = pipeline_changes(root)
        report.champions_before = champions(cfg, root)
        if not report.changes and not force:
            print("emowatch retrain: data, code and params unchanged; nothing to do")
            report.outcome = "nothing to do"
            report.champions_after = report.champions_before
            return Outcome.NOTHING_TO_DO
        if dry_run:
            print("emowatch retrain --dry-run: these stages would run:")
            for stage in report.changes or ["(all, --force)"]:
                print(f"  {stage}")
            return Outcome.WOULD_RUN
        photos_before, lock_before = new_photos.snapshot(cfg, root), lock_entries(root)
        reproduce(cfg, root, pipeline_id, experiment, force)
        after = lock_entries(root)
        report.ran = sorted(k for k in after if after[k] != lock_before.get(k))
        report.photos = new_photos.changes(
            photos_before,
            new_photos.snapshot(cfg, root),
            str(OmegaConf.select(cfg, "deploy.watch.feedback.subject_prefix", default="FB")),
        )
        return decide(cfg, root, report, experiment)
    except Interrupted as err:
        killed = close_runs(cfg, root, pipeline_id)
        report.outcome, report.error = "interrupted", f"{err}; MLflow runs marked KILLED: {killed}"
        print(f"emowatch retrain: {report.error}", file=sys.stderr)
        return err.exit_code
    except PullFailed as err:
        report.outcome, report.error = "pull failed", str(err)
        print(f"emowatch retrain: {err}", file=sys.stderr)
        return Outcome.PULL_FAILED
    except TrackingUnreachable as err:
        report.outcome, report.error = "tracking store unreachable", str(err)
        print(f"emowatch retrain: {err}", file=sys.stderr)
        return Outcome.TRACKING_UNREACHABLE
    except Exception as err:  # the report says what failed; the exit code says it failed
        report.outcome, report.error = "failed", f"{type(err).__name__}: {err}"
        print(f"emowatch retrain: {report.error}", file=sys.stderr)
        return Outcome.FAILED
    finally:
        report.finished = _now()
        if report.outcome and not dry_run:
            _, md_path = write_report(cfg, report, root)
            print(f"emowatch retrain: {report.outcome}; report {md_path}")


def reproduce(cfg: DictConfig, root: Path, pipeline_id: str, experiment: bool, force: bool):
    """`dvc repro` (or `dvc exp run --temp`) in its own process group; raises when it fails."""
    env = child_env({"EMOWATCH_PIPELINE_ID": pipeline_id})
    if experiment:
        from emowatch.tracking.runs import tracking_uri

        # The temporary copy has no mlflow.db: log and register in this project's store.
        env["MLFLOW_TRACKING_URI"] = tracking_uri(cfg, root)
        cmd = [tool("dvc"), "exp", "run", "--temp", "--name", pipeline_id]
    else:
        cmd = [tool("dvc"), "repro", *(["--force"] if force else [])]
    done = run(cmd, root, env, grace_s=float(cfg.retrain.stop_grace_s))
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[1:])} failed with exit code {done.returncode}")


def decide(cfg: DictConfig, root: Path, report: Report, experiment: bool) -> Outcome:
    """Read the gate's decision off the registry: did a champion alias move?"""
    report.champions_after = champions(cfg, root)
    report.promotion = {} if experiment else promotions(cfg, root)
    moved = any(
        (report.champions_after.get(d) or {}).get("version")
        != (report.champions_before.get(d) or {}).get("version")
        for d in report.champions_after
    )
    report.outcome = "promoted" if moved else "kept champion"
    return Outcome.PROMOTED if moved else Outcome.KEPT_CHAMPION


def close_runs(cfg: DictConfig, root: Path, pipeline_id: str) -> list[str]:
    """The stopped reproduction's MLflow runs that are still RUNNING, marked KILLED."""
    from emowatch.tracking.runs import close_pipeline_runs

    try:
        return close_pipeline_runs(cfg, pipeline_id, root)
    except Exception as err:  # the store may be what failed; the report says so
        return [f"(could not close: {type(err).__name__}: {err})"]
