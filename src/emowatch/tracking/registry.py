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

from emowatch.errors import UnsafeModelError
from emowatch.evaluation import people_cv
from emowatch.evaluation.paired import wilson
from emowatch.tracking import audit
from emowatch.tracking.production import Context

PRODUCTION = Context(experiment=None)

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
DEPLOYED_KEYS += (
    "recall_angry_low",
    "recall_angry_high",
    "precision_angry_low",
    "precision_angry_high",
)
DEPLOYED_COUNTS = ("n", "n_angry", "angry_caught")


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
        "experiment": bool(candidate.get("experiment")),
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
        tags |= {f"deployed_{part}_{k}": str(found[k]) for k in DEPLOYED_COUNTS if k in found}
    if "skipped" in m.get("deployed", {}):  # a site without photos: no camera-path figures
        tags["deployed_skipped"] = m["deployed"]["skipped"]
    evidence = m.get("deployed", {}).get("evidence", {})
    if "insufficient" in evidence:  # too few people to cross-validate a photos model
        tags["deployed_insufficient"] = evidence["insufficient"]
    if "n_angry" in m["val"]:
        tags["val_n_angry"] = str(m["val"]["n_angry"])
    tags |= {
        "val_crossfit_folds": str(m["val"].get("crossfit", {}).get("folds", 0)),
        "threshold_angry": f"{m['threshold_angry']:.6f}",
        "tta": m.get("tta", {}).get("chosen", "none"),
        "clahe": str(bool(m.get("deployed", {}).get("clahe", {}).get("chosen", False))).lower(),
        "val_data_hash": m.get("val_data_hash", ""),
        "test_data_hash": m["test_data_hash"],
        "model": candidate["model"],
        "train_run": candidate["train_run"],
        "version_key": version_key(candidate),
        "experiment": candidate.get("experiment") or "",
    }
    tags |= {k: str(v) for k, v in candidate.get("extra_tags", {}).items()}
    return tags


def get_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def version_of(client: MlflowClient, uri: str) -> ModelVersion:
    """The registered version a `models:/<name>@<alias>` or `models:/<name>/<number>` URI names
    now (MlflowException when there is none; ValueError for another kind of URI)."""
    if not uri.startswith("models:/"):
        raise ValueError(f"{uri!r} is not a models:/ URI")
    name, _, alias = uri.removeprefix("models:/").partition("@")
    if alias:
        return client.get_model_version_by_alias(name, alias)
    name, _, number = uri.removeprefix("models:/").partition("/")
    return client.get_model_version(name, number)


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
    would_promote: bool = False  # passed the gate, but this run may not move production

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Gate:
    """What a challenger must pass (conf/registry `promotion`)."""

    target_recall: float
    recall_tolerance: float  # cross-fitted val recall on angry >= target - tolerance
    # Deployed-path angry recall that the lower end of its Wilson interval must reach (the photos
    # models' out-of-fold evidence over every non-test person); None: no such floor (FER2013's
    # models keep their floors on FER2013 val; their camera-path figures steer the site model).
    deployed_recall_floor: float | None
    compare: tuple[str, ...] = ("precision_angry_at_threshold", "accuracy_at_threshold")
    confidence: float = 0.95  # of the intervals the floors and the comparison read


# compare(challenger, champion) -> {metric: paired result of challenger - champion on the same
# non-test faces: {"a", "b", "diff", "low", "high", ...}} (evaluation.paired.compare).
Compare = Callable[[ModelVersion, ModelVersion], Mapping[str, Mapping[str, float]]]


def _tag(v: ModelVersion, key: str) -> float | None:
    return float(v.tags[key]) if key in v.tags else None


FLOOR_TAGS = ("val_recall_angry_at_threshold", "deployed_decide_recall_angry")


def provenance_refusal(challenger: ModelVersion, production: Context) -> str | None:
    """A production run does not promote what an experiment registered (unless overridden)."""
    made_by = challenger.tags.get("experiment")
    if made_by and production.experiment is None and not production.override:
        return (
            f"challenger v{challenger.version} was registered by an experiment ({made_by}): "
            "register it from a production run (`dvc repro register`) before promoting"
        )
    return None


def below_beyond_noise(recall: float, n_angry: int, floor: float, confidence: float) -> bool:
    """The recall is below the floor beyond noise: even the upper end of its Wilson interval
    (over `n_angry` faces) is. With few angry faces a point estimate proves little either way."""
    return wilson(round(recall * n_angry), n_angry, confidence)[1] < floor


def short_of_floor(recall: float, n_angry: int, floor: float, confidence: float) -> bool:
    """The evidence does not reach the floor: the lower end of the recall's Wilson interval
    (over `n_angry` faces) is below it. Few faces prove little, so they cannot pass on luck."""
    return wilson(round(recall * n_angry), n_angry, confidence)[0] < floor


def floor_refusal(challenger: ModelVersion, gate: Gate) -> str | None:
    """The floors: cross-fitted val recall on angry (refused only when below its floor beyond
    noise), and, where the gate has one, the deployed-path recall on angry, whose evidence must
    reach its floor (a lower bound; the refusal says how many more angry photos would prove it
    at the recall seen). At a site without photos (tag `deployed_skipped`) there is no deployed
    path to hold to a floor: val alone."""
    recall, deployed = (_tag(challenger, k) for k in FLOOR_TAGS)
    n_val, n_deployed = (challenger.tags.get(k) for k in ("val_n_angry", "deployed_decide_n_angry"))
    no_deployed = "deployed_skipped" in challenger.tags or gate.deployed_recall_floor is None
    floor = gate.target_recall - gate.recall_tolerance
    if None in (recall, n_val) or (not no_deployed and None in (deployed, n_deployed)):
        return (
            f"version {challenger.version} lacks cross-fitted val or deployed-path figures: "
            "re-run `dvc repro evaluate register`"
        )
    if int(challenger.tags.get("val_crossfit_folds", 0)) < 2:
        return (
            f"val is too small to measure challenger v{challenger.version}'s operating point "
            "honestly (cross-fitting needs angry faces of >= 2 people or >= 2 angry faces): "
            "add photos of more people"
        )
    if below_beyond_noise(recall, int(n_val), floor, gate.confidence):
        return (
            f"challenger's cross-fitted val recall on angry {recall:.3f} (of {n_val} faces) is "
            f"below {floor:.3f} beyond noise (target {gate.target_recall} - tolerance "
            f"{gate.recall_tolerance})"
        )
    if no_deployed:
        return None
    if "deployed_insufficient" in challenger.tags:
        return (
            f"challenger v{challenger.version} has no out-of-fold evidence to reach the "
            f"deployed floor: {challenger.tags['deployed_insufficient']}"
        )
    deployed_floor = float(gate.deployed_recall_floor)
    n, caught = int(n_deployed), round(deployed * int(n_deployed))
    if short_of_floor(deployed, n, deployed_floor, gate.confidence):
        low = wilson(caught, n, gate.confidence)[0]
        more = people_cv.angry_photos_needed(caught, n, deployed_floor, gate.confidence)
        need = (
            f"about {more} more angry photos caught at this rate would prove it"
            if more is not None
            else "no number of photos proves it at this rate: the model must catch more"
        )
        return (
            f"challenger's deployed-path recall on angry {deployed:.3f} ({caught} of {n} angry "
            f"photos; {gate.confidence:.0%} lower bound {low:.3f}) does not reach the floor "
            f"{deployed_floor}: {need}"
        )
    return None


def noise_refusal(
    paired: Mapping[str, Mapping[str, float]], metrics: tuple[str, ...]
) -> str | None:
    """Worse than the champion beyond noise: an interval of (challenger - champion) wholly
    below 0."""
    worse = [m for m in metrics if paired[m]["high"] < 0]
    if not worse:
        return None
    return "challenger worse than the champion beyond noise: " + "; ".join(
        f"{m} {paired[m]['diff']:+.4f} [{paired[m]['low']:+.4f}, {paired[m]['high']:+.4f}]"
        for m in worse
    )


def comparison_refusal(
    challenger: ModelVersion,
    champion: ModelVersion,
    gate: Gate,
    compare: Compare | None,
    production: Context,
    decision: Decision,
) -> str | None:
    """The paired comparison with the champion (recorded in `decision.compared`). A champion
    that cannot be loaded safely (a pickled version from before models were logged from code)
    cannot be compared: it is replaced only with an override, which is logged."""
    if compare is None:
        return "a champion exists and nothing was given to compare them with"
    try:
        paired = {m: dict(r) for m, r in compare(challenger, champion).items()}
    except UnsafeModelError as err:
        decision.compared["paired"] = {}
        if production.override:
            return None
        return (
            f"champion v{champion.version} cannot be compared: {err} To replace it, promote "
            "with registry.production.override='<reason>'"
        )
    decision.compared["paired"] = paired
    return noise_refusal(paired, gate.compare)


def promote(
    client: MlflowClient,
    name: str,
    gate: Gate,
    compare: Compare | None = None,
    production: Context = PRODUCTION,
) -> Decision:
    """Move `champion` to the challenger if it passes the gate; otherwise keep the champion.

    The gate reads val and deployed-path figures only: the challenger's cross-fitted val recall
    on angry reaches the floor, its deployed-path recall on the people who may decide reaches
    its floor, and `compare` (the two models' decisions on the same non-test faces) shows it
    not worse than the champion beyond noise: for each compared metric, the upper end of the
    interval of (challenger - champion) is >= 0.

    Outside production (`production.experiment`: a `dvc exp run`, a dirty workspace, another
    branch) the decision is computed but no alias moves, unless `production.override` says why;
    a production run refuses a challenger that an experiment registered. Every move is recorded
    in the audit trail (`tracking.audit`).
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
    refusal = provenance_refusal(challenger, production) or floor_refusal(challenger, gate)
    decision.compared["challenger"] = {k: _tag(challenger, k) for k in FLOOR_TAGS}
    if refusal is None and champion is not None:
        refusal = comparison_refusal(challenger, champion, gate, compare, production, decision)
    if refusal is not None:
        decision.reason = refusal
        return decision
    reason = "first champion" if champion is None else "challenger passed the gate"
    if not production.may_move_production:
        decision.reason = (
            f"{reason}, but not moved: {production.experiment} (only a clean production "
            "workspace moves `champion`, or registry.production.override with a reason)"
        )
        decision.would_promote = True
        return decision
    if champion is not None:
        client.set_registered_model_alias(name, PREVIOUS, champion.version)
    client.set_registered_model_alias(name, CHAMPION, challenger.version)
    decision.promoted, decision.champion_after, decision.reason = True, challenger.version, reason
    action = "override" if production.experiment else "promote"
    audit.record(client, name, action, reason, before, challenger.version, production.override)
    return decision


def rollback(client: MlflowClient, name: str, production: Context = PRODUCTION) -> Decision:
    """Make `previous` champion again; the replaced champion becomes `previous`."""
    previous, champion = get_alias(client, name, PREVIOUS), get_alias(client, name, CHAMPION)
    before = champion.version if champion else None
    if previous is None:
        return Decision(name, False, "no previous champion to roll back to", None, before, before)
    if not production.may_move_production:
        why = f"not rolled back: {production.experiment} (set registry.production.override)"
        return Decision(name, False, why, None, before, before)
    client.set_registered_model_alias(name, CHAMPION, previous.version)
    if champion is not None:
        client.set_registered_model_alias(name, PREVIOUS, champion.version)
    reason = f"rolled back to version {previous.version}"
    audit.record(client, name, "rollback", reason, before, previous.version, production.override)
    return Decision(name, True, reason, None, before, previous.version)
