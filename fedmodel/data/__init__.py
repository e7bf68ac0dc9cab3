"""Federated data: :class:`ClientData`, partitioners, data sets with natural client splits, and loaders.

Bring your own data as a list of :class:`ClientData` (numpy ``x`` and ``y`` per client), or cut one
data set into clients with a partitioner (:func:`split_iid`, :func:`split_dirichlet`,
:func:`split_shards`, :func:`split_by_id`, :func:`split_quantity_skew`, or a Flower Datasets
partitioner through :func:`fedmodel.data.flower.from_flower`). Ready-made sets: scikit-learn's digits
(:func:`federated_digits`), FedProx's synthetic(alpha, beta) (:func:`federated_synthetic`), and the
published files of LEAF (:class:`~fedmodel.data.leaf.LeafClients`) and TensorFlow Federated
(:class:`~fedmodel.data.tff_h5.H5Clients`), read one client at a time. :func:`load_federated` picks
one by a string, as ``fedmodel train --data`` does.

>>> import numpy as np
>>> x = np.arange(12, dtype=np.float32).reshape(6, 2)
>>> y = np.array([0, 0, 1, 1, 2, 2])
>>> clients = split_iid(ClientData(x, y), num_clients=3, seed=0)
>>> [len(c) for c in clients]
[2, 2, 2]
"""

from __future__ import annotations

from fedmodel.data._core import ClientData as ClientData
from fedmodel.data._core import ClientSequence as ClientSequence
from fedmodel.data._core import DataError as DataError
from fedmodel.data._core import FederatedData as FederatedData
from fedmodel.data._core import pool_clients as pool_clients
from fedmodel.data.digits import federated_digits as federated_digits
from fedmodel.data.digits import load_digits as load_digits
from fedmodel.data.partition import split_by_id as split_by_id
from fedmodel.data.partition import split_dirichlet as split_dirichlet
from fedmodel.data.partition import split_iid as split_iid
from fedmodel.data.partition import split_quantity_skew as split_quantity_skew
from fedmodel.data.partition import split_shards as split_shards
from fedmodel.data.sources import MODEL_KINDS as MODEL_KINDS
from fedmodel.data.sources import FederatedTask as FederatedTask
from fedmodel.data.sources import load_federated as load_federated
from fedmodel.data.synthetic import federated_synthetic as federated_synthetic

__all__ = [
    "MODEL_KINDS",
    "ClientData",
    "ClientSequence",
    "DataError",
    "FederatedData",
    "FederatedTask",
    "federated_digits",
    "federated_synthetic",
    "load_digits",
    "load_federated",
    "pool_clients",
    "split_by_id",
    "split_dirichlet",
    "split_iid",
    "split_quantity_skew",
    "split_shards",
]
