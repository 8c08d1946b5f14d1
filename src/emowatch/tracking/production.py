"""Whether this run may move production aliases (`champion`, `previous`).

Only a clean workspace on the configured branch may: not a `dvc exp run` (DVC sets
`DVC_EXP_NAME` for the stages of an experiment, `emowatch retrain --experiment` included), not a
checkout with uncommitted changes to tracked files (dvc.lock and the results page aside: `dvc
repro` writes them as it goes), not another branch or a detached HEAD. Otherwise versions are
registered tagged as experiments and the promotion gate's decision is computed and reported,
but no alias moves, unless `registry.production.override` gives a reason: that override is
logged with the move.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from emowatch.config import find_root

EXPERIMENT_ENV = "DVC_EXP_NAME"
OWN_OUTPUTS = ("dvc.lock",)  # tracked files the pipeline itself rewrites (and report.path)


@dataclass(frozen=True)
class Context:
    """`experiment`: why this run is not production (None when it is); `override`: the reason
    given to move production aliases all the same."""

    experiment: str | None
    override: str | None = None

    @property
    def may_move_production(self) -> bool:
        return self.experiment is None or bool(self.override)


def _git(root: Path, *args: str) -> str | None:
    try:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None


def why_not_production(
    branch: str, root: Path, own_outputs: tuple[str, ...] = OWN_OUTPUTS
) -> str | None:
    """The reason this run is an experiment, or None for a production run."""
    name = os.environ.get(EXPERIMENT_ENV)
    if name:
        return f"inside `dvc exp run` (experiment {name})"
    head = _git(root, "rev-parse", "--abbrev-ref", "HEAD")
    if head is None:
        return f"{root} is not a git checkout"
    if head.strip() != branch:
        return f"on {head.strip()!r}, not the production branch {branch!r}"
    status = _git(root, "status", "--porcelain", "--untracked-files=no") or ""
    changed = [line[3:] for line in status.splitlines() if line[3:] not in own_outputs]
    if changed:
        return f"uncommitted changes to tracked files: {', '.join(changed[:5])}"
    return None


def context(cfg: DictConfig, root: Path | None = None) -> Context:
    pcfg = cfg.registry.production
    results_page = str(cfg.report.path)  # the report stage's page, committed after a run
    reason = why_not_production(str(pcfg.branch), root or find_root(), (*OWN_OUTPUTS, results_page))
    return Context(reason, str(pcfg.override) if pcfg.get("override") else None)
