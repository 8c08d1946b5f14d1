"""The augmentation pipeline from config, its saved form, and the `augment` stage."""

from __future__ import annotations

from pathlib import Path

import albumentations as A
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from emowatch.data import augmentation
from emowatch.errors import DataError
from emowatch.layout import Layout
from emowatch.stages import augment, crop_faces
from tests.conftest import PHOTO_FOLDER_PINS, make_photo_folder


def test_pipeline_from_config_in_order(make_cfg):
    pipeline = augmentation.build(make_cfg().augment, seed=0)
    names = [type(t).__name__ for t in pipeline.transforms]
    assert names == [
        "HorizontalFlip",
        "Rotate",
        "Affine",
        "RandomBrightnessContrast",
        "CoarseDropout",
    ]
    rotate = pipeline.transforms[1]
    assert rotate.limit == (-15, 15) and rotate.p == 0.5


def test_a_transform_can_be_dropped_or_changed(make_cfg):
    cfg = make_cfg("~augment.transforms.dropout", "augment.transforms.rotate.limit=20")
    pipeline = augmentation.build(cfg.augment)
    assert len(pipeline.transforms) == 4 and pipeline.transforms[1].limit == (-20, 20)


def test_saved_pipeline_loads_and_replays_with_a_seed(make_cfg, tmp_path):
    path = augmentation.save(augmentation.build(make_cfg().augment, seed=3), tmp_path / "p.json")
    loaded = augmentation.load(path)
    assert isinstance(loaded, A.Compose) and len(loaded.transforms) == 5
    img = np.random.default_rng(0).integers(0, 256, (48, 48), dtype=np.uint8)
    loaded.set_random_seed(7)
    first = loaded(image=img)["image"]
    loaded.set_random_seed(7)
    assert first.shape == (48, 48) and np.array_equal(first, loaded(image=img)["image"])
    with pytest.raises(FileNotFoundError, match="dvc repro augment"):
        augmentation.load(tmp_path / "absent.json")


def test_stage_writes_pipeline_and_preview(make_cfg, tmp_path):
    make_photo_folder(tmp_path / "data/photos")
    cfg = make_cfg(PHOTO_FOLDER_PINS, "data.photos.min_face_rate=0.3", "augment.preview_variants=4")
    crop_faces.main(cfg)
    saved = augment.main(cfg)
    assert saved == Layout(cfg).augment_pipeline and saved.is_file()
    assert (tmp_path / "reports/augment/preview.png").stat().st_size > 0
    client = MlflowClient(f"sqlite:///{cfg.tracking.db}")
    exp = client.get_experiment_by_name("emowatch").experiment_id
    (run,) = client.search_runs([exp], filter_string="tags.`emowatch.stage` = 'augment'")
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {
        "pipeline.json",
        "preview.png",
    }
    assert run.data.params["augment.transforms.rotate.limit"] == "15"


def test_stage_without_crops_says_what_to_run(make_cfg):
    with pytest.raises(DataError, match="dvc repro crop_faces"):
        augment.main(make_cfg())


def test_a_seeded_pipeline_repeats_itself_after_loading(tmp_path):
    """albumentations ignores the global seeds: training seeds the loaded pipeline itself."""
    import numpy as np

    from emowatch.config import compose
    from emowatch.data import augmentation
    from tests.conftest import REPO

    acfg = compose([], root=REPO).augment
    path = augmentation.save(augmentation.build(acfg, seed=0), tmp_path / "p.json")
    img = np.random.default_rng(0).integers(0, 255, (48, 48), dtype=np.uint8)
    runs = []
    for _ in range(2):
        pipeline = augmentation.seed(augmentation.load(path), 42)
        runs.append(np.stack([pipeline(image=img)["image"] for _ in range(8)]))
    assert np.array_equal(*runs)


def test_a_model_trains_with_the_stages_pipeline_narrowed_to_its_transforms(make_cfg, tmp_path):
    path = tmp_path / "artifacts" / "p.json"  # augment.pipeline, relative to the project root
    cfg = make_cfg("~augment.transforms.dropout", "augment.pipeline=artifacts/p.json")
    with pytest.raises(FileNotFoundError, match="dvc repro augment"):
        augmentation.for_model(cfg, ["hflip"], tmp_path)
    built = augmentation.for_model(cfg, ["hflip", "rotate"], tmp_path, build_if_missing=True)
    assert [type(t).__name__ for t in built.transforms] == ["HorizontalFlip", "Rotate"]
    augmentation.save(augmentation.build(make_cfg().augment), path)  # a stale stage output
    with pytest.raises(ValueError, match="dvc repro augment"):
        augmentation.for_model(cfg, ["hflip"], tmp_path, build_if_missing=True)
    whole = augmentation.for_model(make_cfg("augment.pipeline=artifacts/p.json"), None, tmp_path)
    assert len(whole.transforms) == 5


CAMERA = ["camera_light", "camera_blur", "camera_downscale", "camera_noise", "camera_jpeg"]


def test_the_camera_option_is_the_default_plus_a_cameras_transforms(make_cfg):
    """`augment=camera` keeps the default transforms in order and adds a camera's; each of
    those, on its own, changes a face and keeps its size and type, and the pipeline saves and
    loads as the augment stage's output does."""
    from tests.conftest import ASTRONAUT_FACE, astronaut_rgb

    default, camera = make_cfg().augment, make_cfg("augment=camera").augment
    assert list(camera.transforms) == [*default.transforms, *CAMERA]
    x, y, w, h = ASTRONAUT_FACE
    gray = astronaut_rgb()[y : y + h, x : x + w].mean(axis=2).astype(np.uint8)
    face = np.ascontiguousarray(gray[:: h // 48, :: w // 48][:48, :48])
    for name in CAMERA:
        others = [f"~augment.transforms.{n}" for n in camera.transforms if n != name]
        only = make_cfg("augment=camera", *others, f"augment.transforms.{name}.p=1").augment
        out = augmentation.build(only, seed=0)(image=face)["image"]
        assert out.shape == face.shape and out.dtype == np.uint8, name
        assert np.abs(out.astype(int) - face).mean() > 0.5, f"{name} left the face as it was"
    pipeline = augmentation.build(camera, seed=0)
    loaded = augmentation.load(augmentation.save(pipeline, Path(make_cfg().augment.pipeline)))
    assert [type(t).__name__ for t in loaded.transforms][-5:] == [
        "OneOf", "OneOf", "Downscale", "GaussNoise", "ImageCompression",
    ]  # fmt: skip
