"""Which of the business's photos a retrain took in, and what became of each.

The crop stage's report lists every file under data/photos with its status (face found or why
not); the split file says where each crop went. Read before and after a retrain, they tell the
retrain report which files are new (and whether they reached training, val or test) and which
are gone, without hashing the photos again.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from emowatch.config import resolve_path
from emowatch.files import read_json


def snapshot(cfg: DictConfig, root: Path) -> dict[str, dict[str, Any]] | None:
    """{file: {"status", "split"}} from the crop report and split file now (None: no report)."""
    pcfg = cfg.data.photos
    report = read_json(resolve_path(pcfg.report, root))
    if report is None:
        return None
    splits = read_json(resolve_path(pcfg.splits, root)) or {}
    where = {
        item["file"]: split
        for split in ("train", "val", "test")
        for item in splits.get(split, [])
        if "file" in item
    }
    return {
        e["file"]: {"status": e["status"], "split": where.get(e["file"])}
        for e in report.get("files", [])
    }


def changes(
    before: dict[str, dict[str, Any]] | None,
    after: dict[str, dict[str, Any]] | None,
    feedback_prefix: str = "FB",
) -> dict[str, Any]:
    """The files added and removed between two snapshots (a first run: every file is new), and
    how many of the new ones came from staff feedback (`emowatch feedback import`)."""
    old, new = before or {}, after or {}
    added = [{"file": f, **new[f]} for f in sorted(set(new) - set(old))]
    return {
        "first_run": before is None,
        "added": added,
        "from_feedback": sum(Path(a["file"]).name.startswith(feedback_prefix) for a in added),
        "removed": sorted(set(old) - set(new)),
        "added_by_status": dict(Counter(a["status"] for a in added)),
        "added_by_split": dict(Counter(str(a["split"]) for a in added)),
    }


def markdown(found: dict[str, Any], limit: int = 40) -> list[str]:
    """The report's lines about new and removed photos."""
    if not found:
        return []
    added, removed = found["added"], found["removed"]
    head = "first run here: every photo is new" if found["first_run"] else "since the last run"
    lines = [f"## Photos ({head})", ""]
    if not added and not removed:
        return [*lines, "No photo added or removed.", ""]
    if added:
        splits = ", ".join(f"{k} {v}" for k, v in sorted(found["added_by_split"].items()))
        status = ", ".join(f"{k} {v}" for k, v in sorted(found["added_by_status"].items()))
        staff = found.get("from_feedback", 0)
        origin = f" ({staff} from staff feedback)" if staff else ""
        lines += [f"{len(added)} new{origin}: {status}; went to {splits}", ""]
        lines += ["| file | status | split |", "|---|---|---|"]
        lines += [f"| {a['file']} | {a['status']} | {a['split'] or '-'} |" for a in added[:limit]]
        if len(added) > limit:
            lines.append(f"| … and {len(added) - limit} more (see the JSON report) | | |")
        lines.append("")
    if removed:
        lines += [f"{len(removed)} removed: " + ", ".join(removed[:limit]), ""]
    return lines
