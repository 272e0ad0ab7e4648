"""Names as HPCS validates them.

Users, groups and compute nodes follow the UNIX name rule HPCS's client applies
(``^[a-z_]([a-z0-9_-]{0,31}|[a-z0-9_-]{0,30}\\$)$``). The secret name becomes part of a Vault
path, a SPIFFE ID and a Vault role name, so it is restricted to ``[A-Za-z0-9._-]+`` (and may not be
``.`` or ``..``).
"""

from __future__ import annotations

import ast
import json
import os
import re
from collections.abc import Iterable

from include.hpcs.errors import HpcsUserError

UNIX_NAME = re.compile(r"^[a-z_]([a-z0-9_-]{0,31}|[a-z0-9_-]{0,30}\$)$")
SECRET_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
# JSON-schema spellings of the same rules, for Airflow Params.
UNIX_NAME_PATTERN = UNIX_NAME.pattern
SECRET_NAME_PATTERN = r"^[A-Za-z0-9._-]*$"  # noqa: S105 - a pattern; empty: derived from the input's base name
SECRET_NAME_MAX = 128


def _parse_list(text: str) -> list:
    """A list rendered by a template (JSON or Python literal), e.g. ``['alice', 'bob']``."""
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(text)
        except (ValueError, SyntaxError):
            continue
        if isinstance(value, list):
            return value
    raise HpcsUserError(f"cannot read a list of names from {text[:100]!r}")


def split_names(value: str | Iterable[str] | None) -> list[str]:
    """A list of names from a list or a comma/space separated string; empty items dropped."""
    if value is None:
        return []
    if isinstance(value, str) and value.strip().startswith("["):
        value = _parse_list(value)
    items = re.split(r"[,\s]+", value) if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise HpcsUserError(f"names must be strings, got {type(item).__name__}")
        item = item.strip()
        if item and item not in out:
            out.append(item)
    return out


def validate_unix_names(kind: str, value: str | Iterable[str] | None) -> list[str]:
    """Validated UNIX names (``kind`` is ``user``, ``group`` or ``compute node`` for the message)."""
    names = split_names(value)
    bad = [n for n in names if not UNIX_NAME.match(n)]
    if bad:
        raise HpcsUserError(
            f"invalid {kind} name(s) {', '.join(repr(b) for b in bad)}: a {kind} name starts with a "
            "lowercase letter or '_', continues with lowercase letters, digits, '_' or '-', "
            "is at most 32 characters and may end with '$'"
        )
    return names


def validate_secret_name(name: str) -> str:
    if not name or not SECRET_NAME.match(name) or name in (".", "..") or len(name) > SECRET_NAME_MAX:
        raise HpcsUserError(
            f"invalid secret name {name!r}: use 1 to {SECRET_NAME_MAX} characters among "
            "A-Z a-z 0-9 . _ - (not '.' or '..')"
        )
    return name


def default_secret_name(input_path: str) -> str:
    """The secret name HPCS derives from the input: its base name."""
    return os.path.basename(os.path.normpath(input_path))


def validate_access(
    users: str | Iterable[str] | None,
    groups: str | Iterable[str] | None,
    compute_nodes: str | Iterable[str] | None,
) -> tuple[list[str], list[str], list[str]]:
    """Validated (users, groups, compute_nodes): at least one user or group, at least one node."""
    u = validate_unix_names("user", users)
    g = validate_unix_names("group", groups)
    c = validate_unix_names("compute node", compute_nodes)
    if not u and not g:
        raise HpcsUserError("give at least one user or one group that may read the key on the compute nodes")
    if not c:
        raise HpcsUserError("give at least one compute node that may read the key")
    return u, g, c
