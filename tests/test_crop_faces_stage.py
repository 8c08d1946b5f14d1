"""The `crop_faces` stage on a tiny folder holding one file per status."""

from __future__ import annotations

import json
import shutil

import cv2
import pytest
from mlflow.tracking import MlflowClient

from emowatch.data import photos
from emowatch.data.images import load_gray
from emowatch.deploy import feedback
from emowatch.errors import DataError
from emowatch.inference import faces
from emowatch.layout import Layout
from emowatch.stages import crop_faces
from tests.conftest import PHOTO_FOLDER_PINS, make_photo_folder

EXPECTED = {
    "HH.loose.jpg": "not_in_class_folder",
    "angry/AA.AN1.jpg": "ok",
    "angry/BB.AN1.png": "no_face",
    "happy/CC.HA1.tiff": "ok",
    "happy/DD.HA1.jpg": "ok",
    "neutral/GG.NE1.png": "multiple_faces",
    "sad/EE.SA1.png": "unreadable",
    "sad/FF.SA1.jpg": "not_an_image",
}


@pytest.fixture
def photo_cfg(make_cfg, tmp_path):
    make_photo_folder(tmp_path / "data/photos")
    return make_cfg(PHOTO_FOLDER_PINS, "data.photos.min_face_rate=0.3")


def test_every_file_gets_a_status_and_faces_are_cropped(photo_cfg, tmp_path, capsys):
    report = crop_faces.main(photo_cfg)
    statuses = {e["file"]: e["status"] for e in report["files"]}
    assert statuses == EXPECTED
    assert report["summary"]["by_status"]["ok"] == 3 and report["summary"]["with_face"] == 4

    crops = Layout(photo_cfg).photo_crops
    for name in ("angry/AA.AN1.png", "happy/CC.HA1.png", "happy/DD.HA1.png", "neutral/GG.NE1.png"):
        img = cv2.imread(str(crops / name), cv2.IMREAD_GRAYSCALE)
        assert img.shape == (96, 96)
        # the crop contains the face: the detector finds one filling most of it
        (face,) = faces.HaarDetector(min_size=20)(img)
        assert face.box[2] > 40
    assert sorted(p.name for p in crops.rglob("*.png")) == sorted(
        ["AA.AN1.png", "CC.HA1.png", "DD.HA1.png", "GG.NE1.png"]
    )
    entry = next(e for e in report["files"] if e["file"] == "angry/AA.AN1.jpg")
    assert entry["score"] > 0 and len(entry["box"]) == 4 and entry["crop"] == "angry/AA.AN1.png"

    reports = tmp_path / "reports/crop_faces"
    saved = json.loads((reports / "report.json").read_text())
    assert len(saved["files"]) == 8
    assert saved["summary"]["by_class"]["sad"]["unreadable"] == 1
    assert (reports / "contact_sheet.png").stat().st_size > 0 and (reports / "misses.png").is_file()
    assert json.loads((reports / "metrics.json").read_text())["n_no_face"] == 1
    assert "faces found in 4/8 files" in capsys.readouterr().out

    client = MlflowClient(f"sqlite:///{photo_cfg.tracking.db}")
    (run,) = client.search_runs([client.get_experiment_by_name("emowatch").experiment_id])
    assert run.info.status == "FINISHED" and run.data.metrics["face_rate"] == 0.5
    logged = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.json", "contact_sheet.png", "misses.png", "splits.json"} <= logged


def test_splits_cover_kept_classes_only(photo_cfg, tmp_path):
    crop_faces.main(photo_cfg)
    splits = json.loads(Layout(photo_cfg).photo_splits.read_text())
    assert splits["by_subject"] and splits["classes"] == ["angry", "happy", "neutral", "sad"]
    listed = [it["crop"] for s in ("train", "val", "test") for it in splits[s]]
    assert sorted(listed) == sorted(
        ["angry/AA.AN1.png", "happy/CC.HA1.png", "happy/DD.HA1.png", "neutral/GG.NE1.png"]
    )


def test_too_few_faces_fails_loudly(make_cfg, tmp_path):
    make_photo_folder(tmp_path / "data/photos")
    cfg = make_cfg("data.photos.min_face_rate=0.9")
    with pytest.raises(DataError, match=r"faces found in only 4 of 8 photos"):
        crop_faces.main(cfg)
    report = json.loads((tmp_path / "reports/crop_faces/report.json").read_text())
    assert len(report["files"]) == 8  # the report is written before failing


def test_unmatched_subject_regex_fails(make_cfg, tmp_path):
    make_photo_folder(tmp_path / "data/photos")
    cfg = make_cfg(
        PHOTO_FOLDER_PINS, "data.photos.min_face_rate=0.3", "data.photos.subject_regex='^(\\d+)_'"
    )
    with pytest.raises(DataError, match=r"do not match data\.photos\.subject_regex"):
        crop_faces.main(cfg)


def test_subject_split_keeps_people_apart_and_stratified_split_without_regex():
    items = [{"label": i % 4, "subject": f"S{i % 7}"} for i in range(70)]
    pins = {"test": ["S3"], "val": ["S5"]}
    parts = photos.split(items, val=0.2, test=0.2, seed=1, by_subject=True, pinned=pins)
    subjects = {s: {it["subject"] for it in parts[s]} for s in parts}
    assert not subjects["train"] & subjects["val"] and not subjects["train"] & subjects["test"]
    assert not subjects["val"] & subjects["test"] and {"S3"} <= subjects["test"]
    assert "S5" in subjects["val"] and sum(len(p) for p in parts.values()) == 70
    strat = photos.split(items, val=0.2, test=0.2, seed=1, by_subject=False)
    assert [sum(it["label"] == c for it in strat["test"]) for c in range(4)] == [4, 4, 3, 3]
    assert photos.subject_of("KA.AN1.39.tiff", r"^([A-Za-z]+)\.") == "KA"
    assert photos.subject_of("0001.png", r"^([A-Za-z]+)\.") is None


def entries_of(people: list[str], classes=("angry", "happy", "neutral", "sad")) -> list[dict]:
    """Crop-report entries: one cropped photo per person and class."""
    return [
        {"file": f"{c}/{p}.{c[:2].upper()}1.{i}.png", "class": c, "crop": f"{c}/{p}.{i}.png"}
        for p in people
        for i, c in enumerate(classes)
    ]


def people_splits(lists: dict) -> dict[str, str]:
    return {it["subject"]: s for s in ("train", "val", "test") for it in lists[s]}


def test_adding_a_person_and_two_cameras_feedback_moves_nobody(make_cfg):
    """The shipped people (pinned as they were), then a new person and the feedback faces of two
    cameras: everyone already there keeps their split, each camera is one person."""
    cfg = make_cfg()
    shipped = ["KA", "KL", "KM", "KR", "MK", "NA", "NM", "TM", "UY", "YM"]
    before = people_splits(crop_faces.make_splits(entries_of(shipped), cfg.data.photos, 42))
    assert {p for p, s in before.items() if s == "test"} == {"NA", "NM"}
    cams = [feedback.subject_id("FB", c) for c in ("cam0", "cam1")]
    assert cams == ["FBcamA", "FBcamB"]  # one subject per camera, matching the subject regex
    grown = crop_faces.make_splits(entries_of([*shipped, "ZO", *cams]), cfg.data.photos, 42)
    after = people_splits(grown)
    assert {p: after[p] for p in before} == before
    assert set(after) == {*shipped, "ZO", *cams} and grown["subjects"]["test"][:2] == ["NA", "NM"]


def test_unpinned_people_never_move_as_the_site_grows():
    people = [f"P{i:03d}" for i in range(40)]
    first = photos.assign_subjects(people[:12], 0.2, 0.2, "shop")
    for n in (13, 20, 40):
        later = photos.assign_subjects(people[:n][::-1], 0.2, 0.2, "shop")  # any order
        assert {p: later[p] for p in first} == first
    counts = {s: list(later.values()).count(s) for s in ("train", "val", "test")}
    assert min(counts.values()) >= 4  # the hash spreads people over the three splits


def test_a_site_whose_people_miss_a_split_is_told_whom_to_pin():
    items = [{"label": 0, "subject": s} for s in ("AA", "CC", "DD", "GG")]  # all hash to train
    with pytest.raises(DataError, match=r"no person falls into val or test .* pin one, e\.g\. "):
        photos.split(items, 0.2, 0.2, 1, by_subject=True, salt="emowatch")
    with pytest.raises(DataError, match="pinned to both"):
        photos.assign_subjects(["AA"], 0.2, 0.2, "s", {"test": ["AA"], "val": ["AA"]})


def test_a_misnamed_class_folder_is_listed_with_a_warning(make_cfg, tmp_path, capsys):
    root = make_photo_folder(tmp_path / "data/photos")
    for folder in ("Angry", "frustrated"):
        (root / folder).mkdir()
        shutil.copy(root / "angry/AA.AN1.jpg", root / folder / "ZZ.AN1.jpg")
    report = crop_faces.main(make_cfg(PHOTO_FOLDER_PINS, "data.photos.min_face_rate=0.3"))
    statuses = {e["file"]: e["status"] for e in report["files"]}
    assert statuses["Angry/ZZ.AN1.jpg"] == statuses["frustrated/ZZ.AN1.jpg"] == "unknown_class"
    assert report["summary"]["unknown_classes"] == {"Angry": 1, "frustrated": 1}
    out = capsys.readouterr().out
    assert "warning: 2 photos in class folders emowatch does not know" in out
    assert "Angry/ (1), frustrated/ (1)" in out and "unknown" in out.splitlines()[1]
    crops = Layout(make_cfg()).photo_crops
    assert not (crops / "Angry").exists() and not (crops / "frustrated").exists()


def test_an_empty_photos_folder_is_a_site_on_fer2013_alone(make_cfg, tmp_path, capsys):
    """No photo at all: no failure; the split lists say so (`photos.no_photos`), the sheets
    say why they are empty, and one line tells what runs instead."""
    (tmp_path / "data/photos").mkdir(parents=True)
    cfg = make_cfg()
    report = crop_faces.main(cfg)
    assert report["summary"]["files"] == 0
    layout = Layout(cfg)
    reason = photos.no_photos(layout.photo_splits)
    assert reason.startswith("no photos under ") and "this site runs on FER2013 alone" in reason
    lists = json.loads(layout.photo_splits.read_text())
    assert lists["train"] == lists["val"] == lists["test"] == [] and lists["subjects"] == {}
    assert (tmp_path / "reports/crop_faces/contact_sheet.png").stat().st_size > 0
    assert reason in capsys.readouterr().out
    # a folder with files but too few faces is not that case: it still fails loudly
    (tmp_path / "data/photos/notes.txt").write_text("not a photo")
    with pytest.raises(DataError, match="faces found in only 0 of 1"):
        crop_faces.main(cfg)


def test_with_align_on_the_crops_are_cut_by_the_eyes_as_the_camera_path_cuts(make_cfg, tmp_path):
    """`detector=yunet` with `deploy.align.enabled`: each crop is the camera path's own cut
    (`faces.cut` with the framing), its eyes level where the framing puts them."""
    make_photo_folder(tmp_path / "data/photos")
    cfg = make_cfg(
        PHOTO_FOLDER_PINS,
        "data.photos.min_face_rate=0.3",
        "detector=yunet",
        "deploy.align.enabled=true",
    )
    report = crop_faces.main(cfg)
    framing = faces.framing_of(cfg.deploy.align)
    size = int(cfg.data.photos.crop.size)
    detector = faces.build_detector(cfg.detector)
    cut = [e for e in report["files"] if e["crop"]]
    assert cut and all(e.get("aligned") and e["crop_box"] is None for e in cut)
    for e in cut:
        gray = load_gray(tmp_path / "data/photos" / e["file"]).gray
        face = faces.largest(detector(gray))
        crop = cv2.imread(str(Layout(cfg).photo_crops / e["crop"]), cv2.IMREAD_GRAYSCALE)
        assert (crop == faces.cut(gray, face, cfg.data.photos.crop.margin, size, framing)).all()
        (lx, ly), (rx, ry) = faces.largest(detector(crop)).landmarks[:2]
        assert abs(ly - ry) < 0.04 * size  # level
        assert abs((lx + rx) / 2 - framing.eye_x * size) < 0.06 * size
        assert abs((ly + ry) / 2 - framing.eye_y * size) < 0.06 * size
