"""Policy problems in people's words: each names the key path, its line and column in the YAML
file, and what was expected (allowed values, a duration such as 30m, 2h or 1d, ...), with a
did-you-mean for a misspelt key or value (``difflib.get_close_matches``, Python, "difflib",
https://docs.python.org/3/library/difflib.html#difflib.get_close_matches).

Lines and columns come from the composed YAML node tree: every node carries ``start_mark``
(PyYAML, "PyYAML Documentation", https://pyyaml.org/wiki/PyYAMLDocumentation: "Nodes ... have
start_mark and end_mark"); marks count from 0, shown here from 1 as editors do. pydantic's
error ``loc`` is the path walked through that tree.
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from dataclasses import asdict, dataclass
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ValidationError

from shared.delivery.policy import ALIAS_NAME
from shared.monitoring.policy import _COLUMN, _DELAY, _DURATION, _UC_PART, _UC_TABLE
from shared.redaction import contains_secret

_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
# What each pattern of the policy means, said in words instead of the regular expression.
PATTERN_WORDS = {
    _DURATION.pattern: "a duration such as 30m, 2h or 1d (a number then s, m, h, d or w)",
    _DELAY.pattern: "a duration such as 0s, 30m, 2h or 1d (a number then s, m, h, d or w)",
    _UC_TABLE: "a Unity Catalog table name catalog.schema.table (no spaces or '/')",
    rf"^{_UC_PART}$": "a Unity Catalog name (no '.', spaces or '/')",
    _COLUMN: "a column name (1 to 255 characters, no control characters)",
    ALIAS_NAME: "an alias name: a letter, then letters, digits, '-' or '_'",
    _IDENTIFIER: "a name of letters, digits and '_', not starting with a digit (at most 64)",
    r"^[A-Za-z0-9_-]{1,63}$": "an endpoint name: 1 to 63 letters, digits, '-' or '_'",
    r"^[A-Za-z0-9_-]{1,200}$": "letters, digits, '-' or '_' (at most 200)",
    r"^[A-Za-z_][A-Za-z0-9_]*$": "an app setting name: letters, digits and '_', not starting with a digit",
}
_TYPE_WORDS = {
    "int": "a whole number", "float": "a number", "bool": "true or false", "string": "text",
    "dict": "a mapping (key: value lines)", "model": "a mapping (key: value lines)", "list": "a list",
}
# Settings the policy passes on as given (served-entity environment, job parameters).
_FREE_FORM = {"environment_vars", "parameters"}
_BOUNDS = {"greater_than": ("gt", "greater than"), "greater_than_equal": ("ge", "at least"),
           "less_than": ("lt", "less than"), "less_than_equal": ("le", "at most")}


@dataclass(frozen=True)
class Problem:
    """One problem of a policy file; a warning does not stop the policy from loading."""

    path: str
    line: int | None
    column: int | None
    message: str
    severity: Literal["error", "warning"] = "error"

    def text(self, source: str) -> str:
        where = f"{source}:{self.line}:{self.column}" if self.line else source
        return f"{where}: {'warning: ' if self.severity == 'warning' else ''}{self.path}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def compose(text: str) -> yaml.Node | None:
    """The node tree of an already parsed document (so it cannot fail where loading did not)."""
    return yaml.compose(text, Loader=yaml.SafeLoader)


def locate(root: yaml.Node | None, loc: tuple[Any, ...], *, at_key: bool = False) -> tuple[int | None, int | None]:
    """Line and column (from 1) of the value at ``loc``; with ``at_key``, of its key. A part not
    found is passed over: a discriminator tag, the champion list form of ``aliases``, or a
    missing key (then the place is its parent mapping's)."""
    node, key = root, None
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            hit = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part), None)
            if hit:
                key, node = hit
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            key, node = None, node.value[part]
    mark = (key if at_key and key is not None else node).start_mark if node is not None else None
    return (mark.line + 1, mark.column + 1) if mark else (None, None)


def _members(tp: Any) -> list[Any]:
    """The types a field may hold: Annotated and Optional unwrapped, unions split."""
    if typing.get_origin(tp) is typing.Annotated:
        return _members(typing.get_args(tp)[0])
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(tp) for m in _members(arg) if m is not type(None)]
    return [tp]


def _is_model(tp: Any) -> bool:
    return inspect.isclass(tp) and issubclass(tp, BaseModel)


def _field(model: type[BaseModel], name: str) -> Any:
    return next((f.annotation for n, f in model.model_fields.items() if name in (n, f.alias)), None)


def _step(tp: Any, part: Any) -> Any:
    for m in _members(tp):
        origin = typing.get_origin(m)
        if isinstance(part, int) and origin is list:
            return typing.get_args(m)[0]
        if isinstance(part, str) and origin is dict:
            return typing.get_args(m)[1]
        if isinstance(part, str) and _is_model(m) and _field(m, part) is not None:
            return _field(m, part)
    # a discriminated union names the chosen member by its tag (``kind``)
    return next((m for m in _members(tp) if _is_model(m) and "kind" in m.model_fields
                 and part in typing.get_args(m.model_fields["kind"].annotation)), None)


def type_at(root: type[BaseModel], loc: tuple[Any, ...]) -> Any:
    tp: Any = root
    for part in loc:
        tp = _step(tp, part)
        if tp is None:
            return None
    return tp


def keys_of(tp: Any) -> list[str]:
    return [f.alias or n for m in _members(tp) if _is_model(m) for n, f in m.model_fields.items()]


def closest(word: Any, choices: list[str]) -> str | None:
    close = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(word: Any, choices: list[str]) -> str:
    close = closest(word, choices)
    return f"; did you mean {close!r}?" if close else ""


def _shown(value: Any, loc: tuple[Any, ...] = ()) -> str:
    """The value as given, unless it may be a secret: a policy message reaches logs, records and
    ``GET /api/status``, so a value under a free-form mapping of settings, or one that looks like
    credentials, is described by its type only."""
    if not (isinstance(value, str | int | float | bool) or value is None):
        return f"a {type(value).__name__}"
    if _FREE_FORM & set(map(str, loc)) or contains_secret(str(value)):
        return f"the {type(value).__name__} given"
    return repr(value)


def message(error: Any, root: type[BaseModel]) -> str:
    """One pydantic error (``ValidationError.errors()`` item) in words."""
    kind, loc, ctx, got = error["type"], tuple(error["loc"]), error.get("ctx") or {}, error.get("input")
    if kind == "extra_forbidden":
        allowed = keys_of(type_at(root, loc[:-1]))
        hint = did_you_mean(loc[-1], allowed)
        return f"unknown key {loc[-1]!r}" + (hint or f"; allowed keys: {', '.join(allowed)}")
    if kind == "missing":
        return f"missing required key {loc[-1]!r}"
    if kind == "literal_error":
        allowed = [str(v) for m in _members(type_at(root, loc)) for v in typing.get_args(m)]
        return (f"{_shown(got, loc)} is not allowed: expected one of {', '.join(allowed)}"
                + did_you_mean(got, allowed))
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tags = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",")]
        if kind == "union_tag_not_found":
            return f"missing key {ctx.get('discriminator', 'kind')!r}: expected one of {', '.join(tags)}"
        return f"{ctx.get('tag')!r} is not allowed: expected one of {', '.join(tags)}" + did_you_mean(ctx.get("tag"),
                                                                                                      tags)
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern"))
        return f"{_shown(got, loc)} is not {PATTERN_WORDS.get(pattern, f'text matching {pattern}')}"
    if kind in _BOUNDS:
        key, words = _BOUNDS[kind]
        return f"{_shown(got, loc)} is too {'small' if key in ('gt', 'ge') else 'large'}: expected a number {words} " \
               f"{ctx.get(key)}"
    if kind in ("too_short", "too_long"):
        what = "character(s)" if isinstance(got, str) else "item(s)"
        bound = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        return f"expected {'at least' if kind == 'too_short' else 'at most'} {bound} {what}"
    for prefix, words in _TYPE_WORDS.items():
        if kind.startswith(prefix + "_") and kind != "string_too_short":
            return f"expected {words}, got {_shown(got, loc)}"
    if kind in ("value_error", "assertion_error"):
        return str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return str(error["msg"])


def problems(exc: ValidationError, root: type[BaseModel], node: yaml.Node | None) -> list[Problem]:
    """Each error with its place; a required key reported missing beside the unknown key that
    was meant to be it is said once, as the misspelling."""
    errors = exc.errors()
    meant = {(tuple(e["loc"][:-1]), closest(e["loc"][-1], keys_of(type_at(root, e["loc"][:-1]))))
             for e in errors if e["type"] == "extra_forbidden"}
    out = []
    for error in errors:
        loc = tuple(error["loc"])
        if error["type"] == "missing" and (loc[:-1], loc[-1]) in meant:
            continue
        if error["type"] == "union_tag_invalid":  # the tag's own line, not its mapping's
            loc += (str((error.get("ctx") or {}).get("discriminator", "kind")).strip("'"),)
        line, column = locate(node, loc, at_key=error["type"] == "extra_forbidden")
        out.append(Problem(key_path(loc), line, column, message(error, root)))
    return out
