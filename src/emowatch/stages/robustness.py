"""DVC stage `robustness` and `emowatch robustness`: each champion under a camera's conditions.

The camera path of every registered champion (its own threshold, TTA, CLAHE and finder, as
served) on the deciding people's photos, changed by each condition of
`evaluation.conditions` (light, blur, noise, JPEG, tilt, a covered face, a small face in a
whole frame), with each face detector of `robustness.detectors` (and, for one that finds
landmarks, with eye-aligned crops framed as `deploy.align` says): faces found (the largest face
on the true one, IoU ≥ 0.3), 7-class accuracy, angry recall and precision, and whether angry
recall stays within `robustness.recall_tolerance` of the plain photos. The deciding people are
`evaluate.deployed.decide_splits` of the champion's dataset (FER2013: every non-test person,
none of whom it trained on; photos: the val people, who stopped its training but were never
trained on); the test people decide nothing and are not scored here. On the results page.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
from omegaconf import DictConfig, OmegaConf

from emowatch.config import resolve_path
from emowatch.data import photos
from emowatch.evaluation import conditions, deployed
from emowatch.files import read_json, write_json
from emowatch.inference import faces
from emowatch.inference.face_classifier import FaceClassifier, align_of
from emowatch.layout import Layout
from emowatch.tracking.runs import stage_run, tracking_uri

STAGE = "robustness"
DATASETS = ("fer2013", "photos")
Sample = deployed.Sample
with_true_faces = deployed.with_true_faces  # the bench and the stage find true faces alike


def thinned(samples: list[Sample], most: int | None) -> list[Sample]:
    """At most `most` of the samples, evenly spaced in their order (classes, then people), so
    every class keeps its share; all of them when `most` is None."""
    if not most or len(samples) <= most:
        return samples
    return samples[:: -(-len(samples) // int(most))]


def under(classifier: FaceClassifier, samples: list[Sample], condition: str, seed: int) -> dict:
    """The camera path's figures on the samples under `condition` (`deployed.under_condition`:
    a largest face not on the true one is not found, wrong, and if angry missed)."""
    return deployed.figures(deployed.under_condition(classifier, samples, condition, seed))


def ways(
    classifier: FaceClassifier, detectors: dict[str, DictConfig], framing: dict | None
) -> dict[str, FaceClassifier]:
    """The model with each of `detectors` ({name: its settings}; crops by the grown box), and,
    with a detector that finds landmarks, with eye-aligned crops at `framing` (`align_of`'s
    dict) too."""
    out = {}
    for name, detector in detectors.items():
        out[name] = classifier.with_spec(detector=detector, align=None)
        if faces.cuts_by_eyes(str(detector.name), framing):
            out[faces.setting_name(name, True)] = classifier.with_spec(
                detector=detector, align=framing
            )
    return out


def scored(cfg: DictConfig) -> tuple[dict[str, DictConfig], dict | None]:
    """The detectors `robustness.detectors` names, with their settings from
    `robustness.settings`, and `deploy.align`'s framing when `robustness.aligned` (else None)."""
    rcfg = cfg.robustness
    unknown = sorted(set(rcfg.detectors) - set(rcfg.settings))
    if unknown:
        raise ValueError(
            f"robustness.detectors names {unknown}, which robustness.settings does not have "
            f"(it has: {', '.join(rcfg.settings)})"
        )
    framing = align_of(OmegaConf.merge(cfg.deploy.align, {"enabled": True}))
    return {n: rcfg.settings[n] for n in rcfg.detectors}, framing if rcfg.aligned else None


def suite(
    classifier: FaceClassifier, samples: list[Sample], cfg: DictConfig
) -> dict[str, dict[str, dict]]:
    """{way of finding and cutting faces: {condition: figures}}, each condition's `holds`:
    angry recall within the tolerance of the same way's plain photos."""
    rcfg, seed = cfg.robustness, int(cfg.seed)
    table: dict[str, dict[str, dict]] = {}
    for name, model in ways(classifier, *scored(cfg)).items():
        rows = {c: under(model, samples, c, seed) for c in ["plain", *rcfg.conditions]}
        plain = rows["plain"]["recall_angry"]
        for row in rows.values():
            row["holds"] = row["recall_angry"] >= plain - float(rcfg.recall_tolerance)
        table[name] = rows
    return table


def champion(cfg: DictConfig, dataset: str, root: Path | None) -> str | None:
    """The champion's version after this run's promotion (None: no champion, or skipped)."""
    report = read_json(Layout(cfg, root).promotion_report(dataset))
    after = report.get("champion_after")
    return None if report.get("skipped") or after is None else str(after)


def main(cfg: DictConfig, root: Path | None = None) -> dict:
    """Score each champion under every condition with every detector; write the report."""
    from emowatch.deploy import pyfunc

    rcfg = cfg.robustness
    mlflow.set_tracking_uri(tracking_uri(cfg, root))
    photo_root = resolve_path(cfg.data.photos.root, root)
    no_photos = photos.no_photos(Layout(cfg, root).photo_splits)
    out: dict[str, dict] = {"conditions": {c: conditions.describe(c) for c in rcfg.conditions}}
    with stage_run(cfg, STAGE, root=root):
        for dataset in DATASETS:
            version = champion(cfg, dataset, root)
            if no_photos or version is None:
                out[dataset] = {"skipped": no_photos or "no champion"}
                continue
            uri = f"models:/{cfg.registry.names[dataset]}/{version}"
            classifier = pyfunc.load_classifier(uri)
            splits = list(cfg.evaluate.deployed.decide_splits[dataset])
            items = deployed.photo_set(cfg, classifier.classes, splits, root)
            samples, no_face = with_true_faces(
                photo_root, [p for p in items if p.part == deployed.DECIDE]
            )
            samples = thinned(samples, rcfg.get("max_photos"))
            out[dataset] = {
                "model": uri,
                "people": sorted({p.person for p, _, _ in samples}),
                "photos": len(samples),
                "no_true_face": no_face,
                "splits": splits,
                "table": suite(classifier, samples, cfg),
            }
            for det, rows in out[dataset]["table"].items():
                mlflow.log_metrics(
                    {
                        f"{dataset}/{det}/{c}/recall_angry": r["recall_angry"]
                        for c, r in rows.items()
                    }
                )
        path = write_json(resolve_path(rcfg.path, root), out)
        mlflow.log_artifact(str(path))
    for dataset in DATASETS:
        d = out[dataset]
        said = d.get("skipped") or f"{d['photos']} photos of {len(d['people'])} people"
        print(f"robustness {dataset}: {said}")
    return out
