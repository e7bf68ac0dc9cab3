"""The pieces every check shares: :class:`Case`, :class:`CheckFailure`, the registry and small helpers.

A check is a plain function ``check_<rule>(case) -> None`` registered with :func:`register`; it builds
its own fresh model(s) from the case, and raises :class:`CheckFailure` (an ``AssertionError``) naming the
clause, the variable or path, what was expected and what happened.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import fedmodel
from fedmodel import tree as _tree

__all__ = [
    "TRAIN_SIZE",
    "Case",
    "Check",
    "CheckFailure",
    "CheckSkipped",
    "Snapshot",
    "all_checks",
    "concat_batches",
    "fresh",
    "get_check",
    "register",
    "training_size",
]


@dataclass(frozen=True)
class Case:
    """What a third party writes to run the suite on its model.

    Attributes:
        name: a label for reports.
        make_model: returns a *fresh* :class:`fedmodel.Model` on each call.
        make_batch: ``make_batch(size, rng)`` returns a numpy batch of ``size`` examples matching the
            model's ``input_spec``; ``rng`` is a seeded ``np.random.Generator``.
        backend: the :class:`fedmodel.Backend`; ``None`` means ``fedmodel.backend_for(model)``.
        optimizer: the neutral optimizer spec used by the training checks.
        training_changes_non_trainable: the model updates non-trainable state when training
            (batch-norm statistics): training must then move it, where otherwise it must leave it alone.
        stochastic_training: training-mode outputs are random (dropout): the checks that compare
            training steps with exact expectations become skips.
        min_training_batch_size: the smallest batch the model can train on (2 for batch norm, which
            cannot normalize one example); every training-mode call of the suite uses at least this many.
        expected_failures: ``{check_name: reason}``; such a check is reported as ``xfail``, or as
            ``xpass`` (a failure of the report, so stale entries surface) when it passes.
        failing_batch: optional ``failing_batch(size, rng)``, a batch matching ``input_spec`` that the
            model's own computation raises on (a metric or loss that rejects some inputs); the check
            ``failed_call_changes_nothing`` then also proves that such a failure leaves no partial state.

    >>> from fedmodel_conformance.broken import reference_case
    >>> reference_case().name
    'numpy-softmax-regression'
    """

    name: str
    make_model: Callable[[], Any]
    make_batch: Callable[[int, np.random.Generator], Any]
    backend: fedmodel.Backend | None = None
    optimizer: fedmodel.OptimizerSpec = field(default_factory=lambda: fedmodel.SGD(learning_rate=0.1))
    training_changes_non_trainable: bool = False
    stochastic_training: bool = False
    expected_failures: Mapping[str, str] = field(default_factory=dict)
    min_training_batch_size: int = 1
    failing_batch: Callable[[int, np.random.Generator], Any] | None = None

    def __post_init__(self) -> None:
        size = self.min_training_batch_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"Case.min_training_batch_size must be a positive int, got {size!r}")


TRAIN_SIZE = 8
"""The batch size of every training step the suite takes (one size: compiled backends compile once)."""


def training_size(case: Case, size: int) -> int:
    """``size``, or the case's minimum training batch size when that is larger."""
    return max(size, case.min_training_batch_size)


class CheckFailure(AssertionError):  # noqa: N818 - the name the suite's interface fixes
    """A clause of the contract does not hold; the message is meant for the model's author.

    Attributes:
        clause: the clause of the contract, quoted.
        where: the variable, path or operation concerned.
        expected: what the clause requires.
        actual: what happened.
        note: how to reproduce (seed, batch size, the call that failed).
    """

    def __init__(self, clause: str, where: str, expected: Any, actual: Any, note: str = "") -> None:
        self.clause, self.where, self.expected, self.actual, self.note = clause, where, expected, actual, note
        super().__init__(str(self))

    def __str__(self) -> str:
        lines = [f"clause: {self.clause}", f"where: {self.where}", f"expected: {self.expected}"]
        lines.append(f"actual: {self.actual}")
        if self.note:
            lines.append(f"reproduce: {self.note}")
        return "\n".join(lines)


class CheckSkipped(Exception):  # noqa: N818 - a control-flow signal, like pytest's Skipped
    """Raised by a check that does not apply to a case (a declared capability); carries the reason."""


@dataclass(frozen=True)
class Check:
    """A registered check: its name (without ``check_``), the clause it enforces, and the function."""

    name: str
    clause: str
    func: Callable[[Case], None]


_REGISTRY: dict[str, Check] = {}


def register(clause: str) -> Callable[[Callable[[Case], None]], Callable[[Case], None]]:
    """Decorator adding ``check_<name>`` to the registry under ``<name>`` with the quoted ``clause``."""

    def deco(func: Callable[[Case], None]) -> Callable[[Case], None]:
        name = func.__name__.removeprefix("check_")
        if name in _REGISTRY:
            raise ValueError(f"a conformance check named {name!r} is already registered")
        _REGISTRY[name] = Check(name, clause, func)
        return func

    return deco


def all_checks() -> list[tuple[str, str]]:
    """``(name, clause)`` of every registered check, in the order they run."""
    return [(c.name, c.clause) for c in _REGISTRY.values()]


def get_check(name: str) -> Check:
    """The registered check called ``name``; ``KeyError`` listing the known names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"no conformance check named {name!r}; known: {sorted(_REGISTRY)}") from None


def seed_for(name: str) -> int:
    """A fixed seed per check name, so that every run of a check draws the same batches."""
    return zlib.crc32(name.encode())


def fresh(case: Case) -> tuple[Any, fedmodel.Backend]:
    """A new model from the case and its backend."""
    model = case.make_model()
    return model, case.backend or fedmodel.backend_for(model)


def repro(check: str, **details: Any) -> str:
    """A reproducer note: the call to run the one check, and the check's own parameters."""
    extra = ", ".join(f"{k}={v}" for k, v in details.items())
    return f"fedmodel_conformance.run_checks(case, checks=[{check!r}])" + (f"  ({extra})" if extra else "")


# -- variables ----------------------------------------------------------------------------------


def groups(model: Any) -> dict[str, list[Any]]:
    """The three variable groups as fresh lists, in the model's order."""
    return {
        "trainable": list(model.trainable_variables),
        "non_trainable": list(model.non_trainable_variables),
        "local": list(model.local_variables),
    }


def exclusive_groups(model: Any) -> dict[str, list[Any]]:
    """The groups with each variable kept only in its first group (trainable, then local, then non-trainable).

    Checks of values use this so that a variable listed in two groups is reported once, by the
    structure checks, and not again by every check of values.
    """
    g = groups(model)
    seen: set[int] = set()
    out: dict[str, list[Any]] = {}
    for name in ("trainable", "local", "non_trainable"):
        out[name] = []
        for v in g[name]:
            if id(v) not in seen:
                seen.add(id(v))
                out[name].append(v)
    return {k: out[k] for k in ("trainable", "non_trainable", "local")}


def names_by_id(backend: fedmodel.Backend, model: Any) -> dict[int, str]:
    """Each variable's name from ``backend.variable_names`` over its whole group."""
    out: dict[int, str] = {}
    for name, variables in groups(model).items():
        for v, n in zip(variables, backend.variable_names(model, variables), strict=False):
            out.setdefault(id(v), f"{name} {n!r}")
    return out


@dataclass
class Snapshot:
    """Copies of some variables' values, keyed by identity (robust to order), with their names."""

    variables: list[Any]
    names: list[str]
    values: list[np.ndarray]

    @classmethod
    def take(cls, backend: fedmodel.Backend, model: Any, variables: Sequence[Any]) -> Snapshot:
        """Read ``variables`` through the backend (independent copies)."""
        variables = list(variables)
        names = names_by_id(backend, model)
        values = [np.array(a, copy=True) for a in backend.read_variables(variables, copy=True)]
        return cls(variables, [names.get(id(v), f"<variable {i}>") for i, v in enumerate(variables)], values)

    def changed(self, backend: fedmodel.Backend) -> list[tuple[str, str]]:
        """``(name, description)`` of every variable whose value is no longer bit-identical."""
        now = backend.read_variables(self.variables, copy=True)
        out = []
        for name, old, new in zip(self.names, self.values, now, strict=True):
            new = np.asarray(new)
            if old.shape != new.shape or old.dtype != new.dtype:
                out.append((name, f"{old.dtype}{list(old.shape)} became {new.dtype}{list(new.shape)}"))
            elif not np.array_equal(old, new, equal_nan=old.dtype.kind in "fc"):
                with np.errstate(all="ignore"):
                    diff = np.abs(old.astype(np.float64) - new.astype(np.float64))
                    biggest = float(np.max(np.where(np.isnan(diff), np.inf, diff)))
                out.append((name, f"changed (max abs difference {biggest:.3g})"))
        return out

    def assert_unchanged(self, backend: fedmodel.Backend, clause: str, during: str, note: str) -> None:
        """Raise :class:`CheckFailure` naming the first variable that changed ``during`` an operation."""
        changed = self.changed(backend)
        if changed:
            name, how = changed[0]
            more = f" (and {len(changed) - 1} more: {[n for n, _ in changed[1:]]})" if len(changed) > 1 else ""
            raise CheckFailure(clause, f"{name} during {during}", "no change", how + more, note)


def all_variables(model: Any) -> list[Any]:
    """Every variable of the model once, trainable first."""
    g = exclusive_groups(model)
    return g["trainable"] + g["non_trainable"] + g["local"]


# -- batches ------------------------------------------------------------------------------------


def make_batch(case: Case, size: int, rng: np.random.Generator) -> Any:
    """The case's batch of ``size`` examples (checks draw every batch through here)."""
    return case.make_batch(size, rng)


def concat_batches(*batches: Any) -> Any:
    """One batch holding the examples of ``batches`` in order (leafwise ``np.concatenate`` on axis 0)."""
    return _tree.map_structure(lambda *xs: np.concatenate([np.asarray(x) for x in xs], axis=0), *batches)


def scale_floats(batch: Any, factor: float) -> Any:
    """The batch with every floating-point leaf multiplied by ``factor`` (labels and ids untouched).

    The factor is capped at the fourth root of the dtype's largest value, so the batch stays finite.
    """

    def leaf(a: Any) -> Any:
        arr = np.asarray(a)
        if arr.dtype.kind != "f":
            return arr
        scale = min(factor, float(np.finfo(arr.dtype).max) ** 0.25)  # float16 inputs stay finite
        return (arr * scale).astype(arr.dtype)

    return _tree.map_structure(leaf, batch)


def scalar(value: Any, clause: str, where: str, note: str) -> float:
    """A loss as a Python float; :class:`CheckFailure` when it is not a single number."""
    arr = np.asarray(value)
    if arr.size != 1:
        raise CheckFailure(clause, where, "a scalar loss", f"an array of shape {arr.shape}", note)
    return float(arr.reshape(()))


def close(a: Any, b: Any, rtol: float = 1e-5, atol: float = 1e-6) -> bool:
    """Leafwise ``allclose`` of two nested structures of arrays (same structure required)."""
    la, _ = _tree.flatten(a)
    lb, _ = _tree.flatten(b)
    if len(la) != len(lb):
        return False
    for x, y in zip(la, lb, strict=True):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if x.shape != y.shape or not np.allclose(x, y, rtol=rtol, atol=atol, equal_nan=True):
            return False
    return True


def perturbed(weights: fedmodel.ModelWeights, rng: np.random.Generator) -> fedmodel.ModelWeights:
    """Weights with every value moved: floats by ``N(0.25, 0.5)`` noise, integers by one, booleans flipped."""
    out = []
    for a in weights.arrays:
        if a.dtype.kind == "f":
            out.append(np.asarray(a + rng.standard_normal(a.shape).astype(a.dtype) * 0.5 + 0.25, a.dtype))
        elif a.dtype.kind == "b":
            out.append(np.asarray(~a))
        else:
            out.append(np.asarray(a + 1, a.dtype))
    return weights.with_arrays(out)


def report_as_numpy(report: Mapping[str, Any]) -> dict[str, Any]:
    """``report_local_outputs()`` with every leaf as an independent numpy array."""
    return {k: _tree.map_structure(lambda a: np.array(a, copy=True), v) for k, v in report.items()}
