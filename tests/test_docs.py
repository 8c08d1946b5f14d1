"""The documentation: the MkDocs site builds with --strict (a broken link, a missing page or a
missing picture fails), the README stays a front door that opens with the two commands, its
links resolve, and its results rows are the generated results page's own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

README = REPO / "README.md"
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")


def test_the_site_builds_strictly(tmp_path):
    mkdocs = Path(sys.executable).with_name("mkdocs")
    done = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        env=dict(os.environ, NO_MKDOCS_2_WARNING="1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    built = (tmp_path / "site" / "reference" / "configuration" / "index.html").read_text()
    assert "conf/deploy/default.yaml" in built and "down_alert_s" in built  # generated


def test_the_readme_is_a_front_door():
    lines = README.read_text().splitlines()
    assert len(lines) <= 250, f"README has {len(lines)} lines: move detail into docs/"
    top = "\n".join(lines[:30])
    assert "make test" in top and "make run" in top  # the two commands come first


def test_every_link_of_the_readme_resolves():
    for target, _ in LINK.findall(README.read_text()):
        if "://" in target:
            continue
        assert (REPO / target).exists(), f"README links to a missing {target}"


def test_the_readme_results_are_the_generated_pages_rows():
    results = (REPO / "docs" / "results.md").read_text().splitlines()
    text = README.read_text()
    section = text[text.index("## Results") : text.index("## More")]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    assert len(rows) >= 3
    for row in rows:
        assert row in results, f"not on docs/results.md (regenerate with emowatch report): {row}"
