"""fedmodel backend for TensorFlow: Keras 3 models (TensorFlow backend) as :class:`fedmodel.Model`.

Importing it sets ``KERAS_BACKEND=tensorflow`` unless already set, and fails with a clear error when
Keras is configured for another backend.
"""

from fedmodel_tensorflow import models as models
from fedmodel_tensorflow.backend import BACKEND as BACKEND
from fedmodel_tensorflow.backend import KerasOptimizer as KerasOptimizer
from fedmodel_tensorflow.backend import TensorFlowBackend as TensorFlowBackend
from fedmodel_tensorflow.backend import train_on_batches as train_on_batches
from fedmodel_tensorflow.metrics import Metric as Metric
from fedmodel_tensorflow.metrics import mean_metric as mean_metric
from fedmodel_tensorflow.metrics import sum_metric as sum_metric
from fedmodel_tensorflow.model import KerasModel as KerasModel
from fedmodel_tensorflow.model import from_keras_model as from_keras_model
from fedmodel_tensorflow.optimizers import keras_optimizer as keras_optimizer

__all__ = [
    "BACKEND",
    "KerasModel",
    "KerasOptimizer",
    "Metric",
    "TensorFlowBackend",
    "from_keras_model",
    "keras_optimizer",
    "mean_metric",
    "models",
    "sum_metric",
    "train_on_batches",
]
