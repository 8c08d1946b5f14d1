"""Evaluation: the angry operating point, test metrics, and what the model looks at."""
