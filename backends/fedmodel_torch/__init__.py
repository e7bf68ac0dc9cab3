"""fedmodel for PyTorch: any ``torch.nn.Module`` as a :class:`fedmodel.Model`, and its :class:`fedmodel.Backend`.

>>> import torch, fedmodel, fedmodel_torch
>>> spec = (fedmodel.TensorSpec((None, 4), "float32"), fedmodel.TensorSpec((None,), "int64"))
>>> model = fedmodel_torch.from_module(torch.nn.Linear(4, 3), torch.nn.functional.cross_entropy, spec)
>>> fedmodel.backend_for(model) is fedmodel_torch.BACKEND
True
"""

from fedmodel_torch import models as models
from fedmodel_torch.backend import BACKEND as BACKEND
from fedmodel_torch.backend import TorchBackend as TorchBackend
from fedmodel_torch.metrics import Metric as Metric
from fedmodel_torch.metrics import MetricState as MetricState
from fedmodel_torch.metrics import mean_metric as mean_metric
from fedmodel_torch.metrics import sum_metric as sum_metric
from fedmodel_torch.model import TorchModel as TorchModel
from fedmodel_torch.model import from_module as from_module
from fedmodel_torch.optimizers import ClientOptimizer as ClientOptimizer
from fedmodel_torch.optimizers import make_optimizer as make_optimizer
from fedmodel_torch.optimizers import native_optimizer as native_optimizer

__all__ = [
    "BACKEND",
    "ClientOptimizer",
    "Metric",
    "MetricState",
    "TorchBackend",
    "TorchModel",
    "from_module",
    "make_optimizer",
    "mean_metric",
    "models",
    "native_optimizer",
    "sum_metric",
]
