"""Stages on the real data behind data.dvc (marked `data`; skips where it is not pulled)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from emowatch import config
from emowatch.stages import crop_faces, prepare
from tests.conftest import DATA, REPO, isolated

pytestmark = pytest.mark.data
needs_fer = pytest.mark.skipif(
    not (DATA / "fer2013/fer2013.csv.gz").is_file(),
    reason="FER2013 is not pulled: run `dvc pull data.dvc` (needs ../shared/dvc-store)",
)
needs_photos = pytest.mark.skipif(
    not (DATA / "photos").is_dir(),
    reason="the photos are not pulled: run `dvc pull data.dvc` (needs ../shared/dvc-store)",
)

# ../shared/README.md: per-class counts (Training / PublicTest / PrivateTest)
EXPECTED = {
    "angry": (3995, 467, 491),
    "disgust": (436, 56, 55),
    "fear": (4097, 496, 528),
    "happy": (7215, 895, 879),
    "sad": (4830, 653, 594),
    "surprise": (3171, 415, 416),
    "neutral": (4965, 607, 626),
}


def real_cfg(tmp: Path, template: Path):
    """The real conf/ reading the pulled data, writing everything under tmp."""
    shutil.copy(template, tmp / "mlflow.db")
    return config.compose(isolated(tmp, DATA), root=REPO)


@pytest.fixture(scope="module")
def real_report(tmp_path_factory, mlflow_template):
    return prepare.main(real_cfg(tmp_path_factory.mktemp("real"), mlflow_template))


@needs_fer
def test_split_sizes_and_class_counts(real_report):
    counts = real_report["counts_read"]
    assert [sum(counts[s].values()) for s in ("train", "val", "test")] == [28709, 3589, 3589]
    for cls, (train, val, test) in EXPECTED.items():
        assert (counts["train"][cls], counts["val"][cls], counts["test"][cls]) == (train, val, test)
    assert real_report["rejected"]["count"] == 0


@needs_fer
def test_quality_findings_match_the_known_facts(real_report):
    q = real_report["quality"]
    # ../shared/README.md: ~1,500 groups (~3,400 rows), a few hundred cross-split, a handful blank
    assert 1400 <= q["duplicate_groups"] <= 1600 and 3200 <= q["duplicate_images"] <= 3600
    assert 100 <= q["cross_split_images_in_train"] <= 1000
    assert q["conflicting_groups"] > 0 and 5 <= q["blank_images"] <= 30
    # test stays as published; val loses exactly its copies of test images
    assert real_report["counts"]["test"] == real_report["counts_read"]["test"]
    val_lost = sum(real_report["counts_read"]["val"].values()) - sum(
        real_report["counts"]["val"].values()
    )
    pairs = q["split_pairs"]
    assert (
        val_lost == real_report["dropped_from_val"]["val_copy_of_test"] == pairs["val-test"]["near"]
    )
    # near copies (perceptual hash) include the byte copies and find more of them
    for pair in ("train-val", "train-test", "val-test"):
        assert 0 < pairs[pair]["exact"] <= pairs[pair]["near"] <= 2 * pairs[pair]["exact"] + 400


@needs_photos
def test_faces_found_in_at_least_95_percent_of_the_photos(tmp_path, mlflow_template):
    report = crop_faces.main(real_cfg(tmp_path, mlflow_template))
    assert report["summary"]["files"] == 213
    assert report["summary"]["with_face"] / 213 >= 0.95
    splits = json.loads((tmp_path / "artifacts/photos/splits.json").read_text())
    people = [{it["subject"] for it in splits[s]} for s in ("train", "val", "test")]
    assert not (people[0] & people[1] or people[0] & people[2] or people[1] & people[2])
