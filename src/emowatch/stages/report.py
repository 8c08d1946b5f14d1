"""DVC stage `report` and `emowatch report`: the results page, generated from the metrics files.

The documentation's results page is this stage's `docs/results.md` (and the README's results
table a copy of its rows, held by a test), never typed by hand: per dataset,
every evaluated model with its val figures (what decisions read; cross-fitted at the angry
threshold), its test figures (reported only), and the deployed path on the full photos; then
the promotion gate's decision with its paired comparison, and the data checks of `prepare`.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
from omegaconf import DictConfig

from emowatch.config import resolve_path
from emowatch.data import photos
from emowatch.files import read_json
from emowatch.inference import faces
from emowatch.layout import Layout
from emowatch.tracking.runs import stage_run

STAGE = "report"


def fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def model_row(model: str, m: dict, marks: str) -> str:
    """One table row of a model's metrics JSON."""
    v, d = m["val"], m["deployed"]
    if "skipped" in d:  # a site without photos: no camera path to score
        camera = ["– (no photos)", "– (no photos)"]
    else:
        dd, dr = d["decide"], d["report"]
        interval = (
            f" [{fmt(dd['recall_angry_low'], 2)}, {fmt(dd['recall_angry_high'], 2)}]"
            if "recall_angry_low" in dd
            else ""
        )
        camera = [
            f"{fmt(dd['face_rate'], 2)} / {fmt(dd['accuracy'], 2)} / "
            f"{dd['angry_caught']} of {dd['n_angry']}{interval} / "
            f"{fmt(dd['precision_angry'], 2)}",
            f"{fmt(dr['accuracy'], 2)} / {dr['angry_caught']} of {dr['n_angry']}",
        ]
    cells = [
        f"{model}{marks}",
        m["tta"]["chosen"],
        fmt(v["accuracy"]),
        f"{fmt(v['recall_angry_at_threshold'], 2)} / {fmt(v['precision_angry_at_threshold'], 2)}",
        fmt(m["threshold_angry"]),
        f"**{fmt(m['accuracy'])}**",
        f"{fmt(m['recall_angry_at_threshold'], 2)} / {fmt(m['precision_angry_at_threshold'], 2)}",
        *camera,
    ]
    return "| " + " | ".join(cells) + " |"


HEADER = (
    "| model | TTA (val rule) | val acc | val angry recall / precision (cross-fitted) "
    "| threshold (val; photos: out of fold) | test acc | test angry recall / precision "
    "| camera path, non-test people (photos: out of fold): faces / acc / angry caught "
    "[95% recall interval] / precision "
    "| camera path, test people: acc / angry caught |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


def people_lines(model: str, m: dict) -> list[str]:
    """A photos model's out-of-fold evidence in words, and its per-person table."""
    d = m.get("deployed", {})
    ev = d.get("evidence")
    if not ev:
        return []
    if "insufficient" in ev:
        return [f"{model}: no out-of-fold evidence ({ev['insufficient']}).", ""]
    dd = d["decide"]
    need = ev.get("angry_photos_needed")
    if ev.get("floor") is None:
        verdict = "no floor set"
    elif dd["recall_angry_low"] >= ev["floor"]:
        verdict = f"its lower end reaches the floor {ev['floor']}"
    elif need is None:
        verdict = (
            f"short of the floor {ev['floor']}, and at this recall no number of photos proves it"
        )
    else:
        verdict = (
            f"short of the floor {ev['floor']}: about {need} more angry photos caught at this "
            "rate would prove it"
        )
    pool = (
        f"{ev['people']} people (every non-test person)"
        if ev.get("by") == "person"
        else f"{ev.get('photos')} photos (no person ids: folds by photo)"
    )
    lines = [
        f"{model}: {ev['folds']} folds over {pool}, threshold {ev['threshold']}; recall on angry "
        f"{dd['angry_caught']} of {dd['n_angry']} [{fmt(dd['recall_angry_low'], 2)}, "
        f"{fmt(dd['recall_angry_high'], 2)}], {verdict}.",
        "",
        "| person | part | photos | faces found | accuracy | angry caught | said angry |",
        "|---|---|---|---|---|---|---|",
    ]
    for person, f in d.get("per_person", {}).items():
        part = "out of fold" if f["part"] == "decide" else f["part"]
        lines.append(
            f"| {person} | {part} | {f['n']} | {fmt(f['face_rate'], 2)} | "
            f"{fmt(f['accuracy'], 2)} | {f['angry_caught']} of {f['n_angry']} | "
            f"{f['said_angry']} |"
        )
    return [*lines, ""]


def gate_lines(promotion: dict | None) -> list[str]:
    """The promotion decision and its paired comparison, in words."""
    if promotion is None:
        return ["No promotion report (run `dvc repro promote`)."]
    if "skipped" in promotion:
        return [f"Nothing registered or promoted: {promotion['skipped']}."]
    verb = "promoted" if promotion.get("promoted") else "kept"
    out = [f"Gate: {verb} — {promotion.get('reason')}"]
    if "champion_after" in promotion:
        before, after = promotion.get("champion_before"), promotion["champion_after"]
        out[0] += f" (champion v{before} → v{after})."
    for metric, r in promotion.get("compared", {}).get("paired", {}).items():
        out.append(
            f"- {metric}: challenger {r['a']:.3f} vs champion {r['b']:.3f} on {r['n']} val "
            f"faces, difference {r['diff']:+.3f}, {r['confidence']:.0%} paired-bootstrap "
            f"interval [{r['low']:+.3f}, {r['high']:+.3f}]"
        )
    return out


def heading(cfg: DictConfig, dataset: str, root: Path | None) -> str:
    """The dataset's section title: what its val, test and deployed figures are measured on."""
    lists = read_json(Layout(cfg, root).photo_splits) or {}
    people = lists.get("subjects") or {}
    if dataset == "fer2013":
        return (
            "## FER2013 (val = PublicTest, test = PrivateTest; deployed = the site's photos "
            "through the camera path)"
        )
    if dataset == "photos" and people:
        n = sum(len(v) for v in people.values())
        return (
            f"## The site's photos ({n} people; val: {', '.join(people['val'])}; test: "
            f"{', '.join(people['test'])}; the others train)"
        )
    if dataset == "photos" and lists.get(photos.NO_PHOTOS):
        return "## The site's photos (none: this site runs on FER2013 alone)"
    if dataset == "photos" and lists:
        return (
            "## The site's photos (no person ids: split by photo, stratified by class, so one "
            "person's photos can be in train and test and these figures flatter the model on "
            "new people)"
        )
    return f"## {dataset}"


def champion_in(register: dict, promotion: dict | None) -> str | None:
    """The model whose version is the champion after this run's promotion, from the register
    and promotion reports."""
    versions = {str(v["version"]): m for m, v in register.get("versions", {}).items()}
    return versions.get(str((promotion or {}).get("champion_after")))


def champion_of(cfg: DictConfig, dataset: str, root: Path | None) -> str | None:
    """The dataset's champion model after this run's promotion (`champion_in` its reports)."""
    layout = Layout(cfg, root)
    register = read_json(layout.register_report(dataset)) or {}
    return champion_in(register, read_json(layout.promotion_report(dataset)))


def dataset_section(cfg: DictConfig, dataset: str, root: Path | None) -> list[str]:
    """The table and gate lines of one dataset."""
    layout = Layout(cfg, root)
    register = read_json(layout.register_report(dataset)) or {}
    promotion = read_json(layout.promotion_report(dataset))
    challenger = register.get("challenger", {}).get("model")
    champion_v = promotion.get("champion_after") if promotion else None
    champion = champion_in(register, promotion)
    if "skipped" in register:  # a site without photos: nothing trained, scored or registered
        return [heading(cfg, dataset, root), "", *gate_lines(promotion), ""]
    lines = [heading(cfg, dataset, root), "", HEADER]
    for model in cfg.registry.candidates[dataset]:
        m = read_json(layout.model(dataset, model).metrics)
        if m is None or "skipped" in m:
            lines.append(f"| {model} | not evaluated | | | | | | | |")
            continue
        marks = (" (champion)" if model == champion else "") + (
            " (challenger)" if model == challenger else ""
        )
        lines.append(model_row(model, m, marks))
    if champion is None and champion_v is not None:
        lines.append(f"\nChampion v{champion_v} was registered by an earlier run.")
    evidence = []
    for model in filter(None, dict.fromkeys([champion, challenger])):
        evidence += people_lines(model, read_json(layout.model(dataset, model).metrics) or {})
    return [*lines, "", *evidence, *gate_lines(promotion), ""]


def data_lines(cfg: DictConfig, root: Path | None) -> list[str]:
    m = read_json(resolve_path(cfg.data.fer2013.metrics, root))
    if m is None:
        return []
    pairs = [k.removeprefix("exact_") for k in m if k.startswith("exact_")]
    copies = ", ".join(f"{p} {m[f'exact_{p}']} exact / {m[f'near_{p}']} near" for p in pairs)
    return [
        "## Data (prepare)",
        "",
        f"FER2013 kept train {m['n_train']}, val {m['n_val']}, test {m['n_test']}; images of the "
        f"first split with a copy in the second: {copies}; dropped from train "
        f"{m['dropped_from_train']}, from val {m.get('dropped_from_val', 0)}.",
        "",
    ]


def deployed_setting(cfg: DictConfig) -> str:
    """The detector and crops that ship (registered models, `watch`), as the robustness table
    names its columns."""
    detector = str(cfg.detector.name)
    framing = faces.framing_of(cfg.deploy.get("align"))
    return faces.setting_name(detector, faces.cuts_by_eyes(detector, framing))


def robustness_lines(cfg: DictConfig, root: Path | None) -> list[str]:
    """Each champion's camera path under a camera's conditions, per detector (`robustness`)."""
    r = read_json(resolve_path(cfg.robustness.path, root))
    if r is None:
        return []
    tol = float(cfg.robustness.recall_tolerance)
    lines = [
        "## Under a camera's conditions (robustness)",
        "",
        "Each champion as served (its threshold, TTA, CLAHE, finder) on its deciding people's "
        "photos, changed as a camera changes them, faces found by each detector. Cells: faces "
        "found / accuracy / angry caught / precision; ✗ where angry recall falls more than "
        f"{tol:.2f} below the plain photos'.",
        "",
    ]
    shipped = deployed_setting(cfg)
    for dataset in ("fer2013", "photos"):
        d = r.get(dataset) or {}
        if "table" not in d:
            lines += [f"{dataset}: not scored ({d.get('skipped', 'no report')}).", ""]
            continue
        dets = list(d["table"])
        lines += [
            f"{dataset} champion `{d['model']}`: {d['photos']} photos of {len(d['people'])} "
            f"people ({', '.join(d['splits'])} splits).",
            "",
            "| condition | "
            + " | ".join(f"{det} (deployed)" if det == shipped else det for det in dets)
            + " |",
            "|---" * (len(dets) + 1) + "|",
        ]
        for condition in d["table"][dets[0]]:
            cells = []
            for det in dets:
                f = d["table"][det][condition]
                mark = "" if f["holds"] else " ✗"
                cells.append(
                    f"{f['face_rate']:.0%} / {f['accuracy']:.2f} / {f['angry_caught']} of "
                    f"{f['n_angry']}{mark} / {f['precision_angry']:.2f}"
                )
            what = r["conditions"].get(condition, "the photos as they are")
            lines.append(f"| {condition}: {what} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def scenario_cells(f: dict) -> str:
    """A scenario's figures under one rule, as table cells."""
    delay = "–" if f["median_delay_s"] is None else f"{f['median_delay_s']:.1f} s"
    return (
        f"{f['alerted_within']} of {f['angry_visits']} | {f['alerted']} of {f['angry_visits']} | "
        f"{delay} | {f['false_alarms']} ({f['false_alarms_per_hour']:.1f}/h) | "
        f"{f['false_alarms_per_hour_stated']:.1f}"
    )


SMOOTHED = {"votes": "of angry frames", "mean": "of mean P(angry)"}


def scenarios_lines(cfg: DictConfig, root: Path | None) -> list[str]:
    """Alerts as the business sees them (`scenarios`): the configured and the chosen rule on the
    deciding and the test people's visits, and which one `watch` runs."""
    r = read_json(resolve_path(cfg.scenarios.path, root))
    if r is None:
        return []
    s = cfg.scenarios
    lines = ["## Alerts as the business sees them (scenarios)", ""]
    if "skipped" in r or "chosen_rule" not in r:
        return [*lines, f"Not measured: {r.get('skipped', 'no deciding people')}.", ""]
    lines += [
        f"The site's model `{r['model']}` (as `emowatch site-model` picks it) watching customer "
        f"visits made from its people's photos: {s.lanes} people in view at once, faces of "
        f"{s.face_px[0]} to {s.face_px[1]} px at {s.size[0]}×{s.size[1]}, {s.fps} frames/s, "
        f"light ×{s.light[0]} to ×{s.light[1]}; {s.angry_share:.0%} of the visits angry for "
        f"{s.expression_s[0]:g} to {s.expression_s[1]:g} s. In time: alerted within "
        f"{s.within_s:g} s of the onset. False alarms per camera-hour stated at "
        f"{s.stated_share:.0%} angry visits. Rules count a track's angry frames (k of n) or "
        "average its P(angry) over its last n frames (mean P(angry) of n, at the model's "
        "threshold). The rule is chosen on the deciding people's visits (most alerted in time "
        f"with at most {s.max_false_alarms_per_hour:g} false alarm per hour, else the fewest "
        "false alarms); the test people's are reported only.",
        "",
        "| people | rule | alerted in time | alerted | median delay | false alarms (per hour "
        "here) | false alarms per hour, stated |",
        "|---|---|---|---|---|---|---|",
    ]
    for part in ("decide", "test"):
        d = r["parts"].get(part, {})
        if "chosen" not in d:
            lines.append(f"| {part} | – | not measured ({d.get('skipped', 'no report')}) |||||")
            continue
        who = f"{part}: {len(d['people'])} people, {d['visits']} visits, {d['minutes']:g} min"
        for which, rule in (("configured", r["configured_rule"]), ("chosen", r["chosen_rule"])):
            lines.append(f"| {who} | {which}: {rule['rule']} | {scenario_cells(d[which])} |")
        for how, rule in r.get("best_rule", {}).items():  # the best of each smoothing not shown
            if rule["rule"] not in (r["configured_rule"]["rule"], r["chosen_rule"]["rule"]):
                cells = scenario_cells(d["best"][how])
                lines.append(f"| {who} | best {SMOOTHED[how]}: {rule['rule']} | {cells} |")
    return [*lines, "", adopted_line(cfg, r), ""]


def adopted_line(cfg: DictConfig, r: dict) -> str:
    """Which rule `watch` alerts by with the site's model (`deploy.alert_rule`)."""
    adopted = r.get("adopted", {})
    configured = f"the configured rule ({r['configured_rule']['rule']})"
    if cfg.deploy.watch.alerts.get("rule") == "configured":
        return f"`watch` alerts by {configured}: `deploy.watch.alerts.rule` is `configured`."
    if "version" not in adopted:
        return (
            f"The chosen rule was not tagged ({adopted.get('skipped', 'no record')}): `watch` "
            f"alerts by {configured} until a production run of the stage chooses one."
        )
    return (
        f"`watch` alerts by the chosen rule, {adopted['rule']}: tagged `alert_rule` on "
        f"`models:/{adopted['version']}` (`deploy.watch.alerts.rule: chosen`); a model without "
        f"that tag alerts by {configured}."
    )


def verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else "yes" if ok else "no"


def goals_lines(cfg: DictConfig, root: Path | None) -> list[str]:
    """Each goal of `report.goals`, whether it holds, and the figure it rests on."""
    g, layout = cfg.report.goals, Layout(cfg, root)
    rows: list[tuple[str, bool | None, str]] = []
    models = {d: champion_of(cfg, d, root) for d in ("fer2013", "photos")}
    metrics = {d: read_json(layout.model(d, m).metrics) if m else None for d, m in models.items()}
    fer, ours = metrics["fer2013"] or {}, metrics["photos"] or {}
    u = g.unseen_people
    seen = fer.get("deployed", {}).get("decide")
    rows.append(
        (
            f"FER2013 champion ({models['fer2013']}) on people it never saw, camera path: angry "
            f"recall ≥ {u.recall_angry} at precision ≥ {u.precision_angry}, accuracy ≥ "
            f"{u.accuracy}",
            None
            if not seen
            else seen["recall_angry"] >= u.recall_angry
            and (seen["precision_angry"] or 0) >= u.precision_angry
            and seen["accuracy"] >= u.accuracy,
            "–"
            if not seen
            else f"{seen['angry_caught']} of {seen['n_angry']} ({fmt(seen['recall_angry'], 2)}) "
            f"at {fmt(seen['precision_angry'], 2)}, accuracy {fmt(seen['accuracy'], 2)}",
        )
    )
    o, site = g.site_model, ours.get("deployed", {}).get("decide")
    rows.append(
        (
            f"photos champion ({models['photos']}) out of fold: angry recall ≥ {o.recall_angry} "
            f"at precision ≥ {o.precision_angry}",
            None
            if not site
            else site["recall_angry"] >= o.recall_angry
            and (site["precision_angry"] or 0) >= o.precision_angry,
            "–"
            if not site
            else f"{fmt(site['recall_angry'], 2)} [{fmt(site.get('recall_angry_low'), 2)}, "
            f"{fmt(site.get('recall_angry_high'), 2)}] at {fmt(site['precision_angry'], 2)}",
        )
    )
    rows += robustness_goals(cfg, root, "photos" if site else "fer2013")
    a = g.alerts
    s = read_json(resolve_path(cfg.scenarios.path, root)) or {}
    test = s.get("parts", {}).get("test", {}).get("chosen")
    decide = s.get("parts", {}).get("decide", {}).get("chosen")
    rows.append(
        (
            f"alerts, test people's visits, the chosen rule: ≥ {a.recall_within:.0%} of angry "
            f"visits alerted within {cfg.scenarios.within_s:g} s at ≤ "
            f"{a.false_alarms_per_hour:g} false alarm per camera-hour",
            None
            if not test
            else (test["recall_within"] or 0) >= a.recall_within
            and test["false_alarms_per_hour_stated"] <= a.false_alarms_per_hour,
            "–"
            if not test
            else f"{test['alerted_within']} of {test['angry_visits']} at "
            f"{test['false_alarms_per_hour_stated']:.1f}/h (deciding people: "
            f"{decide['alerted_within']} of {decide['angry_visits']} at "
            f"{decide['false_alarms_per_hour_stated']:.1f}/h)",
        )
    )
    acc = fer.get("accuracy")
    rows.append(
        (
            f"FER2013 champion: PrivateTest accuracy ≥ {g.fer2013_test_accuracy}",
            None if acc is None else acc >= g.fer2013_test_accuracy,
            fmt(acc),
        )
    )
    lines = ["## Goals", "", "| goal | holds? | measured |", "|---|---|---|"]
    lines += [f"| {goal} | {verdict(ok)} | {said} |" for goal, ok, said in rows]
    return [*lines, ""]


def robustness_goals(
    cfg: DictConfig, root: Path | None, site: str
) -> list[tuple[str, bool | None, str]]:
    """The site's model under the goal's conditions, and every champion's 48 px faces found,
    with the deployed detector and crops (from the robustness report)."""
    g = cfg.report.goals
    det = deployed_setting(cfg)
    r = read_json(resolve_path(cfg.robustness.path, root)) or {}
    table = r.get(site, {}).get("table", {}).get(det)
    said = ", ".join(
        f"{c} {table[c]['angry_caught']} of {table[c]['n_angry']}"
        for c in g.conditions
        if table and c in table
    )
    rows: list[tuple[str, bool | None, str]] = [
        (
            f"site's model ({site} champion, {det}) under {', '.join(g.conditions)}: angry "
            f"recall within {cfg.robustness.recall_tolerance} of plain",
            None
            if not table or any(c not in table for c in g.conditions)
            else all(table[c]["holds"] for c in g.conditions),
            f"{said} (plain {table['plain']['angry_caught']} of {table['plain']['n_angry']})"
            if table
            else "–",
        )
    ]
    small = ("small_640x480", "small_1920x1080")
    found = {
        d: [r[d]["table"][det][c]["face_rate"] for c in small if c in r[d]["table"].get(det, {})]
        for d in ("fer2013", "photos")
        if "table" in r.get(d, {})
    }
    measured = all(len(v) == len(small) for v in found.values()) and bool(found)
    rows.append(
        (
            f"every champion ({det}): 48 px faces found in ≥ {g.small_face_rate:.0%} at 640×480 "
            "and 1920×1080",
            None
            if not measured
            else all(f >= g.small_face_rate for v in found.values() for f in v),
            "; ".join(f"{d} " + " / ".join(f"{f:.0%}" for f in v) for d, v in found.items()) or "–",
        )
    )
    return rows


def render(cfg: DictConfig, root: Path | None = None) -> str:
    """The whole results page as Markdown."""
    lines = [
        "# Results",
        "",
        "Generated by the `report` stage (`emowatch report`) from the metrics files of the last "
        "`make run` (`dvc metrics show` lists the same figures); never typed by hand. The "
        "run's `dvc.lock` is committed beside this page.",
        "",
        "Every choice (checkpoint, TTA, threshold, challenger, gate) was made on val (FER2013 "
        "PublicTest; the photos' val people) or on the deciding people's photos; test "
        "(PrivateTest; the photos' test people) is reported only. Val recall/precision at the "
        "threshold are cross-fitted; 'camera path' runs the detector, crop, classifier and "
        "threshold on the full photos. The photos models are judged out of fold: each "
        "non-test person scored by a model fine-tuned without them (`crossval` stage), the "
        "threshold fitted on those scores and its figures cross-fitted by fold.",
        "",
    ]
    for dataset in cfg.registry.candidates:
        lines += dataset_section(cfg, dataset, root)
    return "\n".join(
        lines
        + goals_lines(cfg, root)
        + robustness_lines(cfg, root)
        + scenarios_lines(cfg, root)
        + data_lines(cfg, root)
    )


def main(cfg: DictConfig, root: Path | None = None) -> str:
    """Write `report.path` and log it to MLflow; returns the Markdown."""
    text = render(cfg, root)
    path = Layout(cfg, root).results_page
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    with stage_run(cfg, STAGE, root=root):
        mlflow.log_artifact(str(path))
    print(text)
    return text
