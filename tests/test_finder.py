"""The watcher's face finder: whole-frame sweeps on a schedule, regions around tracked faces in
between; small faces (48 px) found at 640x480 and 1920x1080."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from emowatch.deploy.tracker import Tracker
from emowatch.evaluation import scenes
from emowatch.inference.faces import Face, HaarDetector, iou
from emowatch.inference.finder import FaceFinder, FinderSettings, merge
from tests.conftest import DATA, astronaut_rgb


def found_share(finder: FaceFinder, people, side: int, size: tuple[int, int], n: int = 30):
    """The share of true faces found per frame, tracking as the watcher does."""
    tracker, hits, total = Tracker(0.3, 15, 5), 0, 0
    for i, (frame, truth) in enumerate(scenes.frames(people, side, size, n)):
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        found = finder.find(gray, i, [t.box for t in tracker.tracks.values()])
        tracker.update([f.box for f in found], i)
        hits += sum(any(iou(b, f.box) >= 0.3 for f in found) for b in truth)
        total += len(truth)
    return hits / total


def astronaut() -> scenes.Portrait:
    return scenes.portrait(cv2.cvtColor(astronaut_rgb(), cv2.COLOR_RGB2GRAY))


def test_sweeps_on_schedule_and_regions_in_between():
    finder = FaceFinder(HaarDetector(), FinderSettings(min_face=48, full_every=5))
    share = found_share(finder, [astronaut()], 60, (640, 480), n=20)
    assert share == 1.0
    assert finder.sweeps == 4  # frames 0, 5, 10, 15: regions around the track in between
    old = HaarDetector(max_side=320)  # the whole frame at 320 px finds no 48 px face
    frame, _ = next(scenes.frames([astronaut()], 48, (640, 480), 1))
    assert old(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)) == []


def test_merge_keeps_the_surer_of_overlapping_finds():
    a, b, c = Face((0, 0, 50, 50), 3.0), Face((5, 5, 50, 50), 9.0), Face((200, 0, 50, 50), 1.0)
    assert merge([a, b, c]) == [b, c]


def test_scenes_place_the_face_at_the_asked_size():
    frame, (box,) = next(scenes.frames([astronaut()], 48, (1920, 1080), 1))
    assert frame.shape == (1080, 1920, 3) and box[2] == 48
    x, y, w, h = box
    assert np.std(frame[y : y + h, x : x + w]) > 10  # a face there, not the plain background


@pytest.mark.data
@pytest.mark.skipif(
    not (DATA / "photos").is_dir(),
    reason="the photos are not pulled: run `dvc pull data.dvc` (needs ../shared/dvc-store)",
)
@pytest.mark.parametrize("size", [(640, 480), (1920, 1080)])
def test_real_faces_of_48_px_are_found(size):
    people = []
    for cls in ("angry", "happy"):
        photo = sorted((DATA / "photos" / cls).glob("*"))[0]
        people.append(scenes.portrait(cv2.imread(str(photo), cv2.IMREAD_GRAYSCALE)))
    finder = FaceFinder(HaarDetector(), FinderSettings(min_face=48, full_every=5))
    assert found_share(finder, people, 48, size) >= 0.95


def test_clahe_rule_reads_the_deciding_people_and_the_classifier_applies_it():
    from emowatch.evaluation.deployed import choose_clahe

    off = {"accuracy": 0.60, "recall_angry": 0.5}
    assert choose_clahe({False: off, True: {"accuracy": 0.65, "recall_angry": 0.5}}, 0.02)[0]
    assert not choose_clahe({False: off, True: {"accuracy": 0.61, "recall_angry": 0.5}}, 0.02)[0]
    assert not choose_clahe({False: off, True: {"accuracy": 0.70, "recall_angry": 0.4}}, 0.02)[0]


def test_a_clahe_spec_equalises_the_frame_before_detection():
    import torch

    from emowatch.inference.face_classifier import FaceClassifier, spec_of

    info = {"classes": ["angry", "happy"], "input_shape": [1, 48, 48]}
    info |= {"normalize": {"mean": 0.5, "std": 0.25}}
    detector = {"name": "haar", "max_side": 320}
    dim = (np.arange(64 * 64).reshape(64, 64) % 40 + 20).astype(np.uint8)  # low contrast
    plain = FaceClassifier(torch.nn.Identity(), spec_of(info, 0.5, "none", 0.2, detector))
    equalised = FaceClassifier(torch.nn.Identity(), spec_of(info, 0.5, "none", 0.2, detector, True))
    assert plain.prepare(dim) is dim
    assert np.ptp(equalised.prepare(dim)) > np.ptp(dim)  # the contrast is stretched


@pytest.mark.parametrize("size", [(640, 480), (1920, 1080)])
def test_the_finder_steers_yunet_too(size):
    from emowatch.inference.faces import YuNetDetector

    finder = FaceFinder(YuNetDetector(), FinderSettings(min_face=48, full_every=5))
    assert found_share(finder, [astronaut()], 56, size, n=10) == 1.0
    assert finder.sweeps == 2 and finder.detector.max_side != YuNetDetector().max_side
