"""DVC stage `promote` (one per dataset) and `emowatch promote [--rollback]`: move `champion` to
the challenger only when it passes the gate (conf/registry), which reads non-test data only:
cross-fitted val figures, deployed-path figures of non-test people, and a paired comparison with
the champion on today's val faces. Every decision is an MLflow run and a JSON report with the
comparison's intervals."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

import mlflow
import numpy as np
from mlflow.entities.model_registry import ModelVersion
from omegaconf import DictConfig, OmegaConf

from emowatch.data.splits import load_dataset, val_groups
from emowatch.deploy import pyfunc
from emowatch.evaluation import crossfit, paired
from emowatch.files import read_json, write_json
from emowatch.inference.predict import predict
from emowatch.layout import Layout
from emowatch.stages import no_photos
from emowatch.tracking import model_card, production, registry
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


def comparer(cfg: DictConfig, dataset: str, root: Path | None) -> registry.Compare:
    """The paired comparison of two registered versions on today's val faces: each version
    predicts with its own network, preprocessing and TTA; each is decided at thresholds
    cross-fitted on the same folds (so neither is flattered by a threshold fitted on the faces
    it is scored on); a paired bootstrap gives the interval of each metric's difference."""
    pcfg = cfg.registry.promotion
    folds_n, target = cfg.evaluate.crossfit_folds, cfg.evaluate.target_recall
    groups = val_groups(cfg, dataset, root)
    val_at = functools.cache(lambda size: load_dataset(at_size(cfg, dataset, size), dataset, root))

    def decisions(version: ModelVersion) -> tuple[np.ndarray, np.ndarray, list[str]]:
        arrays = val_at(int(json.loads(version.tags["input_shape"])[-1]))
        model = pyfunc.load_classifier(f"models:/{version.name}/{version.version}")
        probs = predict(model.net, arrays.x["val"], model.mean, model.std, model.spec["tta"])
        y = arrays.y["val"]
        angry = model.classes.index("angry")
        parts = crossfit.folds(y == angry, groups, folds_n, cfg.seed)
        return y, crossfit.out_of_fold(probs, y, angry, target, parts), model.classes

    def compare(challenger: ModelVersion, champion: ModelVersion) -> dict[str, dict]:
        y, ours, classes = decisions(challenger)
        y_champ, theirs, champ_classes = decisions(champion)
        if classes != champ_classes or not np.array_equal(y, y_champ):
            raise ValueError("challenger and champion do not classify the same val faces")
        metrics = paired.metrics_for(classes.index("angry"))
        return {
            m: paired.compare(y, ours, theirs, metrics[m], pcfg.n_boot, pcfg.confidence, cfg.seed)
            for m in pcfg.compare
        }

    return compare


def gate_of(cfg: DictConfig, dataset: str) -> registry.Gate:
    pcfg = cfg.registry.promotion
    return registry.Gate(
        target_recall=cfg.evaluate.target_recall,
        recall_tolerance=pcfg.recall_tolerance,
        deployed_recall_floor=pcfg.deployed_recall_floor[dataset],
        compare=tuple(pcfg.compare),
        confidence=pcfg.confidence,
    )


def evaluation_of(cfg: DictConfig, dataset: str, version: ModelVersion, root: Path | None):
    """(metrics, confusion) of the workspace's evaluation the version was registered from, or
    (None, None) when the workspace holds another evaluation of that model."""
    paths = Layout(cfg, root).model(dataset, str(version.tags.get("model")))
    metrics = read_json(paths.metrics)
    same = metrics is not None and all(
        [
            f"{metrics['threshold_angry']:.6f}" == version.tags.get("threshold_angry"),
            metrics.get("test_data_hash") == version.tags.get("test_data_hash"),
            metrics.get("tta", {}).get("chosen") == version.tags.get("tta"),
        ]
    )
    return (metrics, read_json(paths.evaluation / "confusion.json")) if same else (None, None)


def publish_card(
    cfg: DictConfig, dataset: str, client, decision: registry.Decision, root: Path | None
) -> Path:
    """The promoted version's model card: a file, an artifact of this run, the version's
    description (rendered as Markdown in the MLflow UI) and its `model_card` tag."""
    version = client.get_model_version(decision.name, decision.champion_after)
    metrics, confusion = evaluation_of(cfg, dataset, version, root)
    card = model_card.render(version, metrics, confusion, decision.as_dict())
    path = Layout(cfg, root).model_card(dataset)
    path.write_text(card)
    mlflow.log_artifact(str(path))
    client.update_model_version(decision.name, version.version, description=card)
    uri = f"runs:/{mlflow.active_run().info.run_id}/{path.name}"
    client.set_model_version_tag(decision.name, version.version, "model_card", uri)
    return path


def main(cfg: DictConfig, dataset: str, rollback: bool = False, root: Path | None = None) -> dict:
    """Promote (or roll back) the dataset's registered model; returns the decision."""
    if (skipped := no_photos.skip(cfg, STAGE, dataset, None, root)) is not None:
        return skipped  # a site without photos: every output written, saying so
    rcfg = cfg.registry
    name = rcfg.names[dataset]
    with stage_run(
        cfg, STAGE, run_name=f"promote-{dataset}", root=root, tags={"emowatch.dataset": dataset}
    ):
        client = mlflow.tracking.MlflowClient()
        ctx = production.context(cfg, root)
        if rollback:
            decision = registry.rollback(client, name, ctx)
        else:
            gate, compare = gate_of(cfg, dataset), comparer(cfg, dataset, root)
            decision = registry.promote(client, name, gate, compare, ctx)
        report = decision.as_dict() | {
            "action": "rollback" if rollback else "promote",
            "gate": OmegaConf.to_container(rcfg.promotion, resolve=True),
            "production": {"experiment": ctx.experiment, "override": ctx.override},
        }
        if decision.promoted:
            report["model_card"] = str(publish_card(cfg, dataset, client, decision, root))
        path = write_json(Layout(cfg, root).promotion_report(dataset), report)
        mlflow.log_artifact(str(path))
        mlflow.set_tags(
            {
                "promoted": str(decision.promoted).lower(),
                "reason": decision.reason[:5000],
                "emowatch.experiment": ctx.experiment or "",
                "emowatch.override": ctx.override or "",
            }
        )
        mlflow.log_params({"registered_model": name, "action": report["action"]})
        for metric, r in decision.compared.get("paired", {}).items():
            mlflow.log_metrics({f"paired/{metric}/{k}": r[k] for k in ("diff", "low", "high")})
        verb = "promoted" if decision.promoted else "kept"
        change = f"v{decision.champion_before} -> v{decision.champion_after}"
        print(f"{name}: {verb} — {decision.reason} (champion: {change})")
    return report
