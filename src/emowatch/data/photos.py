"""A business's own photos: `<root>/<class>/<file>`, subject ids, and train/val/test splits.

With a subject regex the split is subject-independent (no person in two splits) and stable: a
person's split is a salted hash of their id (or a pin in the config), so adding people or photos
never moves anyone already there, and a test person is never trained on later. Without person
ids the split is stratified by class, seeded: adding photos can then reshuffle them. A site
with no photos at all (an empty folder) runs on FER2013 alone: `crop_faces` says so in its
split lists under `NO_PHOTOS`, and the photos stages leave empty outputs (`stages/no_photos`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emowatch.errors import DataError

SPLITS = ("train", "val", "test")
NO_PHOTOS = "no_photos"  # the split lists' key, present only at a site without photos


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


def no_photos(splits_path: Path) -> str | None:
    """Why the site has no photos to train or score on (`crop_faces` wrote it into its split
    lists), or None where it has photos (or the split lists are not made yet)."""
    if not splits_path.is_file():
        return None
    return json.loads(splits_path.read_text()).get(NO_PHOTOS)


def subject_of(name: str, pattern: str | None) -> str | None:
    """The subject id: the regex's first group (or whole match) in the file name."""
    if not pattern:
        return None
    m = re.search(pattern, name)
    if not m:
        return None
    return m.group(1) if m.groups() else m.group(0)


def bucket(subject: str, salt: str) -> float:
    """The person's place in [0, 1): the first 8 bytes of sha256("<salt>/<subject>")."""
    digest = hashlib.sha256(f"{salt}/{subject}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_subjects(
    subjects: Sequence[str],
    val: float,
    test: float,
    salt: str,
    pinned: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, str]:
    """{subject: split}: a pinned person's split, else test below `test`, val below
    `test + val`, train above, by the person's bucket. Depends on nobody else: stable."""
    where: dict[str, str] = {}
    for split_name, people in (pinned or {}).items():
        if split_name not in SPLITS:
            raise DataError(f"data.photos.split.pinned: unknown split {split_name!r} ({SPLITS})")
        for person in people:
            if where.setdefault(str(person), split_name) != split_name:
                raise DataError(
                    f"data.photos.split.pinned: {person} is pinned to both "
                    f"{where[str(person)]} and {split_name}"
                )
    out = {}
    for s in subjects:
        u = bucket(s, salt)
        out[s] = where.get(s) or ("test" if u < test else "val" if u < test + val else "train")
    return out


def split(
    items: list[dict],
    val: float,
    test: float,
    seed: int,
    by_subject: bool,
    salt: str = "emowatch",
    pinned: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, list[dict]]:
    """Assign items ({"label", "subject", ...}) to train/val/test.

    by_subject: whole people go to one split, by `assign_subjects` (each split needs one);
    otherwise a stratified split by label (random where a class is too small to stratify).
    """
    if by_subject:
        subjects = sorted({it["subject"] for it in items})
        where = assign_subjects(subjects, val, test, salt, pinned)
        empty = [s for s in SPLITS if s not in where.values()]
        if empty:
            spare = [s for s in subjects if where[s] == "train"] or subjects
            near = sorted(spare, key=lambda s: bucket(s, salt))
            raise DataError(
                f"no person falls into {' or '.join(empty)} among {len(subjects)} people "
                f"({', '.join(subjects)}) with data.photos.split.salt {salt!r}: pin one, e.g. "
                f"data.photos.split.pinned.{empty[0]}=[{near[0]}] (a person's split must not "
                "change once their photos were used), or add people"
            )
        assign = [where[it["subject"]] for it in items]
    else:
        rng = np.random.default_rng(seed)
        assign = _stratified(np.array([it["label"] for it in items]), val, test, rng)
    return {s: [it for it, a in zip(items, assign, strict=True) if a == s] for s in SPLITS}


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
