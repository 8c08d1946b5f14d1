"""`python -m emowatch.cli ...` (as torchrun and the tests start it)."""

from emowatch.cli import app

app()
