"""The alert rule a watch runs (`deploy.watch.alerts.rule`).

One rule: a registered version that the scenarios stage has watched carries the alert rule chosen
on its deciding people's visits (registry tag `alert_rule`), and with `rule: chosen` (the
default) `watch` alerts by it; anything else (a model folder, a version the stage has not
watched, a tag that cannot be read, or `rule: configured`) alerts by the configured k, n,
cooldown and smoothing, and says so. The chosen rule is never worse than the configured one on
that evidence: the configured rule is among those compared, and the choice takes the most angry
visits alerted in time within the false-alarm cap (or, with none within it, the fewest false
alarms). A rule belongs to the model it was chosen for: another threshold makes other frames
angry, so a new version starts on the configured rule until the stage has watched it.
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from emowatch.deploy.tracker import AlertRule, rule_of

TAG = "alert_rule"
CHOSEN, CONFIGURED = "chosen", "configured"


def as_tag(rule: AlertRule, evidence: str) -> str:
    """The tag value: the rule's fields and a line saying what it was chosen on."""
    fields = {"k": rule.k, "n": rule.n, "cooldown_s": rule.cooldown_s}
    return json.dumps(fields | {"smoothing": rule.smoothing, "evidence": evidence})


def from_tag(text: str) -> tuple[AlertRule, str]:
    """(the rule, its evidence) of a tag value; ValueError when it is not one."""
    try:
        found = json.loads(text)
        rule = AlertRule(
            int(found["k"]), int(found["n"]), float(found["cooldown_s"]), str(found["smoothing"])
        )
    except (TypeError, KeyError, json.JSONDecodeError) as err:
        raise ValueError(f"not an alert rule: {text[:80]!r} ({err})") from None
    if not 1 <= rule.k <= rule.n or rule.cooldown_s < 0:
        raise ValueError(f"not an alert rule: k {rule.k}, n {rule.n}, cooldown {rule.cooldown_s}")
    return rule, str(found.get("evidence", ""))


def tagged(cfg: DictConfig, spec: str, root: Path | None) -> str | None:
    """The `alert_rule` tag of the registered version `spec` names (None: a model folder, no
    such version, or no tag)."""
    if not spec.startswith("models:/"):
        return None
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from emowatch.tracking.registry import version_of
    from emowatch.tracking.runs import tracking_uri

    try:
        return version_of(MlflowClient(tracking_uri(cfg, root)), spec).tags.get(TAG)
    except MlflowException:
        return None


def for_model(cfg: DictConfig, spec: str, root: Path | None = None) -> tuple[AlertRule, str]:
    """The rule to alert by with the model `spec` (a models:/ URI or a model folder), and why."""
    acfg = cfg.deploy.watch.alerts
    configured = rule_of(acfg)
    how = str(acfg.get("rule", CHOSEN))
    if how not in (CHOSEN, CONFIGURED):
        raise ValueError(f"deploy.watch.alerts.rule {how!r}: one of {CHOSEN}, {CONFIGURED}")
    if how == CONFIGURED:
        return configured, "the configured rule (deploy.watch.alerts.rule: configured)"
    text = tagged(cfg, spec, root)
    if text is None:
        return configured, (
            f"the configured rule: {spec} carries no chosen rule (run `dvc repro scenarios` "
            "to choose one on this site's visits)"
        )
    try:
        rule, evidence = from_tag(text)
    except ValueError as err:
        return configured, f"the configured rule: {spec}'s tag {TAG} is unreadable ({err})"
    return rule, f"chosen for {spec} by the scenarios stage: {evidence}"
