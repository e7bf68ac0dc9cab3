"""``fedmodel conformance PKG.MODULE:FACTORY``: run the suite on a factory and print a readable report.

Exit status: 0 when every check passes (or fails as expected), 1 when one fails, 2 for a usage error (a
one-line message on stderr: a target that is not a factory returning a Case, a factory that raises or
exits, an unknown check name).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fedmodel conformance",
        description="Run the fedmodel conformance suite on a model factory that returns a fedmodel_conformance.Case.",
    )
    p.add_argument("factory", nargs="?", help="PKG.MODULE:FACTORY, a function returning a fedmodel_conformance.Case")
    p.add_argument("--check", action="append", metavar="NAME", help="run only this check (repeatable)")
    p.add_argument(
        "--expected-failure",
        action="append",
        default=[],
        metavar="NAME=REASON",
        help="declare a check as an expected failure, with the reason (repeatable)",
    )
    p.add_argument("--list", action="store_true", help="list the checks and their clauses, then exit")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the table, not the reasons")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 a check failed, 2 usage error)."""
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    from fedmodel_conformance._core import get_check
    from fedmodel_conformance._loader import UsageError, load_case
    from fedmodel_conformance._runner import run_checks
    from fedmodel_conformance.checks import all_checks

    if args.list:
        for name, clause in all_checks():
            print(f"{name}\n    {clause}")
        return 0
    if not args.factory:
        print("fedmodel conformance: give PKG.MODULE:FACTORY (or --list)", file=sys.stderr)
        return 2
    expected = {}
    for item in args.expected_failure:
        name, sep, reason = item.partition("=")
        if not sep:
            print(f"fedmodel conformance: --expected-failure wants NAME=REASON, got {item!r}", file=sys.stderr)
            return 2
        expected[name] = reason
    try:
        for name in [*(args.check or ()), *expected]:
            get_check(name)  # before the factory runs: a typo costs nothing
        report = run_checks(load_case(args.factory), expected_failures=expected, checks=args.check)
    except KeyError as exc:  # an unknown check name, here or in the case's expected_failures
        print(f"fedmodel conformance: {exc.args[0]}", file=sys.stderr)
        return 2
    except UsageError as exc:
        print(f"fedmodel conformance: {exc}", file=sys.stderr)
        return 2
    print(report.format(verbose=not args.quiet))
    return 0 if report.ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
