"""`import fedmodel` must stay framework-free (DESIGN.md §2)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "tensorflow", "jax", "keras", "flwr", "sklearn", "matplotlib", "safetensors")


def _modules_after(statement: str) -> set[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_import_fedmodel_loads_no_ml_framework() -> None:
    loaded = _modules_after("import fedmodel, fedmodel.reference, fedmodel.metrics, fedmodel.aggregation")
    assert not [m for m in HEAVY if m in loaded]


def test_fedmodel_cli_help_loads_no_ml_framework() -> None:
    loaded = _modules_after("import fedmodel.cli\nfedmodel.cli.main(['--help'])")
    assert not [m for m in HEAVY if m in loaded]
