"""Any site runs `dvc repro` to the end (issue 26, item 1): a real reproduction of the whole
pipeline on the tiny profile for a site without photos (FER2013 alone: the FER2013 champion is
its model, and every photos stage leaves outputs that say why they are empty) and for a site
whose photo names carry no person id (a stratified split, scored per photo)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.test_retrain import BIN, emowatch, git, tiny_project


def repro(project) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", EMOWATCH_ROOT=str(project))
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("EMOWATCH_PIPELINE_ID", None)
    cmd = [str(BIN / "dvc"), "repro"]
    return subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=1800)


def read(project, rel: str) -> dict:
    return json.loads((project / rel).read_text())


@pytest.mark.slow
def test_a_site_without_photos_runs_on_fer2013_alone(tmp_path):
    project = tiny_project(tmp_path / "shop")
    photos = project / "data" / "photos"
    shutil.rmtree(photos)
    photos.mkdir()  # the folder a site without photos keeps (make run and retrain create it)
    git(project, "commit", "-q", "--allow-empty", "-m", "no photos")
    done = repro(project)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "no photos under data/photos: this site runs on FER2013 alone" in done.stdout

    lists = read(project, "artifacts/photos/splits.json")
    assert lists["no_photos"] and lists["train"] == lists["val"] == lists["test"] == []
    for stage in ("tune@photos", "train@photos-cnn1", "evaluate@photos-cnn3", "register@photos"):
        assert f"{stage}: skipped, no photos under data/photos" in done.stdout
    assert "skipped" in read(project, "reports/registry/photos_promotion.json")
    assert "skipped" in read(project, "artifacts/models/photos/cnn1/skipped.json")

    # FER2013 is trained, evaluated (no camera path to score), registered and promoted.
    vgg = read(project, "reports/evaluate/fer2013/vgg/metrics.json")
    assert "no photos" in vgg["deployed"]["skipped"] and vgg["deployed"]["clahe"]["chosen"] is False
    promotion = read(project, "reports/registry/fer2013_promotion.json")
    assert promotion["promoted"] is True, promotion
    site = emowatch(project, "site-model")
    assert site.returncode == 0, site.stderr
    assert site.stdout.strip() == "models:/emowatch-fer2013@champion"
    assert "no photos of this site's people under data/photos" in site.stderr
    page = (project / "docs" / "results.md").read_text()
    assert "## The site's photos (none: this site runs on FER2013 alone)" in page
    assert "Nothing registered or promoted: no photos under data/photos" in page
    assert read(project, "reports/scenarios/scenarios.json") == {
        "skipped": "no photos of people: no visits to make"
    }
    status = subprocess.run([str(BIN / "dvc"), "status", "-q"], cwd=project)
    assert status.returncode == 0  # every output DVC expects was written


@pytest.mark.slow
def test_a_site_without_person_ids_splits_by_photo(tmp_path):
    project = tiny_project(tmp_path / "shop")
    data = project / "conf" / "data" / "default.yaml"
    text = data.read_text()
    regex = "  subject_regex: '^([A-Za-z]+)\\.'\n"
    assert regex in text
    data.write_text(text.replace(regex, "  subject_regex: null\n"))
    assert emowatch(project, "params").returncode == 0
    git(project, "commit", "-q", "-am", "photos without person ids")
    done = repro(project)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

    lists = read(project, "artifacts/photos/splits.json")
    assert lists["by_subject"] is False and lists["subjects"] == {}
    assert all(len(lists[s]) >= 4 for s in ("val", "test"))  # one photo of each class at least
    files = {s: {it["file"] for it in lists[s]} for s in ("train", "val", "test")}
    for cnn in ("cnn1", "cnn3"):
        m = read(project, f"reports/evaluate/photos/{cnn}/metrics.json")
        d = m["deployed"]
        assert d["per_person"] == {} and d["people"] == {"decide": [], "report": []}
        assert d["report"]["n"] == len(files["test"])  # the test photos, scored, reported
        # every non-test photo out of fold, the folds by photo
        assert d["decide"]["n"] == len(files["train"]) + len(files["val"])
        assert d["evidence"]["by"] == "photo" and d["evidence"]["folds"] == 4
    fer = read(project, "reports/evaluate/fer2013/vgg/metrics.json")["deployed"]
    assert fer["report"]["n"] == len(files["test"])
    assert "skipped" not in read(project, "reports/registry/photos_register.json")
    page = (project / "docs" / "results.md").read_text()
    assert "no person ids: split by photo" in page
    scenarios = read(project, "reports/scenarios/scenarios.json")
    assert "the photos carry no person ids" in scenarios["skipped"]
