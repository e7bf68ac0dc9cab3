"""Checks of the model's structure: protocol, the three variable groups, names, order, creation, independence."""

from __future__ import annotations

from typing import Any

import numpy as np

import fedmodel
from fedmodel import tree as _tree
from fedmodel_conformance._core import (
    Case,
    CheckFailure,
    Snapshot,
    all_variables,
    fresh,
    groups,
    make_batch,
    names_by_id,
    perturbed,
    register,
    repro,
    seed_for,
    training_size,
)

__all__: list[str] = []

PROTOCOL = (
    "the model implements every member of fedmodel.Model (fedmodel.check_protocol finds nothing), its "
    "input_spec is a pair (x, y) or a mapping {'x', 'y'} of fedmodel.TensorSpec leaves, "
    "federated_output_computation is a fedmodel.Aggregator (init / accumulate / finalize), and its backend "
    "implements fedmodel.Backend"
)


@register(PROTOCOL)
def check_protocol(case: Case) -> None:
    """Clause: the model implements the whole :class:`fedmodel.Model` protocol with usable members."""
    model, backend = fresh(case)
    note = repro("protocol")
    problems = fedmodel.check_protocol(model)
    if problems:
        raise CheckFailure(PROTOCOL, type(model).__qualname__, "no missing or mis-signed member", problems, note)
    spec = model.input_spec
    try:
        spec_x, spec_y = fedmodel.split_batch(spec)
    except fedmodel.SpecError as exc:
        raise CheckFailure(PROTOCOL, "input_spec", "a pair (x, y) or a mapping {'x', 'y'}", str(exc), note) from exc
    paths, leaves, _ = _tree.flatten_with_paths(
        {"x": spec_x, "y": spec_y}, is_leaf=lambda s: isinstance(s, fedmodel.TensorSpec)
    )
    for path, leaf in zip(paths, leaves, strict=True):
        if not isinstance(leaf, fedmodel.TensorSpec):
            raise CheckFailure(PROTOCOL, f"input_spec at {path!r}", "a fedmodel.TensorSpec", type(leaf).__name__, note)
    agg = model.federated_output_computation
    if not isinstance(agg, fedmodel.Aggregator):
        raise CheckFailure(
            PROTOCOL,
            "federated_output_computation",
            "a fedmodel.Aggregator (init, accumulate, finalize, __call__)",
            type(agg).__name__,
            note,
        )
    if not isinstance(backend, fedmodel.Backend):
        missing = [m for m in ("name", *_BACKEND_OPERATIONS) if not hasattr(backend, m)]
        raise CheckFailure(
            PROTOCOL, f"backend {type(backend).__name__}", "a fedmodel.Backend", f"missing {missing}", note
        )


_BACKEND_OPERATIONS = (
    "variable_names",
    "read_variables",
    "write_variables",
    "to_native",
    "make_optimizer",
    "train_step",
)

DISJOINT = "the three variable groups (trainable, non-trainable, local) are disjoint: no variable is in two groups"


@register(DISJOINT)
def check_groups_disjoint(case: Case) -> None:
    """Clause: the trainable and non-trainable groups share no variable (compared by identity)."""
    model, backend = fresh(case)
    g = groups(model)
    trainable = {id(v) for v in g["trainable"]}
    for i, v in enumerate(g["non_trainable"]):
        if id(v) in trainable:
            name = backend.variable_names(model, g["non_trainable"])[i]
            raise CheckFailure(
                DISJOINT,
                f"non_trainable_variables[{i}] ({name!r})",
                "not also a trainable variable",
                "the same object is in trainable_variables",
                repro("groups_disjoint"),
            )


NO_DUPLICATES = "each variable appears once: no group lists the same variable twice"


@register(NO_DUPLICATES)
def check_no_duplicate_variables(case: Case) -> None:
    """Clause: within each group every variable object appears exactly once."""
    model, backend = fresh(case)
    for group, variables in groups(model).items():
        seen: dict[int, int] = {}
        for i, v in enumerate(variables):
            if id(v) in seen:
                name = backend.variable_names(model, variables)[i]
                raise CheckFailure(
                    NO_DUPLICATES,
                    f"{group}_variables[{i}] ({name!r})",
                    "each variable once",
                    f"the same object as {group}_variables[{seen[id(v)]}]",
                    repro("no_duplicate_variables"),
                )
            seen[id(v)] = i


UNIQUE_NAMES = "Backend.variable_names gives each variable a unique, stable name (the names of the weights)"


@register(UNIQUE_NAMES)
def check_unique_names(case: Case) -> None:
    """Clause: distinct variables have distinct names, and the names are the same on every call."""
    model, backend = fresh(case)
    note = repro("unique_names")
    owner: dict[str, tuple[int, str]] = {}
    for group, variables in groups(model).items():
        names = backend.variable_names(model, variables)
        if len(names) != len(variables):
            raise CheckFailure(UNIQUE_NAMES, f"{group} variables", f"{len(variables)} names", f"{len(names)}", note)
        if list(backend.variable_names(model, variables)) != list(names):
            raise CheckFailure(UNIQUE_NAMES, f"{group} names", list(names), "other names on a second call", note)
        for v, n in zip(variables, names, strict=True):
            if not isinstance(n, str) or not n:
                raise CheckFailure(UNIQUE_NAMES, f"{group} variable name", "a non-empty str", repr(n), note)
            if n in owner and owner[n][0] != id(v):
                raise CheckFailure(
                    UNIQUE_NAMES,
                    f"the name {n!r}",
                    "one variable per name",
                    f"used by a {owner[n][1]} variable and a different {group} variable",
                    note,
                )
            owner.setdefault(n, (id(v), group))


STABLE_ORDER = (
    "each variable group returns the same variable objects in the same order on every read (across forward_pass, "
    "reset_metrics, ...): variables are compared by identity"
)


def _first_moved(first: list[Any], now: list[Any]) -> int | None:
    """The first position at which ``now`` does not list the object ``first`` lists there, or ``None``."""
    for i, v in enumerate(first):
        if i >= len(now) or now[i] is not v:
            return i
    return None


@register(STABLE_ORDER)
def check_stable_order(case: Case) -> None:
    """Clause: each group lists the same objects in the same order every time it is read.

    Variables that appear only later (lazily created ones) are the business of ``created_in_init``;
    here the variables of the first read must come back, as the same objects, in the same order.
    """
    model, backend = fresh(case)
    batch = make_batch(case, training_size(case, 3), np.random.default_rng(seed_for("stable_order")))
    x, _ = fedmodel.split_batch(batch)
    first = groups(model)  # held: every object stays alive, so no id can be reused
    names = {g: list(backend.variable_names(model, vs)) for g, vs in first.items()}
    steps = [
        ("a second read", lambda: None),
        ("forward_pass(training=True)", lambda: model.forward_pass(batch, training=True)),
        ("forward_pass(training=False)", lambda: model.forward_pass(batch, training=False)),
        ("predict_on_batch", lambda: model.predict_on_batch(x, training=False)),
        ("report_local_outputs", model.report_local_outputs),
        ("reset_metrics", model.reset_metrics),
    ]
    for what, step in steps:
        step()
        now = groups(model)
        for group, variables in first.items():
            i = _first_moved(variables, now[group][: len(variables)])
            if i is None:
                continue
            new = now[group][i] if i < len(now[group]) else None
            if new is not None and all(new is not v for v in variables):
                actual = f"a new object (named {backend.variable_names(model, [new])[0]!r}) on {what}"
                advice = "return the same variable objects on every read; the suite compares them by identity"
            else:
                actual = f"{[backend.variable_names(model, [v])[0] for v in now[group]]} after {what}"
                advice = "keep one order"
            raise CheckFailure(
                STABLE_ORDER,
                f"{group}_variables[{i}] ({names[group][i]!r})",
                f"the same object in the same place ({advice})",
                actual,
                repro("stable_order", batch_size=len(np.asarray(x))),
            )


CREATED_IN_INIT = "all variables exist after __init__: a first forward_pass creates no variable and replaces none"


def _reads_are_stable(model: Any) -> bool:
    """Whether two reads of every group give the same objects (if not, ``stable_order`` reports it)."""
    one, two = groups(model), groups(model)
    return all(len(one[g]) == len(two[g]) and all(a is b for a, b in zip(one[g], two[g], strict=True)) for g in one)


@register(CREATED_IN_INIT)
def check_created_in_init(case: Case) -> None:
    """Clause: the variable lists are identical (same objects, same order) before and after a first call.

    A model whose groups give new objects on every read is compared by names here (its objects are
    ``stable_order``'s business).
    """
    model, backend = fresh(case)
    by_identity = _reads_are_stable(model)
    before = groups(model)
    before_names = {g: list(backend.variable_names(model, vs)) for g, vs in before.items()}
    batch = make_batch(case, training_size(case, 3), np.random.default_rng(seed_for("created_in_init")))
    model.forward_pass(batch, training=True)
    model.forward_pass(batch, training=False)
    after = groups(model)
    for group in before:
        after_names = list(backend.variable_names(model, after[group]))
        same = (
            len(before[group]) == len(after[group])
            and all(a is b for a, b in zip(before[group], after[group], strict=False))
            if by_identity
            else before_names[group] == after_names
        )
        if not same:
            raise CheckFailure(
                CREATED_IN_INIT,
                f"{group}_variables after the first forward_pass",
                before_names[group],
                after_names if after_names != before_names[group] else f"{after_names} (new objects)",
                repro("created_in_init", batch_size=len(np.asarray(fedmodel.split_batch(batch)[1]))),
            )


LOCAL_NOT_WEIGHTS = "local variables (metric accumulators) are never part of the weights (never transmitted)"


@register(LOCAL_NOT_WEIGHTS)
def check_local_variables_not_in_weights(case: Case) -> None:
    """Clause: no local variable is also a trainable or non-trainable variable."""
    model, backend = fresh(case)
    g = groups(model)
    weights = {id(v) for v in g["trainable"] + g["non_trainable"]}
    for i, v in enumerate(g["local"]):
        if id(v) in weights:
            name = backend.variable_names(model, g["local"])[i]
            raise CheckFailure(
                LOCAL_NOT_WEIGHTS,
                f"local_variables[{i}] ({name!r})",
                "not among the weights",
                "the same object is a trainable or non-trainable variable",
                repro("local_variables_not_in_weights"),
            )


INDEPENDENT = "two instances from one factory share no variable: assigning to one leaves the other unchanged"


@register(INDEPENDENT)
def check_instances_independent(case: Case) -> None:
    """Clause: two fresh instances have no variable in common, by identity or by effect."""
    first, backend = fresh(case)
    second, _ = fresh(case)
    note = repro("instances_independent")
    # both lists are held while ids are compared: a freed temporary's id can be reused by another object
    first_vars, second_vars = all_variables(first), all_variables(second)
    shared = {id(v) for v in first_vars} & {id(v) for v in second_vars}
    if shared:
        name_of = names_by_id(backend, first)
        names = sorted(name_of.get(i, "<unnamed>") for i in shared)
        raise CheckFailure(
            INDEPENDENT,
            ", ".join(names),
            "no variable object in both instances",
            f"{len(shared)} variable object(s) listed by both",
            note,
        )
    del first_vars, second_vars
    before = Snapshot.take(backend, second, all_variables(second))
    fedmodel.assign_weights(
        first, perturbed(fedmodel.get_weights(first, backend=backend), np.random.default_rng(1)), backend=backend
    )
    before.assert_unchanged(backend, INDEPENDENT, "assign_weights on the other instance", note)
    batch = make_batch(case, training_size(case, 3), np.random.default_rng(seed_for("instances_independent")))
    first.forward_pass(batch, training=True)
    before.assert_unchanged(backend, INDEPENDENT, "forward_pass on the other instance", note)
