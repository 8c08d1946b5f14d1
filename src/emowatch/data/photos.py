"""A business's own photos: `<root>/<class>/<file>`, subject ids, and train/val/test splits.

With a subject regex the split is subject-independent (no person in two splits), otherwise it is
stratified by class.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emowatch.errors import DataError


@dataclass(frozen=True)
class PhotoFile:
    path: Path  # absolute path
    rel: str  # path relative to the photos root, e.g. "angry/KA.AN1.39.tiff"
    cls: str | None  # the class folder, None for a file directly under the root


def list_photos(root: Path) -> list[PhotoFile]:
    """Every file under root (hidden files excepted), sorted; the class is the first folder."""
    if not root.is_dir():
        raise DataError(f"photos folder {root} not found (run `dvc pull data.dvc`?)")
    out = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        out.append(PhotoFile(path, rel.as_posix(), rel.parts[0] if len(rel.parts) > 1 else None))
    return out


def subject_of(name: str, pattern: str | None) -> str | None:
    """The subject id: the regex's first group (or whole match) in the file name."""
    if not pattern:
        return None
    m = re.search(pattern, name)
    if not m:
        return None
    return m.group(1) if m.groups() else m.group(0)


def split(
    items: list[dict], val: float, test: float, seed: int, by_subject: bool
) -> dict[str, list[dict]]:
    """Assign items ({"label", "subject", ...}) to train/val/test.

    by_subject: whole subjects go to one split (fractions of subjects, at least one each);
    otherwise a stratified split by label (random where a class is too small to stratify).
    """
    rng = np.random.default_rng(seed)
    if by_subject:
        subjects = sorted({it["subject"] for it in items})
        if len(subjects) < 3:
            raise DataError(f"a subject-independent split needs ≥ 3 subjects, found {subjects}")
        order = list(rng.permutation(subjects))
        n_test = min(max(1, round(test * len(order))), len(order) - 2)
        n_val = min(max(1, round(val * len(order))), len(order) - n_test - 1)
        where = {s: "test" for s in order[:n_test]}
        where |= {s: "val" for s in order[n_test : n_test + n_val]}
        assign = [where.get(it["subject"], "train") for it in items]
    else:
        assign = _stratified(np.array([it["label"] for it in items]), val, test, rng)
    return {
        s: [it for it, a in zip(items, assign, strict=True) if a == s]
        for s in ("train", "val", "test")
    }


def _stratified(labels: np.ndarray, val: float, test: float, rng: np.random.Generator) -> list[str]:
    """Per class, shuffle and cut test and val fractions (at least one each where possible)."""
    assign = ["train"] * len(labels)
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        if len(idx) < 3:  # too few to give every split one: all to train
            continue
        n_test, n_val = max(1, round(test * len(idx))), max(1, round(val * len(idx)))
        for i in idx[:n_test]:
            assign[i] = "test"
        for i in idx[n_test : n_test + n_val]:
            assign[i] = "val"
    return assign
