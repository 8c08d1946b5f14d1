"""MLflow model registry: versions tagged with their evaluation, the challenger chosen on val,
and the promotion gate that moves `champion` (the replaced one becomes `previous`)."""

from __future__ import annotations

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
)


def version_tags(candidate: Mapping) -> dict[str, str]:
    """The tags a registered version carries: test and val metrics, threshold, data, code."""
    m = candidate["metrics"]
    tags = {f"test_{k}": f"{m[k]:.6f}" for k in KEYS if k in m}
    tags |= {f"val_{k}": f"{m['val'][k]:.6f}" for k in KEYS if k in m["val"]}
    tags |= {
        "threshold_angry": f"{m['threshold_angry']:.6f}",
        "test_data_hash": m["test_data_hash"],
        "model": candidate["model"],
        "train_run": candidate["train_run"],
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
    """Register a candidate's model as a new version, or return the version already made from
    the same training run and evaluation (re-running registration adds nothing).

    `log_model` logs the deployable model and returns its URI; it is called only when a new
    version is made (without it, `candidate["model_uri"]` is registered)."""
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="emowatch: facial-expression models")
    tags = version_tags(candidate)
    for v in client.search_model_versions(f"name = '{name}'"):
        if (
            v.tags.get("train_run") == tags["train_run"]
            and v.tags.get("test_data_hash") == tags["test_data_hash"]
        ):
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


Rescore = Callable[[ModelVersion], Mapping[str, float]]


def _tag(v: ModelVersion, key: str) -> float:
    return float(v.tags[key])


def promote(
    client: MlflowClient,
    name: str,
    target_recall: float,
    recall_tolerance: float,
    metric: str,
    accuracy_margin: float,
    rescore: Rescore | None = None,
) -> Decision:
    """Move `champion` to the challenger if it passes the gate; otherwise keep the champion.

    `rescore(champion)` gives the champion's test metrics on the challenger's test data when the
    two were evaluated on different data; without it such a comparison is refused.
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
    recall = _tag(challenger, "test_recall_angry_at_threshold")
    floor = target_recall - recall_tolerance
    decision.compared["challenger"] = {
        k: _tag(challenger, f"test_{k}") for k in (metric, "accuracy", "recall_angry_at_threshold")
    }
    if recall < floor:
        decision.reason = (
            f"challenger's test recall on angry {recall:.3f} < {floor:.3f} "
            f"(target {target_recall} - tolerance {recall_tolerance})"
        )
        return decision
    if champion is not None:
        same_data = champion.tags.get("test_data_hash") == challenger.tags.get("test_data_hash")
        if same_data:
            champ = {k: _tag(champion, f"test_{k}") for k in (metric, "accuracy")}
        elif rescore is None:
            decision.reason = "champion was tested on other data and cannot be re-scored here"
            return decision
        else:
            champ = dict(rescore(champion))
        decision.compared["champion"] = champ | {"same_test_data": same_data}
        ours = decision.compared["challenger"]
        if ours[metric] < champ[metric]:
            decision.reason = (
                f"challenger's test {metric} {ours[metric]:.4f} < champion's {champ[metric]:.4f}"
            )
            return decision
        if ours["accuracy"] < champ["accuracy"] - accuracy_margin:
            decision.reason = (
                f"challenger's test accuracy {ours['accuracy']:.4f} is more than {accuracy_margin} "
                f"below the champion's {champ['accuracy']:.4f}"
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
