"""Shared fixtures: tiny FER2013 files built on the fly, a composed config pointed at a temp
project, and a prepared MLflow sqlite database copied per test (migrating one takes seconds)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from omegaconf import DictConfig

from emowatch import config

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"


def pixels(seed: int, size: int = 48) -> str:
    """A random image as the CSV's space-separated pixel string."""
    rng = np.random.default_rng(seed)
    return " ".join(map(str, rng.integers(0, 256, size * size)))


def write_csv(
    path: Path,
    rows: Sequence[tuple[str, str, str]] | Sequence[str],
    header: str = "emotion,pixels,Usage",
) -> Path:
    """Write a FER2013-format CSV; rows are (emotion, pixels, Usage) tuples or raw lines."""
    lines = [header] + [r if isinstance(r, str) else ",".join(r) for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def good_rows(n_per_split: int = 7) -> list[tuple[str, str, str]]:
    """Valid rows: each split gets every class once per 7 rows, all images distinct."""
    rows = []
    for s, usage in enumerate(("Training", "PublicTest", "PrivateTest")):
        for i in range(n_per_split):
            rows.append((str(i % 7), pixels(100 * s + i), usage))
    return rows


def isolated(tmp: Path, data_dir: Path) -> list[str]:
    """Overrides that read data from `data_dir` and write every output and MLflow under `tmp`."""
    return [
        f"paths.data_dir={data_dir}",
        f"paths.artifacts_dir={tmp / 'artifacts'}",
        f"paths.reports_dir={tmp / 'reports'}",
        f"report.path={tmp / 'reports' / 'results.md'}",
        f"tracking.db={tmp / 'mlflow.db'}",
        f"tracking.artifacts_dir={tmp / 'mlartifacts'}",
        f"retrain.drift.reference_dir={tmp / 'drift'}",
        f"deploy.watch.feedback.dir={tmp / 'feedback'}",
        f"deploy.watch.alerts.webhook.spool_dir={tmp / 'webhook-spool'}",
        # a temp project is no git checkout, so never production: say why aliases may move
        "registry.production.override=test project",
    ]


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow sqlite database with its tables created once per session."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow") / "template.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def make_cfg(
    tmp_path: Path, mlflow_template: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., DictConfig]:
    """Compose the real conf/ with every path moved into tmp_path (data under tmp_path/data)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("EMOWATCH_PIPELINE_ID", raising=False)
    db = tmp_path / "mlflow.db"
    shutil.copy(mlflow_template, db)

    def _make(*overrides: str) -> DictConfig:
        return config.compose([*isolated(tmp_path, tmp_path / "data"), *overrides], root=REPO)

    return _make


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


ASTRONAUT_FACE = (174, 64, 98, 98)  # Haar's box on skimage's astronaut, x y w h


def astronaut_rgb() -> np.ndarray:
    """A real face photo shipped with scikit-image (512×512 RGB)."""
    from skimage import data

    return data.astronaut()


def save_exif_rotated(path: Path, rgb: np.ndarray) -> Path:
    """Store the image turned 90° counter-clockwise with EXIF Orientation 6 (display: turn back)."""
    from PIL import Image

    img = Image.fromarray(np.rot90(rgb, k=1).copy())
    exif = img.getexif()
    exif[0x0112] = 6
    img.save(path, exif=exif)
    return path


def save_truncated(path: Path, rgb: np.ndarray) -> Path:
    """A PNG cut in half, like an interrupted upload."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


# Four people have faces in make_photo_folder: too few for the salted hash to give val and test
# one each, so they are pinned, as a small site would pin its first people.
PHOTO_FOLDER_PINS = "data.photos.split.pinned={test: [GG], val: [DD], train: [AA, CC]}"


def make_photo_folder(root: Path) -> Path:
    """One file per status the crop stage knows, under <root>/<class>/ (pin its people with
    PHOTO_FOLDER_PINS)."""
    from PIL import Image

    rgb = astronaut_rgb()
    for cls in ("angry", "happy", "sad", "neutral"):
        (root / cls).mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(root / "angry/AA.AN1.jpg")
    Image.fromarray(np.full((256, 256), 128, np.uint8)).save(root / "angry/BB.AN1.png")  # no face
    Image.fromarray(rgb).convert("P").save(root / "happy/CC.HA1.tiff")  # palette TIFF
    save_exif_rotated(root / "happy/DD.HA1.jpg", rgb)
    save_truncated(root / "sad/EE.SA1.png", rgb)
    (root / "sad/FF.SA1.jpg").write_text("this is not a photo")
    head = rgb[20:240, 110:340]
    both = np.concatenate([head, head[:, ::-1]], axis=1)  # two faces side by side
    Image.fromarray(both).save(root / "neutral/GG.NE1.png")
    Image.fromarray(rgb).save(root / "HH.loose.jpg")
    return root


def make_people_photos(
    data_dir: Path,
    splits_path: Path,
    people: dict[str, str] | None = None,
    classes: Sequence[str] = ("angry", "happy", "sad", "neutral"),
) -> dict[str, str]:
    """Full photos of people (the astronaut's face, a little brighter per class) under
    <data_dir>/photos/<class>/<PERSON>.<CLASS>.png, and the split lists `crop_faces` would write
    for them (people only: the deployed-path evaluation reads who is in which split)."""
    import json

    from PIL import Image

    people = people or {"PA": "train", "PB": "train", "PC": "val", "PD": "test"}
    base = Image.fromarray(astronaut_rgb()).convert("L").resize((256, 256))
    for i, cls in enumerate(classes):
        (data_dir / "photos" / cls).mkdir(parents=True, exist_ok=True)
        img = Image.fromarray(np.clip(np.asarray(base, np.int16) + 8 * i, 0, 255).astype(np.uint8))
        for person in people:
            img.save(data_dir / "photos" / cls / f"{person}.{cls[:2].upper()}1.png")
    subjects = {s: sorted(p for p, where in people.items() if where == s) for s in SPLITS}
    lists = {"classes": list(classes), "by_subject": True, "subjects": subjects}
    splits_path.parent.mkdir(parents=True, exist_ok=True)
    splits_path.write_text(json.dumps(lists | {s: [] for s in SPLITS}))
    return people


SPLITS = ("train", "val", "test")
FER_CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def make_fer_arrays(out_dir: Path, per_class: int = 4, size: int = 48, seed: int = 0) -> Path:
    """Tiny learnable FER2013-like arrays: each class is a different bright band plus noise."""
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    for s, split in enumerate(("train", "val", "test")):
        x, y = [], []
        for c in range(len(FER_CLASSES)):
            for _ in range(per_class):
                img = rng.integers(0, 60, (size, size)).astype(np.uint8)
                band = slice(c * size // 7, (c + 1) * size // 7)
                img[band, :] += 150
                x.append(img)
                y.append(c)
        np.savez(
            out_dir / f"{split}.npz",
            x=np.stack(x),
            y=np.array(y),
            row=np.arange(len(y)) + 1000 * s,
            classes=np.array(FER_CLASSES),
        )
    return out_dir


TINY_TRAINING = (
    "train.fer2013.max_epochs=2",
    "train.fer2013.batch_size=8",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.log_every_n_steps=1",
    "models.cnn1.net.filters=[8,16]",
    "models.cnn1.net.units=[16]",
    "models.cnn2.net.filters=[8,16]",
    "models.cnn2.net.units=[16]",
    "models.cnn3.net.filters=[8,16]",
    "models.cnn3.net.units=[16]",
)


@pytest.fixture
def tiny_fer(make_cfg, tmp_path):
    """A composed config whose FER2013 arrays and augmentation pipeline are tiny and ready."""
    from emowatch.data import augmentation

    def _make(*overrides: str):
        cfg = make_cfg(*TINY_TRAINING, *overrides)
        make_fer_arrays(Path(cfg.data.fer2013.out_dir))
        make_people_photos(Path(cfg.paths.data_dir), Path(cfg.data.photos.splits))
        augmentation.save(augmentation.build(cfg.augment, seed=0), Path(cfg.augment.pipeline))
        return cfg

    return _make
