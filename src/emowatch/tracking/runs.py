"""MLflow runs: tracking URI, experiment, and one helper that opens a stage's run.

Every run is tagged with the git commit, the stage, the data hash (the md5 that data.dvc
records) and, when set, the pipeline id of the `dvc repro` that produced it, so the MLflow UI can
group and compare everything one reproduction made. Runs never stay RUNNING: an exception ends
them FAILED, Ctrl-C or SIGTERM ends them KILLED, and runs left RUNNING by a process that died
(SIGKILL, power loss) are closed as KILLED the next time the same stage starts on this host.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import mlflow
import yaml
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from emowatch.config import find_root, resolve_path
from emowatch.processes import pid_alive, sigterm_as_keyboard_interrupt

TAG_STAGE = "emowatch.stage"
TAG_COMMIT = "emowatch.git_commit"
TAG_DIRTY = "emowatch.git_dirty"
TAG_DATA = "emowatch.data_hash"
TAG_PIPELINE = "emowatch.pipeline_id"
TAG_HOST = "emowatch.host"
TAG_PID = "emowatch.pid"
# The DVC experiment a run belongs to (`dvc exp run -n NAME`; "workspace" outside one): the
# MLflow runs table groups and filters by it, beside `dvc exp show`.
TAG_EXPERIMENT = "emowatch.dvc_experiment"
PIPELINE_ENV = "EMOWATCH_PIPELINE_ID"
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"


def tracking_uri(cfg: DictConfig, root: Path | None = None) -> str:
    """$MLFLOW_TRACKING_URI, else `tracking.uri`, else the embedded sqlite database."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    if cfg.tracking.get("uri"):
        return str(cfg.tracking.uri)
    return embedded_uri(cfg, root)


def embedded_uri(cfg: DictConfig, root: Path | None = None) -> str:
    """The embedded sqlite store in the project root."""
    return f"sqlite:///{resolve_path(cfg.tracking.db, root)}"


def setup(cfg: DictConfig, root: Path | None = None) -> str:
    """Point MLflow at the configured store and return the experiment id (created if missing)."""
    uri = tracking_uri(cfg, root)
    mlflow.set_tracking_uri(uri)  # note: this also exports MLFLOW_TRACKING_URI
    client = MlflowClient(uri)
    name = str(cfg.tracking.experiment)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        experiment_id = exp.experiment_id
    else:
        location = None  # a server decides where its artifacts go
        if uri == embedded_uri(cfg, root):
            location = resolve_path(cfg.tracking.artifacts_dir, root).as_uri()
        experiment_id = client.create_experiment(name, artifact_location=location)
    # The MLflow UI (3.x) asks, or guesses, whether an experiment is GenAI or model training:
    # say it. (Which view opens is the UI's workflow toggle: `emowatch info` prints a link to
    # the runs table that sets it.)
    tags = exp.tags if exp is not None else {}
    if tags.get(KIND_TAG) != KIND:
        client.set_experiment_tag(experiment_id, KIND_TAG, KIND)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def git_info(root: Path | None = None) -> tuple[str, bool]:
    """(commit sha or 'unknown', whether the work tree has uncommitted changes)."""
    cwd = root or find_root()
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False
    return sha, bool(status.strip())


def data_hash(root: Path | None = None) -> str:
    """The md5 of the raw data as recorded in data.dvc ('unknown' without one)."""
    path = (root or find_root()) / "data.dvc"
    try:
        outs = yaml.safe_load(path.read_text())["outs"]
        return str(outs[0]["md5"])
    except (OSError, KeyError, IndexError, TypeError, yaml.YAMLError):
        return "unknown"


def run_tags(stage: str, root: Path | None = None) -> dict[str, str]:
    """The tags every emowatch run carries."""
    sha, dirty = git_info(root)
    tags = {
        TAG_STAGE: stage,
        TAG_COMMIT: sha,
        TAG_DIRTY: str(dirty).lower(),
        TAG_DATA: data_hash(root),
        TAG_HOST: socket.gethostname(),
        TAG_PID: str(os.getpid()),
        TAG_EXPERIMENT: os.environ.get("DVC_EXP_NAME") or "workspace",
        "mlflow.source.git.commit": sha,
    }
    # One id per reproduction: set by `make run` / retrain, else the commit (and dirtiness).
    tags[TAG_PIPELINE] = os.environ.get(PIPELINE_ENV) or f"{sha[:12]}{'-dirty' if dirty else ''}"
    return tags


def close_orphaned_runs(experiment_id: str, stage: str) -> list[str]:
    """Mark KILLED the RUNNING runs of `stage` whose process on this host is gone."""
    client = MlflowClient()
    host = socket.gethostname()
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"attributes.status = 'RUNNING' and tags.`{TAG_STAGE}` = '{stage}'",
    )
    closed = []
    for run in runs:
        tags = run.data.tags
        if tags.get(TAG_HOST) != host:
            continue
        pid = int(tags.get(TAG_PID, "0") or 0)
        if pid and pid != os.getpid() and pid_alive(pid):
            continue
        client.set_terminated(run.info.run_id, status="KILLED")
        closed.append(run.info.run_id)
    return closed


def close_pipeline_runs(cfg: DictConfig, pipeline_id: str, root: Path | None = None) -> list[str]:
    """Mark KILLED the runs of one reproduction (`pipeline_id`) still RUNNING: after a stopped
    retrain has killed its children, none of them can close its own run any more."""
    client = MlflowClient(tracking_uri(cfg, root))
    experiment = client.get_experiment_by_name(str(cfg.tracking.experiment))
    if experiment is None:
        return []
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=(
            f"attributes.status = 'RUNNING' and tags.`{TAG_PIPELINE}` = '{pipeline_id}'"
        ),
    )
    for run in runs:
        client.set_terminated(run.info.run_id, status="KILLED")
    return [run.info.run_id for run in runs]


@contextlib.contextmanager
def stage_run(
    cfg: DictConfig,
    stage: str,
    run_name: str | None = None,
    params: Mapping[str, object] | None = None,
    nested: bool = False,
    root: Path | None = None,
    tags: Mapping[str, str] | None = None,
    run_id: str | None = None,
    system_metrics: bool = False,
) -> Iterator[mlflow.ActiveRun]:
    """Open an MLflow run for a pipeline stage, tagged and always closed with a true status.

    `run_id` reopens an earlier run (a resumed training continues its curves); `system_metrics`
    records CPU, memory and GPU use alongside.
    """
    experiment_id = setup(cfg, root)
    close_orphaned_runs(experiment_id, stage)
    all_tags = run_tags(stage, root) | dict(tags or {})
    run = mlflow.start_run(
        run_id=run_id,
        run_name=None if run_id else (run_name or stage),
        tags=all_tags,
        nested=nested,
        log_system_metrics=system_metrics or None,
    )
    try:
        with sigterm_as_keyboard_interrupt():
            if params:
                log_params(params)
            yield run
    except KeyboardInterrupt:
        mlflow.end_run(status="KILLED")
        raise
    except BaseException as err:
        # Lightning answers Ctrl-C/SIGTERM with a graceful shutdown, then sys.exit(1).
        interrupted = isinstance(err, SystemExit) and isinstance(err.__context__, KeyboardInterrupt)
        mlflow.end_run(status="KILLED" if interrupted else "FAILED")
        raise
    else:
        mlflow.end_run(status="FINISHED")


def log_params(params: Mapping[str, object]) -> None:
    """Log params, stringifying lists and truncating values to MLflow's length limit."""
    clean = {}
    for key, value in params.items():
        text = str(value)
        clean[key] = text if len(text) <= 6000 else text[:5997] + "..."
    mlflow.log_params(clean)


def log_torch_model(
    net: object, input_shape: tuple[int, ...], metadata: Mapping[str, object]
) -> str:
    """Log a trained network to the active run as plain files, nothing pickled: `weights.pt`
    (its state dict, for `torch.load(..., weights_only=True)`) and `model.json` (its spec, for
    `inference.loading.build_network`). Returns the folder's URI (runs:/<id>/network)."""
    import json
    import tempfile

    import torch

    with tempfile.TemporaryDirectory() as tmp:
        torch.save(net.state_dict(), Path(tmp) / "weights.pt")
        spec = dict(metadata) | {"input_shape": list(input_shape)}
        (Path(tmp) / "model.json").write_text(json.dumps(spec, indent=1, default=str))
        mlflow.log_artifacts(tmp, artifact_path="network")
    return f"runs:/{mlflow.active_run().info.run_id}/network"
