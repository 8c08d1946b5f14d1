"""DVC stage `crop_faces`: a business's photos -> grayscale face crops and split lists.

For every file under `data.photos.root` (`<class>/<file>`): read it upright (EXIF), detect faces,
take the largest and cut it as the camera path does (`faces.cut`: square, grow by a margin,
clamp, crop, resize; or, with `deploy.align` on and a detector with landmarks, eyes levelled and
framed as FER2013's), and write `<out_dir>/<class>/<stem>.png`. Every file gets a status in the
report: ok, multiple_faces (largest taken), no_face, unreadable, not_an_image,
not_in_class_folder, or unknown_class (a folder that names no emotion emowatch knows, e.g.
`Angry/` or `frustrated/`: listed with a warning, not cropped). Crops of the classes in
`data.photos.classes` are split into train/val/test, subject-independent when a subject regex
is set. A contact sheet and a sheet of the misses are written for a person to look at. A folder
with no photos at all is a site that runs on FER2013 alone (`no_photos`): its split lists say
so, and the photos stages leave empty outputs.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from pathlib import Path

import cv2
import mlflow
from omegaconf import DictConfig, OmegaConf

from emowatch.config import flatten, resolve_path
from emowatch.data import photos
from emowatch.data.images import load_gray
from emowatch.errors import DataError
from emowatch.figures import image_grid, note_png
from emowatch.files import write_json
from emowatch.inference import faces
from emowatch.tracking.runs import stage_run

STAGE = "crop_faces"
OK, MULTIPLE, NO_FACE = "ok", "multiple_faces", "no_face"
NO_CLASS, UNKNOWN_CLASS = "not_in_class_folder", "unknown_class"
STATUSES = (OK, MULTIPLE, NO_FACE, "unreadable", "not_an_image", NO_CLASS, UNKNOWN_CLASS)


def known_classes(cfg: DictConfig) -> list[str]:
    """The class folders emowatch reads: FER2013's emotions and the photos' own classes."""
    return list(dict.fromkeys([*cfg.data.fer2013.classes, *cfg.data.photos.classes]))


def crop_one(
    photo: photos.PhotoFile,
    detector: faces.Detector,
    pcfg: DictConfig,
    out_dir: Path,
    known: list[str],
    framing: faces.Framing | None = None,
) -> dict:
    """Detect, cut and save one photo; return its report entry."""
    entry: dict = {"file": photo.rel, "class": photo.cls, "status": None, "n_faces": 0}
    entry |= {"box": None, "crop_box": None, "score": None, "crop": None}
    if photo.cls is None:
        entry["status"] = NO_CLASS
        return entry
    if photo.cls not in known:
        entry["status"] = UNKNOWN_CLASS
        return entry
    loaded = load_gray(photo.path)
    if loaded.gray is None:
        entry |= {"status": loaded.status, "error": loaded.error}
        return entry
    found = detector(loaded.gray)
    entry["n_faces"] = len(found)
    face = faces.largest(found)
    if face is None:
        entry["status"] = NO_FACE
        return entry
    rel = f"{photo.cls}/{Path(photo.rel).stem}.png"
    target = out_dir / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(
        str(target), faces.cut(loaded.gray, face, pcfg.crop.margin, pcfg.crop.size, framing)
    )
    entry |= {"status": OK if len(found) == 1 else MULTIPLE, "box": list(face.box)}
    if faces.aligns(face, framing):  # cut by the eyes
        entry["aligned"] = True
    else:
        entry["crop_box"] = list(faces.expand_box(face.box, pcfg.crop.margin, loaded.gray.shape))
    entry |= {"score": face.score, "crop": rel}
    return entry


def make_splits(entries: list[dict], pcfg: DictConfig, seed: int) -> dict:
    """Split the crops of the kept classes; subject-independent when a regex is configured."""
    classes = list(pcfg.classes)
    items = []
    for e in entries:
        if e["crop"] and e["class"] in classes:
            subject = photos.subject_of(Path(e["file"]).name, pcfg.subject_regex)
            items.append(
                {
                    "crop": e["crop"],
                    "label": classes.index(e["class"]),
                    "subject": subject,
                    "file": e["file"],
                }
            )
    if not items:
        raise DataError(f"no face crops of the classes {classes}: nothing to train on")
    by_subject = bool(pcfg.subject_regex)
    if by_subject:
        unmatched = [it["file"] for it in items if it["subject"] is None]
        if unmatched:
            raise DataError(
                f"{len(unmatched)} file names do not match data.photos.subject_regex "
                f"{pcfg.subject_regex!r} (e.g. {unmatched[:3]}): fix the regex or set it to null "
                "for a stratified split"
            )
    scfg = pcfg.split
    pinned = OmegaConf.to_container(scfg.pinned, resolve=True) if scfg.get("pinned") else None
    parts = photos.split(
        items, scfg.val, scfg.test, seed, by_subject, str(scfg.get("salt", "emowatch")), pinned
    )
    out: dict = {"classes": classes, "by_subject": by_subject, **parts}
    out["subjects"] = (
        {s: sorted({it["subject"] for it in parts[s]}) for s in parts} if by_subject else {}
    )
    return out


def no_photos(cfg: DictConfig, photos_root: Path) -> dict:
    """The split lists of a site without photos: empty, and saying so (`photos.NO_PHOTOS`);
    one line tells what runs instead."""
    pcfg = cfg.data.photos
    reason = (
        f"no photos under {pcfg.root}: this site runs on FER2013 alone, its FER2013 champion is "
        "its model, and the photos stages leave empty outputs that say so"
    )
    print(f"{reason} (add photos as <class>/<person>.<anything>.jpg to train a site model)")
    lists: dict = {"classes": list(pcfg.classes), "by_subject": bool(pcfg.subject_regex)}
    return lists | {s: [] for s in photos.SPLITS} | {"subjects": {}, photos.NO_PHOTOS: reason}


def unknown_warning(unknown: dict[str, int], known: list[str], report: Path) -> str:
    """One line naming the folders emowatch does not know, their counts, and the fix."""
    folders = ", ".join(f"{c}/ ({n})" for c, n in unknown.items())
    return (
        f"warning: {sum(unknown.values())} photos in class folders emowatch does not know, "
        f"left out of training and scoring: {folders}. Rename each to one of {known} "
        f"(lower case); see {report}"
    )


def summarise(entries: list[dict]) -> dict:
    """Totals per class and status."""
    per_class: dict[str, Counter] = {}
    for e in entries:
        per_class.setdefault(e["class"] or "(none)", Counter())[e["status"]] += 1
    totals = Counter(e["status"] for e in entries)
    with_face = totals[OK] + totals[MULTIPLE]
    return {
        "files": len(entries),
        "with_face": with_face,
        "face_rate": with_face / max(len(entries), 1),
        "by_status": {s: totals[s] for s in STATUSES},
        "by_class": {c: {s: n[s] for s in STATUSES} for c, n in sorted(per_class.items())},
        "unknown_classes": {
            c: n[UNKNOWN_CLASS] for c, n in sorted(per_class.items()) if n[UNKNOWN_CLASS]
        },
    }


def format_table(summary: dict, split_lists: dict) -> str:
    """A short table: statuses per class, then split sizes."""
    short = {"multiple_faces": "multiple", "not_an_image": "not_image", NO_CLASS: "no_class"}
    short[UNKNOWN_CLASS] = "unknown"
    head = "".join(f"{short.get(s, s):>11}" for s in STATUSES)
    lines = [f"{'class':<10}{head}"]
    for cls, counts in summary["by_class"].items():
        lines.append(f"{cls:<10}" + "".join(f"{counts[s]:>11}" for s in STATUSES))
    lines.append(f"{'total':<10}" + "".join(f"{summary['by_status'][s]:>11}" for s in STATUSES))
    found, files, rate = summary["with_face"], summary["files"], summary["face_rate"]
    lines.append(f"faces found in {found}/{files} files ({rate:.1%})")
    sizes = ", ".join(f"{s} {len(split_lists[s])}" for s in ("train", "val", "test"))
    how = "subject-independent" if split_lists["by_subject"] else "stratified"
    lines.append(f"splits ({how}, classes {split_lists['classes']}): {sizes}")
    if split_lists["by_subject"]:
        lines.append(f"subjects: {split_lists['subjects']}")
    return "\n".join(lines)


def contact_sheet(entries: list[dict], out_dir: Path, per_class: int, path: Path) -> Path:
    """A few crops per class."""
    rows: dict[str, list] = {}
    for e in entries:
        if e["crop"] and len(rows.setdefault(e["class"], [])) < per_class:
            img = cv2.imread(str(out_dir / e["crop"]), cv2.IMREAD_GRAYSCALE)
            rows[e["class"]].append((img, Path(e["file"]).name))
    return image_grid(sorted(rows.items()), path, "crop_faces: crops per class")


def misses_sheet(entries: list[dict], root: Path, path: Path, limit: int = 24) -> Path:
    """The photos without a usable face (no face found), downscaled, with their status."""
    tiles = []
    for e in entries:
        if e["status"] == NO_FACE and len(tiles) < limit:
            gray = load_gray(root / e["file"]).gray
            scale = 160 / max(gray.shape)
            small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            tiles.append((small, e["file"]))
    others = [
        f"{e['file']}: {e['status']}" for e in entries if e["status"] not in (OK, MULTIPLE, NO_FACE)
    ]
    title = f"crop_faces: photos with no face ({sum(e['status'] == NO_FACE for e in entries)})"
    if others:
        title += f"; not read: {len(others)} (see report)"
    rows = [(f"no face ({len(tiles)} shown)", tiles[i : i + 8]) for i in range(0, len(tiles), 8)]
    return image_grid(rows, path, title)


def main(cfg: DictConfig, root: Path | None = None) -> dict:
    """Run the stage: returns the crop report (also written to `data.photos.report`)."""
    pcfg = cfg.data.photos
    photos_root = resolve_path(pcfg.root, root)
    out_dir = resolve_path(pcfg.out_dir, root)
    report_path = resolve_path(pcfg.report, root)
    params = flatten(pcfg, "data.photos") | flatten(cfg.detector, "detector") | {"seed": cfg.seed}
    params |= flatten(cfg.deploy.align, "deploy.align")
    with stage_run(cfg, STAGE, params=params, root=root):
        files = photos.list_photos(photos_root)
        detector = faces.build_detector(cfg.detector)
        if out_dir.exists():
            shutil.rmtree(out_dir)  # stale crops of removed photos must not survive
        out_dir.mkdir(parents=True)
        t0 = time.perf_counter()
        known = known_classes(cfg)
        framing = faces.framing_of(cfg.deploy.align)  # the camera path's own cut
        entries = [crop_one(p, detector, pcfg, out_dir, known, framing) for p in files]
        seconds = time.perf_counter() - t0
        summary = summarise(entries)
        report = {"root": str(pcfg.root), "summary": summary, "seconds": seconds, "files": entries}
        write_json(report_path, report)
        mlflow.log_artifact(str(report_path))
        if summary["unknown_classes"]:
            print(unknown_warning(summary["unknown_classes"], known, report_path))
        if not files:
            split_lists = no_photos(cfg, photos_root)
        elif summary["face_rate"] < pcfg.min_face_rate:
            raise DataError(
                f"faces found in only {summary['with_face']} of {summary['files']} photos "
                f"({summary['face_rate']:.1%} < data.photos.min_face_rate "
                f"{pcfg.min_face_rate:.0%}); see {report_path}"
            )
        else:
            split_lists = make_splits(entries, pcfg, cfg.seed)
        write_json(resolve_path(pcfg.splits, root), split_lists)
        if files:
            sheet = contact_sheet(
                entries, out_dir, pcfg.contact_per_class, resolve_path(pcfg.contact_sheet, root)
            )
            misses = misses_sheet(entries, photos_root, resolve_path(pcfg.misses, root))
        else:
            reason = split_lists[photos.NO_PHOTOS]
            sheet, misses = (
                note_png(resolve_path(pcfg[k], root), f"crop_faces: {k}", reason)
                for k in ("contact_sheet", "misses")
            )
        metrics = {
            "files": summary["files"],
            "face_rate": summary["face_rate"],
            **{f"n_{s}": n for s, n in summary["by_status"].items()},
            **{f"split_{s}": len(split_lists[s]) for s in ("train", "val", "test")},
            "images_per_second": summary["files"] / max(seconds, 1e-9),
        }
        write_json(resolve_path(pcfg.metrics, root), metrics)
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        for path in (sheet, misses, resolve_path(pcfg.splits, root)):
            mlflow.log_artifact(str(path))
        print(format_table(summary, split_lists))
        print(f"report: {report_path}")
    return report
