"""The ``fedmodel`` command: ``fedmodel train ...`` and ``fedmodel conformance PKG.MODULE:FACTORY``.

Each subcommand lives in its own module, imported only when it runs, so ``fedmodel --help`` is fast
and loads no ML framework. ``python -m fedmodel`` is the same command. Exit status: 0 done, 1 a failure
during the work, 2 a usage error (one line on stderr), 130 interrupted.
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
_USAGE = "usage: fedmodel [--help] [--version] {train,conformance} [options]"


def _help() -> str:
    lines = [f"  {name:<12} {help_}" for name, (_, help_) in _SUBCOMMANDS.items()]
    options = ["  -h, --help   show this message and exit", "  --version    show fedmodel's version and exit"]
    tail = "'fedmodel COMMAND --help' shows a command's options."
    return "\n".join([_USAGE, "", "commands:", *lines, "", "options:", *options, "", tail])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fedmodel`` console script; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(_help())
        return 0
    if args and args[0] == "--version":
        from fedmodel import __version__

        print(f"fedmodel {__version__}")
        return 0
    if not args or args[0] not in _SUBCOMMANDS:
        problem = "a command is required" if not args else f"unknown command {args[0]!r}"
        print(f"{_USAGE}\nfedmodel: error: {problem} (choose from train, conformance)", file=sys.stderr)
        return 2
    module = importlib.import_module(_SUBCOMMANDS[args[0]][0])
    try:
        status: int = module.main(args[1:])
    except SystemExit as exc:  # a subcommand's argparse exits on --help (0) and on a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
