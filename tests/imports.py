"""emowatch's static import graph, read from the source with `ast`: every `import` and `from ...
import` of an emowatch module anywhere in a file (at the top or inside a function, since a
command imports lazily what it runs), resolved to the module files it names."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "emowatch"


def module_file(name: str) -> Path | None:
    """The file of a module or package `name` (emowatch.x.y), or None."""
    base = SRC.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def module_name(path: Path) -> str:
    rel = path.resolve().relative_to(SRC).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def all_modules() -> list[str]:
    return sorted(module_name(p) for p in (SRC / PACKAGE).rglob("*.py"))


@cache
def imports_of(name: str) -> frozenset[str]:
    """The emowatch modules `name` imports directly (a package's __init__ included for every
    module imported through it)."""
    path = module_file(name)
    if path is None:
        return frozenset()
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from pkg import mod` names a module when pkg/mod.py exists
            names = [
                f"{base}.{a.name}" if module_file(f"{base}.{a.name}") else base for a in node.names
            ]
        else:
            continue
        for imported in names:
            if imported == PACKAGE or imported.startswith(PACKAGE + "."):
                parts = imported.split(".")
                # the module itself and every package on the way (their __init__ runs too)
                for i in range(2, len(parts) + 1):
                    if module_file(".".join(parts[:i])):
                        found.add(".".join(parts[:i]))
    found.discard(name)
    return frozenset(found)


def closure(*names: str) -> set[str]:
    """Every emowatch module that importing `names` can load."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(imports_of(name))
    return seen
