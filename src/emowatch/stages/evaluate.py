"""DVC stage `evaluate` (one per trained model): test metrics a reviewer can trust.

The angry operating point (a threshold on P(angry) reaching `evaluate.target_recall` with the
best precision) is chosen on the validation split only, then applied to test. The metrics JSON
holds, on test at the top level and on val under `val`: accuracy, macro_f1, recall_angry,
precision_angry (argmax), threshold_angry, recall_angry_at_threshold,
precision_angry_at_threshold. Also: classification report, confusion matrix (PNG + DVC plot
data), angry-vs-rest precision-recall curve, correct/wrong faces, first-layer feature maps,
Grad-CAM, and behavioural checks (predictions unchanged under a flip or a brightness change).
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import matplotlib.pyplot as plt
import mlflow
import numpy as np
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig
from sklearn.metrics import precision_recall_curve

from emowatch.config import flatten, resolve_path
from emowatch.data.datamodule import load_dataset
from emowatch.evaluation import explain
from emowatch.evaluation.loading import load_trained
from emowatch.evaluation.predict import predict
from emowatch.evaluation.threshold import angry_scores, choose_threshold, predict_with_threshold
from emowatch.files import write_json
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
    recall, precision = angry_scores(predict_with_threshold(probs, a, threshold), y, a)
    return out | {
        "threshold_angry": threshold,
        "recall_angry_at_threshold": recall,
        "precision_angry_at_threshold": precision,
    }


def behaviour(
    net, x: np.ndarray, pred: np.ndarray, mean: float, std: float, delta: float, tta: str
) -> dict:
    """Share of test predictions unchanged under a horizontal flip and a brightness change."""
    flipped = predict(net, np.ascontiguousarray(x[:, :, ::-1]), mean, std, tta).argmax(axis=1)
    brighter = np.clip(x.astype(np.float32) * (1 + delta), 0, 255).astype(np.uint8)
    bright = predict(net, brighter, mean, std, tta).argmax(axis=1)
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


def main(cfg: DictConfig, dataset: str, model: str, root: Path | None = None) -> dict:
    """Evaluate a trained model; returns the metrics written to the stage's metrics JSON."""
    ecfg = cfg.evaluate
    net, info = load_trained(resolve_path(cfg.train.models_dir, root) / dataset / model)
    arrays = load_dataset(cfg, dataset, root)
    classes, (mean, std) = arrays.classes, (info["normalize"]["mean"], info["normalize"]["std"])
    if "angry" not in classes:
        raise ValueError(
            f"{dataset} has no angry class: nothing to evaluate the operating point on"
        )
    angry = classes.index("angry")
    out = resolve_path(ecfg.dir, root) / dataset / model
    out.mkdir(parents=True, exist_ok=True)
    tags = {
        "emowatch.dataset": dataset,
        "emowatch.model": model,
        "emowatch.train_run": info["mlflow_run_id"],
    }
    with stage_run(
        cfg,
        STAGE,
        run_name=f"evaluate-{dataset}-{model}",
        params=flatten(ecfg, "evaluate"),
        root=root,
        tags=tags,
    ):
        probs = {s: predict(net, arrays.x[s], mean, std, ecfg.tta) for s in ("val", "test")}
        y_val, y_test = arrays.y["val"], arrays.y["test"]
        point = choose_threshold(probs["val"][:, angry], y_val == angry, ecfg.target_recall)
        metrics = scores(probs["test"], y_test, classes, point.threshold)
        metrics["val"] = scores(probs["val"], y_val, classes, point.threshold)
        pred = probs["test"].argmax(axis=1)
        metrics["behaviour"] = behaviour(
            net, arrays.x["test"], pred, mean, std, ecfg.brightness_delta, ecfg.tta
        )
        metrics["test_data_hash"] = data_hash(arrays.x["test"], y_test)
        metrics["target_recall"] = ecfg.target_recall

        write_json(out / "metrics.json", metrics)
        write_json(
            out / "classification_report.json", reports.report_dict(probs["test"], y_test, classes)
        )
        with (out / "predictions.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["actual", "predicted"])
            writer.writerows([classes[a], classes[p]] for a, p in zip(y_test, pred, strict=True))
        title = f"{dataset}-{model}: test"
        figures = [
            reports.confusion_png(probs["test"], y_test, classes, out / "confusion.png", title),
            explain.faces_grid(
                arrays.x["test"], y_test, pred, classes, out / "faces.png", seed=cfg.seed
            ),
            explain.feature_maps(net, arrays.x["test"][0], mean, std, out / "feature_maps.png"),
            explain.grad_cam_grid(
                net, arrays.x["test"], y_test, pred, angry, mean, std, out / "gradcam.png"
            ),
        ]
        pr_curve(
            probs["test"],
            y_test,
            angry,
            point.threshold,
            out / "pr_curve.csv",
            out / "pr_curve.png",
        )
        flat = {f"test/{k}": v for k, v in metrics.items() if isinstance(v, float)}
        flat |= {f"val/{k}": v for k, v in metrics["val"].items() if isinstance(v, float)}
        flat |= {f"behaviour/{k}": v for k, v in metrics["behaviour"].items()}
        mlflow.log_metrics(flat)
        for path in [
            *figures,
            out / "pr_curve.png",
            out / "metrics.json",
            out / "classification_report.json",
        ]:
            mlflow.log_artifact(str(path))
        # The operating point travels with the model: tag the training run that logged it.
        MlflowClient().set_tag(
            info["mlflow_run_id"], "emowatch.threshold_angry", f"{point.threshold:.6f}"
        )
        m = metrics
        print(
            f"{dataset}-{model}: test acc {m['accuracy']:.3f} macro-F1 {m['macro_f1']:.3f} | "
            f"angry threshold {point.threshold:.3f} (val) -> test recall "
            f"{m['recall_angry_at_threshold']:.3f}, precision "
            f"{m['precision_angry_at_threshold']:.3f}"
        )
    return metrics
