"""Scale-out on existing engines: the tiny pipeline against an MLflow tracking server with a
PostgreSQL backend store and an S3-compatible artifact store, with the Optuna study in the same
PostgreSQL. Debian's PostgreSQL is started in a temporary cluster on 127.0.0.1; moto's server
stands in for S3 (any S3-compatible endpoint: MinIO, Ceph, AWS). `.ci/run` installs both."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emowatch import retrain
from tests.test_retrain import BIN, emowatch, git, tiny_project

PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)
BUCKET = "emowatch-artifacts"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.skipif(
        PG_BIN is None or not (PG_BIN / "initdb").is_file(),
        reason="PostgreSQL is not installed (Debian: apt-get install postgresql)",
    ),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int, proc: subprocess.Popen | None = None, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:3]} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s}s")


def as_postgres_user() -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the `postgres` user when root."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@pytest.fixture
def postgres() -> Iterator[str]:
    """A throw-away PostgreSQL cluster on 127.0.0.1 with databases `mlflow` and `optuna`."""
    # not under pytest's tmp_path: its parents are private to root, and the server is not root
    top = Path(tempfile.mkdtemp(prefix="emowatch-pg-"))
    data = top / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(top, "postgres")
        shutil.chown(data, "postgres")
    su = as_postgres_user()
    port = free_port()
    subprocess.run(
        [*su, str(PG_BIN / "initdb"), "-D", str(data), "-U", "emowatch", "--auth=trust"],
        check=True,
        capture_output=True,
    )
    opts = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
    subprocess.run(
        [*su, str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", opts, "-w", "-l",
         str(data / "server.log"), "start"],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        for db in ("mlflow", "optuna"):
            createdb = [str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port)]
            subprocess.run([*createdb, "-U", "emowatch", db], check=True)
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([*su, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"])
        shutil.rmtree(top, ignore_errors=True)


S3_ENV = {"AWS_ACCESS_KEY_ID": "emowatch", "AWS_SECRET_ACCESS_KEY": "emowatch-secret"}


def s3_client(endpoint: str) -> Any:
    boto3 = pytest.importorskip("boto3")
    keys = {"aws_access_key_id": S3_ENV["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": S3_ENV["AWS_SECRET_ACCESS_KEY"]}  # fmt: skip
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **keys)


@pytest.fixture
def s3() -> Iterator[str]:
    """An S3-compatible endpoint on 127.0.0.1 (moto's server) with the artifact bucket."""
    server = pytest.importorskip("moto.server")
    port = free_port()
    moto = server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    s3_client(endpoint).create_bucket(Bucket=BUCKET)
    try:
        yield endpoint
    finally:
        moto.stop()


@pytest.fixture
def mlflow_server(postgres: str, s3: str, tmp_path: Path) -> Iterator[str]:
    """`mlflow server` on 127.0.0.1: runs in PostgreSQL, artifacts proxied to the S3 bucket."""
    port = free_port()
    env = dict(os.environ, MLFLOW_S3_ENDPOINT_URL=s3, **S3_ENV)
    log = (tmp_path / "mlflow-server.log").open("w")
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"postgresql+psycopg2://emowatch@{postgres}/mlflow",
         "--artifacts-destination", f"s3://{BUCKET}/mlflow", "--workers", "1"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for(port, proc, timeout_s=180)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_tiny_pipeline_on_postgres_mlflow_s3_and_a_shared_optuna_study(
    tmp_path: Path, postgres: str, s3: str, mlflow_server: str
) -> None:
    import optuna
    from mlflow.tracking import MlflowClient

    project = tiny_project(tmp_path / "shop")
    tune_conf = project / "conf" / "tune" / "default.yaml"
    optuna_url = f"postgresql+psycopg2://emowatch@{postgres}/optuna"
    tune_conf.write_text(tune_conf.read_text().replace("storage: null", f"storage: {optuna_url}"))
    tracking = project / "conf" / "tracking" / "default.yaml"
    tracking.write_text(tracking.read_text().replace("uri: null", f"uri: {mlflow_server}"))
    assert emowatch(project, "params").returncode == 0
    git(project, "commit", "-q", "-am", "shared Optuna study and MLflow server")

    done = emowatch(project, "retrain", "--no-pull", timeout=1500)
    assert done.returncode in (0, 10), done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((project / "reports/retrain/latest.json").read_text())
    assert report["outcome"] in ("promoted", "kept champion")
    assert not (project / "mlflow.db").exists()  # nothing went to the embedded store

    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("emowatch")
    runs = client.search_runs([exp.experiment_id], max_results=500)
    stages = {r.data.tags.get("emowatch.stage") for r in runs}
    assert {"train", "tune", "evaluate", "register", "retrain"} <= stages
    assert all(r.info.status == "FINISHED" for r in runs)
    # the registry lives on the server too (the tiny models rarely pass the gate: challenger)
    challenger = client.get_model_version_by_alias("emowatch-fer2013", "challenger")
    assert challenger.tags["model"] in ("cnn1", "cnn2", "cnn3", "vgg", "mobilenet_v2", "resnet50")
    champion = report["champions_after"].get("fer2013")
    if champion:
        assert client.get_model_version_by_alias("emowatch-fer2013", "champion").version == str(
            champion["version"]
        )

    # the runs are rows in PostgreSQL, the artifacts objects in the bucket
    rows = subprocess.run(
        [str(PG_BIN / "psql"), "-h", postgres.split(":")[0], "-p", postgres.split(":")[1],
         "-U", "emowatch", "-d", "mlflow", "-tAc", "select count(*) from runs"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert int(rows.stdout) == len(runs)
    bucket = s3_client(s3)
    keys = [o["Key"] for o in bucket.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert any(k.endswith("model.ckpt") for k in keys)

    studies = optuna.get_all_study_names(optuna_url)
    assert any(s.startswith("fer2013-") for s in studies)
    assert retrain.Outcome(done.returncode) in (
        retrain.Outcome.PROMOTED,
        retrain.Outcome.KEPT_CHAMPION,
    )


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
