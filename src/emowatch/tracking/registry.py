"""MLflow model registry: versions tagged with their evaluation, the challenger chosen on val,
and the promotion gate that moves `champion` (the replaced one becomes `previous`). Nothing
here reads a test figure: test tags are carried for the report only."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"
KEYS = (
    "accuracy",
    "macro_f1",
    "recall_angry",
    "precision_angry",
    "threshold_angry",
    "recall_angry_at_threshold",
    "precision_angry_at_threshold",
    "accuracy_at_threshold",
)
DEPLOYED_KEYS = ("face_rate", "accuracy", "recall_angry", "precision_angry")


def version_key(candidate: Mapping) -> str:
    """What makes a version's behaviour and tags: the weights, the deployment spec (network
    input, preprocessing, TTA, threshold, classes, detector, crop margin), the training run and
    the data its figures came from. Equal keys, equal version; anything else is a new one."""
    m = candidate["metrics"]
    parts = {
        "weights_md5": candidate.get("weights_md5"),
        "spec": candidate.get("spec"),
        "train_run": candidate["train_run"],
        "val_data_hash": m.get("val_data_hash"),
        "test_data_hash": m.get("test_data_hash"),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def version_tags(candidate: Mapping) -> dict[str, str]:
    """The tags a registered version carries: val figures (cross-fitted: what decisions read),
    test figures (reported), deployed-path figures, TTA, threshold, data, code."""
    m = candidate["metrics"]
    tags = {f"test_{k}": f"{m[k]:.6f}" for k in KEYS if k in m}
    tags |= {f"val_{k}": f"{m['val'][k]:.6f}" for k in KEYS if k in m["val"]}
    for part in ("decide", "report"):
        found = m.get("deployed", {}).get(part, {})
        tags |= {f"deployed_{part}_{k}": f"{found[k]:.6f}" for k in DEPLOYED_KEYS if k in found}
    tags |= {
        "threshold_angry": f"{m['threshold_angry']:.6f}",
        "tta": m.get("tta", {}).get("chosen", "none"),
        "val_data_hash": m.get("val_data_hash", ""),
        "test_data_hash": m["test_data_hash"],
        "model": candidate["model"],
        "train_run": candidate["train_run"],
        "version_key": version_key(candidate),
    }
    tags |= {k: str(v) for k, v in candidate.get("extra_tags", {}).items()}
    return tags


def get_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def register(
    client: MlflowClient,
    name: str,
    candidate: Mapping,
    log_model: Callable[[], str] | None = None,
) -> ModelVersion:
    """Register a candidate's model as a new version, or return the version with the same
    `version_key` (re-running registration adds nothing; a changed TTA, threshold, detector or
    data makes a new version).

    `log_model` logs the deployable model and returns its URI; it is called only when a new
    version is made (without it, `candidate["model_uri"]` is registered)."""
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="emowatch: facial-expression models")
    tags = version_tags(candidate)
    for v in client.search_model_versions(f"name = '{name}'"):
        if v.tags.get("version_key") == tags["version_key"]:
            return v
    uri = log_model() if log_model else candidate["model_uri"]
    version = mlflow.register_model(uri, name, tags=tags)
    return client.get_model_version(name, version.version)


def choose_challenger(candidates: list[Mapping], metric: str, accuracy_guard: float) -> Mapping:
    """The best candidate by val `metric` among those within `accuracy_guard` of the best val
    accuracy (val accuracy breaks ties)."""
    best_acc = max(c["metrics"]["val"]["accuracy"] for c in candidates)
    eligible = [
        c for c in candidates if c["metrics"]["val"]["accuracy"] >= best_acc - accuracy_guard
    ]
    return max(
        eligible, key=lambda c: (c["metrics"]["val"][metric], c["metrics"]["val"]["accuracy"])
    )


@dataclass
class Decision:
    """What promotion did and why."""

    name: str
    promoted: bool
    reason: str
    challenger: str | None = None
    champion_before: str | None = None
    champion_after: str | None = None
    compared: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Gate:
    """What a challenger must pass (conf/registry `promotion`)."""

    target_recall: float
    recall_tolerance: float  # cross-fitted val recall on angry >= target - tolerance
    deployed_recall_floor: float  # deployed-path angry recall on the people who may decide
    compare: tuple[str, ...] = ("precision_angry_at_threshold", "accuracy_at_threshold")


# compare(challenger, champion) -> {metric: paired result of challenger - champion on the same
# non-test faces: {"a", "b", "diff", "low", "high", ...}} (evaluation.paired.compare).
Compare = Callable[[ModelVersion, ModelVersion], Mapping[str, Mapping[str, float]]]


def _tag(v: ModelVersion, key: str) -> float | None:
    return float(v.tags[key]) if key in v.tags else None


def promote(
    client: MlflowClient, name: str, gate: Gate, compare: Compare | None = None
) -> Decision:
    """Move `champion` to the challenger if it passes the gate; otherwise keep the champion.

    The gate reads val and deployed-path figures only: the challenger's cross-fitted val recall
    on angry reaches the floor, its deployed-path recall on the people who may decide reaches
    its floor, and `compare` (the two models' decisions on the same non-test faces) shows it
    not worse than the champion beyond noise: for each compared metric, the upper end of the
    interval of (challenger - champion) is >= 0.
    """
    challenger = get_alias(client, name, CHALLENGER)
    champion = get_alias(client, name, CHAMPION)
    before = champion.version if champion else None
    if challenger is None:
        return Decision(
            name, False, "no challenger: run `emowatch register` first", None, before, before
        )
    decision = Decision(name, False, "", challenger.version, before, before)
    if champion is not None and champion.version == challenger.version:
        decision.reason = f"version {challenger.version} is already champion: nothing to do"
        return decision
    recall = _tag(challenger, "val_recall_angry_at_threshold")
    deployed = _tag(challenger, "deployed_decide_recall_angry")
    floor = gate.target_recall - gate.recall_tolerance
    decision.compared["challenger"] = {
        "val_recall_angry_at_threshold": recall,
        "deployed_decide_recall_angry": deployed,
    }
    if recall is None or deployed is None:
        decision.reason = (
            f"version {challenger.version} lacks cross-fitted val or deployed-path figures: "
            "re-run `dvc repro evaluate register`"
        )
        return decision
    if recall < floor:
        decision.reason = (
            f"challenger's cross-fitted val recall on angry {recall:.3f} < {floor:.3f} "
            f"(target {gate.target_recall} - tolerance {gate.recall_tolerance})"
        )
        return decision
    if deployed < gate.deployed_recall_floor:
        decision.reason = (
            f"challenger's deployed-path recall on angry {deployed:.3f} < floor "
            f"{gate.deployed_recall_floor} (photos of the people who may decide)"
        )
        return decision
    if champion is not None:
        if compare is None:
            decision.reason = "a champion exists and nothing was given to compare them with"
            return decision
        paired = {m: dict(r) for m, r in compare(challenger, champion).items()}
        decision.compared["paired"] = paired
        worse = [m for m in gate.compare if paired[m]["high"] < 0]
        if worse:
            decision.reason = "challenger worse than the champion beyond noise: " + "; ".join(
                f"{m} {paired[m]['diff']:+.4f} [{paired[m]['low']:+.4f}, {paired[m]['high']:+.4f}]"
                for m in worse
            )
            return decision
        client.set_registered_model_alias(name, PREVIOUS, champion.version)
    client.set_registered_model_alias(name, CHAMPION, challenger.version)
    decision.promoted, decision.champion_after = True, challenger.version
    decision.reason = "first champion" if champion is None else "challenger passed the gate"
    return decision


def rollback(client: MlflowClient, name: str) -> Decision:
    """Make `previous` champion again; the replaced champion becomes `previous`."""
    previous, champion = get_alias(client, name, PREVIOUS), get_alias(client, name, CHAMPION)
    before = champion.version if champion else None
    if previous is None:
        return Decision(name, False, "no previous champion to roll back to", None, before, before)
    client.set_registered_model_alias(name, CHAMPION, previous.version)
    if champion is not None:
        client.set_registered_model_alias(name, PREVIOUS, champion.version)
    return Decision(
        name, True, f"rolled back to version {previous.version}", None, before, previous.version
    )
