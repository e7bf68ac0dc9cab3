"""The ``fedmodel`` command: ``fedmodel train ...`` and ``fedmodel conformance PKG.MODULE:FACTORY``.

Each subcommand lives in its own module, imported only when it runs, so ``fedmodel --help`` is fast
and loads no ML framework.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

__all__ = ["main"]

_SUBCOMMANDS = {
    "train": ("fedmodel.train_cli", "a federated training run on scikit-learn's digits data set"),
    "conformance": ("fedmodel_conformance.cli", "run the conformance suite on a model factory"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fedmodel`` console script; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help") or args[0] not in _SUBCOMMANDS:
        lines = [f"  {name:<12} {help_}" for name, (_, help_) in _SUBCOMMANDS.items()]
        print("usage: fedmodel {train,conformance} [options]\n\ncommands:\n" + "\n".join(lines))
        return 0 if not args or args[0] in ("-h", "--help") else 2
    module = importlib.import_module(_SUBCOMMANDS[args[0]][0])
    status: int = module.main(args[1:])
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
