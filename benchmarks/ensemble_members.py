"""Set up the ensemble benchmark over DVC experiments: a scratch project whose FER2013 models are
one model (default `vgg`) as the workspace and every `dvc exp` of this project trained it, so
that `bench_ensemble.py` run there averages trainings of the same net (val only, as always).

Each member's `model.ckpt`/`model.json` and its evaluate metrics (the TTA val chose) are copied
out of the DVC cache by the hashes in the experiment's `dvc.lock`; data, conf and params are
linked from this project. Run after `make run` and the experiments (README, "Experiments").

Rerun: .venv/bin/python benchmarks/ensemble_members.py /tmp/ens [--model vgg]
       cd /tmp/ens && <this project>/.venv/bin/python <this project>/benchmarks/bench_ensemble.py
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path

import yaml

from emowatch import config


def git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)
    return done.stdout


def cached(root: Path, md5: str) -> Path:
    """A file of the project's DVC cache by its hash."""
    return root / ".dvc/cache/files/md5" / md5[:2] / md5[2:]


def copy_out(root: Path, lock: dict, stage: str, out: str, dest: Path) -> None:
    """Copy output `out` of `stage` (a file or a directory) as `lock` recorded it to `dest`."""
    (entry,) = [o for o in lock["stages"][stage]["outs"] if o["path"] == out]
    dest.mkdir(parents=True, exist_ok=True)
    if entry["md5"].endswith(".dir"):
        for f in json.loads(cached(root, entry["md5"]).read_text()):
            shutil.copy(cached(root, f["md5"]), dest / f["relpath"])
    else:
        shutil.copy(cached(root, entry["md5"]), dest / Path(out).name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scratch", type=Path)
    parser.add_argument("--model", default="vgg")
    args = parser.parse_args()
    root, scratch, model = config.find_root(), args.scratch.resolve(), args.model
    refs = git(root, "for-each-ref", "--format=%(refname:short) %(objectname)", "refs/exps")
    locks = {"workspace": (root / "dvc.lock").read_text()}
    for line in refs.splitlines():
        ref, sha = line.split()
        locks[ref.rsplit("/", 1)[-1]] = git(root, "show", f"{sha}:dvc.lock")
    for name, text in locks.items():
        lock, member = yaml.safe_load(text), f"{model}@{name}"
        copy_out(root, lock, f"train@fer2013-{model}", f"artifacts/models/fer2013/{model}",
                 scratch / "artifacts/models/fer2013" / member)  # fmt: skip
        copy_out(root, lock, f"evaluate@fer2013-{model}",
                 f"reports/evaluate/fer2013/{model}/metrics.json",
                 scratch / "reports/evaluate/fer2013" / member)  # fmt: skip
        print(f"{member}: from {'dvc.lock' if name == 'workspace' else 'experiment ' + name}")
    for link in ("conf", "data", "params.yaml", "artifacts/fer2013"):
        target = scratch / link
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.symlink_to(root / link)
    print(f"next: cd {scratch} && {root}/.venv/bin/python {root}/benchmarks/bench_ensemble.py")


if __name__ == "__main__":
    main()
