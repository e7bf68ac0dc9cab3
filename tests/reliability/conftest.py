"""What the reliability tests share: writing checkpoints as a forger who knows the format would.

The layout is the documented one (README, "Checkpoints"), written here independently of
``fedmodel.checkpoint``: 8 bytes of header length, a header that starts with ``PREFIX`` and the 64 hex
digits of the digest, the tensor bytes; the digest is the SHA-256 of the file read with those digits as
"0"s. A consistent forgery passes the digest, so everything behind it must still be checked.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

PREFIX = b'{"__metadata__":{"fedmodel.sha256":"'
DIGEST_AT = 8 + len(PREFIX)


def _redigest(data: bytes) -> bytes:
    blank = data[:DIGEST_AT] + b"0" * 64 + data[DIGEST_AT + 64 :]
    return data[:DIGEST_AT] + hashlib.sha256(blank).hexdigest().encode() + data[DIGEST_AT + 64 :]


def _forge(entries: dict[str, Any], fedmodel_header: str, body: bytes = b"", *, pad: bool = True) -> bytes:
    meta = PREFIX.decode() + "0" * 64 + '","fedmodel":' + json.dumps(fedmodel_header) + "}"
    text = meta + "".join(f",{json.dumps(k)}:{json.dumps(v)}" for k, v in entries.items()) + "}"
    if pad:
        text += " " * (-len(text) % 8)
    raw = text.encode()
    return _redigest(len(raw).to_bytes(8, "little") + raw + body)


@pytest.fixture
def redigest() -> Callable[[bytes], bytes]:
    """``data`` (a checkpoint's bytes, maybe edited) with its digest recomputed."""
    return _redigest


@pytest.fixture
def forge() -> Callable[..., bytes]:
    """A file in the documented layout from raw parts: ``forge(entries, fedmodel_header_json, body)``."""
    return _forge


@pytest.fixture
def edit_checkpoint() -> Callable[[Path, bytes, bytes], None]:
    """Replace ``old`` (found once) by ``new`` in the header of the checkpoint at ``path``; re-pad, re-digest."""

    def edit(path: Path, old: bytes, new: bytes) -> None:
        data = path.read_bytes()
        size = int.from_bytes(data[:8], "little")
        header, body = data[8 : 8 + size].rstrip(b" "), data[8 + size :]
        assert header.count(old) == 1, (old, header)
        header = header.replace(old, new)
        header += b" " * (-len(header) % 8)
        path.write_bytes(_redigest(len(header).to_bytes(8, "little") + header + body))

    return edit
