"""fedmodel backend for JAX: pytrees as a :class:`fedmodel.Model`, Optax for client optimizers.

>>> import fedmodel, fedmodel_jax
>>> model = fedmodel_jax.models.mlp(num_features=4, hidden=(), num_classes=3)
>>> fedmodel.backend_for(model) is fedmodel_jax.BACKEND
True
"""

from fedmodel_jax import models as models
from fedmodel_jax.backend import BACKEND as BACKEND
from fedmodel_jax.backend import JaxBackend as JaxBackend
from fedmodel_jax.metrics import Metric as Metric
from fedmodel_jax.metrics import mean_metric as mean_metric
from fedmodel_jax.metrics import sum_metric as sum_metric
from fedmodel_jax.model import Frozen as Frozen
from fedmodel_jax.model import JaxModel as JaxModel
from fedmodel_jax.model import Variable as Variable
from fedmodel_jax.model import from_flax as from_flax
from fedmodel_jax.model import from_functions as from_functions
from fedmodel_jax.optimizers import JaxOptimizer as JaxOptimizer
from fedmodel_jax.optimizers import to_optax as to_optax

__all__ = [
    "BACKEND",
    "Frozen",
    "JaxBackend",
    "JaxModel",
    "JaxOptimizer",
    "Metric",
    "Variable",
    "from_flax",
    "from_functions",
    "mean_metric",
    "models",
    "sum_metric",
    "to_optax",
]
