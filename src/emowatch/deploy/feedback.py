"""Staff feedback on alerts becomes training data, with consent.

On the live page an alert can be marked *confirmed angry* or *not angry*. Only with
`deploy.watch.feedback.save_faces` (off by default) is the face of a marked alert kept: its box
grown by a margin (so the crop stage finds the face again), grayscale, as a PNG beside a JSON of
the label, in the pending folder. Nothing else is stored, and nothing of an unmarked alert.
`review` lists what waits; `accept` / `decline` decide; `import` moves the accepted crops into
data/photos/<class>/ under one subject id per camera (the split then keeps a camera's faces on
one side) and deletes the declined ones. Pending crops older than `keep_days` are deleted.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from emowatch.inference import faces

LABELS = ("angry", "not_angry")  # what staff can say on the page
PENDING, ACCEPTED, DECLINED = "pending", "accepted", "declined"


class FeedbackError(Exception):
    """A decision that cannot be taken (unknown crop, no class for a not-angry face)."""


DIGITS = "ABCDEFGHIJ"


def subject_id(prefix: str, camera: str) -> str:
    """One person id per camera, letters only (the photos' subject regex reads the letters
    before the first dot): digits become capitals (cam0 -> camA, cam1 -> camB, cam10 ->
    camBA), anything else is dropped."""
    kept = "".join(DIGITS[int(c)] if c.isdigit() else c for c in camera if c.isascii())
    letters = re.sub(r"[^A-Za-z]", "", kept) or "camera"
    return f"{prefix}{letters}"


def face_region(gray: np.ndarray, box: faces.Box, margin: float) -> np.ndarray:
    """The face with `margin` of its side around it, clamped to the frame."""
    x, y, w, h = faces.expand_box(box, margin, gray.shape)
    return gray[y : y + h, x : x + w].copy()


@dataclass
class FeedbackStore:
    """The pending folder: <alert_id>.png (the face) and <alert_id>.json (label, decision)."""

    folder: Path
    keep_days: float = 14.0

    def save(self, alert: dict[str, Any], face: np.ndarray, label: str, by: str, camera: str):
        """Keep a marked alert's face until it is reviewed; returns the PNG's path."""
        if label not in LABELS:
            raise FeedbackError(f"label must be one of {LABELS}, not {label!r}")
        self.folder.mkdir(parents=True, exist_ok=True)
        alert_id = str(alert["alert_id"])
        png = self.folder / f"{alert_id}.png"
        if not cv2.imwrite(str(png), face):
            raise FeedbackError(f"cannot write {png}")
        meta = {
            "alert_id": alert_id,
            "alert_time": alert.get("time"),
            "camera": camera,
            "label": label,
            "by": by,
            "marked_at": time.time(),
            "status": PENDING,
            "class": "angry" if label == "angry" else None,
        }
        self._write(meta)
        return png

    def _write(self, meta: dict[str, Any]) -> None:
        path = self.folder / f"{meta['alert_id']}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta, indent=2))
        tmp.replace(path)

    def items(self) -> list[dict[str, Any]]:
        """Every kept crop's record, oldest first (records without their PNG are dropped).
        A record that cannot be read is left where it is, for a person to look at, and listed
        in `unreadable`."""
        self.unreadable: list[Path] = []
        if not self.folder.is_dir():
            return []
        out = []
        for path in sorted(self.folder.glob("*.json")):
            try:
                meta = json.loads(path.read_text())
                alert_id, _ = str(meta["alert_id"]), float(meta["marked_at"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError, UnicodeDecodeError):
                self.unreadable.append(path)
                continue
            if (self.folder / f"{alert_id}.png").is_file():
                out.append(meta)
            else:
                path.unlink()
        return sorted(out, key=lambda m: m["marked_at"])

    def expire(self, now: float | None = None) -> list[str]:
        """Delete the crops not imported within keep_days; returns their alert ids."""
        now = time.time() if now is None else now
        gone = [
            m["alert_id"]
            for m in self.items()
            if m["status"] != ACCEPTED and now - m["marked_at"] > self.keep_days * 86400
        ]
        for alert_id in gone:
            self._delete(alert_id)
        return gone

    def _delete(self, alert_id: str) -> None:
        for suffix in (".png", ".json"):
            (self.folder / f"{alert_id}{suffix}").unlink(missing_ok=True)

    def decide(self, ids: list[str], accept: bool, cls: str | None, classes: list[str]) -> int:
        """Accept (into `cls`, which a not-angry face needs) or decline crops; returns how many."""
        known = {m["alert_id"]: m for m in self.items()}
        missing = [i for i in ids if i not in known]
        if missing:
            raise FeedbackError(f"no pending crop {', '.join(missing)} (emowatch feedback review)")
        for alert_id in ids:
            meta = known[alert_id]
            if accept:
                chosen = cls or meta["class"]
                if chosen not in classes:
                    raise FeedbackError(
                        f"{alert_id} was marked {meta['label']}: say which class it shows "
                        f"with --as ({', '.join(c for c in classes if c != 'angry')})"
                    )
                meta |= {"status": ACCEPTED, "class": chosen}
            else:
                meta["status"] = DECLINED
            self._write(meta)
        return len(ids)

    def import_into(self, photos_root: Path, subject_prefix: str) -> dict[str, Any]:
        """Move accepted crops to <photos_root>/<class>/<subject>.<CODE>1.<alert_id>.png, delete
        declined ones; returns what was done."""
        done: dict[str, Any] = {"imported": [], "deleted_declined": 0}
        for meta in self.items():
            if meta["status"] == DECLINED:
                self._delete(meta["alert_id"])
                done["deleted_declined"] += 1
            elif meta["status"] == ACCEPTED:
                cls = meta["class"]
                name = (
                    f"{subject_id(subject_prefix, meta['camera'])}.{cls[:2].upper()}1."
                    f"{meta['alert_id']}.png"
                )
                target = photos_root / cls / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(self.folder / f"{meta['alert_id']}.png", target)
                self._delete(meta["alert_id"])
                done["imported"].append(str(target))
        return done
