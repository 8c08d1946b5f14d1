"""Find the faces in an image and classify each: the one code path of `emowatch watch` and of
the served model.

Faces are found by the same detector code as `crop_faces`, at the scale the camera's sweep uses
(the spec's `finder`, so evaluate, the served model and `watch` find the same faces), squared and
grown by the same margin, cropped and resized to the model's input, normalised as in training,
and classified; angry is predicted when P(angry) reaches the model's threshold (chosen on val),
otherwise the most likely other class.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from omegaconf import OmegaConf

from emowatch.config import plain
from emowatch.errors import UnsafeModelError
from emowatch.inference import faces
from emowatch.inference.finder import FaceFinder, FinderSettings
from emowatch.inference.loading import load_trained
from emowatch.inference.predict import predict
from emowatch.inference.threshold import predict_with_threshold


@dataclass
class FacePrediction:
    """One classified face: its box in image pixels, class probabilities and the decision."""

    box: faces.Box
    probabilities: dict[str, float]
    emotion: str
    angry: bool
    p_angry: float
    detector_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": [int(v) for v in self.box],
            "emotion": self.emotion,
            "angry": self.angry,
            "p_angry": round(self.p_angry, 4),
            "probabilities": {k: round(v, 4) for k, v in self.probabilities.items()},
        }


def spec_of(
    info: dict,
    threshold: float,
    tta: str,
    margin: float,
    detector: Any,
    clahe: bool = False,
    finder: Any = None,
    align: Any = None,
) -> dict:
    """What a deployed model needs beside its weights (stored as the pyfunc's model_config);
    `clahe`: contrast-limited equalisation of the frame before detection and classification;
    `finder`: the camera's face-finding settings (`deploy.watch.detect`), so that the evaluated,
    the served and the watched model all find faces as the camera does; `align`: the framing of
    eye-aligned crops (`faces.Framing`; None: the box grown by the margin)."""
    det = plain(detector)
    extra = {"finder": dict(plain(finder))} if finder is not None else {}
    extra |= {"align": dict(plain(align))} if align is not None else {}
    return extra | {
        "classes": list(info["classes"]),
        "input_size": int(info["input_shape"][-1]),
        "normalize": {"mean": info["normalize"]["mean"], "std": info["normalize"]["std"]},
        "threshold_angry": float(threshold),
        "tta": tta,
        "crop_margin": float(margin),
        "detector": dict(det),
        "clahe": bool(clahe),
    }


def align_of(cfg: Any) -> dict | None:
    """The framing of `deploy.align` for a spec when it is enabled, else None."""
    framing = faces.framing_of(cfg)
    return None if framing is None else asdict(framing)


SPEC_REQUIRED = ("classes", "input_size", "normalize", "threshold_angry", "crop_margin", "detector")
# absent in versions registered before they existed
SPEC_OPTIONAL = ("tta", "clahe", "finder", "align")


def check_spec(spec: dict, where: str) -> None:
    """Refuse (UnsafeModelError) a deployment spec from outside this machine (the registry's
    model config) with a key emowatch does not know, a missing key, an unknown detector or
    detector setting, or a cascade file that is not one of the installed OpenCV's own."""
    keys = set(spec)
    unknown = sorted(keys - {*SPEC_REQUIRED, *SPEC_OPTIONAL})
    missing = [k for k in SPEC_REQUIRED if k not in keys]
    if unknown or missing:
        raise UnsafeModelError(
            f"{where}: model config has unknown keys {unknown} / lacks {missing}; "
            f"an emowatch model config has {[*SPEC_REQUIRED, *SPEC_OPTIONAL]}"
        )
    det = dict(spec["detector"])
    try:
        settings = faces.detector_settings(str(det.get("name")))
    except ValueError as err:
        raise UnsafeModelError(f"{where}: {err}") from None
    foreign = sorted(set(det) - {"name", *settings})
    if foreign:
        raise UnsafeModelError(f"{where}: unknown detector settings {foreign} (known: {settings})")
    known = set(FinderSettings.__dataclass_fields__)
    finder = spec.get("finder") or {}
    odd = sorted(k for k, v in finder.items() if k not in known or not isinstance(v, int | float))
    if odd:
        raise UnsafeModelError(f"{where}: unknown or non-numeric finder settings {odd} ({known})")
    framing = set(faces.Framing.__dataclass_fields__)
    align = spec.get("align") or {}
    odd = sorted(k for k, v in align.items() if k not in framing or not isinstance(v, int | float))
    odd += sorted({"eye_distance", "eye_y"} - set(align)) if align else []
    if odd:
        raise UnsafeModelError(f"{where}: unknown or non-numeric align settings {odd} ({framing})")
    cascade = str(det.get("cascade", ""))
    if cascade and (Path(cascade).name != cascade or not faces.installed_cascade(cascade)):
        raise UnsafeModelError(
            f"{where}: detector cascade {cascade!r} is not a cascade file of the installed "
            "OpenCV; a registered model may only name one of those"
        )


class FaceClassifier:
    """A trained network plus its preprocessing, angry threshold and face detector."""

    def __init__(self, net: torch.nn.Module, spec: dict) -> None:
        if "angry" not in spec["classes"]:
            raise ValueError(f"the model's classes {spec['classes']} have no angry class")
        self.net, self.spec = net.eval(), spec
        self.classes: list[str] = list(spec["classes"])
        self.angry = self.classes.index("angry")
        self.size = int(spec["input_size"])
        self.mean, self.std = spec["normalize"]["mean"], spec["normalize"]["std"]
        self.threshold = float(spec["threshold_angry"])
        self.detector = faces.build_detector(OmegaConf.create(spec["detector"]))
        # The camera's way of finding faces (a whole-frame sweep at the scale where a face of
        # `min_face` px meets the detector's minimum): what `detect` runs on a still image.
        finder = spec.get("finder")
        self.finder = FaceFinder(self.detector, FinderSettings(**finder)) if finder else None
        # Dim and uneven light: where the deployed-path evaluation kept it (evaluate.clahe).
        self.clahe = cv2.createCLAHE(2.0, (8, 8)) if spec.get("clahe") else None
        align = spec.get("align")
        self.framing = faces.Framing(**align) if align else None

    @classmethod
    def from_model_dir(cls, model_dir: Path, **spec_args: Any) -> FaceClassifier:
        """From the `train` stage's files (model.ckpt + model.json) and the deployment spec."""
        net, info = load_trained(model_dir)
        return cls(net, spec_of(info, **spec_args))

    def with_spec(self, **changes: Any) -> FaceClassifier:
        """The same network with some of its spec changed (`detector=`, `align=`: plain
        config or dicts; `align=None` takes alignment off)."""
        spec = {**self.spec, **{k: plain(v) if v is not None else v for k, v in changes.items()}}
        return FaceClassifier(self.net, {k: v for k, v in spec.items() if v is not None})

    def prepare(self, gray: np.ndarray) -> np.ndarray:
        """The grayscale frame as the model's spec wants it seen (CLAHE or as it is)."""
        return self.clahe.apply(gray) if self.clahe is not None else gray

    def detect(self, gray: np.ndarray) -> list[faces.Face]:
        """The faces of one image, found as the camera's sweep finds them (the spec's finder),
        or by the detector at its own settings for a model registered without one."""
        return self.finder.sweep(gray) if self.finder is not None else self.detector(gray)

    def classify(self, gray: np.ndarray, found: list[faces.Face]) -> list[FacePrediction]:
        """Classify detected faces of a grayscale image (one batch for all faces)."""
        return self.classify_many([(gray, found)])[0]

    def classify_many(
        self, images: list[tuple[np.ndarray, list[faces.Face]]]
    ) -> list[list[FacePrediction]]:
        """Classify the detected faces of several images (several cameras) in one batch;
        returns each image's predictions."""
        margin = self.spec["crop_margin"]
        found = [f for _, fs in images for f in fs]
        if not found:
            return [[] for _ in images]
        crops = np.stack(
            [faces.cut(gray, f, margin, self.size, self.framing) for gray, fs in images for f in fs]
        )
        probs = predict(self.net, crops, self.mean, self.std, self.spec.get("tta", "none"))
        labels = predict_with_threshold(probs, self.angry, self.threshold)
        preds = [
            FacePrediction(
                box=f.box,
                probabilities=dict(zip(self.classes, map(float, p), strict=True)),
                emotion=self.classes[label],
                angry=bool(label == self.angry),
                p_angry=float(p[self.angry]),
                detector_score=f.score,
            )
            for f, p, label in zip(found, probs, labels, strict=True)
        ]
        out, start = [], 0
        for _, fs in images:
            out.append(preds[start : start + len(fs)])
            start += len(fs)
        return out

    def __call__(self, image: np.ndarray) -> list[FacePrediction]:
        """Detect and classify the faces of a grayscale or BGR image."""
        gray = self.prepare(to_gray(image))
        return self.classify(gray, self.detect(gray))


def to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 grayscale from a grayscale, BGR or BGRA array."""
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    raise ValueError(f"not an image array: shape {image.shape}")
