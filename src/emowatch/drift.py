"""`emowatch drift`: has what the cameras see moved away from what the model was checked on?

The watcher logs, per camera and hour, the predicted emotions and a histogram of P(angry)
(`deploy/hourly.py`). The reference is the watched model on the camera path over the photos of
the people whose figures may decide (the deployed-path evaluation's decide part: no test
person), computed once per registry version and cached. Both distributions are compared with
the population stability index (PSI); a window drifts when either PSI exceeds
`retrain.drift.psi_threshold` (0.1 is commonly read as a small shift, 0.25 as a large one).
Too few faces in the window decide nothing.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from emowatch.config import resolve_path
from emowatch.deploy.hourly import histogram
from emowatch.deploy.retention import DailyLog
from emowatch.errors import DataError
from emowatch.files import read_json, write_json


def psi(expected: list[float], actual: list[float], eps: float = 1e-4) -> float:
    """Population stability index of `actual` against `expected` (counts, same bins)."""
    e_total, a_total = sum(expected), sum(actual)
    if not e_total or not a_total:
        return 0.0
    out = 0.0
    for e, a in zip(expected, actual, strict=True):
        p, q = max(e / e_total, eps), max(a / a_total, eps)
        out += (q - p) * math.log(q / p)
    return out


def read_window(log: DailyLog, hours: float, now: datetime | None = None) -> list[dict[str, Any]]:
    """The hourly records of the last `hours` (only the day files that can hold them are read;
    unreadable lines are counted and skipped)."""
    now = now or datetime.now(UTC)
    since = now - timedelta(hours=hours)
    records, bad = log.records(since - timedelta(hours=1))
    out = []
    for record in records:
        try:
            hour = datetime.strptime(record["hour"], "%Y-%m-%dT%H:00Z").replace(tzinfo=UTC)
        except (KeyError, TypeError, ValueError):
            bad += 1
            continue
        if record.get("event") == "hourly_stats" and hour >= since - timedelta(hours=1):
            out.append(record)
    if bad:
        print(f"{log.path}: {bad} unreadable line(s) skipped")
    return out


def aggregate(records: list[dict[str, Any]], bins: int) -> dict[str, Any]:
    """The window's totals: faces, emotion counts, P(angry) histogram."""
    emotions: Counter[str] = Counter()
    hist = [0] * bins
    for r in records:
        emotions.update(r.get("emotions", {}))
        if len(r.get("p_angry_bins", [])) == bins:
            hist = [a + b for a, b in zip(hist, r["p_angry_bins"], strict=True)]
    return {
        "faces": sum(r.get("faces", 0) for r in records),
        "emotions": dict(emotions),
        "p_angry_bins": hist,
    }


def model_identity(cfg: DictConfig, spec: str, root: Path | None) -> tuple[str, str]:
    """(a cache key naming exactly one model, its dataset) for a registry URI or model folder."""
    path = Path(spec)
    if path.is_dir():  # the weights and the choices its evaluation made, as a version would
        from emowatch.evaluation.choices import evaluated_choices
        from emowatch.files import file_hash, fingerprint

        chosen = evaluated_choices(cfg, path, root, need_threshold=False)
        key = fingerprint(file_hash(path / "model.ckpt"), chosen)
        return f"{path.parent.name}-{path.name}-{key}", path.parent.name
    if not spec.startswith("models:/"):
        raise ValueError(f"{spec!r} is neither a model folder nor a models:/ URI")
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from emowatch.tracking.registry import version_of
    from emowatch.tracking.runs import tracking_uri

    client = MlflowClient(tracking_uri(cfg, root))
    try:
        version = version_of(client, spec)
    except MlflowException as err:
        raise DataError(
            f"{spec}: no such registered model version ({err.error_code}); run `make run` to "
            "register and promote one, or name another with --model"
        ) from None
    return f"{version.name}-v{version.version}", str(version.tags.get("dataset", "fer2013"))


def reference(cfg: DictConfig, spec: str, root: Path | None = None) -> dict[str, Any]:
    """The model's distributions on the camera path over the decide part's photos, cached in
    `retrain.drift.reference_dir` per model version."""
    dcfg = cfg.retrain.drift
    key, dataset = model_identity(cfg, spec, root)
    cache = resolve_path(dcfg.reference_dir, root) / f"{key}.json"
    found = read_json(cache)
    if found is not None:
        return found
    from emowatch.deploy.site_model import load
    from emowatch.evaluation import deployed

    classifier = load(cfg, spec, root=root)
    splits = list(cfg.evaluate.deployed.decide_splits[dataset])
    items = [
        p
        for p in deployed.photo_set(cfg, classifier.classes, splits, root)
        if p.part == deployed.DECIDE
    ]
    records = deployed.classify(classifier, resolve_path(cfg.data.photos.root, root), items)
    seen = [r for r in records if r["predicted"] is not None]
    bins = int(cfg.deploy.watch.stats_bins)
    ref = {
        "model": key,
        "faces": len(seen),
        "photos": len(records),
        "emotions": dict(Counter(r["predicted"] for r in seen)),
        "p_angry_bins": histogram((r["p_angry"] for r in seen), bins),
    }
    write_json(cache, ref)
    return ref


def compare(ref: dict[str, Any], window: dict[str, Any], threshold: float, min_faces: int):
    """The PSIs and the verdict."""
    classes = sorted(set(ref["emotions"]) | set(window["emotions"]))
    by_emotion = psi(
        [ref["emotions"].get(c, 0) for c in classes],
        [window["emotions"].get(c, 0) for c in classes],
    )
    by_p_angry = psi(ref["p_angry_bins"], window["p_angry_bins"])
    enough = window["faces"] >= min_faces
    drifted = enough and max(by_emotion, by_p_angry) > threshold
    if not enough:
        reason = f"too few faces to tell ({window['faces']} < {min_faces})"
    else:
        worst = "emotions" if by_emotion >= by_p_angry else "P(angry)"
        verb = "exceeds" if drifted else "is within"
        reason = f"PSI of {worst} {max(by_emotion, by_p_angry):.3f} {verb} {threshold}"
    return {
        "drifted": drifted,
        "reason": reason,
        "psi_emotions": round(by_emotion, 4),
        "psi_p_angry": round(by_p_angry, 4),
        "threshold": threshold,
        "faces": window["faces"],
        "reference_faces": ref["faces"],
    }


def check(
    cfg: DictConfig,
    root: Path | None = None,
    hours: float | None = None,
    model: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Compare the last `hours` of the watcher's hourly log with the model's reference."""
    dcfg = cfg.retrain.drift
    hours = float(hours or dcfg.window_hours)
    from emowatch.deploy.site_model import resolve

    spec = resolve(cfg, model, root, say=False)
    wcfg = cfg.deploy.watch
    log = DailyLog(resolve_path(wcfg.stats_log, root), float(wcfg.keep_days))
    records = [r for r in read_window(log, hours, now) if r.get("model", spec) == spec]
    window = aggregate(records, int(cfg.deploy.watch.stats_bins))
    verdict = compare(
        reference(cfg, spec, root), window, float(dcfg.psi_threshold), int(dcfg.min_faces)
    )
    return verdict | {"model": spec, "hours": hours, "log": str(log.path), "records": len(records)}
