"""Batches and reference values for the next-token models (``char_rnn_seq``, ``word_rnn_seq``) of every backend."""

from __future__ import annotations

import numpy as np


def next_token_batch(size: int, length: int, vocab: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ids in ``1..vocab - 1`` padded with 0 after a random length (at least half), ``y`` is ``x``
    shifted by one, as fedmodel.data serves TFF's Shakespeare and StackOverflow."""
    ids = rng.integers(1, vocab, (size, length + 1))
    kept = rng.integers(length // 2, length + 1, size)
    ids[np.arange(length + 1)[None, :] >= kept[:, None]] = 0
    return ids[:, :-1].astype(np.int64), ids[:, 1:].astype(np.int64)


def masked_cross_entropy(logits: np.ndarray, y: np.ndarray) -> float:
    """sum(ce * mask) / (batch * length) in float64, ``mask = y != 0`` (Keras's masked ``sum_over_batch_size``)."""
    logits = np.asarray(logits, np.float64)
    top = logits.max(axis=-1, keepdims=True)
    log_z = np.log(np.exp(logits - top).sum(axis=-1)) + top[..., 0]
    ce = log_z - np.take_along_axis(logits, y[..., None], axis=-1)[..., 0]
    mask = y != 0
    return float((ce * mask).sum() / y.size)


def token_counts(logits: np.ndarray, y: np.ndarray) -> tuple[int, int]:
    """(correct non-padding tokens, non-padding tokens)."""
    mask = y != 0
    return int(((np.argmax(logits, axis=-1) == y) & mask).sum()), int(mask.sum())
