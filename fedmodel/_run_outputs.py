"""The output folder of ``fedmodel train``: checked before a run, and a ``metrics.csv`` that grows by rows.

The folder is created and proven writable (a file is created in it and removed) before the first round;
an output that exists but is not a regular file (a FIFO would block the run, a folder would fail it at
the end) is refused. ``metrics.csv`` is written once at the start (empty, or a resumed run's earlier
rows) and then appended and flushed round by round, so a run that fails or is killed keeps every round
it finished.
"""

from __future__ import annotations

import contextlib
import csv
import os
import stat
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["COLUMNS", "OutputError", "check_folder", "earlier_rows", "metrics_file"]

COLUMNS = (
    "run",
    "round",
    "train_loss",
    "train_accuracy",
    "test_loss",
    "test_accuracy",
    "clients_ok",
    "clients_failed",
    "seconds",
    "epsilon",
)
_BEFORE_EPSILON = COLUMNS[:-1]  # a metrics.csv of before the epsilon column, or a row without it: still read


class OutputError(ValueError):
    """An output folder or file that a run cannot use (the message names it and why)."""


def check_folder(out: Path, files: Sequence[Path]) -> None:
    """Create ``out``, prove it writable, and refuse outputs that exist but are not regular files."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".fedmodel-probe-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"--out {out} cannot be written: {exc.strerror or exc}") from None
    for path in files:
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise OutputError(f"--out: cannot use {path}: {exc.strerror or exc}") from None
        if not stat.S_ISREG(mode):
            raise OutputError(f"--out: {path} exists and is not a regular file (a FIFO, a folder, a device?)")


def earlier_rows(path: Path) -> list[dict[str, str]]:
    """The complete rows of an earlier ``metrics.csv`` (a row cut short by a killed run is dropped)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise OutputError(f"--resume: cannot read {path}: {exc.strerror or exc}") from None
    text = text[: text.rfind("\n") + 1]  # a last line without its newline was cut short
    reader = csv.DictReader(text.splitlines())
    try:
        if reader.fieldnames is not None and reader.fieldnames not in (list(COLUMNS), list(_BEFORE_EPSILON)):
            raise OutputError(f"--resume: {path} is not a metrics.csv of fedmodel train (columns {reader.fieldnames})")
        rows = [r for r in reader if None not in r and all(r[c] is not None for c in _BEFORE_EPSILON)]
    except csv.Error as exc:  # a field past csv's size limit, a NUL byte
        raise OutputError(f"--resume: {path} cannot be read as a CSV ({exc})") from None
    for line, row in enumerate(rows, start=2):
        _check_row(path, line, row)
    return [{**r, "epsilon": r.get("epsilon") or ""} for r in rows]


_NUMBERS = tuple(c for c in COLUMNS if c not in ("run", "round"))


def _check_row(path: Path, line: int, row: Mapping[str, Any]) -> None:
    """A kept row's round is a plain number and its metrics numbers or empty: the curves are drawn from them."""
    where = f"--resume: {path.name} line {line}"
    if not (row["round"].isascii() and row["round"].isdigit()):
        raise OutputError(f"{where}: round is {row['round']!r:.40}, not a round number (fix or remove the row)")
    for column in _NUMBERS:
        value = row.get(column) or ""
        if not value:
            continue
        try:
            float(value)
        except ValueError:
            raise OutputError(f"{where}: {column} is {value!r:.40}, not a number (fix or remove the row)") from None


def _write_rows(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Replace ``path`` by a CSV of ``rows`` atomically (the earlier file stays whole if this fails)."""
    fd, tmp = tempfile.mkstemp(prefix=".metrics-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def metrics_file(path: Path, kept: Sequence[Mapping[str, Any]]) -> Iterator[Any]:
    """``path`` rewritten with the ``kept`` rows, then open to append: ``write(row)`` adds one row, flushed."""
    _write_rows(path, kept)
    with open(path, "a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)

        def write(row: Mapping[str, Any]) -> None:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
            f.flush()  # a later failure loses nothing of this round

        yield write
