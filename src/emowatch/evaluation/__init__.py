"""Evaluation: the honest figures of a model (cross-fitted val, the camera path on full
photos, paired comparisons) and what the model looks at."""
