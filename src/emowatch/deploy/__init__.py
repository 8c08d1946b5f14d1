"""Deployment: the watcher (cameras, tracks, alerts, live page), the registered model as an
MLflow pyfunc, the site model choice, staff feedback and the hourly statistics for drift."""
