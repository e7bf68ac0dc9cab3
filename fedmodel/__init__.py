"""fedmodel: one model contract for federated learning, the same for TensorFlow, PyTorch and JAX.

This module is the public API. ``import fedmodel`` imports numpy and optree, never an ML framework.

>>> import fedmodel
>>> from fedmodel.reference import SoftmaxRegression
>>> model = SoftmaxRegression(num_features=64, num_classes=10)
>>> fedmodel.check_protocol(model)
[]
>>> fedmodel.get_weights(model).names
('kernel', 'bias', 'input_scale')
"""

from fedmodel._backend import ENTRY_POINT_GROUP as ENTRY_POINT_GROUP
from fedmodel._backend import Backend as Backend
from fedmodel._backend import backend_for as backend_for
from fedmodel._backend import backend_names as backend_names
from fedmodel._backend import backend_package as backend_package
from fedmodel._backend import load_backend as load_backend
from fedmodel._backend import register_backend as register_backend
from fedmodel._backend import unregister_backend as unregister_backend
from fedmodel._batch import check_batch as check_batch
from fedmodel._batch import split_batch as split_batch
from fedmodel._contract import BatchOutput as BatchOutput
from fedmodel._contract import Model as Model
from fedmodel._contract import check_protocol as check_protocol
from fedmodel._errors import AggregationError as AggregationError
from fedmodel._errors import BackendError as BackendError
from fedmodel._errors import CheckpointError as CheckpointError
from fedmodel._errors import DataError as DataError
from fedmodel._errors import FedModelError as FedModelError
from fedmodel._errors import ProtocolError as ProtocolError
from fedmodel._errors import SpecError as SpecError
from fedmodel._errors import WeightsError as WeightsError
from fedmodel._specs import TensorSpec as TensorSpec
from fedmodel._specs import check_spec as check_spec
from fedmodel._specs import classification_spec as classification_spec
from fedmodel._specs import dtype_name as dtype_name
from fedmodel._specs import is_compatible as is_compatible
from fedmodel._specs import spec_like as spec_like
from fedmodel._variable import Variable as Variable
from fedmodel._weights import ModelWeights as ModelWeights
from fedmodel._weights import assign_weights as assign_weights
from fedmodel._weights import get_weights as get_weights
from fedmodel.metrics import Aggregator as Aggregator
from fedmodel.optimizers import SGD as SGD
from fedmodel.optimizers import Adam as Adam
from fedmodel.optimizers import OptimizerSpec as OptimizerSpec

__version__ = "0.1.0"

__all__ = [
    "ENTRY_POINT_GROUP",
    "SGD",
    "Adam",
    "AggregationError",
    "Aggregator",
    "Backend",
    "BackendError",
    "BatchOutput",
    "CheckpointError",
    "DataError",
    "FedModelError",
    "Model",
    "ModelWeights",
    "OptimizerSpec",
    "ProtocolError",
    "SpecError",
    "TensorSpec",
    "Variable",
    "WeightsError",
    "assign_weights",
    "backend_for",
    "backend_names",
    "backend_package",
    "check_batch",
    "check_protocol",
    "check_spec",
    "classification_spec",
    "dtype_name",
    "get_weights",
    "is_compatible",
    "load_backend",
    "register_backend",
    "spec_like",
    "split_batch",
    "unregister_backend",
]
