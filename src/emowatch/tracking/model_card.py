"""The model card of a promoted version: what it is, what it was measured on, how well, where it
must not be used, and why it was promoted. Markdown: the version's description in the MLflow UI
(rendered there), an artifact of the promote run, and `reports/registry/<dataset>_model_card.md`.
"""

from __future__ import annotations

from mlflow.entities.model_registry import ModelVersion

from emowatch.evaluation.paired import wilson

LIMITS = """\
- Intended use: flagging customers who may be angry so that staff can step in early, with a
  person deciding what to do. Not for decisions about a person (hiring, access, pricing,
  security), and not for inferring anything beyond a facial expression.
- Data: FER2013 (ICML 2013 challenge) is for research use; the JAFFE photos (posed expressions of
  10 Japanese women) are for non-commercial research only (Lyons et al., 1998). A business must
  train on its own, consented photos before commercial use.
- Limits: a facial expression is not an emotion; posed and spontaneous faces differ; figures on
  one population need not hold on another (see the per-person deployed-path figures); faces the
  detector misses (small, turned, dark) are never classified."""


def _with_interval(p: float, n: int) -> str:
    low, high = wilson(round(p * n), n)
    return f"{p:.3f} [{low:.3f}, {high:.3f}]"


def figures_table(m: dict) -> list[str]:
    """Val (cross-fitted; what decisions read) and test (reported) figures with 95% intervals."""
    rows = ["| split | n | accuracy | angry recall | angry precision | false alarms per angry |"]
    rows.append("|---|---:|---|---|---|---:|")
    for split, f in (("val (cross-fitted)", m["val"]), ("test (reported)", m)):
        n, n_angry, said = f.get("n", 0), f.get("n_angry", 0), f.get("n_said_angry", 0)
        recall, precision = f["recall_angry_at_threshold"], f["precision_angry_at_threshold"]
        caught = round(recall * n_angry)
        alarms = (said - caught) / caught if caught else float("inf")
        acc = f.get("accuracy_at_threshold", f["accuracy"])
        rows.append(
            f"| {split} | {n} | {_with_interval(acc, n)} | {_with_interval(recall, n_angry)} | "
            f"{_with_interval(precision, said)} | {alarms:.2f} |"
        )
    return rows


def deployed_table(m: dict) -> list[str]:
    d = m.get("deployed")
    if not d:
        return ["No deployed-path figures."]
    if "skipped" in d:
        return [f"No deployed-path figures: {d['skipped']}."]
    rows = ["| people | photos | faces found | accuracy | angry caught | angry precision |"]
    rows.append("|---|---:|---:|---:|---:|---:|")
    evidence = d.get("evidence", {})
    deciding = "out of fold" if "folds" in evidence else "deciding"
    for part, label in (("decide", deciding), ("report", "test (reported)")):
        f = d[part]
        people = ", ".join(d["people"][part])
        rows.append(
            f"| {label}: {people} | {f['n']} | {f['face_rate']:.2f} | {f['accuracy']:.2f} | "
            f"{f['angry_caught']} of {f['n_angry']} | {f['precision_angry']:.2f} |"
        )
    if "folds" in evidence:
        rows.append(
            f"\nOut of fold: {evidence['folds']} folds over every non-test person, each scored by "
            f"a model fine-tuned without them; the threshold {evidence['threshold']}."
        )
    if "insufficient" in evidence:
        rows.append(f"\nNo out-of-fold evidence: {evidence['insufficient']}.")
    return rows


def confusion_table(confusion: dict | None) -> list[str]:
    if not confusion:
        return ["No confusion matrix."]
    classes = confusion["classes"]
    rows = ["| actual \\ predicted | " + " | ".join(classes) + " |"]
    rows.append("|---" * (len(classes) + 1) + "|")
    for c, row in zip(classes, confusion["deployed"], strict=True):
        rows.append(f"| {c} | " + " | ".join(str(v) for v in row) + " |")
    return rows


def render(
    version: ModelVersion, metrics: dict | None, confusion: dict | None, decision: dict
) -> str:
    """The card of `version` (its tags), its evaluation (`metrics.json`, `confusion.json`, when
    they are the ones it was registered from) and the gate's decision."""
    t = version.tags
    threshold = float(t.get("threshold_angry", "nan"))
    sizes = (
        f"; split sizes {metrics['split_sizes']}" if metrics and "split_sizes" in metrics else ""
    )
    lines = [
        f"# Model card: {version.name} v{version.version} ({t.get('model')})",
        "",
        "## What it is",
        "",
        f"- Network `{t.get('model')}`, classes {t.get('classes')}, input {t.get('input_shape')}, "
        f"test-time augmentation `{t.get('tta')}` (chosen on val).",
        f"- Angry when P(angry) ≥ **{threshold:.3f}** (fitted on val for recall "
        f"{metrics.get('target_recall') if metrics else '?'}), otherwise the most likely other "
        "class. Faces come from the Haar detector at deploy settings, squared and grown by the "
        "crop margin.",
        f"- Code: git commit `{t.get('git_commit')}`; training run `{t.get('train_run')}`.",
        f"- Data: `data.dvc` md5 `{t.get('data_hash')}`, val hash `{t.get('val_data_hash')}`, "
        f"test hash `{t.get('test_data_hash')}`{sizes}.",
        "",
    ]
    if metrics:
        lines += [
            "## How well (95% Wilson intervals)",
            "",
            *figures_table(metrics),
            "",
            "False alarms per angry customer: faces wrongly called angry for each angry face "
            "caught, at the threshold.",
            "",
            "### Scored as deployed (detector, crop, classify, threshold) on full photos",
            "",
            *deployed_table(metrics),
            "",
            "### Confusion on test at the deployed rule (counts; rows: actual)",
            "",
            *confusion_table(confusion),
            "",
        ]
    else:
        lines += ["Its evaluation files are not in this workspace; see the version's tags.", ""]
    lines += ["## Intended use and limits", "", LIMITS, "", "## The gate's decision", ""]
    lines.append(
        f"{'Promoted' if decision.get('promoted') else 'Not promoted'}: {decision.get('reason')}"
    )
    for metric, r in decision.get("compared", {}).get("paired", {}).items():
        lines.append(
            f"- {metric}: {r['a']:.3f} vs champion {r['b']:.3f} on {r['n']} val faces, "
            f"difference {r['diff']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}]"
        )
    return "\n".join(lines) + "\n"
