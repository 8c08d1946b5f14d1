"""What the evaluate stage chose for a trained model folder, as deployment reads it: the angry
threshold (fitted on val), the test-time augmentation and the contrast equalisation (CLAHE)."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from emowatch.layout import Layout


def evaluated_choices(
    cfg: DictConfig, model_dir: Path, root: Path | None, need_threshold: bool = True
) -> dict:
    """{"threshold_angry", "tta", "clahe"} from the model's evaluation; without one, no TTA,
    no CLAHE and no threshold (FileNotFoundError when `need_threshold`)."""
    metrics = Layout(cfg, root).model_of(model_dir).metrics
    if not metrics.is_file():
        if need_threshold:
            raise FileNotFoundError(
                f"{metrics} not found: pass --threshold or run its evaluate stage"
            )
        return {"threshold_angry": None, "tta": "none", "clahe": False}
    m = json.loads(metrics.read_text())
    clahe = bool(m.get("deployed", {}).get("clahe", {}).get("chosen", False))
    return {
        "threshold_angry": float(m["threshold_angry"]),
        "tta": m["tta"]["chosen"],
        "clahe": clahe,
    }
