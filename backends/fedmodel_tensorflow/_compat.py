"""Imports Keras 3 on the TensorFlow backend, and refuses any other Keras backend with a clear error.

Every module of this package imports ``keras`` and ``tensorflow`` from here, so the check runs first.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras

if keras.backend.backend() != "tensorflow":
    raise ImportError(
        f"fedmodel_tensorflow needs Keras 3 on the TensorFlow backend, but keras is configured for "
        f"{keras.backend.backend()!r} (KERAS_BACKEND={os.environ.get('KERAS_BACKEND')!r} or ~/.keras/keras.json). "
        "Set KERAS_BACKEND=tensorflow before keras is first imported, or use the fedmodel backend of that "
        "framework (fedmodel_jax, fedmodel_torch)."
    )

import tensorflow as tf

__all__ = ["keras", "tf"]
