"""DVC stage `promote` (one per dataset) and `emowatch promote [--rollback]`: move `champion` to
the challenger only when it passes the gate (conf/registry); every decision is an MLflow run and
a JSON report."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import mlflow
from mlflow.entities.model_registry import ModelVersion
from omegaconf import DictConfig

from emowatch.config import resolve_path
from emowatch.data.datamodule import load_dataset
from emowatch.deploy import pyfunc
from emowatch.evaluation.predict import predict
from emowatch.files import write_json
from emowatch.stages.evaluate import scores
from emowatch.tracking import registry
from emowatch.tracking.runs import stage_run

STAGE = "promote"


def at_size(cfg: DictConfig, dataset: str, size: int) -> DictConfig:
    """The config reading `dataset` at `size` px (a version may predate a change of input size;
    photos are re-read from their crops rather than resized twice)."""
    if dataset != "photos" or cfg.data.photos.image_size == size:
        return cfg
    out = copy.deepcopy(cfg)
    out.data.photos.image_size = size
    return out


def rescorer(cfg: DictConfig, dataset: str, root: Path | None):
    """Score a registered version on today's test data with its own preprocessing and threshold."""

    def rescore(version: ModelVersion) -> dict[str, float]:
        size = int(json.loads(version.tags["input_shape"])[-1])
        arrays = load_dataset(at_size(cfg, dataset, size), dataset, root)
        net = pyfunc.load_network(f"models:/{version.name}/{version.version}")
        mean, std = float(version.tags["normalize_mean"]), float(version.tags["normalize_std"])
        probs = predict(net, arrays.x["test"], mean, std, cfg.evaluate.tta)
        classes = json.loads(version.tags["classes"])
        return scores(probs, arrays.y["test"], classes, float(version.tags["threshold_angry"]))

    return rescore


def main(cfg: DictConfig, dataset: str, rollback: bool = False, root: Path | None = None) -> dict:
    """Promote (or roll back) the dataset's registered model; returns the decision."""
    rcfg, gate = cfg.registry, cfg.registry.promotion
    name = rcfg.names[dataset]
    with stage_run(
        cfg, STAGE, run_name=f"promote-{dataset}", root=root, tags={"emowatch.dataset": dataset}
    ):
        client = mlflow.tracking.MlflowClient()
        if rollback:
            decision = registry.rollback(client, name)
        else:
            decision = registry.promote(
                client,
                name,
                cfg.evaluate.target_recall,
                gate.recall_tolerance,
                gate.metric,
                gate.accuracy_margin,
                rescore=rescorer(cfg, dataset, root),
            )
        report = decision.as_dict() | {
            "action": "rollback" if rollback else "promote",
            "gate": dict(gate),
        }
        path = write_json(resolve_path(rcfg.dir, root) / f"{dataset}_promotion.json", report)
        mlflow.log_artifact(str(path))
        mlflow.set_tags(
            {"promoted": str(decision.promoted).lower(), "reason": decision.reason[:5000]}
        )
        mlflow.log_params({"registered_model": name, "action": report["action"]})
        verb = "promoted" if decision.promoted else "kept"
        change = f"v{decision.champion_before} -> v{decision.champion_after}"
        print(f"{name}: {verb} — {decision.reason} (champion: {change})")
    return report
