"""Benchmark: alerts as the business sees them, for any model, with the watcher's speed.

The customer visits of the `scenarios` stage (emowatch.stages.scenarios: visits made from the
people's photos, rendered to mp4, run through watch's own Watcher, every alert rule replayed on
the recorded decisions) for any model URI or trained model folder, not only the site's model.
Table 1: per rule, on the deciding and the test people's visits: angry visits alerted within
scenarios.within_s, alerted at all, median delay, false alarms (as rendered, and per camera-hour
at scenarios.stated_share angry visits); the rule the stage would choose is marked.
Table 2: frames and wall time of each watched scenario (render + watch).
Rerun: .venv/bin/python benchmarks/bench_scenarios.py [--model URI-or-folder] [key=value ...]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from emowatch import config
from emowatch.deploy import site_model
from emowatch.stages import report, scenarios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: the site's model (auto)")
    parser.add_argument(
        "--dataset", default=None, help="whose deciding people (default: the model's)"
    )
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. scenarios.visits=80")
    args = parser.parse_args()
    root = config.find_root()
    cfg = config.compose(["deploy.watch.stats_log=null", *args.overrides])
    uri = site_model.resolve(cfg, args.model, root)
    classifier = site_model.load(cfg, uri, root=root)
    dataset = args.dataset or ("photos" if cfg.registry.names.photos in uri else "fer2013")
    print(
        f"scenarios benchmark: {uri} ({dataset}'s deciding people); "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads"
    )
    start = time.perf_counter()
    out = scenarios.measure(cfg, classifier, dataset, root)
    wall = time.perf_counter() - start
    chosen = out.get("chosen_rule", {}).get("rule")
    print("\nTable 1: alert rules on customer visits")
    print(
        "| people | rule | alerted in time | alerted | median delay | false alarms "
        "(per hour here) | false alarms per hour, stated |"
    )
    print("|---|---|---|---|---|---|---|")
    for part, d in out["parts"].items():
        if "rules" not in d:
            print(f"| {part} | – | not measured ({d.get('skipped')}) |||||")
            continue
        who = f"{part}: {len(d['people'])} people, {d['visits']} visits"
        for r in d["rules"]:
            mark = " (chosen)" if r["rule"] == chosen else ""
            mark += " (configured)" if r["rule"] == out["configured_rule"]["rule"] else ""
            print(f"| {who} | {r['rule']}{mark} | {report.scenario_cells(r['figures'])} |")
    print("\nTable 2: the scenarios watched")
    print("| people | frames | minutes of video | replay equals the watcher |\n|---|---|---|---|")
    for part, d in out["parts"].items():
        if "frames" in d:
            print(f"| {part} | {d['frames']} | {d['minutes']} | {d['replay_matches_watch']} |")
    print(f"\nwall time, render + watch + replay, both scenarios: {wall:.0f} s")
    print(f"rerun: .venv/bin/python benchmarks/bench_scenarios.py --model {uri}")


if __name__ == "__main__":
    main()
