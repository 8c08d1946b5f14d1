"""DVC stage `prepare`: FER2013 (CSV or image folders) -> validated uint8 arrays per split.

Splits: Training -> train, PublicTest -> val (selection), PrivateTest -> test (report once).
Writes `<out_dir>/{train,val,test}.npz` (x: N×S×S uint8, y: class index, row: source row), a
full data report (JSON) and a small metrics JSON, prints a summary table and logs it all to
MLflow. Cleaning drops train images that leak into val or test (byte-identical or near, by
perceptual hash), conflicting duplicates and blanks, and val images that copy a test image;
test stays as published.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
from omegaconf import DictConfig

from emowatch.config import flatten, resolve_path
from emowatch.data import ferplus, quality
from emowatch.data.fer2013 import SPLITS, USAGE_TO_SPLIT, Fer2013Table, read_csv, read_folders
from emowatch.errors import DataError
from emowatch.files import write_json
from emowatch.tracking.runs import stage_run

STAGE = "prepare"


def load_table(dcfg: DictConfig, seed: int, root: Path | None = None) -> Fer2013Table:
    """Read FER2013 from the configured source."""
    classes = list(dcfg.classes)
    if dcfg.source == "csv":
        return read_csv(resolve_path(dcfg.csv_path, root), len(classes), dcfg.image_size)
    if dcfg.source == "folders":
        f = dcfg.folders
        return read_folders(
            resolve_path(f.root, root),
            classes,
            f.train,
            f.test,
            f.val_fraction,
            dcfg.image_size,
            seed,
        )
    raise DataError(f"data.fer2013.source must be csv or folders, not {dcfg.source!r}")


def check_rejections(table: Fer2013Table, max_bad_fraction: float) -> None:
    """Fail when too large a share of the input is malformed to trust the rest."""
    n_bad = len(table.rejected)
    if table.n_read == 0:
        raise DataError("no FER2013 rows or files were found")
    if n_bad / table.n_read > max_bad_fraction:
        raise DataError(
            f"{n_bad} of {table.n_read} FER2013 rows/files are malformed "
            f"({n_bad / table.n_read:.1%} > max_bad_fraction {max_bad_fraction:.1%}); "
            "see `rejected` in the data report"
        )


def apply_ferplus(
    table: Fer2013Table, dcfg: DictConfig, root: Path | None
) -> tuple[Fer2013Table, dict]:
    """Relabel with the FER+ majority vote; drop (and count) rows without a usable majority."""
    if dcfg.source != "csv":
        raise DataError("labels=ferplus needs source=csv: FER+ rows align with the CSV by position")
    usage, labels, reasons = ferplus.majority_labels(
        resolve_path(dcfg.ferplus_path, root), list(dcfg.classes)
    )
    if len(usage) != table.n_read:
        raise DataError(f"FER+ has {len(usage)} rows but the FER2013 CSV has {table.n_read}")
    fer_usage = np.array(
        [SPLITS.index(USAGE_TO_SPLIT[u]) if u in USAGE_TO_SPLIT else -1 for u in usage]
    )
    if np.any(fer_usage[table.row] != table.split):
        raise DataError("FER+ Usage column disagrees with FER2013 Usage: not the same row order")
    keep = labels[table.row] >= 0
    dropped: dict[str, dict[str, int]] = {}
    for s, name in enumerate(SPLITS):
        in_split = table.split == s
        why = reasons[table.row[in_split & ~keep]]
        dropped[name] = {
            r: int(n) for r, n in zip(*np.unique(why.astype(str), return_counts=True), strict=True)
        }
    out = table.subset(keep)
    out.labels = labels[out.row].astype(np.int64)
    return out, dropped


def class_counts(table: Fer2013Table, classes: list[str]) -> dict[str, dict[str, int]]:
    """{split: {class: count}} of a table."""
    out = {}
    for s, name in enumerate(SPLITS):
        counts = np.bincount(table.labels[table.split == s], minlength=len(classes))
        out[name] = {c: int(n) for c, n in zip(classes, counts, strict=True)}
    return out


def drop_masks(
    table: Fer2013Table,
    findings: quality.Findings,
    pairs: list[quality.PairFindings],
    clean: DictConfig,
) -> dict[str, np.ndarray]:
    """Per cleaning rule, the images it drops (rules may overlap). Train loses its leaks into
    val or test, conflicting duplicates and blanks; val loses its copies of test images, which
    would let the test split steer the choices made on val. Test stays as published."""
    train = table.split == SPLITS.index("train")
    near = {(p.first, p.second): p.near for p in pairs}
    near_eval = near[("train", "val")] | near[("train", "test")]
    rules = {
        "cross_split_duplicate": (clean.drop_cross_split_duplicates, train & findings.cross_split),
        "near_duplicate_of_val_or_test": (clean.drop_near_duplicates, near_eval),
        "conflicting_duplicate": (clean.drop_conflicting_duplicates, train & findings.conflicting),
        "blank": (clean.drop_blank, train & findings.blank),
        "val_copy_of_test": (clean.drop_val_test_duplicates, near[("val", "test")]),
    }
    return {name: mask for name, (on, mask) in rules.items() if on}


def pair_report(pairs: list[quality.PairFindings], max_distance: int) -> dict:
    """Per split pair, how many images of the first have a byte-identical or a near copy in the
    second (perceptual hash within `max_distance` bits), with examples."""
    return {
        f"{p.first}-{p.second}": {
            "exact": int(p.exact.sum()),
            "near": int(p.near.sum()),
            "max_distance": max_distance,
            "examples": p.examples,
        }
        for p in pairs
    }


def format_summary(report: dict) -> str:
    """A short human table: per class and split, kept (read)."""
    classes = list(report["counts_read"]["train"])
    lines = [f"{'class':<10}" + "".join(f"{s:>18}" for s in SPLITS)]
    for c in classes:
        cells = "".join(
            f"{report['counts'][s][c]:>10} ({report['counts_read'][s][c]:>5})" for s in SPLITS
        )
        lines.append(f"{c:<10}{cells}")
    totals = "".join(
        f"{sum(report['counts'][s].values()):>10} ({sum(report['counts_read'][s].values()):>5})"
        for s in SPLITS
    )
    lines.append(f"{'total':<10}{totals}")
    q, r = report["quality"], report["rejected"]
    lines += [
        "kept (read)",
        f"rejected rows/files: {r['count']} ({r['fraction']:.3%}) {r['by_reason']}",
        f"duplicate groups: {q['duplicate_groups']} ({q['duplicate_images']} images); "
        f"cross-split groups: {q['cross_split_groups']}; conflicting-label groups: "
        f"{q['conflicting_groups']}; blank images: {q['blank_images']}",
        "copies across splits (images of the first with a copy in the second, exact/near): "
        + ", ".join(f"{k} {v['exact']}/{v['near']}" for k, v in q["split_pairs"].items()),
        f"dropped from train: {report['dropped_from_train']}",
        f"dropped from val: {report['dropped_from_val']}",
    ]
    if report.get("ferplus_dropped"):
        lines.append(f"FER+ relabelling dropped: {report['ferplus_dropped']}")
    return "\n".join(lines)


def build(cfg: DictConfig, root: Path | None = None) -> tuple[Fer2013Table, dict]:
    """Read, validate, relabel and clean FER2013; return the kept table and the full report."""
    dcfg = cfg.data.fer2013
    classes = list(dcfg.classes)
    table = load_table(dcfg, cfg.seed, root)
    reasons = [r["reason"].split(":")[0] for r in table.rejected]
    report: dict = {
        "source": dcfg.source,
        "labels": dcfg.labels,
        "classes": classes,
        "n_read": table.n_read,
        "rejected": {
            "count": len(table.rejected),
            "fraction": len(table.rejected) / max(table.n_read, 1),
            "by_reason": {k: reasons.count(k) for k in sorted(set(reasons))},
            "items": table.rejected,
        },
        "counts_read": class_counts(table, classes),
    }
    try:
        check_rejections(table, dcfg.max_bad_fraction)
    except DataError as err:
        report["error"] = str(err)
        raise _Failed(report) from None

    if dcfg.labels == "ferplus":
        table, report["ferplus_dropped"] = apply_ferplus(table, dcfg, root)
    elif dcfg.labels != "fer2013":
        raise DataError(f"data.fer2013.labels must be fer2013 or ferplus, not {dcfg.labels!r}")

    findings = quality.inspect(table.images, table.labels, table.split, dcfg.clean.blank_max_std)
    groups = quality.duplicate_groups(findings, table.labels, table.split, table.source, SPLITS)
    train = table.split == SPLITS.index("train")
    report["quality"] = {
        "duplicate_groups": len(groups),
        "duplicate_images": int(findings.duplicate.sum()),
        "cross_split_groups": sum(g["cross_split"] for g in groups),
        "cross_split_images_in_train": int((findings.cross_split & train).sum()),
        "conflicting_groups": sum(g["conflicting"] for g in groups),
        "conflicting_images": int(findings.conflicting.sum()),
        "blank_images": int(findings.blank.sum()),
        "blank": [
            {
                "where": table.source[i],
                "split": SPLITS[table.split[i]],
                "std": round(float(findings.std[i]), 3),
            }
            for i in np.flatnonzero(findings.blank)
        ],
        "groups": groups,
    }
    max_distance = int(dcfg.clean.near_max_distance)
    hashes = quality.phash(table.images)
    pairs = quality.split_pairs(findings, hashes, table.split, table.source, SPLITS, max_distance)
    report["quality"]["split_pairs"] = pair_report(pairs, max_distance)
    drops = drop_masks(table, findings, pairs, dcfg.clean)
    drop = np.logical_or.reduce(list(drops.values())) if drops else np.zeros(len(train), bool)
    report["dropped_from_train"] = {
        name: int((m & train).sum()) for name, m in drops.items() if name != "val_copy_of_test"
    } | {"total": int((drop & train).sum())}
    val = table.split == SPLITS.index("val")
    report["dropped_from_val"] = {"val_copy_of_test": int((drop & val).sum())}
    kept = table.subset(~drop)
    report["counts"] = class_counts(kept, classes)
    empty = [s for s in SPLITS if sum(report["counts"][s].values()) == 0]
    if empty:
        report["error"] = f"empty splits: {empty}"
        raise _Failed(report)
    return kept, report


class _Failed(DataError):
    """The data cannot be trusted; carries the report written so far."""

    def __init__(self, report: dict) -> None:
        super().__init__(report["error"])
        self.report = report


def write_outputs(table: Fer2013Table, report: dict, dcfg: DictConfig, root: Path | None) -> dict:
    """Write the arrays per split, the report and the metrics; return the metrics."""
    out_dir = resolve_path(dcfg.out_dir, root)
    out_dir.mkdir(parents=True, exist_ok=True)
    for s, name in enumerate(SPLITS):
        m = table.split == s
        np.savez(
            out_dir / f"{name}.npz",
            x=table.images[m],
            y=table.labels[m],
            row=table.row[m],
            classes=np.array(report["classes"]),
        )
    metrics = {
        "n_read": report["n_read"],
        "rejected": report["rejected"]["count"],
        **{f"n_{s}": sum(report["counts"][s].values()) for s in SPLITS},
        **{k: v for k, v in report["quality"].items() if isinstance(v, int)},
        "dropped_from_train": report["dropped_from_train"]["total"],
        "dropped_from_val": report["dropped_from_val"]["val_copy_of_test"],
    }
    for pair, found in report["quality"]["split_pairs"].items():
        metrics |= {f"exact_{pair}": found["exact"], f"near_{pair}": found["near"]}
    write_json(resolve_path(dcfg.metrics, root), metrics)
    return metrics


def main(cfg: DictConfig, root: Path | None = None) -> dict:
    """Run the stage: returns the data report (also written to `data.fer2013.report`)."""
    dcfg = cfg.data.fer2013
    report_path = resolve_path(dcfg.report, root)
    params = flatten(dcfg, "data.fer2013") | {"seed": cfg.seed}
    with stage_run(cfg, STAGE, params=params, root=root):
        try:
            table, report = build(cfg, root)
        except _Failed as failed:
            write_json(report_path, failed.report)
            mlflow.log_artifact(str(report_path))
            raise DataError(f"{failed} — the data cannot be trusted; see {report_path}") from None
        metrics = write_outputs(table, report, dcfg, root)
        write_json(report_path, report)
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        mlflow.log_artifact(str(report_path))
        print(format_summary(report))
        print(f"report: {report_path}")
    return report
