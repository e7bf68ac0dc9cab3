"""The README's backend and conformance sections say what the code does: every Backend member, the check count."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from fedmodel_conformance import all_checks

import fedmodel

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def _section(heading: str) -> str:
    start = README.index(f"\n## {heading}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end]


def test_write_a_backend_lists_every_backend_member_with_its_signature() -> None:
    section = _section("Write a backend")
    members = [n for n in vars(fedmodel.Backend) if not n.startswith("_")]
    members += [n for n in getattr(fedmodel.Backend, "__annotations__", {}) if n not in members]
    assert sorted(members) == sorted(
        ["name", "variable_names", "read_variables", "write_variables", "to_native", "make_optimizer", "train_step"]
    )
    for name in members:
        member = getattr(fedmodel.Backend, name, None)
        if callable(member):
            params = [p for p in inspect.signature(member).parameters if p != "self"]
            row = re.search(rf"\| `{name}\(([^)]*)\)", section)
            assert row, name
            assert [p.strip(" *").split("=")[0] for p in row.group(1).split(",") if p.strip(" *")] == params, name
        else:
            assert f"`{name}: str`" in section


def test_the_number_of_checks_the_readme_states_is_the_registry_s() -> None:
    counts = {
        int(n)
        for n in re.findall(r"(\d+) (?:named )?checks", _section("Run the conformance suite on your own backend"))
    }
    counts |= {int(n) for n in re.findall(r"passes all (\d+)\s+checks", README)}
    assert counts == {len(all_checks())}
