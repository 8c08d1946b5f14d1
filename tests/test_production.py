"""Experiments never move production aliases; every move is in the audit trail."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from emowatch.tracking import audit, registry
from emowatch.tracking.production import Context, why_not_production
from tests.test_registry import GATE, add_version, challenge, champion, client, paired_by_quality

__all__ = ["client"]  # the registry fixture
NAME = "emowatch-test"


def git(root: Path, *args: str) -> str:
    ident = ["-c", "user.name=t", "-c", "user.email=t@emowatch.invalid"]
    return subprocess.run(
        ["git", *ident, *args], cwd=root, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "docs").mkdir()
    for name in ("params.yaml", "dvc.lock", "docs/results.md"):
        (tmp_path / name).write_text("a: 1\n")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "init")
    return tmp_path


def test_only_a_clean_checkout_of_the_branch_is_production(checkout, monkeypatch, tmp_path_factory):
    assert why_not_production("main", checkout) is None
    (checkout / "dvc.lock").write_text("a: 2\n")  # what `dvc repro` writes as it goes
    assert why_not_production("main", checkout) is None
    (checkout / "docs/results.md").write_text("a: 2\n")  # the report stage's page, too
    assert why_not_production("main", checkout, ("dvc.lock", "docs/results.md")) is None
    assert "docs/results.md" in why_not_production("main", checkout)  # not by default
    git(checkout, "checkout", "-q", "--", "docs/results.md")
    (checkout / "params.yaml").write_text("a: 2\n")
    assert "uncommitted changes to tracked files: params.yaml" in why_not_production(
        "main", checkout
    )
    git(checkout, "checkout", "-q", "-b", "try-things")
    assert "not the production branch 'main'" in why_not_production("main", checkout)
    git(checkout, "checkout", "-q", "main")
    git(checkout, "checkout", "-q", "--", "params.yaml")
    monkeypatch.setenv("DVC_EXP_NAME", "recall90")
    assert why_not_production("main", checkout) == "inside `dvc exp run` (experiment recall90)"
    monkeypatch.delenv("DVC_EXP_NAME")
    plain = tmp_path_factory.mktemp("plain")
    assert "not a git checkout" in why_not_production("main", plain)


def test_an_experiment_computes_the_gate_but_moves_no_alias(client):
    v1, v2 = add_version(client, quality=0.4), add_version(client, quality=0.9)
    challenge(client, v1)
    registry.promote(client, NAME, GATE, paired_by_quality())
    challenge(client, v2)
    exp = Context(experiment="inside `dvc exp run` (experiment x)")
    decision = registry.promote(client, NAME, GATE, paired_by_quality(), exp)
    assert not decision.promoted and decision.would_promote and champion(client) == v1
    assert "not moved: inside `dvc exp run`" in decision.reason
    assert not registry.rollback(client, NAME, exp).promoted and champion(client) == v1


def test_production_refuses_an_experiments_challenger_unless_overridden(client):
    v1 = add_version(client)
    challenge(client, v1)
    registry.promote(client, NAME, GATE, paired_by_quality())
    v2 = add_version(client, quality=0.9)
    client.set_model_version_tag(NAME, v2, "experiment", "on 'try-things'")
    challenge(client, v2)
    refused = registry.promote(client, NAME, GATE, paired_by_quality())
    assert not refused.promoted and "registered by an experiment" in refused.reason
    forced = Context(experiment="on 'try-things'", override="hotfix approved by Ana")
    assert registry.promote(client, NAME, GATE, paired_by_quality(), forced).promoted
    assert champion(client) == v2
    newest = audit.history(client, NAME)[0]
    assert newest["action"] == "override" and newest["override"] == "hotfix approved by Ana"


def test_history_lists_every_move_newest_first(client):
    v1, v2 = add_version(client, quality=0.4), add_version(client, quality=0.5)
    for v in (v1, v2):
        challenge(client, v)
        registry.promote(client, NAME, GATE, paired_by_quality())
    registry.rollback(client, NAME)
    moves = [
        (e["action"], e["champion_before"], e["champion_after"])
        for e in audit.history(client, NAME)
    ]
    assert moves == [("rollback", v2, v1), ("promote", v1, v2), ("promote", None, v1)]
    line = audit.format_event(audit.history(client, NAME)[0])
    assert f"rollback v{v2} -> v{v1}" in line.replace("  ", " ") and "commit" in line


def test_a_pickled_champion_is_replaced_only_with_an_override(client):
    from emowatch.errors import UnsafeModelError

    def cannot_load(challenger, champion):
        raise UnsafeModelError(f"models:/{NAME}/{champion.version} is stored as a pickle.")

    v1, v2 = add_version(client), add_version(client)
    challenge(client, v1)
    registry.promote(client, NAME, GATE, paired_by_quality())
    challenge(client, v2)
    refused = registry.promote(client, NAME, GATE, cannot_load)
    assert not refused.promoted and "cannot be compared" in refused.reason
    migrate = Context(experiment=None, override="migrate from pickled versions")
    assert registry.promote(client, NAME, GATE, cannot_load, migrate).promoted
    assert champion(client) == v2
    assert audit.history(client, NAME)[0]["override"] == "migrate from pickled versions"
