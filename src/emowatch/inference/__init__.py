"""The inference floor: everything that turns pixels into a decision, shared by the evaluate
stage, the watcher, the registered (pyfunc) model and drift checks. Safe loading of a trained
network (`loading`), class probabilities (`probabilities`) with test-time augmentation
(`predict`), the angry threshold rule (`threshold`), face detection and cropping (`faces`,
`finder`) and the face classifier that chains them (`face_classifier`). Nothing here imports
evaluation, deploy or stages (tests/test_imports.py)."""
