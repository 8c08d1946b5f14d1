"""emowatch: an experiment-tracked pipeline that trains, promotes and deploys facial-expression
models to notice angry customers early."""

__version__ = "0.1.0"
