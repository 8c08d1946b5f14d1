"""DVC stage `evaluate` (one per trained model): figures a reviewer can trust.

Every choice reads val only; test is scored once, to report:
- test-time augmentation by a rule on val (`inference.predict.choose_tta`);
- the angry threshold fitted on all of val, and its honest figures (recall, precision and
  accuracy at the threshold) by cross-fitting on val (`evaluation.crossfit`): these are the
  `val` figures that choosing the challenger and the promotion gate read; a photos model's
  deployed threshold is instead fitted on the out-of-fold camera-path scores of every non-test
  person (stage `crossval`, `evaluation.people_cv`), where its CLAHE choice is made too;
- the deployed path (detector, crop, classify, threshold) on full photos
  (`evaluation.deployed`): the people who may steer choices under `deployed.decide`, the photos'
  test people under `deployed.report`, and per person.
The metrics JSON holds test figures at the top level, val under `val`, the TTA choice under
`tta`, the deployed path under `deployed`, and behavioural checks (predictions unchanged under a
flip or a brightness change, without TTA so that the network itself is checked). Also: the
classification report, confusion matrices at the deployed threshold rule beside argmax, the
angry-vs-rest precision-recall curve, correct/wrong faces, feature maps and Grad-CAM.
"""

from __future__ import annotations

import csv
import hashlib
import math
from pathlib import Path

import matplotlib.pyplot as plt
import mlflow
import numpy as np
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig
from sklearn.metrics import ConfusionMatrixDisplay, confusion_matrix, precision_recall_curve

from emowatch.config import flatten
from emowatch.data import photos
from emowatch.data.splits import load_dataset, val_groups
from emowatch.errors import DataError
from emowatch.evaluation import crossfit, deployed, explain, people_cv
from emowatch.files import read_json, write_json
from emowatch.inference.face_classifier import FaceClassifier, align_of, spec_of
from emowatch.inference.loading import load_trained
from emowatch.inference.predict import choose_tta, predict
from emowatch.inference.threshold import angry_scores, choose_threshold, predict_with_threshold
from emowatch.layout import Layout
from emowatch.stages import no_photos
from emowatch.tracking.runs import stage_run
from emowatch.training import reports

STAGE = "evaluate"


def data_hash(x: np.ndarray, y: np.ndarray) -> str:
    """A content hash of a split (images and labels), to tell when two evaluations compare."""
    h = hashlib.md5(np.ascontiguousarray(x).tobytes())
    h.update(np.ascontiguousarray(y).tobytes())
    return h.hexdigest()


def scores(probs: np.ndarray, y: np.ndarray, classes: list[str], threshold: float) -> dict:
    """The metric set of one split at argmax and at the angry threshold."""
    out = reports.split_metrics(probs, y, classes)
    a = classes.index("angry")
    pred = predict_with_threshold(probs, a, threshold)
    recall, precision = angry_scores(pred, y, a)
    return out | {
        "threshold_angry": threshold,
        "recall_angry_at_threshold": recall,
        "precision_angry_at_threshold": precision,
        "accuracy_at_threshold": float(np.mean(pred == y)),
        "n_angry": int(np.sum(y == a)),
        "n_said_angry": int(np.sum(pred == a)),
    }


def operating_point(
    probs: np.ndarray,
    y: np.ndarray,
    classes: list[str],
    groups: np.ndarray | None,
    ecfg: DictConfig,
    seed: int,
) -> dict:
    """Val figures: the threshold fitted on all of val, its recall/precision/accuracy there as
    honest cross-fitted estimates (each fold decided at a threshold fitted on the others), and
    the in-sample figures beside them (`fitted`), which flatter the model."""
    angry = classes.index("angry")
    point = choose_threshold(probs[:, angry], y == angry, ecfg.target_recall)
    fitted = scores(probs, y, classes, point.threshold)
    by = "person" if groups is not None else "angry"
    try:
        parts = crossfit.folds(y == angry, groups, ecfg.crossfit_folds, seed)
    except ValueError as err:  # too few angry faces or people in val to hold any out
        print(f"warning: no honest val figures at the threshold ({err}); the gate will refuse")
        parts, by = [], f"none: {err}"
    if parts:
        oof = crossfit.out_of_fold(probs, y, angry, ecfg.target_recall, parts)
        recall, precision = angry_scores(oof, y, angry)
        at = {
            "recall_angry_at_threshold": recall,
            "precision_angry_at_threshold": precision,
            "accuracy_at_threshold": float(np.mean(oof == y)),
            "n_said_angry": int(np.sum(oof == angry)),
        }
    else:
        at = {}  # nothing held out: the in-sample figures stand, flagged by `crossfit`
    return (
        fitted
        | at
        | {
            "fitted": {k: fitted[k] for k in fitted if k.endswith("_at_threshold")},
            "crossfit": {"folds": len(parts), "by": by},
        }
    )


def behaviour(net, x: np.ndarray, mean: float, std: float, delta: float) -> dict:
    """Share of predictions unchanged under a horizontal flip and a brightness change, without
    test-time augmentation (with `hflip` the flip check would hold by construction)."""
    pred = predict(net, x, mean, std, "none").argmax(axis=1)
    flipped = predict(net, np.ascontiguousarray(x[:, :, ::-1]), mean, std, "none").argmax(axis=1)
    brighter = np.clip(x.astype(np.float32) * (1 + delta), 0, 255).astype(np.uint8)
    bright = predict(net, brighter, mean, std, "none").argmax(axis=1)
    return {
        "flip_consistency": float(np.mean(flipped == pred)),
        "brightness_consistency": float(np.mean(bright == pred)),
    }


def pr_curve(
    probs: np.ndarray, y: np.ndarray, angry: int, threshold: float, csv_path: Path, png_path: Path
) -> None:
    """Angry-vs-rest precision-recall curve on test, with the operating point marked."""
    precision, recall, thresholds = precision_recall_curve(y == angry, probs[:, angry])
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["recall", "precision", "threshold"])
        for r, p, t in zip(recall[:-1], precision[:-1], thresholds, strict=True):
            writer.writerow([f"{r:.5f}", f"{p:.5f}", f"{t:.5f}"])
    r_op, p_op = angry_scores(predict_with_threshold(probs, angry, threshold), y, angry)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(recall, precision, label="angry vs rest (test)")
    ax.scatter(
        [r_op], [p_op], color="red", zorder=3, label=f"threshold {threshold:.3f} (chosen on val)"
    )
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


def confusion_pair_png(
    y: np.ndarray,
    deployed_pred: np.ndarray,
    argmax_pred: np.ndarray,
    classes: list[str],
    path: Path,
    title: str,
) -> Path:
    """Row-normalised confusion matrices side by side: at the deployed threshold rule (what a
    camera does) and at argmax (the network alone), each labelled."""
    n = len(classes)
    fig, axes = plt.subplots(1, 2, figsize=(2.2 * n + 3, 1.0 * n + 1.8))
    panels = [(deployed_pred, "deployed: angry at threshold"), (argmax_pred, "argmax")]
    for ax, (pred, label) in zip(axes, panels, strict=True):
        ConfusionMatrixDisplay.from_predictions(
            y,
            pred,
            labels=list(range(n)),
            display_labels=classes,
            normalize="true",
            values_format=".2f",
            cmap="Blues",
            ax=ax,
            colorbar=False,
        )
        ax.set_title(f"{title} ({label})", fontsize=9)
        plt.setp(ax.get_xticklabels(), rotation=45, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def views(
    net, x_val: np.ndarray, y_val: np.ndarray, mean: float, std: float, ecfg
) -> tuple[dict, np.ndarray]:
    """The TTA decision: a fixed `evaluate.tta`, or `auto` (the rule on val over
    `tta_candidates`). Returns ({"chosen", "rule", "val_accuracy"}, the val probabilities of
    the chosen view, computed once)."""
    if ecfg.tta != "auto":
        decision = {"chosen": ecfg.tta, "rule": "fixed by evaluate.tta", "val_accuracy": {}}
        return decision, predict(net, x_val, mean, std, ecfg.tta)
    probs = {t: predict(net, x_val, mean, std, t) for t in ecfg.tta_candidates}
    chosen, acc = choose_tta(probs, y_val, ecfg.tta_margin)
    rule = f"a view other than none only when val accuracy rises by >= {ecfg.tta_margin}"
    return {"chosen": chosen, "rule": rule, "val_accuracy": acc}, probs[chosen]


def camera_path_metrics(
    cfg: DictConfig,
    net,
    info: dict,
    threshold: float,
    tta: str,
    dataset: str,
    out: Path,
    root: Path | None,
) -> dict:
    """The model as a camera runs it, on the full photos (see `evaluation.deployed`), with
    contrast equalisation (CLAHE) kept or dropped by the rule on the deciding people's photos,
    as they are and under `evaluate.clahe_conditions` (`choose_clahe`); the figures are those
    of the choice on the photos as they are, with the choice under "clahe"."""
    ecfg = cfg.evaluate
    reason = photos.no_photos(Layout(cfg, root).photo_splits)
    if reason:  # a site without photos: nothing to run the camera path on, or to decide CLAHE by
        deployed.write_records([], out / "deployed_predictions.csv")
        return {"skipped": reason, "clahe": {"chosen": False, "rule": "off: no photos to decide"}}
    decide = list(ecfg.deployed.decide_splits[dataset])
    options = {"fixed": [ecfg.clahe]} if ecfg.clahe != "auto" else {"auto": [False, True]}
    changed = deployed.clahe_conditions(ecfg)
    scored, mixed, samples = {}, {}, None
    for clahe in next(iter(options.values())):
        spec = spec_of(
            info,
            threshold,
            tta,
            cfg.deploy.crop_margin,
            cfg.detector,
            clahe,
            cfg.deploy.watch.detect,
            align_of(cfg.deploy.get("align")),
        )
        classifier = FaceClassifier(net, spec)
        scored[clahe] = deployed.score(cfg, classifier, decide, root)
        if samples is None:  # the deciding people's photos with their true faces, once
            parts = [r for r in scored[clahe][1] if r["part"] == deployed.DECIDE]
            items = [deployed.Photo(r["file"], r["label"], r["person"], r["part"]) for r in parts]
            samples = deployed.with_true_faces(Layout(cfg, root).photos_root, items)[0]
        plain = [r for r in scored[clahe][1] if r["part"] == deployed.DECIDE]
        under = [
            r
            for c in changed
            for r in deployed.under_condition(classifier, samples, c, int(cfg.seed))
        ]
        mixed[clahe] = deployed.figures(plain + under)
    if ecfg.clahe == "auto":
        chosen, rule = deployed.choose_clahe(mixed, ecfg.clahe_margin)
        rule += f" (photos {', '.join(['plain', *changed])})"
    else:
        chosen, rule = bool(ecfg.clahe), "fixed by evaluate.clahe"
    found, records = scored[chosen]
    deployed.write_records(records, out / "deployed_predictions.csv")
    decide_acc = {str(k).lower(): v[0][deployed.DECIDE]["accuracy"] for k, v in scored.items()}
    on = {str(k).lower(): decided(v) for k, v in mixed.items()}
    return found | {
        "clahe": {"chosen": chosen, "rule": rule, "decide_accuracy": decide_acc, "decided_on": on}
    }


def decided(f: dict) -> dict:
    """The figures a CLAHE option was judged by (`deployed.choose_clahe`)."""
    return {k: f[k] for k in ("n", "accuracy", "recall_angry", "precision_angry")}


def read_oof(cfg: DictConfig, model: str, root: Path | None) -> list[dict]:
    """The crossval stage's out-of-fold records of photos model `model`."""
    path = people_cv.reports_dir(cfg, model, root) / "oof.csv"
    if not path.is_file():
        raise DataError(f"{path} not found: run `dvc repro crossval@{model}` first")
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def people_evidence(
    cfg: DictConfig,
    net,
    info: dict,
    tta: str,
    model: str,
    out: Path,
    root: Path | None,
    val_threshold: float,
) -> tuple[float, dict]:
    """A photos model's camera path judged on every non-test person (`evaluation.people_cv`):
    for each CLAHE option, the threshold fitted on the out-of-fold scores and the photos decided
    cross-fitted; CLAHE by the rule on the same done on the photos as they are and under
    `evaluate.clahe_conditions` together; then this model, at the threshold, on the
    test people (reported). Returns (threshold, the `deployed` figures). With too few people to
    cross-validate, the val threshold and the val people's camera path, flagged `insufficient`
    (the gate then refuses the model)."""
    ecfg, classes = cfg.evaluate, list(info["classes"])

    def without_evidence(reason: str) -> tuple[float, dict]:
        print(f"warning: photos-{model}: no out-of-fold evidence ({reason})")
        found = camera_path_metrics(cfg, net, info, val_threshold, tta, "photos", out, root)
        return val_threshold, found | {"evidence": {"insufficient": reason}}

    every = read_oof(cfg, model, root)
    if not every:  # too few people to cross-validate (crossval said why): val people only
        folds = read_json(people_cv.reports_dir(cfg, model, root) / "folds.json") or {}
        return without_evidence(folds.get("insufficient", f"crossval@{model} scored no photo"))
    rows = [r for r in every if r["tta"] == tta]
    options = sorted({r["clahe"] == "True" for r in rows})
    of = {clahe: [r for r in rows if r["clahe"] == str(clahe)] for clahe in options}
    by_clahe = {  # the photos as they are: the threshold and the figures reported
        clahe: people_cv.evidence(
            [r for r in of[clahe] if r.get("condition", "plain") == "plain"],
            classes,
            ecfg.target_recall,
        )
        for clahe in options
    }
    if not by_clahe:
        raise DataError(f"crossval@{model} holds no records for TTA {tta!r}: re-run it")
    oof = {clahe: deployed.figures(recs) for clahe, (_, recs) in by_clahe.items()}
    # the choice: each option at its own threshold on the photos as they are and changed
    mixed = {
        clahe: deployed.figures(people_cv.evidence(of[clahe], classes, ecfg.target_recall)[1])
        for clahe in options
    }
    seen = sorted({r.get("condition", "plain") for r in rows})
    if len(oof) == 2:
        chosen, rule = deployed.choose_clahe(mixed, ecfg.clahe_margin)
        rule += f" (out of fold, every non-test person; photos {', '.join(seen)})"
    else:
        chosen, rule = next(iter(oof)), "fixed by evaluate.clahe"
    threshold, records = by_clahe[chosen]
    if not math.isfinite(threshold):
        return without_evidence(
            "no angry face of a non-test person was found on the camera path out of fold, so "
            "no threshold can be fitted: check the crop report's misses and add angry photos"
        )
    spec = spec_of(
        info, threshold, tta, cfg.deploy.crop_margin, cfg.detector, chosen, cfg.deploy.watch.detect,
        align_of(cfg.deploy.get("align")),
    )  # fmt: skip
    _, tested = deployed.score(cfg, FaceClassifier(net, spec), [], root, (deployed.REPORT,))
    deployed.write_records(
        records + [r | {"fold": None} for r in tested], out / "deployed_predictions.csv"
    )
    found = deployed.summary(records + tested)
    folds = sorted({r["fold"] for r in records})
    by = (read_json(people_cv.reports_dir(cfg, model, root) / "folds.json") or {}).get("by")
    caught, n_angry = found[deployed.DECIDE]["angry_caught"], found[deployed.DECIDE]["n_angry"]
    floor = cfg.registry.promotion.deployed_recall_floor.photos
    confidence = cfg.registry.promotion.confidence
    needed = (
        people_cv.angry_photos_needed(caught, n_angry, floor, confidence)
        if floor is not None
        else None
    )
    return threshold, found | {
        "evidence": {
            "kind": "out-of-fold",
            "folds": len(folds),
            "by": by,
            "people": len({r["person"] for r in records} - {"?"}),
            "photos": len(records),
            "threshold": "fitted on every out-of-fold camera-path score; figures cross-fitted",
            "floor": floor,
            "angry_photos_needed": needed,
        },
        "clahe": {
            "chosen": chosen,
            "rule": rule,
            "decide_accuracy": {str(k).lower(): v["accuracy"] for k, v in oof.items()},
            "decided_on": {str(k).lower(): decided(v) for k, v in mixed.items()},
        },
    }


def write_figures(
    cfg: DictConfig,
    net,
    arrays,
    probs: np.ndarray,
    threshold: float,
    norm: tuple,
    out: Path,
    title: str,
) -> list[Path]:
    """Test-split figures (reported, never read by a decision)."""
    classes, x, y = arrays.classes, arrays.x["test"], arrays.y["test"]
    angry, (mean, std) = classes.index("angry"), norm
    pred, argmax = predict_with_threshold(probs, angry, threshold), probs.argmax(axis=1)
    with (out / "predictions.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["actual", "predicted", "predicted_argmax"])
        writer.writerows(
            [classes[a], classes[p], classes[m]] for a, p, m in zip(y, pred, argmax, strict=True)
        )
    pr_curve(probs, y, angry, threshold, out / "pr_curve.csv", out / "pr_curve.png")
    labels = list(range(len(classes)))
    write_json(
        out / "confusion.json",
        {
            "classes": classes,
            "rows": "actual",
            "deployed": confusion_matrix(y, pred, labels=labels).tolist(),
            "argmax": confusion_matrix(y, argmax, labels=labels).tolist(),
        },
    )
    return [
        confusion_pair_png(y, pred, argmax, classes, out / "confusion.png", title),
        explain.faces_grid(x, y, pred, classes, out / "faces.png", seed=cfg.seed),
        explain.feature_maps(net, x[0], mean, std, out / "feature_maps.png"),
        explain.grad_cam_grid(net, x, y, argmax, angry, mean, std, out / "gradcam.png"),
        out / "pr_curve.png",
    ]


def flat_metrics(metrics: dict) -> dict[str, float]:
    """The metrics JSON as MLflow metric names: test/..., val/..., deployed/<part>/..."""
    flat = {f"test/{k}": v for k, v in metrics.items() if isinstance(v, float)}
    flat |= {f"val/{k}": v for k, v in metrics["val"].items() if isinstance(v, float)}
    flat |= {f"behaviour/{k}": v for k, v in metrics["behaviour"].items()}
    for part in (deployed.DECIDE, deployed.REPORT):
        found = metrics["deployed"].get(part, {})  # none at a site without photos
        flat |= {f"deployed/{part}/{k}": float(v) for k, v in found.items()}
    return flat


def main(cfg: DictConfig, dataset: str, model: str, root: Path | None = None) -> dict:
    """Evaluate a trained model; returns the metrics written to the stage's metrics JSON."""
    if (skipped := no_photos.skip(cfg, STAGE, dataset, model, root)) is not None:
        return skipped  # a site without photos: every output written, saying so
    ecfg = cfg.evaluate
    paths = Layout(cfg, root).model(dataset, model)
    net, info = load_trained(paths.model_dir)
    arrays = load_dataset(cfg, dataset, root)
    classes, norm = arrays.classes, (info["normalize"]["mean"], info["normalize"]["std"])
    if "angry" not in classes:
        raise ValueError(
            f"{dataset} has no angry class: nothing to evaluate the operating point on"
        )
    out = paths.evaluation
    out.mkdir(parents=True, exist_ok=True)
    tags = {
        "emowatch.dataset": dataset,
        "emowatch.model": model,
        "emowatch.train_run": info["mlflow_run_id"],
    }
    run_name = f"evaluate-{dataset}-{model}"
    params = flatten(ecfg, "evaluate")
    with stage_run(cfg, STAGE, run_name=run_name, params=params, root=root, tags=tags):
        (x_val, y_val), (x_test, y_test) = ((arrays.x[s], arrays.y[s]) for s in ("val", "test"))
        # Decisions: on val only.
        tta, val_probs = views(net, x_val, y_val, *norm, ecfg)
        groups = val_groups(cfg, dataset, root)
        val = operating_point(val_probs, y_val, classes, groups, ecfg, cfg.seed)
        if dataset == "photos":  # every non-test person, out of fold (stage crossval)
            threshold, found = people_evidence(
                cfg, net, info, tta["chosen"], model, out, root, val["threshold_angry"]
            )
        else:
            threshold = val["threshold_angry"]
            found = camera_path_metrics(
                cfg, net, info, threshold, tta["chosen"], dataset, out, root
            )
        # Report: test, scored once with what val decided.
        test_probs = predict(net, x_test, *norm, tta["chosen"])
        metrics = scores(test_probs, y_test, classes, threshold) | {
            "val": val,
            "tta": tta,
            "deployed": found,
            "behaviour": behaviour(net, x_test, *norm, ecfg.brightness_delta),
            "split_sizes": {s: len(arrays.y[s]) for s in ("train", "val", "test")},
            "val_data_hash": data_hash(x_val, y_val),
            "test_data_hash": data_hash(x_test, y_test),
            "target_recall": ecfg.target_recall,
        }
        write_json(paths.metrics, metrics)
        report = reports.report_dict(test_probs, y_test, classes)
        write_json(out / "classification_report.json", report)
        title = f"{dataset}-{model}: test"
        figures = write_figures(cfg, net, arrays, test_probs, threshold, norm, out, title)
        mlflow.log_metrics(flat_metrics(metrics))
        mlflow.log_param("evaluate.tta_chosen", tta["chosen"])
        mlflow.log_param("evaluate.clahe_chosen", found["clahe"]["chosen"])
        for path in [*figures, *(out / n for n in ARTIFACTS)]:
            mlflow.log_artifact(str(path))
        # The operating point travels with the model: tag the training run that logged it.
        MlflowClient().set_tag(
            info["mlflow_run_id"], "emowatch.threshold_angry", f"{threshold:.6f}"
        )
        print(summary_line(f"{dataset}-{model}", metrics))
    return metrics


ARTIFACTS = (
    "metrics.json",
    "classification_report.json",
    "confusion.json",
    "deployed_predictions.csv",
)


def summary_line(name: str, m: dict) -> str:
    v, d = m["val"], m["deployed"]
    line = (
        f"{name}: tta {m['tta']['chosen']} (val) | angry threshold {m['threshold_angry']:.3f} "
        f"(val; cross-fitted val recall {v['recall_angry_at_threshold']:.3f}, precision "
        f"{v['precision_angry_at_threshold']:.3f}) | test acc {m['accuracy']:.3f}, recall "
        f"{m['recall_angry_at_threshold']:.3f}, precision {m['precision_angry_at_threshold']:.3f}"
    )
    if "skipped" in d:
        return f"{line} | deployed on photos: none ({d['skipped']})"
    dd, dr = d["decide"], d["report"]
    return (
        f"{line} | deployed on photos: decide acc {dd['accuracy']:.3f} angry "
        f"{dd['angry_caught']}/{dd['n_angry']}, report acc {dr['accuracy']:.3f} angry "
        f"{dr['angry_caught']}/{dr['n_angry']}"
    )
