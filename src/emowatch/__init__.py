"""emowatch: an experiment-tracked pipeline that trains, promotes and deploys facial-expression
models to notice angry customers early."""

import os

# No network at run time: albumentations otherwise checks PyPI for updates on import.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# Figures are files, never windows.
os.environ.setdefault("MPLBACKEND", "Agg")

__version__ = "0.1.0"
