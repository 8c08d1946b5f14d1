"""Every stage reads only the params it declares in dvc.yaml: on a tiny project, each stage's
command runs, in the pipeline's order, on a params file holding nothing but its declared params
and the project's locations (paths of files, which are deps and outs, and the MLflow store). A
param read but not declared is a missing key there, and the stage fails naming it: DVC would not
have re-run the stage when that param changed."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
import yaml
from omegaconf import OmegaConf

from tests.test_retrain import BIN, tiny_project

LOCATION_ROOTS = ("data", "artifacts", "reports", ".emowatch", "docs", "mlartifacts", "mlflow.db")
ALWAYS = ("paths", "tracking")  # where things are, not how they are computed


def is_location(key: str, value: Any) -> bool:
    """A project path (its file is a dep or an out, not a param) or a tracking setting."""
    if key.split(".")[0] in ALWAYS:
        return True
    return isinstance(value, str) and value.split("/")[0] in LOCATION_ROOTS


def leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict) and node:
        out: dict[str, Any] = {}
        for k, v in node.items():
            out |= leaves(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    return {prefix: node}


def pruned(params: dict, declared: list[str]) -> dict:
    """`params` with only the declared keys (and what lies under them; "" is every key) and
    the locations."""
    keep: dict = {}
    for key, value in leaves(params).items():
        under = any(d == "" or key == d or key.startswith(d + ".") for d in declared)
        if under or is_location(key, value):
            node = keep
            *parents, last = key.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[last] = value
    return keep


def stages_in_order(project: Path) -> list:
    from dvc.repo import Repo

    graph = Repo(str(project)).index.graph  # edges run from a stage to what it depends on
    ordered = reversed(list(nx.topological_sort(graph)))
    return [s for s in ordered if not s.is_data_source]


def declared_params(stage) -> list[str]:
    return [k for d in stage.deps if type(d).__name__ == "ParamsDependency" for k in d.params]


def run_on(project: Path, stage, declared: list[str]) -> subprocess.CompletedProcess:
    params = OmegaConf.to_container(OmegaConf.load(project / "params.yaml"))
    path = project / f".params-{stage.name.replace('@', '-')}.yaml"
    path.write_text(yaml.safe_dump(pruned(params, declared), sort_keys=False))
    assert "--params params.yaml" in stage.cmd, stage.cmd
    cmd = shlex.split(stage.cmd.replace("--params params.yaml", f"--params {path.name}"))
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", EMOWATCH_ROOT=str(project))
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=900)


def missing_key(stderr: str) -> str:
    """The key a stage read that its params file lacked (OmegaConf's `full_key: ...`)."""
    found = re.findall(r"full_key: (\S+)", stderr)
    return found[-1] if found else stderr.strip().splitlines()[-1][-300:]


@pytest.mark.slow
def test_every_stage_runs_on_the_params_it_declares(tmp_path):
    project = tiny_project(tmp_path / "shop")
    order = stages_in_order(project)
    assert len(order) >= 28
    undeclared: dict[str, list[str]] = {}
    for stage in order:
        declared = declared_params(stage)
        for _ in range(12):  # each run names one missing key: add it and run again
            done = run_on(project, stage, declared)
            if done.returncode == 0:
                break
            key = missing_key(done.stderr)
            assert key not in declared, f"{stage.name} fails:\n{done.stderr[-3000:]}"
            undeclared.setdefault(stage.name, []).append(key)
            declared = [*declared, key]
        assert done.returncode == 0, f"{stage.name} fails:\n{done.stderr[-3000:]}"
    assert not undeclared, f"stages that read params they do not declare: {undeclared}"
    # The check can fail: evaluate without the `evaluate` params it reads.
    evaluate = next(s for s in order if s.name == "evaluate@fer2013-cnn1")
    without = [p for p in declared_params(evaluate) if p != "evaluate"]
    failed = run_on(project, evaluate, without)
    assert failed.returncode != 0 and missing_key(failed.stderr).startswith("evaluate.")
