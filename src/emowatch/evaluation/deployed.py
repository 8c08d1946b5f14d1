"""Scored as deployed: a model on the path a camera runs, on full photos of people.

FER2013 faces come pre-cropped by another process; in deployment the face comes from the Haar
detector run as the camera's sweep runs it (the model spec's `finder`, `deploy.watch.detect`),
squared and grown by the crop margin, then classified and decided at the angry threshold
(`inference.face_classifier.FaceClassifier`: the registered pyfunc's and `watch`'s own code;
`tests/test_camera_parity.py` holds the three to the same decision per face).
This runs that path on the business's full photos (`data.photos.root`) and scores every photo:
a photo whose face is not found counts as wrong, and an angry one as missed. Figures are given
per part (people whose figures may steer choices, and the photos' test people, reported only)
and per person (where the photos carry person ids; without them, parts are by photo).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from emowatch.config import resolve_path
from emowatch.data import photos
from emowatch.data.images import load_gray
from emowatch.errors import DataError
from emowatch.evaluation.paired import wilson
from emowatch.inference import faces
from emowatch.inference.face_classifier import FaceClassifier

DECIDE, REPORT, UNASSIGNED = "decide", "report", "unassigned"


@dataclass(frozen=True)
class Photo:
    file: str  # relative to the photos root
    label: str  # the class folder
    person: str
    part: str  # DECIDE | REPORT | UNASSIGNED


def splits_of(cfg: DictConfig, root: Path | None = None) -> tuple[dict[str, str], bool]:
    """({person or photo: split}, by person), from the split lists `crop_faces` wrote: people
    where the photos carry person ids, else each photo (relative to the photos root)."""
    path = resolve_path(cfg.data.photos.splits, root)
    if not path.is_file():
        raise DataError(f"{path} not found: run `dvc repro crop_faces` first")
    lists = json.loads(path.read_text())
    if lists.get("by_subject"):
        return {p: split for split, people in lists["subjects"].items() for p in people}, True
    return {it["file"]: split for split in photos.SPLITS for it in lists[split]}, False


def photo_set(
    cfg: DictConfig, classes: list[str], decide_splits: list[str], root: Path | None = None
) -> list[Photo]:
    """The photos of the model's classes, each in the part its person (or, without person ids,
    the photo itself) belongs to. Without person ids a photo whose face `crop_faces` missed is
    in no split: unassigned, and counted as such."""
    where, by_person = splits_of(cfg, root)
    out = []
    for f in photos.list_photos(resolve_path(cfg.data.photos.root, root)):
        if f.cls not in classes:
            continue
        person = photos.subject_of(Path(f.rel).name, cfg.data.photos.subject_regex) or "?"
        split = where.get(person if by_person else f.rel)
        part = REPORT if split == "test" else DECIDE if split in decide_splits else UNASSIGNED
        out.append(Photo(f.rel, f.cls, person, part))
    return out


def face_in(classifier: FaceClassifier, gray: np.ndarray) -> tuple[np.ndarray, faces.Face | None]:
    """An image as the camera path sees it: (the prepared image, its largest face or None)."""
    prepared = classifier.prepare(gray)
    return prepared, faces.largest(classifier.detect(prepared))


def find_face(
    classifier: FaceClassifier, photo_root: Path, photo: Photo
) -> tuple[np.ndarray | None, faces.Face | None, str]:
    """A photo file as the camera path sees it: (the prepared grayscale image, its largest face,
    the photo's status: ok, no_face, or why it could not be read)."""
    loaded = load_gray(photo_root / photo.file)
    if loaded.gray is None:
        return None, None, loaded.status
    gray, face = face_in(classifier, loaded.gray)
    return gray, face, loaded.status or ("ok" if face else "no_face")


Sample = tuple[Photo, np.ndarray, faces.Box]  # a photo, its grayscale image, its true face


def with_true_faces(photo_root: Path, items: list[Photo]) -> tuple[list[Sample], int]:
    """The photos with their true face box (`conditions.reference_box` on the plain photo), and
    how many had none or could not be read (left out, and counted)."""
    from emowatch.evaluation import conditions  # albumentations: not on the serving side

    out: list[Sample] = []
    for p in items:
        gray = load_gray(photo_root / p.file).gray
        box = conditions.reference_box(gray) if gray is not None else None
        if box is not None:
            out.append((p, gray, box))
    return out, len(items) - len(out)


def under_condition(
    classifier: FaceClassifier, samples: list[Sample], condition: str, seed: int
) -> list[dict]:
    """One record per sample on the camera path with its photo changed by `condition`
    (`evaluation.conditions`, seeded per photo): the predicted class and every class's
    probability; a photo whose largest face is not on the true one (IoU < 0.3) counts as not
    found, wrong, and (if angry) missed."""
    from emowatch.evaluation import conditions  # albumentations: not on the serving side

    records = []
    for i, (p, gray, box) in enumerate(samples):
        image, true_box = conditions.apply(condition, gray, box, seed + i)
        image, face = face_in(classifier, image)
        hit = face is not None and faces.iou(face.box, true_box) >= 0.3
        pred = classifier.classify(image, [face])[0] if hit else None
        records.append(
            {
                "file": p.file,
                "person": p.person,
                "label": p.label,
                "condition": condition,
                "status": "ok" if hit else "no_face",
                "predicted": pred.emotion if pred else None,
                "probabilities": pred.probabilities if pred else {},
            }
        )
    return records


def classify(classifier: FaceClassifier, photo_root: Path, items: list[Photo]) -> list[dict]:
    """One record per photo: face found, predicted class (largest face), angry decision."""
    records = []
    for p in items:
        gray, face, status = find_face(classifier, photo_root, p)
        pred = classifier.classify(gray, [face])[0] if face is not None else None
        records.append(
            {
                "file": p.file,
                "person": p.person,
                "part": p.part,
                "label": p.label,
                "status": status,
                "predicted": pred.emotion if pred else None,
                "p_angry": round(pred.p_angry, 5) if pred else None,
            }
        )
    return records


def figures(records: list[dict], confidence: float = 0.95) -> dict:
    """Face-found rate, accuracy, and angry recall/precision at the deployed threshold, with
    Wilson intervals of the two (`confidence`)."""
    n = len(records)
    found = sum(r["predicted"] is not None for r in records)
    right = sum(r["predicted"] == r["label"] for r in records)
    angry = [r for r in records if r["label"] == "angry"]
    said = [r for r in records if r["predicted"] == "angry"]
    caught = sum(r["predicted"] == "angry" for r in angry)
    return {
        "n": n,
        "face_rate": found / n if n else 0.0,
        "accuracy": right / n if n else 0.0,
        "n_angry": len(angry),
        "angry_caught": caught,
        "recall_angry": caught / len(angry) if angry else 0.0,
        "said_angry": len(said),
        "precision_angry": caught / len(said) if said else 0.0,
    } | intervals(caught, len(angry), len(said), confidence)


def intervals(caught: int, n_angry: int, said: int, confidence: float) -> dict:
    """Wilson intervals of angry recall (caught of n_angry) and precision (caught of said)."""
    r_low, r_high = wilson(caught, n_angry, confidence)
    p_low, p_high = wilson(caught, said, confidence)
    return {
        "recall_angry_low": r_low,
        "recall_angry_high": r_high,
        "precision_angry_low": p_low,
        "precision_angry_high": p_high,
    }


def clahe_conditions(ecfg: DictConfig) -> list[str]:
    """The camera conditions the CLAHE choice is made under besides the photos as they are
    (`evaluate.clahe_conditions`; none when `evaluate.clahe` is fixed: nothing to decide)."""
    return [str(c) for c in ecfg.get("clahe_conditions") or []] if ecfg.clahe == "auto" else []


def choose_clahe(decide: dict[bool, dict], margin: float) -> tuple[bool, str]:
    """The rule for contrast equalisation, on the deciding people's photos only (as they are
    and changed by `clahe_conditions`, pooled): CLAHE is kept when it raises their camera-path
    accuracy by at least `margin` without lowering angry recall; otherwise the frame is used as
    it is."""
    off, on = decide[False], decide[True]
    keep = on["accuracy"] >= off["accuracy"] + margin and on["recall_angry"] >= off["recall_angry"]
    rule = (
        f"CLAHE only when the deciding people's camera-path accuracy rises by >= {margin} "
        "and their angry recall does not fall"
    )
    return keep, rule


def summary(records: list[dict]) -> dict:
    """Figures of the decide and report parts, the people in each, and per person."""
    people = sorted({r["person"] for r in records} - {"?"})  # "?": no person id
    return {
        DECIDE: figures([r for r in records if r["part"] == DECIDE]),
        REPORT: figures([r for r in records if r["part"] == REPORT]),
        "unassigned": sum(r["part"] == UNASSIGNED for r in records),
        "people": {
            part: sorted({r["person"] for r in records if r["part"] == part} - {"?"})
            for part in (DECIDE, REPORT)
        },
        "per_person": {
            p: figures([r for r in records if r["person"] == p])
            | {"part": next(r["part"] for r in records if r["person"] == p)}
            for p in people
        },
    }


def write_records(records: list[dict], path: Path) -> Path:
    """The per-photo records as CSV, for a person to look at."""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(records[0]) if records else ["file"])
        writer.writeheader()
        writer.writerows(records)
    return path


def score(
    cfg: DictConfig,
    classifier: FaceClassifier,
    decide_splits: list[str],
    root: Path | None = None,
    parts: tuple[str, ...] = (DECIDE, REPORT, UNASSIGNED),
) -> tuple[dict, list[dict]]:
    """Run the deployed path on the photos of `parts`; (summary, per-photo records)."""
    items = [p for p in photo_set(cfg, classifier.classes, decide_splits, root) if p.part in parts]
    if not items:
        raise DataError(
            f"no photos of the classes {classifier.classes} under {cfg.data.photos.root}: "
            "nothing to score the deployed path on"
        )
    records = classify(classifier, resolve_path(cfg.data.photos.root, root), items)
    return summary(records), records
