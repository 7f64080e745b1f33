"""Warnings for columns the policy names that the model does not have: a watched column
(``monitoring.columns``, ``monitoring.categorical``) or a checked one (a drift check's ``of``)
missing from the signature inputs of the version the environment tracks. A warning, not an
error: the next version may add the column, and the policy must load meanwhile; but a check of a
column no request carries never measures anything, so it must not pass unnoticed.

Bounded: per environment one registry read for the tracked version (``shared.registry.resolve``:
the alias, or the newest version by one ordered search), per version one ``MLmodel`` download.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from shared.policy import Environment, Policy
from shared.policy_problems import Problem, compose, did_you_mean, key_path, locate

InputsOf = Callable[[str, Environment], tuple[str, list[str] | None]]
# Drift checks' ``of`` values that are not request columns.
_NOT_COLUMNS = {"features", "prediction", "label"}


def named_columns(env: Environment) -> Iterator[tuple[tuple[Any, ...], str]]:
    """(key path under the environment, column) for each request column its monitoring names."""
    m = env.monitoring
    if m is None:
        return
    for key in ("columns", "categorical"):
        for i, column in enumerate(getattr(m, key) or []):
            yield ("monitoring", key, i), column
    for i, check in enumerate(m.checks):
        if check.of and check.of not in _NOT_COLUMNS:
            yield ("monitoring", "checks", i, "of"), check.of


def column_warnings(policy: Policy, text: str, inputs_of: InputsOf) -> list[Problem]:
    """``inputs_of(model, env)`` answers (version, its signature's input names or None without a
    signature) and may raise: the problem becomes the warning."""
    node, out = compose(text), []
    for i, m in enumerate(policy.models):
        for name, env in m.environments.items():
            named = list(named_columns(env))
            if not named:
                continue
            base: tuple[Any, ...] = ("models", i, "environments", name)
            try:
                version, inputs = inputs_of(m.name, env)
            except Exception as exc:
                out.append(_warning(node, base, f"cannot read the signature of {m.name} ({type(exc).__name__}: "
                                    f"{str(exc)[:200]}): the columns it names are not checked"))
                continue
            if inputs is None:
                out.append(_warning(node, base, f"{m.name} version {version} has no signature: the columns "
                                    "the monitoring names are not checked"))
                continue
            for loc, column in named:
                if column not in inputs:
                    out.append(_warning(node, base + loc, f"column {column!r} is not an input of {m.name} version "
                                        f"{version} (its signature's inputs: {', '.join(inputs)})"
                                        + did_you_mean(column, inputs)))
    return out


def _warning(node: Any, loc: tuple[Any, ...], message: str) -> Problem:
    line, column = locate(node, loc)
    return Problem(key_path(loc), line, column, message, "warning")


def registry_inputs(client: Any, registry_uri: str | None) -> InputsOf:
    """``inputs_of`` for ``column_warnings`` over a registry client, one signature read per version."""
    from shared.model_signature import signature_inputs
    from shared.registry import resolve

    read: dict[tuple[str, str], list[str] | None] = {}

    def inputs_of(model: str, env: Environment) -> tuple[str, list[str] | None]:
        version = resolve(client, model, alias=env.track_alias).version
        if (model, version) not in read:
            specs = signature_inputs(client, registry_uri, model, version)
            read[model, version] = None if specs is None else [s["name"] for s in specs]
        return version, read[model, version]

    return inputs_of
