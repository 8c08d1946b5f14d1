"""DVC stage `crossval` (one per photos model): out-of-fold camera-path scores of every non-test
person (`evaluation.people_cv` states the rule).

Each fold's model is the train stage's own recipe (`train.model_config`, `train.fit_model`:
the FER2013 start, the tuned params, the augment pipeline, the seed), trained on its fold's
training people and stopped early on its stopping people; the held-out people's full photos then
run the camera path (`FaceClassifier`: the sweep, crop, classify) for every CLAHE and TTA option
the evaluate stage may choose, on the photos as they are and changed by the camera conditions
the CLAHE choice is made under (`evaluate.clahe_conditions`). The records, one row per photo,
condition and option with every class's probability, are what `evaluate` fits the photos
model's threshold (on the photos as they are) and CLAHE choice on and holds to the floors. A
finished fold is kept (with the fingerprint of everything it read): a killed stage resumes at
the first unfinished fold. The test people are never in any fold.
"""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import torch
from omegaconf import DictConfig

from emowatch.config import plain
from emowatch.data import augmentation, photos
from emowatch.data.splits import SplitArrays, load_dataset
from emowatch.errors import DataError
from emowatch.evaluation import deployed, people_cv
from emowatch.files import file_hash, fingerprint, write_json
from emowatch.inference.face_classifier import FaceClassifier, align_of, spec_of
from emowatch.layout import Layout
from emowatch.stages import no_photos, train
from emowatch.tracking.runs import stage_run
from emowatch.training.fit import EpochHistory, scheduler_config
from emowatch.training.transfer import Source

STAGE = "crossval"
DATASET = "photos"
POOL = ("train", "val")  # the people cross-validated: every non-test person


def options(ecfg: DictConfig) -> tuple[list[bool], list[str]]:
    """The CLAHE and TTA options evaluate may choose between (`evaluate.clahe`, `.tta`)."""
    clahe = [False, True] if ecfg.clahe == "auto" else [bool(ecfg.clahe)]
    tta = list(ecfg.tta_candidates) if ecfg.tta == "auto" else [str(ecfg.tta)]
    return clahe, tta


def pool(cfg: DictConfig, root: Path | None) -> tuple[SplitArrays, np.ndarray, bool]:
    """The crops of every non-test face as one `train` split, each face's group (its person, or
    the photo where photos carry no person id), and whether groups are people."""
    arrays = load_dataset(cfg, DATASET, root)
    lists = json.loads(Layout(cfg, root).photo_splits.read_text())
    by_person = bool(lists.get("by_subject"))
    key = "subject" if by_person else "file"
    groups = np.array([it[key] for split in POOL for it in lists[split]])
    x = np.concatenate([arrays.x[s] for s in POOL])
    y = np.concatenate([arrays.y[s] for s in POOL])
    return SplitArrays({"train": x}, {"train": y}, arrays.classes), groups, by_person


def fold_arrays(data: SplitArrays, groups: np.ndarray, fold: people_cv.Fold) -> SplitArrays:
    """The fold's train / val (stopping) / test (held-out) crops."""
    x, y = data.x["train"], data.y["train"]
    parts = {"train": fold.train, "val": fold.stop, "test": fold.held}
    idx = {s: np.flatnonzero(np.isin(groups, people)) for s, people in parts.items()}
    return SplitArrays(
        {s: x[i] for s, i in idx.items()}, {s: y[i] for s, i in idx.items()}, data.classes
    )


@dataclass(frozen=True)
class Recipe:
    """The train stage's recipe for photos model `model`, read once for every fold, and the
    fingerprint of everything a fold reads besides its people."""

    model: str
    mcfg: DictConfig
    batch_size: int
    source: Source | None
    augment: object
    key: str


def recipe(cfg: DictConfig, model: str, root: Path | None) -> Recipe:
    """The model's config, batch size, start and augmentation (`train.model_config`), and the
    fingerprint of them, the training inputs and the camera path's settings."""
    mcfg, batch_size, _, source = train.model_config(cfg, DATASET, model, root)
    tcfg = cfg.train
    files = [file_hash(p) for p in train.input_files(cfg, DATASET, root, source)]
    key = fingerprint(
        mcfg, batch_size, tcfg[DATASET], tcfg.monitor, scheduler_config(cfg, mcfg), cfg.trainer,
        cfg.seed, files, options(cfg.evaluate), cfg.deploy.crop_margin, cfg.detector,
        cfg.deploy.watch.detect,
        *filter(None, [align_of(cfg.deploy.get("align"))]),  # only when on: old folds stay
        *filter(None, [deployed.clahe_conditions(cfg.evaluate)]),
    )  # fmt: skip
    augment = augmentation.for_model(cfg, mcfg.get("augment"), root)
    return Recipe(model, mcfg, batch_size, source, augment, key)


def fold_key(how: Recipe, fold: people_cv.Fold) -> str:
    """Everything a fold's result depends on: the recipe's fingerprint and the fold's people."""
    return fingerprint(how.key, fold.train, fold.stop, fold.held)


def fit_fold(
    cfg: DictConfig, how: Recipe, arrays: SplitArrays, work: Path
) -> tuple[torch.nn.Module, dict]:
    """One fold's fine-tune by the train stage's recipe; the network at its best checkpoint."""
    history = EpochHistory()
    module, trainer = train.fit_model(
        cfg, DATASET, how.model, how.mcfg, how.batch_size, arrays, how.augment, work, None,
        history, how.source, None,
    )  # fmt: skip
    best = Path(trainer.checkpoint_callback.best_model_path or work / "last.ckpt")
    state = torch.load(best, map_location="cpu", weights_only=True)
    module.load_state_dict(state["state_dict"])
    return module.net.eval(), {"best_epoch": int(state["epoch"]), "epochs": len(history.rows)}


def camera_path(
    cfg: DictConfig,
    net: torch.nn.Module,
    classes: list[str],
    items: list[deployed.Photo],
    root: Path | None,
) -> list[dict]:
    """The held-out photos through the camera path under every CLAHE and TTA option, as they are
    (condition `plain`) and changed by each of `deployed.clahe_conditions`: one record per photo,
    condition and option, with every class's probability (none where no face was found)."""
    norm = cfg.train[DATASET].normalize
    info = {
        "classes": classes,
        "input_shape": [1, cfg.data.photos.image_size, cfg.data.photos.image_size],
        "normalize": {"mean": norm.mean, "std": norm.std},
    }
    photo_root = Layout(cfg, root).photos_root
    clahe_options, tta_options = options(cfg.evaluate)
    changed = deployed.clahe_conditions(cfg.evaluate)
    samples = deployed.with_true_faces(photo_root, items)[0] if changed else []
    records = []
    for clahe in clahe_options:
        by_tta = {
            tta: FaceClassifier(
                net,
                spec_of(
                    info,
                    0.5,
                    tta,
                    cfg.deploy.crop_margin,
                    cfg.detector,
                    clahe,
                    cfg.deploy.watch.detect,
                    align_of(cfg.deploy.get("align")),
                ),
            )
            for tta in tta_options
        }
        first = next(iter(by_tta.values()))
        for p in items:
            gray, face, status = deployed.find_face(first, photo_root, p)
            for tta, classifier in by_tta.items():
                pred = classifier.classify(gray, [face])[0] if face is not None else None
                probs = pred.probabilities if pred else {}
                records.append(
                    {
                        "file": p.file,
                        "person": p.person,
                        "label": p.label,
                        "condition": "plain",
                        "clahe": clahe,
                        "tta": tta,
                        "status": status,
                    }
                    | {f"p_{c}": round(probs[c], 6) if probs else None for c in classes}
                )
        for condition in changed:
            for tta, classifier in by_tta.items():
                for r in deployed.under_condition(classifier, samples, condition, int(cfg.seed)):
                    probs = r.pop("probabilities")
                    del r["predicted"]
                    r |= {"clahe": clahe, "tta": tta}
                    records.append(
                        r | {f"p_{c}": round(probs[c], 6) if probs else None for c in classes}
                    )
    return records


def held_photos(
    items: list[deployed.Photo], fold: people_cv.Fold, by_person: bool
) -> list[deployed.Photo]:
    """The full photos of the fold's held-out people (or photos, without person ids)."""
    held = set(fold.held)
    return [p for p in items if (p.person if by_person else p.file) in held]


def run_fold(
    cfg: DictConfig,
    how: Recipe,
    data: SplitArrays,
    groups: np.ndarray,
    items: list[deployed.Photo],
    fold: people_cv.Fold,
    by_person: bool,
    state_dir: Path,
    root: Path | None,
) -> dict:
    """A finished fold's result from `state_dir` when its fingerprint matches, else the fold
    trained and scored now (and kept)."""
    key = fold_key(how, fold)
    path = state_dir / f"fold_{fold.index}.json"
    if path.is_file():
        done = json.loads(path.read_text())
        if done.get("fingerprint") == key:
            print(f"crossval@{how.model}: fold {fold.index} kept from {path}")
            return done
    work = state_dir / f"fold_{fold.index}"
    shutil.rmtree(work, ignore_errors=True)
    net, fit = fit_fold(cfg, how, fold_arrays(data, groups, fold), work)
    held = held_photos(items, fold, by_person)
    records = [r | {"fold": fold.index} for r in camera_path(cfg, net, data.classes, held, root)]
    shutil.rmtree(work, ignore_errors=True)
    done = {
        "fingerprint": key,
        "fold": fold.index,
        "train": fold.train,
        "stop": fold.stop,
        "held": fold.held,
        **fit,
        "records": records,
    }
    write_json(path, done)
    return done


def write_records(records: list[dict], path: Path, classes: list[str]) -> Path:
    """The OOF records as CSV (a header alone where there are none)."""
    fields = ["file", "person", "label", "condition", "clahe", "tta", "status"]
    fields += [f"p_{c}" for c in classes] + ["fold"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(records)
    return path


def insufficient(
    cfg: DictConfig, model: str, classes: list[str], reason: str, root: Path | None
) -> dict:
    """Too few people to cross-validate: every output written, saying so; evaluate then has no
    out-of-fold evidence, and the gate refuses the photos model (the site runs FER2013's)."""
    out = people_cv.reports_dir(cfg, model, root)
    write_records([], out / "oof.csv", classes)
    write_json(out / "folds.json", {"insufficient": reason})
    people_cv.state_dir(cfg, model, root).mkdir(parents=True, exist_ok=True)
    print(f"warning: {STAGE}@{model}: {reason}")
    return {"insufficient": reason}


def outputs(cfg: DictConfig, model: str, root: Path | None = None) -> list[Path]:
    """Every output dvc.yaml declares for crossval@<model> (tests/test_dvc_yaml holds them)."""
    out = people_cv.reports_dir(cfg, model, root)
    return [people_cv.state_dir(cfg, model, root), out / "oof.csv", out / "folds.json"]


def skip(cfg: DictConfig, model: str, root: Path | None) -> dict | None:
    """At a site without photos (`stages/no_photos`' rule), every output written as skipped."""
    reason = photos.no_photos(Layout(cfg, root).photo_splits)
    if reason is None:
        return None
    for path in outputs(cfg, model, root):
        no_photos.write(path, reason)
    print(f"{STAGE}@{model}: skipped, {reason}")
    return {"skipped": reason}


def main(cfg: DictConfig, model: str, root: Path | None = None) -> dict:
    """Cross-validate photos model `model` by person; returns the stage's summary."""
    if (skipped := skip(cfg, model, root)) is not None:
        return skipped
    out, state_dir = people_cv.reports_dir(cfg, model, root), people_cv.state_dir(cfg, model, root)
    data, groups, by_person = pool(cfg, root)
    try:
        folds = people_cv.plan(list(groups), int(cfg.evaluate.people_cv.folds))
    except DataError as err:  # too few people: said, and no photos model can pass its floor
        return insufficient(cfg, model, data.classes, str(err), root)
    tags = {"emowatch.dataset": DATASET, "emowatch.model": model}
    params = {"folds": len(folds), "by": "person" if by_person else "photo"}
    params |= {"people": len(set(groups)), "seed": cfg.seed}
    how = recipe(cfg, model, root)
    items = deployed.photo_set(cfg, data.classes, list(POOL), root)
    with stage_run(cfg, STAGE, f"crossval-{DATASET}-{model}", params, root=root, tags=tags):
        results = [
            run_fold(cfg, how, data, groups, items, fold, by_person, state_dir, root)
            for fold in folds
        ]
        records = [r for done in results for r in done["records"]]
        summary = {
            "by": params["by"],
            "folds": [
                {k: v for k, v in done.items() if k not in ("records", "fingerprint")}
                for done in results
            ],
            "n_photos": len({r["file"] for r in records}),
            "options": dict(zip(("clahe", "tta"), options(cfg.evaluate), strict=True)),
        }
        write_records(records, out / "oof.csv", data.classes)
        write_json(out / "folds.json", plain(summary))
        for done in results:
            mlflow.log_metric("best_epoch", done["best_epoch"], step=done["fold"])
        mlflow.log_artifact(str(out / "folds.json"))
        mlflow.log_artifact(str(out / "oof.csv"))
    print(
        f"crossval@{model}: {len(folds)} folds by {params['by']} over "
        f"{params['people']} groups, {summary['n_photos']} photos scored out of fold"
    )
    return summary
