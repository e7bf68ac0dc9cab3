"""Integrations of fedmodel with other federated-learning engines.

Each integration is its own module and imports its engine only when that module is imported:
``import fedmodel.integrations`` imports nothing heavy.

* :mod:`fedmodel.integrations.flower` — fedmodel models as Flower clients and fedmodel's algorithms as a
  Flower strategy (``pip install 'fedmodel[flower]'``).
"""

__all__: list[str] = []
