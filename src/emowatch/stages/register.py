"""DVC stage `register` (one per dataset): every evaluated model becomes a version of the
dataset's registered model, tagged with its metrics, threshold, data hash and git commit; the
best candidate, chosen on val (cross-fitted figures, see stages/evaluate.py), gets the alias
`challenger`.

A version is the deployable model: an MLflow pyfunc (emowatch.deploy.pyfunc) holding the
network, its preprocessing, the face detector settings and the angry threshold chosen on val,
so `models:/<name>@champion` is what `emowatch watch` and `mlflow models serve` run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from emowatch.deploy import pyfunc
from emowatch.files import file_hash, write_json
from emowatch.inference.face_classifier import align_of, spec_of
from emowatch.layout import Layout
from emowatch.stages import no_photos
from emowatch.tracking import production, registry
from emowatch.tracking.runs import data_hash, git_info, stage_run

STAGE = "register"


def candidates(cfg: DictConfig, dataset: str, root: Path | None = None) -> list[dict]:
    """The evaluated models of a dataset, with what registration needs."""
    client, out = MlflowClient(), []
    sha, _ = git_info(root)
    for model in cfg.registry.candidates[dataset]:
        paths = Layout(cfg, root).model(dataset, model)
        metrics_path, info_path = paths.metrics, paths.spec
        if not metrics_path.is_file() or not info_path.is_file():
            raise FileNotFoundError(
                f"{metrics_path} or {info_path} missing: run `dvc repro evaluate@{dataset}-{model}`"
            )
        info = json.loads(info_path.read_text())
        metrics = json.loads(metrics_path.read_text())
        run = client.get_run(info["mlflow_run_id"])
        out.append(
            {
                "model": model,
                "model_dir": info_path.parent,
                "metrics": metrics,
                "spec": spec_of(
                    info,
                    threshold=metrics["threshold_angry"],
                    tta=metrics["tta"]["chosen"],
                    margin=cfg.deploy.crop_margin,
                    detector=cfg.detector,
                    clahe=metrics["deployed"].get("clahe", {}).get("chosen", False),
                    finder=cfg.deploy.watch.detect,
                    align=align_of(cfg.deploy.get("align")),
                ),
                "weights_md5": file_hash(info_path.parent / "model.ckpt"),
                "train_run": info["mlflow_run_id"],
                "model_uri": run.data.tags["emowatch.model_uri"],
                "extra_tags": {
                    "dataset": dataset,
                    "classes": json.dumps(info["classes"]),
                    "input_shape": json.dumps(info["input_shape"]),
                    "normalize_mean": info["normalize"]["mean"],
                    "normalize_std": info["normalize"]["std"],
                    "git_commit": sha,
                    "data_hash": data_hash(root),
                },
            }
        )
    return out


def deployable(dataset: str, candidate: dict) -> Callable[[], str]:
    """Logs the candidate as the face pyfunc (in the register run) and returns its URI. Its
    spec (TTA, threshold) is the one its evaluation chose on val."""

    def log() -> str:
        meta = {"train_run": candidate["train_run"], "model": candidate["model"]}
        name = f"{dataset}-{candidate['model']}"
        return pyfunc.log_model(candidate["model_dir"], candidate["spec"], name, meta)

    return log


def main(cfg: DictConfig, dataset: str, root: Path | None = None) -> dict:
    """Register the dataset's candidates and set `challenger`; returns the registration report."""
    if (skipped := no_photos.skip(cfg, STAGE, dataset, None, root)) is not None:
        return skipped  # a site without photos: every output written, saying so
    rcfg = cfg.registry
    name = rcfg.names[dataset]
    with stage_run(
        cfg, STAGE, run_name=f"register-{dataset}", root=root, tags={"emowatch.dataset": dataset}
    ):
        client = MlflowClient()
        ctx = production.context(cfg, root)
        found = [c | {"experiment": ctx.experiment} for c in candidates(cfg, dataset, root)]
        versions = {
            c["model"]: registry.register(client, name, c, deployable(dataset, c)) for c in found
        }
        best = registry.choose_challenger(found, rcfg.selection_metric, rcfg.accuracy_guard)
        chosen = versions[best["model"]].version
        client.set_registered_model_alias(name, registry.CHALLENGER, chosen)
        report = {
            "registered_model": name,
            "experiment": ctx.experiment,
            "challenger": {"model": best["model"], "version": chosen},
            "selection": {
                "metric": f"val {rcfg.selection_metric}",
                "accuracy_guard": rcfg.accuracy_guard,
            },
            "versions": {
                m: {"version": v.version, "val": {k: c["metrics"]["val"][k] for k in registry.KEYS}}
                for (m, v), c in zip(versions.items(), found, strict=True)
            },
        }
        path = write_json(Layout(cfg, root).register_report(dataset), report)
        mlflow.log_artifact(str(path))
        mlflow.log_params(
            {
                "registered_model": name,
                "challenger_model": best["model"],
                "challenger_version": chosen,
            }
        )
        listed = ", ".join(f"{m} v{v.version}" for m, v in versions.items())
        print(f"{name}: versions {listed}; challenger {best['model']} (v{chosen})")
        if ctx.experiment:
            print(f"registered as experiment versions: {ctx.experiment}")
    return report
