"""The code of every registered emowatch model (an MLflow "model from code"): the class comes
from the installed emowatch package; the registry holds only weights (a state dict), the
network spec (JSON) and the deployment spec (threshold, TTA, detector) as the model config.
`mlflow models serve` runs this file; emowatch's own loaders check that the registry's copy is
this very file and then build the model themselves (`deploy.pyfunc.load_classifier`)."""

import mlflow

from emowatch.deploy.pyfunc import EmotionModel

mlflow.models.set_model(EmotionModel())
