"""A checkpoint header as `fedmodel.checkpoint` writes it, for tests that write hostile ones by hand."""

from __future__ import annotations

import json
from typing import Any

from fedmodel.checkpoint import FORMAT


def checkpoint_header(**override: Any) -> str:
    """The JSON header of a one-variable checkpoint (``w``) at round 1, with ``override``'s top-level keys."""
    header: dict[str, Any] = {
        "format": FORMAT,
        "trainable": {"count": 1, "names": ["w"]},
        "non_trainable": {"count": 0, "names": []},
        "extra": {"count": 0, "names": []},
        "metadata": {"round": 1},
    }
    header.update(override)
    return json.dumps(header)
