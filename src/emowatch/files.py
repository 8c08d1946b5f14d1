"""Small file and hashing helpers shared by the stages (free of the training stack, so that
stages which only read models start fast)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from emowatch.config import plain


def read_json(path: Path) -> dict | None:
    """A JSON file's content, or None when there is no such file."""
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def write_json(path: Path, data: dict | list) -> Path:
    """Write pretty JSON, creating the parent folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def fingerprint(*parts: Any) -> str:
    """A stable hash of config sections and input-file hashes."""
    data = [plain(p) for p in parts]
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_hash(path: Path) -> str:
    """MD5 of a file's bytes (checkpoints, training inputs), read in 1 MiB chunks."""
    h = hashlib.md5()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
