"""Load ``airflow_settings.yaml`` (astro format) into Airflow, or export it for ``dag.test``.

The file is the one source of development connections, variables and pools::

    airflow:
      connections: [{conn_id, conn_type, conn_host, conn_port, conn_login, conn_password,
                     conn_schema, conn_extra}]
      pools:       [{pool_name, pool_slot, pool_description}]
      variables:   [{variable_name, variable_value}]

``${NAME}`` and ``${NAME:-default}`` placeholders are filled from a mapping (by default the
environment), so the local stack and the tests share the file with different ports and paths.
A relative ``SDP_LOCAL`` is taken relative to the repository root.

Commands::

    python -m devstack.settings apply  [--file airflow_settings.yaml]   # into the metadata DB
    python -m devstack.settings export --conn-file c.json --var-file v.json
    python -m devstack.settings check                                     # parse and validate only
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FILE = ROOT / "airflow_settings.yaml"

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_CONN_KEYS = {
    "conn_id", "conn_type", "conn_host", "conn_port", "conn_login", "conn_password", "conn_schema",
    "conn_extra", "conn_description",
}


class SettingsError(ValueError):
    """The settings file is malformed; the message says where and what."""


@dataclass(frozen=True)
class ConnectionSetting:
    conn_id: str
    conn_type: str
    host: str | None = None
    port: int | None = None
    login: str | None = None
    password: str | None = None
    schema: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    description: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON form Airflow reads from ``AIRFLOW_CONN_*`` and from connection files."""
        out: dict[str, Any] = {"conn_type": self.conn_type}
        for key in ("host", "port", "login", "password", "schema", "description"):
            value = getattr(self, key)
            if value not in (None, ""):
                out[key] = value
        if self.extra:
            out["extra"] = self.extra
        return out


@dataclass(frozen=True)
class Settings:
    connections: tuple[ConnectionSetting, ...]
    pools: tuple[tuple[str, int, str], ...]
    variables: tuple[tuple[str, str], ...]


def default_vars() -> dict[str, str]:
    """The environment, with SDP_LOCAL made absolute (default: <repo>/.local)."""
    env = dict(os.environ)
    local = Path(env.get("SDP_LOCAL", ".local"))
    env["SDP_LOCAL"] = str(local if local.is_absolute() else ROOT / local)
    return env


def expand(value: Any, variables: Mapping[str, str], where: str) -> Any:
    """Fill ``${NAME:-default}`` placeholders in every string inside ``value``."""
    if isinstance(value, str):
        def sub(match: re.Match) -> str:
            name, default = match.group(1), match.group(2)
            if name in variables and variables[name] != "":
                return str(variables[name])
            if default is not None:
                return default
            raise SettingsError(f"{where}: ${{{name}}} is not set and has no default")

        return _PLACEHOLDER.sub(sub, value)
    if isinstance(value, dict):
        return {k: expand(v, variables, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, variables, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _require(entry: Mapping[str, Any], key: str, where: str) -> Any:
    if entry.get(key) in (None, ""):
        raise SettingsError(f"{where}: '{key}' is required")
    return entry[key]


def parse(text: str, variables: Mapping[str, str] | None = None, source: str = "settings") -> Settings:
    """Parse and validate the settings text; raise SettingsError with the place of each problem."""
    variables = default_vars() if variables is None else variables
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SettingsError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("airflow"), dict):
        raise SettingsError(f"{source}: the top level must be a mapping with an 'airflow' key")
    section = doc["airflow"]
    unknown = set(section) - {"connections", "pools", "variables"}
    if unknown:
        raise SettingsError(f"{source}: unknown key(s) under 'airflow': {', '.join(sorted(unknown))}")

    def items(name: str) -> list[dict]:
        value = section.get(name) or []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise SettingsError(f"{source}: 'airflow.{name}' must be a list of mappings")
        return value

    connections, seen = [], set()
    for i, raw in enumerate(items("connections")):
        where = f"{source}: airflow.connections[{i}]"
        extra_keys = set(raw) - _CONN_KEYS
        if extra_keys:
            raise SettingsError(f"{where}: unknown key(s) {', '.join(sorted(extra_keys))}")
        entry = expand(raw, variables, where)
        conn_id = _require(entry, "conn_id", where)
        where = f"{source}: connection '{conn_id}'"
        if conn_id in seen:
            raise SettingsError(f"{where}: defined twice")
        seen.add(conn_id)
        port = entry.get("conn_port")
        if port not in (None, ""):
            try:
                port = int(port)
            except (TypeError, ValueError):
                raise SettingsError(f"{where}: conn_port {port!r} is not a number") from None
        else:
            port = None
        extra = entry.get("conn_extra") or {}
        if isinstance(extra, str):
            try:
                extra = json.loads(extra)
            except json.JSONDecodeError as exc:
                raise SettingsError(f"{where}: conn_extra is not JSON: {exc}") from None
        if not isinstance(extra, dict):
            raise SettingsError(f"{where}: conn_extra must be a mapping")
        connections.append(ConnectionSetting(
            conn_id=str(conn_id), conn_type=str(_require(entry, "conn_type", where)),
            host=_str(entry.get("conn_host")), port=port, login=_str(entry.get("conn_login")),
            password=_str(entry.get("conn_password")), schema=_str(entry.get("conn_schema")),
            extra=extra, description=_str(entry.get("conn_description")),
        ))

    pools = []
    for i, raw in enumerate(items("pools")):
        where = f"{source}: airflow.pools[{i}]"
        entry = expand(raw, variables, where)
        name = str(_require(entry, "pool_name", where))
        slots = entry.get("pool_slot")
        if not isinstance(slots, int) or slots < 0:
            raise SettingsError(f"{where}: pool_slot must be a whole number >= 0, got {slots!r}")
        pools.append((name, slots, str(entry.get("pool_description") or "")))

    variables_out = []
    for i, raw in enumerate(items("variables")):
        where = f"{source}: airflow.variables[{i}]"
        entry = expand(raw, variables, where)
        key = str(_require(entry, "variable_name", where))
        value = entry.get("variable_value", "")
        if not isinstance(value, str):
            value = json.dumps(value)
        variables_out.append((key, value))
    return Settings(tuple(connections), tuple(pools), tuple(variables_out))


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def load(path: Path | str = DEFAULT_FILE, variables: Mapping[str, str] | None = None) -> Settings:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SettingsError(f"cannot read settings file {path}: {exc.strerror}") from None
    return parse(text, variables, source=str(path))


def connection_env(settings: Settings) -> dict[str, str]:
    """``AIRFLOW_CONN_<ID>`` / ``AIRFLOW_VAR_<KEY>`` for every entry (JSON connection form)."""
    env = {f"AIRFLOW_CONN_{c.conn_id.upper()}": json.dumps(c.as_dict()) for c in settings.connections}
    env.update({f"AIRFLOW_VAR_{k.upper()}": v for k, v in settings.variables})
    return env


def export_files(settings: Settings, conn_file: Path, var_file: Path) -> None:
    """Write the files ``dag.test(conn_file_path=..., variable_file_path=...)`` reads."""
    conn_file.write_text(json.dumps({c.conn_id: c.as_dict() for c in settings.connections}, indent=2))
    var_file.write_text(json.dumps(dict(settings.variables), indent=2))


def apply(settings: Settings) -> dict[str, int]:
    """Create or update every connection, pool and variable in the metadata DB (idempotent)."""
    from airflow.models import Connection, Pool, Variable  # noqa: PLC0415 - needs AIRFLOW_HOME set first
    from airflow.utils.session import create_session  # noqa: PLC0415

    changed = {"connections": 0, "pools": 0, "variables": 0}
    with create_session() as session:
        for c in settings.connections:
            wanted = Connection(
                conn_id=c.conn_id, conn_type=c.conn_type, host=c.host, port=c.port, login=c.login,
                password=c.password, schema=c.schema, extra=json.dumps(c.extra) if c.extra else None,
                description=c.description,
            )
            current = session.query(Connection).filter(Connection.conn_id == c.conn_id).one_or_none()
            if current is None:
                session.add(wanted)
                changed["connections"] += 1
                continue
            fields = ("conn_type", "host", "port", "login", "password", "schema", "extra", "description")
            if any(getattr(current, f) != getattr(wanted, f) for f in fields):
                for f in fields:
                    setattr(current, f, getattr(wanted, f))
                changed["connections"] += 1
        for name, slots, description in settings.pools:
            current = session.query(Pool).filter(Pool.pool == name).one_or_none()
            if current is None or current.slots != slots or (current.description or "") != description:
                Pool.create_or_update_pool(name, slots, description, include_deferred=False, session=session)
                changed["pools"] += 1
        for key, value in settings.variables:
            current = session.query(Variable).filter(Variable.key == key).one_or_none()
            if current is None:
                session.add(Variable(key=key, val=value))
                changed["variables"] += 1
            elif current.val != value:
                current.val = value
                changed["variables"] += 1
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devstack.settings", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["apply", "export", "check"])
    parser.add_argument("--file", default=str(DEFAULT_FILE))
    parser.add_argument("--conn-file")
    parser.add_argument("--var-file")
    args = parser.parse_args(argv)
    try:
        settings = load(args.file)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "apply":
        changed = apply(settings)
        print(f"settings applied from {args.file}: "
              f"{len(settings.connections)} connections, {len(settings.pools)} pools, "
              f"{len(settings.variables)} variables ({sum(changed.values())} changed)")
    elif args.command == "export":
        if not (args.conn_file and args.var_file):
            parser.error("export needs --conn-file and --var-file")
        export_files(settings, Path(args.conn_file), Path(args.var_file))
    else:
        print(f"{args.file}: {len(settings.connections)} connections, {len(settings.pools)} pools, "
              f"{len(settings.variables)} variables: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
