"""The camera runs the evaluated path, and so does the served model (issue 26, item 4): the
deciding people's photos, played through `watch` as a video of image frames, get per face the
same emotion and angry decision as the evaluate stage's deployed scoring and as the served
pyfunc, and all three find the small faces the camera finds (a face of about 50 px in a
640×480 frame, of about 90 px in a 1920×1080 one), because the finder's settings travel in the
model's spec."""

from __future__ import annotations

import base64
import shutil

import cv2
import mlflow
import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from emowatch.deploy import alerts, pyfunc, sources
from emowatch.deploy.watcher import Watcher
from emowatch.evaluation import deployed
from emowatch.inference import faces
from emowatch.inference.face_classifier import FaceClassifier, check_spec
from emowatch.layout import Layout
from tests.conftest import ASTRONAUT_FACE, astronaut_rgb
from tests.test_watch import trained  # noqa: F401  (the fixture: a tiny trained model)

# (frame size, the head's side in px, where): the head is about 1.8 times the face's side
SCENES = {
    "small640": ((640, 480), 90, (300, 200)),  # a face of about 50 px at 640×480
    "small1080": ((1920, 1080), 160, (900, 500)),  # about 90 px at 1920×1080
    "near": ((640, 480), 260, (180, 100)),
    "photo": ((256, 256), 200, (28, 28)),
}
PEOPLE = {"PV": "val", "PW": "val", "PT": "test", "PA": "train"}


def head(side: int, brighter: int) -> np.ndarray:
    x, y, w, h = ASTRONAUT_FACE
    gray = cv2.cvtColor(
        astronaut_rgb()[y - 40 : y + h + 40, x - 40 : x + w + 40], cv2.COLOR_RGB2GRAY
    )
    gray = np.clip(gray.astype(np.int16) + brighter, 0, 255).astype(np.uint8)
    return cv2.resize(gray, (side, side), interpolation=cv2.INTER_AREA)


def people_photos(root, splits) -> list[str]:
    """Grayscale photos of four people (one scene each) under <root>/<class>/, and the split
    lists crop_faces would write for them; returns the files relative to root."""
    import json

    files = []
    for c, cls in enumerate(("angry", "happy", "sad", "neutral")):
        for (person, _), (scene, (size, side, (left, top))) in zip(
            PEOPLE.items(), SCENES.items(), strict=True
        ):
            frame = np.full((size[1], size[0]), 90, np.uint8)
            frame[top : top + side, left : left + side] = head(side, 6 * c)
            rel = f"{cls}/{person}.{scene}.png"
            (root / cls).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / rel), frame)
            files.append(rel)
    subjects = {s: sorted(p for p, w in PEOPLE.items() if w == s) for s in ("train", "val", "test")}
    lists = {"classes": ["angry", "happy", "sad", "neutral"], "by_subject": True}
    splits.parent.mkdir(parents=True, exist_ok=True)
    splits.write_text(
        json.dumps(lists | {"subjects": subjects, "train": [], "val": [], "test": []})
    )
    return files


def largest(preds):
    return max(preds, key=lambda p: p.box[2] * p.box[3]) if preds else None


def watched(classifier: FaceClassifier, cfg, root, files: list[str], tmp_path) -> dict:
    """Each photo as `full_every` frames of one image-folder source through the watcher (so
    its first frame is a sweep, as a new face's first frame is): file -> the largest face's
    (emotion, angry) on that first frame."""
    video = tmp_path / "video"
    video.mkdir()
    every = int(classifier.finder.settings.full_every)
    for i, rel in enumerate(files):
        for k in range(every):
            shutil.copy(root / rel, video / f"{i:04d}-{k}.png")
    frames: list = []
    watcher = Watcher(
        classifier,
        cfg.deploy.watch,
        alerts.StreamSink(open("/dev/null", "w")),  # noqa: SIM115
        on_frame=lambda image, tracks, preds: frames.append(preds),
    )
    for frame in sources.read_images(str(video)):
        watcher.step(frame)
    out = {}
    for i, rel in enumerate(files):
        face = largest(frames[i * every])
        out[rel] = (face.emotion, face.angry) if face else (None, False)
    return out


def served(spec: dict, model_dir, root, files: list[str], tracking_uri) -> dict:
    """The registered pyfunc (what `make serve` runs) on each photo's PNG bytes."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("parity")
    with mlflow.start_run():
        uri = pyfunc.log_model(model_dir, spec, "face-model", {"model": "cnn1"})
    model = mlflow.pyfunc.load_model(uri)
    images = [base64.b64encode((root / rel).read_bytes()).decode() for rel in files]
    rows = model.predict(pd.DataFrame({"image": images}))
    out = {}
    for i, rel in enumerate(files):
        faces_i = rows[(rows["image"] == i) & (rows["status"] == "ok")]
        if faces_i.empty:
            out[rel] = (None, False)
            continue
        face = faces_i.loc[faces_i["box"].map(lambda b: b[2] * b[3]).idxmax()]
        out[rel] = (face["emotion"], bool(face["angry"]))
    return out


def test_watch_evaluate_and_the_served_model_decide_each_face_alike(
    trained,  # noqa: F811
    tmp_path,
    tracking_uri,
):
    cfg, model_dir = trained
    root = tmp_path / "data" / "photos"
    shutil.rmtree(root, ignore_errors=True)  # this test's people only
    files = people_photos(root, Layout(cfg).photo_splits)
    # a threshold inside the tiny model's P(angry) range, so both decisions occur
    probe = FaceClassifier.from_model_dir(
        model_dir, threshold=0.5, tta="none", margin=cfg.deploy.crop_margin,
        detector=cfg.detector, finder=cfg.deploy.watch.detect,
    )  # fmt: skip
    p_angry = sorted(
        p.p_angry for rel in files if (p := largest(probe(cv2.imread(str(root / rel), 0))))
    )
    threshold = float(np.median(p_angry))
    classifier = FaceClassifier(probe.net, probe.spec | {"threshold_angry": threshold})
    check_spec(classifier.spec, "test")  # the spec as registered, finder included

    # The evaluate stage's deployed scoring, on every part (deciding and reported people).
    summary, records = deployed.score(cfg, classifier, ["train", "val"])
    evaluated = {r["file"]: (r["predicted"], r["predicted"] == "angry") for r in records}
    assert summary["decide"]["face_rate"] == 1.0 and summary["report"]["face_rate"] == 1.0
    assert {a for _, a in evaluated.values()} == {True, False}  # both decisions happen

    assert watched(classifier, cfg, root, files, tmp_path) == evaluated
    assert served(classifier.spec, model_dir, root, files, tracking_uri) == evaluated


def test_a_model_without_the_finder_misses_the_small_faces_the_camera_finds(trained):  # noqa: F811
    """The check above can fail: the detector alone (the spec of a model registered without
    the finder: a copy scaled to 320 px) misses the small faces that the camera's sweep finds."""
    cfg, model_dir = trained
    detector = faces.build_detector(cfg.detector)
    with_finder = FaceClassifier.from_model_dir(
        model_dir, threshold=0.5, tta="none", margin=0.2, detector=cfg.detector,
        finder=OmegaConf.to_container(cfg.deploy.watch.detect),
    )  # fmt: skip
    for scene in ("small640", "small1080"):
        size, side, (left, top) = SCENES[scene]
        frame = np.full((size[1], size[0]), 90, np.uint8)
        frame[top : top + side, left : left + side] = head(side, 0)
        assert detector(frame) == [], scene
        assert len(with_finder.detect(frame)) == 1, scene
