"""Which model a site's cameras run when none is named (`deploy.watch.model: auto`), and
loading the model a watcher, drift check or benchmark names (a registry URI or a model folder).

A site that gave emowatch photos of its own people gets the photos champion: it was chosen and
gated on those people's photos through the camera path, and on JAFFE it catches the angry faces
the FER2013 champion misses (README, Results). A site without photos (or before its first photos
champion) gets the FER2013 champion. The answer says which and why, with both champions'
deployed-path figures on the people who may decide (no test person).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from emowatch.config import resolve_path
from emowatch.data import photos
from emowatch.errors import UnsafeModelError
from emowatch.evaluation.choices import evaluated_choices
from emowatch.inference.face_classifier import FaceClassifier

AUTO = "auto"


class ModelError(Exception):
    """The model to watch with cannot be loaded (none registered, refused, missing files)."""


@dataclass(frozen=True)
class Choice:
    uri: str
    reason: str


def photo_count(cfg: DictConfig, root: Path | None) -> int:
    """The files the crop stage would read under data.photos.root (0 without the folder)."""
    folder = resolve_path(cfg.data.photos.root, root)
    return len(photos.list_photos(folder)) if folder.is_dir() else 0


def _figures(version) -> str:
    tags = version.tags
    caught, n = tags.get("deployed_decide_angry_caught"), tags.get("deployed_decide_n_angry")
    where = (
        f"caught {caught} of {n} angry faces on the camera path" if n else "no camera-path figures"
    )
    return f"v{version.version} {tags.get('model', '?')}: {where}"


def choose(cfg: DictConfig, root: Path | None = None) -> Choice:
    """The site's model: the photos champion when the site has photos and one exists, else the
    FER2013 champion (URIs by alias, so a later promotion is picked up at the next start)."""
    from mlflow.tracking import MlflowClient

    from emowatch.tracking.registry import CHAMPION, get_alias
    from emowatch.tracking.runs import tracking_uri

    client = MlflowClient(tracking_uri(cfg, root))
    names = cfg.registry.names
    photos = get_alias(client, names.photos, CHAMPION)
    fer = get_alias(client, names.fer2013, CHAMPION)
    n = photo_count(cfg, root)
    if n and photos is not None:
        other = f"; the FER2013 champion {_figures(fer)}" if fer is not None else ""
        return Choice(
            f"models:/{names.photos}@{CHAMPION}",
            f"this site has {n} photos of its people, so its photos champion ({_figures(photos)}"
            f"{other}; deciding people only)",
        )
    if fer is not None:
        why = (
            f"{n} photos but no photos champion yet"
            if n
            else f"no photos of this site's people under {cfg.data.photos.root}"
        )
        return Choice(
            f"models:/{names.fer2013}@{CHAMPION}", f"{why}: the FER2013 champion ({_figures(fer)})"
        )
    return Choice(
        f"models:/{names.fer2013}@{CHAMPION}",
        "no champion registered yet (run `make run`): trying the FER2013 champion",
    )


def load(
    cfg: DictConfig,
    model: str | None = None,
    threshold: float | None = None,
    root: Path | None = None,
) -> FaceClassifier:
    """The model to watch with: an MLflow model URI (default: the champion) or a trained model
    folder (with `threshold`, or the one its evaluate stage chose)."""
    spec = resolve(cfg, model, root)
    path = Path(spec)
    if path.is_dir():
        chosen = evaluated_choices(cfg, path, root, need_threshold=threshold is None)
        classifier = FaceClassifier.from_model_dir(
            path,
            threshold=chosen["threshold_angry"] if threshold is None else threshold,
            tta=chosen["tta"],
            clahe=chosen["clahe"],
            margin=cfg.deploy.crop_margin,
            detector=cfg.detector,
            finder=cfg.deploy.watch.detect,
        )
    else:
        import mlflow
        from mlflow.exceptions import MlflowException

        from emowatch.deploy import pyfunc
        from emowatch.tracking.runs import tracking_uri

        mlflow.set_tracking_uri(tracking_uri(cfg, root))
        try:
            classifier = pyfunc.load_classifier(spec)
        except UnsafeModelError as err:
            raise ModelError(str(err)) from None
        except (MlflowException, OSError) as err:
            raise ModelError(
                f"cannot load {spec}: {err}. Run `make run` (dvc repro) to register and promote "
                "a model, or pass --model with a model URI or artifacts/models/<dataset>/<model>"
            ) from err
        if threshold is not None:
            classifier.threshold = threshold
    return classifier


def resolve(
    cfg: DictConfig, model: str | None = None, root: Path | None = None, say: bool = True
) -> str:
    """`model`, else deploy.watch.model; `auto` becomes the site's model, and (with `say`) which
    one and why is printed on stderr."""
    spec = model or str(cfg.deploy.watch.model)
    if spec != AUTO:
        return spec
    choice = choose(cfg, root)
    if say:
        print(f"model: {choice.uri} — {choice.reason} (--model picks another)", file=sys.stderr)
    return choice.uri
