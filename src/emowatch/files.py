"""Small file helpers shared by the stages."""

from __future__ import annotations

import json
from pathlib import Path


def read_json(path: Path) -> dict | None:
    """A JSON file's content, or None when there is no such file."""
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def write_json(path: Path, data: dict | list) -> Path:
    """Write pretty JSON, creating the parent folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path
