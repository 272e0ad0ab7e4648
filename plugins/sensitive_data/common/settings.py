"""Settings read at run time, from Airflow Variables, never at DAG-parse time.

A DAG file holds no environment reads or branching; what a deployment tunes is read by the task
that needs it, when it runs. A Variable that is set but does not parse is an error
(``ConfigError``: the task fails without retry and says which Variable to fix), never silently
replaced by the default.
"""

from __future__ import annotations

import json
from typing import Any

from include.common.errors import ConfigError

__all__ = ["variable_bool", "variable_json"]

_UNSET = object()


def variable_json(key: str, default: Any = None, *, expect: type | tuple[type, ...] | None = None) -> Any:
    """The Variable ``key`` decoded as JSON, or ``default`` when it is not set.

    :param expect: the type(s) the decoded value must have
    :raises ConfigError: set, but not JSON or not of the expected type
    """
    from airflow.sdk import Variable

    raw = Variable.get(key, default=_UNSET)
    if raw is _UNSET:
        return default
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise ConfigError(f"Airflow Variable {key!r} is not valid JSON ({str(raw)[:80]!r})",
                          hint=f"set {key!r} to a JSON value, or delete it for the default") from None
    types = _as_tuple(expect) if expect is not None else ()
    if types and (not isinstance(value, types) or (isinstance(value, bool) and bool not in types)):
        names = " or ".join(t.__name__ for t in types)
        raise ConfigError(f"Airflow Variable {key!r} is {value!r}, not of type {names}",
                          hint=f"set {key!r} to a value of type {names}, or delete it for the default")
    return value


def variable_bool(key: str, default: bool) -> bool:
    """The Variable ``key`` as ``true`` or ``false`` (JSON), or ``default`` when it is not set."""
    return variable_json(key, default, expect=bool)


def _as_tuple(expect: type | tuple[type, ...]) -> tuple[type, ...]:
    return expect if isinstance(expect, tuple) else (expect,)
