"""fedmodel's ratio benchmarks: every figure is a ratio against a baseline timed in the same process.

Run ``python -m benchmarks`` from the repository root (``--full`` for the issue's sizes, ``--only NAME``
for one benchmark); see ``benchmarks/README.md`` for the bars and the latest results.
"""
