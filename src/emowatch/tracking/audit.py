"""The audit trail of production aliases: every move of `champion` (promotion, rollback, a
manual override) is a tag `audit.<UTC time>` on each version involved, holding what moved, why,
by which run and at which commit. `history` reads them back, newest first."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import mlflow
from mlflow.tracking import MlflowClient

from emowatch.tracking.runs import git_info

PREFIX = "audit."


def record(
    client: MlflowClient,
    name: str,
    action: str,
    reason: str,
    before: str | None,
    after: str,
    override: str | None = None,
) -> dict:
    """Tag the versions involved in a move of `champion` from `before` to `after`."""
    run = mlflow.active_run()
    now = datetime.now(UTC)
    event = {
        "time": now.isoformat(timespec="microseconds"),
        "action": action,
        "champion_before": before,
        "champion_after": after,
        "reason": reason[:2000],
        "override": override,
        "run_id": run.info.run_id if run else None,
        "git_commit": git_info()[0],
    }
    key = PREFIX + now.strftime("%Y%m%dT%H%M%S%fZ")
    for version in {v for v in (before, after) if v is not None}:
        client.set_model_version_tag(name, version, key, json.dumps(event))
    return event


def history(client: MlflowClient, name: str) -> list[dict]:
    """Every recorded move of the registered model's `champion`, newest first."""
    events = {}
    for v in client.search_model_versions(f"name = '{name}'"):
        for key, value in v.tags.items():
            if key.startswith(PREFIX):
                events[key] = json.loads(value)
    return [events[k] for k in sorted(events, reverse=True)]


def format_event(e: dict) -> str:
    moved = f"v{e['champion_before']} -> v{e['champion_after']}"
    if e["champion_before"] is None:
        moved = f"-> v{e['champion_after']}"
    override = f" | override: {e['override']}" if e.get("override") else ""
    return (
        f"{e['time']}  {e['action']:<8} {moved:<12} {e['reason']}  "
        f"(commit {str(e['git_commit'])[:12]}, run {e['run_id']}){override}"
    )
