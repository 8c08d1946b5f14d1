"""Deployment: the face classifier shared by `emowatch watch` and the served MLflow model."""
