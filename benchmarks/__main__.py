"""``python -m benchmarks [--full] [--only NAME ...] [--backend NAME ...]``: run the benchmarks, print the table."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence

# One thread per framework by default: on a small shared machine, idle-spinning thread pools of three
# frameworks in one process make small-op timings noisy by 10x. Both sides of every ratio share it.
_THREADS = os.environ.setdefault("FEDMODEL_BENCH_THREADS", "1")
for _var in (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
):
    os.environ.setdefault(_var, _THREADS)
os.environ.setdefault("XLA_FLAGS", f"--xla_cpu_multi_thread_eigen={'false' if _THREADS == '1' else 'true'}")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
with contextlib.suppress(ImportError):  # torch before TensorFlow in one process (see conftest.py)
    import torch

    torch.set_num_threads(int(_THREADS))

from benchmarks import _backends, aggregation, fedavg_round, runner_memory, step, weights  # noqa: E402
from benchmarks._harness import SIZES, Result, format_table, machine_info  # noqa: E402

Bench = Callable[..., Iterator["Result | tuple[str, str]"]]
BENCHMARKS: dict[str, Bench] = {
    "weights": weights.run,
    "step": step.run,
    "aggregation": aggregation.run,
    "round": fedavg_round.run,
    "memory": runner_memory.run,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected benchmarks; print machine info and a Markdown table. Bars are reported, not enforced."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--full", action="store_true", help="the issue's sizes (50M-parameter weights, K=50 x 5M)")
    parser.add_argument("--size", choices=sorted(SIZES), help="explicit size preset (overrides --full)")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run only these benchmarks")
    parser.add_argument("--backend", nargs="+", choices=_backends.BACKENDS, help="only these backends")
    args = parser.parse_args(argv)
    sizes = SIZES[args.size or ("full" if args.full else "quick")]
    backends = tuple(args.backend or _backends.BACKENDS)
    print(f"# fedmodel benchmarks ({sizes.name} sizes, median of {sizes.repeat})\n")
    for key, value in machine_info().items():
        print(f"- {key}: {value}")
    print()
    results: list[Result] = []
    for name in args.only or BENCHMARKS:
        for row in BENCHMARKS[name](sizes, backends):
            if isinstance(row, Result):
                results.append(row)
                print(format_table([row]).splitlines()[-1], flush=True)
            else:
                print(f"[{name}] skipped {row[0]}: {row[1]}", flush=True)
    print("\n" + format_table(results))
    missed = [r for r in results if r.passed is False]
    print(f"\n{len(results)} rows, {len(missed)} bars missed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
