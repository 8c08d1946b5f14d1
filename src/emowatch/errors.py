"""The project-wide errors: what every stage and command reports as a clear message (exit 1)."""

from __future__ import annotations


class DataError(RuntimeError):
    """The input data cannot be read or cannot be trusted."""
