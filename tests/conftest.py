"""Shared fixtures: tiny FER2013 files built on the fly, a composed config pointed at a temp
project, and a prepared MLflow sqlite database copied per test (migrating one takes seconds)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from omegaconf import DictConfig

from emowatch import config

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"


def pixels(seed: int, size: int = 48) -> str:
    """A random image as the CSV's space-separated pixel string."""
    rng = np.random.default_rng(seed)
    return " ".join(map(str, rng.integers(0, 256, size * size)))


def write_csv(
    path: Path,
    rows: Sequence[tuple[str, str, str]] | Sequence[str],
    header: str = "emotion,pixels,Usage",
) -> Path:
    """Write a FER2013-format CSV; rows are (emotion, pixels, Usage) tuples or raw lines."""
    lines = [header] + [r if isinstance(r, str) else ",".join(r) for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def good_rows(n_per_split: int = 7) -> list[tuple[str, str, str]]:
    """Valid rows: each split gets every class once per 7 rows, all images distinct."""
    rows = []
    for s, usage in enumerate(("Training", "PublicTest", "PrivateTest")):
        for i in range(n_per_split):
            rows.append((str(i % 7), pixels(100 * s + i), usage))
    return rows


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow sqlite database with its tables created once per session."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow") / "template.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def make_cfg(
    tmp_path: Path, mlflow_template: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., DictConfig]:
    """Compose the real conf/ with every path moved into tmp_path (data under tmp_path/data)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("EMOWATCH_PIPELINE_ID", raising=False)
    db = tmp_path / "mlflow.db"
    shutil.copy(mlflow_template, db)

    def _make(*overrides: str) -> DictConfig:
        base = [
            f"paths.data_dir={tmp_path / 'data'}",
            f"paths.artifacts_dir={tmp_path / 'artifacts'}",
            f"paths.reports_dir={tmp_path / 'reports'}",
            f"tracking.db={db}",
            f"tracking.artifacts_dir={tmp_path / 'mlartifacts'}",
        ]
        return config.compose([*base, *overrides], root=REPO)

    return _make


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"
