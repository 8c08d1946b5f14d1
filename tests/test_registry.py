"""Registration and the promotion gate against a real sqlite MLflow registry."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from emowatch.evaluation import people_cv
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


def add_version(client, recall=0.82, deployed=0.9, quality=0.5, folds=5, n_val=400, n_photos=24):
    """A registered version whose tags carry val and deployed-path figures (the source is a
    placeholder); `quality` is what the fake paired comparison below reads."""
    tags = {
        "val_recall_angry_at_threshold": str(recall),
        "val_crossfit_folds": str(folds),
        "val_n_angry": str(n_val),
        "deployed_decide_n_angry": str(n_photos),
        "deployed_decide_recall_angry": str(deployed),
        "quality": str(quality),
        "test_precision_angry_at_threshold": "0.99",  # reported only: the gate never reads it
    }
    return client.create_model_version(
        NAME, source="file:///tmp/emowatch-placeholder-model", tags=tags
    ).version


def paired_by_quality(noise=0.02):
    """A stand-in for the paired comparison: the difference of the versions' `quality` tags
    with a +/- noise interval, for both compared metrics."""
    seen = []

    def compare(challenger, champion):
        seen.append((challenger.version, champion.version))
        d = float(challenger.tags["quality"]) - float(champion.tags["quality"])
        r = {"diff": d, "low": d - noise, "high": d + noise}
        return {m: r for m in GATE.compare}

    compare.seen = seen
    return compare


GATE = registry.Gate(target_recall=0.8, recall_tolerance=0.05, deployed_recall_floor=0.5)


def gate(client, compare=None):
    return registry.promote(client, NAME, GATE, compare or paired_by_quality())


def challenge(client, version):
    client.set_registered_model_alias(NAME, registry.CHALLENGER, version)


def champion(client):
    return client.get_model_version_by_alias(NAME, registry.CHAMPION).version


def test_first_model_ever_becomes_champion_and_rerun_changes_nothing(client):
    v1 = add_version(client)
    challenge(client, v1)
    first = gate(client)
    assert first.promoted and first.reason == "first champion" and champion(client) == v1
    again = gate(client)
    assert not again.promoted and "already champion" in again.reason and champion(client) == v1


def test_better_model_is_promoted_and_previous_kept(client):
    v1, v2 = add_version(client, quality=0.40), add_version(client, quality=0.45)
    challenge(client, v1)
    gate(client)
    challenge(client, v2)
    compare = paired_by_quality()
    decision = gate(client, compare)
    assert decision.promoted and champion(client) == v2 and compare.seen == [(v2, v1)]
    assert client.get_model_version_by_alias(NAME, registry.PREVIOUS).version == v1
    assert decision.compared["paired"]["accuracy_at_threshold"]["diff"] == pytest.approx(0.05)


def test_worse_within_noise_is_promoted_worse_beyond_noise_is_not(client):
    v1 = add_version(client, quality=0.40)
    within, beyond = add_version(client, quality=0.39), add_version(client, quality=0.30)
    challenge(client, v1)
    gate(client)
    challenge(client, beyond)
    decision = gate(client)
    assert not decision.promoted and champion(client) == v1
    assert "worse than the champion beyond noise" in decision.reason
    assert "-0.1000" in decision.reason
    challenge(client, within)
    assert gate(client).promoted and champion(client) == within


def test_recall_floor_and_deployed_floor(client):
    v1 = add_version(client)
    challenge(client, v1)
    gate(client)
    low_recall = add_version(client, recall=0.70, quality=0.9)
    challenge(client, low_recall)
    assert "val recall on angry 0.700 (of 400 faces) is below 0.750 beyond noise" in (
        gate(client).reason
    )
    missed_on_camera = add_version(client, deployed=0.2, quality=0.9)
    challenge(client, missed_on_camera)
    decision = gate(client)
    assert not decision.promoted and "deployed-path recall on angry 0.200" in decision.reason
    # 3 of 6 angry faces is no evidence of a val recall below 0.75 (the val floor refuses only
    # beyond noise); the deployed floor asks for evidence: its lower bound must reach 0.5.
    one_of_six = add_version(client, recall=0.5, n_val=6, deployed=1 / 6, n_photos=6, quality=0.9)
    challenge(client, one_of_six)
    reason = gate(client).reason
    assert "1 of 6 angry photos" in reason and "no number of photos proves it" in reason
    five_of_six = add_version(client, recall=0.5, n_val=6, deployed=5 / 6, n_photos=6, quality=0.9)
    challenge(client, five_of_six)
    more = people_cv.angry_photos_needed(5, 6, 0.5, 0.95)
    assert more is not None and more > 0
    assert f"about {more} more angry photos" in gate(client).reason and champion(client) == v1
    six_of_six = add_version(client, recall=0.5, n_val=6, deployed=1.0, n_photos=6, quality=0.9)
    challenge(client, six_of_six)
    assert gate(client).promoted and champion(client) == six_of_six
    too_few_to_tell = add_version(client, quality=0.95, folds=0)
    challenge(client, too_few_to_tell)
    assert "val is too small" in gate(client).reason
    assert champion(client) == six_of_six


def test_a_photos_model_without_out_of_fold_evidence_is_refused(client):
    v1 = add_version(client)
    challenge(client, v1)
    gate(client)
    version = client.create_model_version(
        NAME,
        source="file:///tmp/x",
        tags={
            "val_recall_angry_at_threshold": "0.9",
            "val_crossfit_folds": "2",
            "val_n_angry": "400",
            "deployed_decide_n_angry": "6",
            "deployed_decide_recall_angry": "1.0",
            "deployed_insufficient": "needs >= 3 non-test people, found 2 (PA, PC)",
            "quality": "0.9",
        },
    ).version
    challenge(client, version)
    decision = gate(client)
    assert not decision.promoted and champion(client) == v1
    assert "no out-of-fold evidence" in decision.reason and "found 2 (PA, PC)" in decision.reason


def test_a_gate_without_a_deployed_floor_reads_val_alone(client):
    """FER2013's gate (deployed_recall_floor null): its camera-path figures steer the site
    model, not the gate; the val floor still refuses."""
    fer_gate = registry.Gate(target_recall=0.8, recall_tolerance=0.05, deployed_recall_floor=None)
    v1 = add_version(client, deployed=0.0)
    challenge(client, v1)
    assert registry.promote(client, NAME, fer_gate, paired_by_quality()).promoted
    low = add_version(client, recall=0.6, deployed=1.0)
    challenge(client, low)
    decision = registry.promote(client, NAME, fer_gate, paired_by_quality())
    assert "val recall on angry 0.600" in decision.reason and champion(client) == v1


def test_a_champion_cannot_be_replaced_without_a_comparison(client):
    v1, v2 = add_version(client), add_version(client, quality=0.9)
    challenge(client, v1)
    gate(client)
    challenge(client, v2)
    refused = registry.promote(client, NAME, GATE, None)
    assert not refused.promoted and "nothing was given to compare" in refused.reason


def test_versions_without_the_new_figures_are_refused_clearly(client):
    old = client.create_model_version(
        NAME, source="file:///tmp/x", tags={"test_recall_angry_at_threshold": "0.9"}
    ).version
    challenge(client, old)
    decision = gate(client)
    assert not decision.promoted and "re-run `dvc repro evaluate register`" in decision.reason


def test_rollback_restores_the_previous_champion(client):
    v1, v2 = add_version(client, quality=0.40), add_version(client, quality=0.45)
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


def test_a_version_is_reused_only_for_the_same_behaviour(client):
    def candidate(tta="hflip", threshold=0.3, test_hash="t1"):
        spec = {"tta": tta, "threshold_angry": threshold, "classes": ["angry", "happy"]}
        metrics = {
            "threshold_angry": threshold,
            "test_data_hash": test_hash,
            "val_data_hash": "v1",
            "tta": {"chosen": tta},
            "val": {"recall_angry_at_threshold": 0.8},
            "deployed": {"decide": {"recall_angry": 0.5}},
        }
        return {
            "model": "cnn1",
            "train_run": "run1",
            "metrics": metrics,
            "spec": spec,
            "weights_md5": "w1",
            "model_uri": "file:///tmp/emowatch-placeholder-model",
        }

    first = registry.register(client, NAME, candidate())
    assert registry.register(client, NAME, candidate()).version == first.version
    changed = [candidate(tta="none"), candidate(threshold=0.086), candidate(test_hash="t2")]
    versions = {registry.register(client, NAME, c).version for c in changed}
    assert len(versions) == 3 and first.version not in versions
    tta_version = registry.register(client, NAME, changed[0])
    assert tta_version.tags["tta"] == "none" and tta_version.tags["threshold_angry"] == "0.300000"
    assert tta_version.tags["deployed_decide_recall_angry"] == "0.500000"


def test_a_site_without_photos_is_gated_on_val_alone(client):
    """No photos (tag deployed_skipped): the deployed floor has nothing to read and cannot
    refuse; the val floor still does. Without that tag, missing deployed figures refuse."""
    bare = {
        "val_recall_angry_at_threshold": "0.82",
        "val_crossfit_folds": "5",
        "val_n_angry": "400",
        "quality": "0.5",
    }
    skipped = "no photos under data/photos: this site runs on FER2013 alone"
    v1 = client.create_model_version(
        NAME, source="file:///tmp/x", tags=bare | {"deployed_skipped": skipped}
    ).version
    challenge(client, v1)
    assert gate(client).promoted and champion(client) == v1
    low = client.create_model_version(
        NAME,
        source="file:///tmp/x",
        tags=bare | {"val_recall_angry_at_threshold": "0.6", "deployed_skipped": skipped},
    ).version
    challenge(client, low)
    assert "val recall on angry 0.600" in gate(client).reason and champion(client) == v1
    unscored = client.create_model_version(NAME, source="file:///tmp/x", tags=bare).version
    challenge(client, unscored)
    assert "lacks cross-fitted val or deployed-path figures" in gate(client).reason
