"""MkDocs hook: the configuration reference is generated from conf/ at every build, so it can
never disagree with the code's parameters (`mkdocs build --strict` runs in the tests).

Every `<!-- conf -->` in a page becomes one section per file of conf/, group by group, with
the file as it is (its comments are the documentation of each key)."""

from __future__ import annotations

from pathlib import Path

MARK = "<!-- conf -->"


def render(conf: Path) -> str:
    parts = []
    top = conf / "config.yaml"
    parts.append(f"### `conf/config.yaml`\n\n```yaml\n{top.read_text().rstrip()}\n```\n")
    for group in sorted(p for p in conf.iterdir() if p.is_dir()):
        parts.append(f"## `{group.name}/`\n")
        for path in sorted(group.glob("*.yaml")):
            text = path.read_text().rstrip()
            parts.append(f"### `conf/{group.name}/{path.name}`\n\n```yaml\n{text}\n```\n")
    return "\n".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARK not in markdown:
        return markdown
    conf = Path(config["config_file_path"]).parent / "conf"
    return markdown.replace(MARK, render(conf))
