"""The project-wide errors: what every stage and command reports as a clear message (exit 1)."""

from __future__ import annotations


class DataError(RuntimeError):
    """The input data cannot be read or cannot be trusted."""


class UnsafeModelError(RuntimeError):
    """A model file or registry version that would run code it should not (a pickle, a class
    outside emowatch's allow-list): refused before anything in it runs."""
