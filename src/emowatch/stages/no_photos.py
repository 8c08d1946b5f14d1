"""A site without photos runs `dvc repro` to the end: the photos stages (tune, train, evaluate,
register, promote of the `photos` dataset) each leave every output DVC expects of them, each
saying why it is empty, and train, score and register nothing. The site's model is then its
FER2013 champion (`deploy.site_model`).

The rule: a stage of the `photos` dataset is skipped exactly when `crop_faces` found no photo
file at all and said so in its split lists (`data.photos.no_photos`). A folder whose photos
give too few faces is not this case: `crop_faces` fails on it. `tests/test_dvc_yaml.py` holds
`outputs` to the outs, metrics and plots that dvc.yaml declares for each of these stages.
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from emowatch.data import photos
from emowatch.figures import note_png
from emowatch.files import write_json
from emowatch.layout import Layout

MARK = "skipped.json"  # what an output folder of a skipped stage holds


def outputs(layout: Layout, stage: str, model: str | None = None) -> list[Path]:
    """Every output (file or folder) that dvc.yaml declares for `stage` of the photos dataset."""
    if stage == "tune":
        tune, reports = layout.tune_dir("photos"), layout.tune_reports("photos")
        names = ("trials.csv", "optimization_history.png", "param_importances.png")
        return [tune / "best_params.yaml", tune / "study.db", *(reports / n for n in names)]
    if stage in ("train", "evaluate"):
        paths = layout.model("photos", str(model))
        if stage == "train":
            files = ("classification_report_val.json", "classification_report_val.txt")
            files += ("metrics.json", "curves.csv", "learning_curves.png", "confusion_val.png")
            return [paths.model_dir, paths.checkpoints, *(paths.train_reports / f for f in files)]
        files = ("classification_report.json", "pr_curve.csv", "deployed_predictions.csv")
        files += ("confusion.json", "metrics.json", "predictions.csv", "confusion.png")
        files += ("pr_curve.png", "faces.png", "feature_maps.png", "gradcam.png")
        return [paths.evaluation / f for f in files]
    if stage == "register":
        return [layout.register_report("photos")]
    if stage == "promote":
        return [layout.promotion_report("photos")]
    raise ValueError(f"no photos outputs known for stage {stage!r}")


def write(path: Path, reason: str) -> Path:
    """One output that says why it is empty, in its own format: a folder holds `MARK`."""
    record = {"skipped": reason}
    if path.suffix == ".json":
        return write_json(path, record)
    if path.suffix == ".png":
        return note_png(path, path.stem.replace("_", " "), reason)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".yaml":
        path.write_text(f"skipped: {json.dumps(reason)}\n")  # a JSON string is YAML
    elif path.suffix in (".csv", ".txt"):
        path.write_text(f"skipped\n{reason}\n")
    elif path.suffix == ".db":
        path.touch()  # an empty SQLite file: the study starts there once photos arrive
    else:
        path.mkdir(exist_ok=True)
        write_json(path / MARK, record)
    return path


def skip(
    cfg: DictConfig, stage: str, dataset: str, model: str | None = None, root: Path | None = None
) -> dict | None:
    """At a site without photos, a photos stage writes its outputs as skipped and returns the
    record it wrote ({"skipped": reason}); otherwise (photos, or FER2013) None."""
    layout = Layout(cfg, root)
    reason = photos.no_photos(layout.photo_splits) if dataset == "photos" else None
    if reason is None:
        return None
    for path in outputs(layout, stage, model):
        write(path, reason)
    name = f"{stage}@photos" + (f"-{model}" if model else "")
    print(f"{name}: skipped, {reason}")
    return {"skipped": reason}
