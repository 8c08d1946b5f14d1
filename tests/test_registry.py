"""Registration and the promotion gate against a real sqlite MLflow registry."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from emowatch.tracking import registry

NAME = "emowatch-test"


@pytest.fixture
def client(tmp_path, mlflow_template, monkeypatch):
    import shutil

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    shutil.copy(mlflow_template, tmp_path / "m.db")
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    mlflow.set_tracking_uri(uri)
    c = MlflowClient(uri)
    c.create_registered_model(NAME)
    return c


def add_version(client, precision, accuracy, recall=0.82, data="d1", tmp=None):
    """A registered version whose tags carry test metrics (the source is a placeholder)."""
    tags = {
        "test_precision_angry_at_threshold": str(precision),
        "test_accuracy": str(accuracy),
        "test_recall_angry_at_threshold": str(recall),
        "test_data_hash": data,
    }
    return client.create_model_version(
        NAME, source="file:///tmp/emowatch-placeholder-model", tags=tags
    ).version


def gate(client, rescore=None):
    return registry.promote(client, NAME, 0.8, 0.05, "precision_angry_at_threshold", 0.01, rescore)


def challenge(client, version):
    client.set_registered_model_alias(NAME, registry.CHALLENGER, version)


def champion(client):
    return client.get_model_version_by_alias(NAME, registry.CHAMPION).version


def test_first_model_ever_becomes_champion_and_rerun_changes_nothing(client):
    v1 = add_version(client, 0.40, 0.60)
    challenge(client, v1)
    first = gate(client)
    assert first.promoted and first.reason == "first champion" and champion(client) == v1
    again = gate(client)
    assert not again.promoted and "already champion" in again.reason and champion(client) == v1


def test_better_model_is_promoted_and_previous_kept(client):
    v1, v2 = add_version(client, 0.40, 0.60), add_version(client, 0.45, 0.61)
    challenge(client, v1)
    gate(client)
    challenge(client, v2)
    decision = gate(client)
    assert decision.promoted and champion(client) == v2
    assert client.get_model_version_by_alias(NAME, registry.PREVIOUS).version == v1


def test_equal_model_is_promoted_worse_is_not(client):
    v1, same, worse = (
        add_version(client, 0.40, 0.60),
        add_version(client, 0.40, 0.60),
        add_version(client, 0.35, 0.70),
    )
    challenge(client, v1)
    gate(client)
    challenge(client, worse)
    decision = gate(client)
    assert not decision.promoted and "< champion's" in decision.reason and champion(client) == v1
    challenge(client, same)
    assert gate(client).promoted and champion(client) == same


def test_recall_floor_and_accuracy_margin(client):
    v1 = add_version(client, 0.40, 0.60)
    challenge(client, v1)
    gate(client)
    low_recall = add_version(client, 0.90, 0.90, recall=0.70)
    challenge(client, low_recall)
    assert "recall on angry 0.700 < 0.750" in gate(client).reason
    less_accurate = add_version(client, 0.50, 0.55)
    challenge(client, less_accurate)
    decision = gate(client)
    assert not decision.promoted and "accuracy" in decision.reason and champion(client) == v1


def test_different_test_data_rescores_the_champion(client):
    v1 = add_version(client, 0.40, 0.60, data="old")
    challenge(client, v1)
    gate(client)
    v2 = add_version(client, 0.38, 0.61, data="new")
    challenge(client, v2)
    refused = gate(client)
    assert not refused.promoted and "other data" in refused.reason
    seen = []

    def rescore(version):
        seen.append(version.version)
        return {"precision_angry_at_threshold": 0.30, "accuracy": 0.58}

    decision = gate(client, rescore)
    assert (
        seen == [v1]
        and decision.promoted
        and decision.compared["champion"]["same_test_data"] is False
    )


def test_rollback_restores_the_previous_champion(client):
    v1, v2 = add_version(client, 0.40, 0.60), add_version(client, 0.45, 0.61)
    assert not registry.rollback(client, NAME).promoted  # nothing to roll back to
    for v in (v1, v2):
        challenge(client, v)
        gate(client)
    decision = registry.rollback(client, NAME)
    assert decision.promoted and champion(client) == v1
    assert client.get_model_version_by_alias(NAME, registry.PREVIOUS).version == v2


def test_challenger_chosen_on_val_with_accuracy_guard():
    def cand(model, precision, accuracy):
        return {
            "model": model,
            "metrics": {"val": {"precision_angry_at_threshold": precision, "accuracy": accuracy}},
        }

    found = [cand("a", 0.50, 0.50), cand("b", 0.45, 0.62), cand("c", 0.44, 0.64)]
    assert registry.choose_challenger(found, "precision_angry_at_threshold", 0.05)["model"] == "b"
    assert registry.choose_challenger(found, "precision_angry_at_threshold", 0.20)["model"] == "a"
