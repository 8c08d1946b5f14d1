"""Which model a site's cameras run when none is named (`deploy.watch.model: auto`), and
loading the model a watcher, drift check or benchmark names (a registry URI or a model folder).

A site that gave emowatch photos of its own people gets whichever champion does better on those
people through the camera path: the photos champion scored out of fold over every non-test
person (evaluation.people_cv), the FER2013 champion on the same people (it saw none of them);
the higher angry F1 wins, the photos champion on a tie. A site without photos (or before its
first photos champion) gets the FER2013 champion. The answer says which and why, with both
champions' figures, and warns when the chosen model is weak on the site's people.
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
from emowatch.inference.face_classifier import FaceClassifier, align_of

AUTO = "auto"


class ModelError(Exception):
    """The model to watch with cannot be loaded (none registered, refused, missing files)."""


@dataclass(frozen=True)
class Choice:
    uri: str
    reason: str
    warning: str | None = None  # the chosen model is weak on this site's people


def photo_count(cfg: DictConfig, root: Path | None) -> int:
    """The files the crop stage would read under data.photos.root (0 without the folder)."""
    folder = resolve_path(cfg.data.photos.root, root)
    return len(photos.list_photos(folder)) if folder.is_dir() else 0


@dataclass(frozen=True)
class Figures:
    """A champion's camera-path figures on the site's non-test people (its registry tags)."""

    version: str
    model: str
    caught: int
    n_angry: int
    recall: float
    recall_low: float
    precision: float

    @property
    def f1(self) -> float:
        r, p = self.recall, self.precision
        return 2 * r * p / (r + p) if r + p else 0.0

    def __str__(self) -> str:
        return (
            f"v{self.version} {self.model}: caught {self.caught} of {self.n_angry} angry photos "
            f"on the camera path (recall {self.recall:.2f}, lower bound {self.recall_low:.2f}; "
            f"precision {self.precision:.2f}; F1 {self.f1:.2f})"
        )


def figures_of(version) -> Figures | None:
    """The version's camera-path figures, or None where it has none (a site without photos)."""
    tags = version.tags
    if "deployed_decide_n_angry" not in tags:
        return None
    n = int(tags["deployed_decide_n_angry"])
    return Figures(
        str(version.version),
        tags.get("model", "?"),
        int(tags.get("deployed_decide_angry_caught", 0)),
        n,
        float(tags.get("deployed_decide_recall_angry", 0.0)),
        float(tags.get("deployed_decide_recall_angry_low", 0.0)),
        float(tags.get("deployed_decide_precision_angry", 0.0)),
    )


def _said(version) -> str:
    found = figures_of(version)
    return str(found) if found else f"v{version.version}: no camera-path figures"


def weak(found: Figures | None, floor: float | None) -> str | None:
    """A warning when the chosen model's camera-path recall on the site's people does not reach
    the photos floor with the lower end of its interval."""
    if found is None or floor is None or found.recall_low >= floor:
        return None
    return (
        f"warning: the site's model is weak on this site's people: {found}, short of the floor "
        f"{floor}; angry customers will be missed. Add labelled photos of more people "
        "(docs/onboard-a-site.md) and run `make run`"
    )


def pick(ours: Figures | None, fer: Figures | None) -> tuple[str, str]:
    """Which champion a site with photos runs: the higher angry F1 on the same people (the
    photos champion out of fold, the FER2013 champion as trained: neither saw them), the photos
    champion on a tie or where either lacks figures. Returns ("photos" | "fer2013", reason)."""
    if ours is None or fer is None:
        return "photos", "the photos champion (no camera-path figures to compare)"
    if fer.f1 > ours.f1:
        why = (
            f"the FER2013 champion: a higher angry F1 on this site's people ({fer}) than the "
            f"photos champion's ({ours})"
        )
        return "fer2013", why
    why = (
        f"the photos champion: an angry F1 on this site's people ({ours}) not below the FER2013 "
        f"champion's ({fer})"
    )
    return "photos", why


def choose(cfg: DictConfig, root: Path | None = None) -> Choice:
    """The site's model: with photos, the photos or the FER2013 champion by their camera-path
    figures on the same people (`pick`); without photos (or before a photos champion), the
    FER2013 champion. URIs by alias, so a later promotion is picked up at the next start."""
    from mlflow.tracking import MlflowClient

    from emowatch.tracking.registry import CHAMPION, get_alias
    from emowatch.tracking.runs import tracking_uri

    client = MlflowClient(tracking_uri(cfg, root))
    names = cfg.registry.names
    site = get_alias(client, names.photos, CHAMPION)
    fer = get_alias(client, names.fer2013, CHAMPION)
    floor = cfg.registry.promotion.deployed_recall_floor.get("photos")
    n = photo_count(cfg, root)
    if n and site is not None:
        ours, theirs = figures_of(site), figures_of(fer) if fer is not None else None
        which, why = pick(ours, theirs)
        name = names.photos if which == "photos" else names.fer2013
        return Choice(
            f"models:/{name}@{CHAMPION}",
            f"this site has {n} photos of its people: {why}; non-test people only",
            weak(ours if which == "photos" else theirs, floor),
        )
    if fer is not None:
        why = (
            f"{n} photos but no photos champion yet"
            if n
            else f"no photos of this site's people under {cfg.data.photos.root}"
        )
        return Choice(
            f"models:/{names.fer2013}@{CHAMPION}",
            f"{why}: the FER2013 champion ({_said(fer)})",
            weak(figures_of(fer), floor),
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
            align=align_of(cfg.deploy.get("align")),
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
        if choice.warning:
            print(choice.warning, file=sys.stderr)
    return choice.uri
