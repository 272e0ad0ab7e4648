"""Stager settings: defaults, overridden by ``SDP_STAGER_*`` environment variables or a dict.

``threads``            files transferred in parallel (each thread its own iRODS session)
``num_threads``        parallel streams for one large file (python-irodsclient parallel put/get;
                       capped by the library at the worker's CPU count); 1 = single stream
``parallel_threshold`` files larger than this many bytes use ``num_threads`` streams
``runner_python``      the interpreter the transfer child runs as the stager user (default: the
                       worker's own); point it at one every stager user can execute, the worker's
                       project and site-packages are then passed on PYTHONPATH
``report_interval``    seconds between progress reports
``admins``             e-mail addresses put in CC of failure alerts (and To: when the user gave none)
``from_email``         sender of notifications
``dac_collections``    project number -> DAC collection (the data streamer's static map)
``streamer_timeouts``  modality -> [timeout, timeout_noprogress]
``streamer_source``    where the streamer may read a project's raw data, ``{projectId}`` filled in
                       (default ``/project/{projectId}/raw``); a ``srcPath`` is resolved (symbolic
                       links followed) and must lie inside it
``min_uid``            transfers never run as a uid below this (system accounts), default 1000
``max_uid``            nor above this (``nobody`` 65534 and other overflow ids), default 60000 (login.defs)
``allowed_users``      POSIX users a transfer may run as ...
``allowed_groups``     ... or members of one of these groups; both empty = no transfer may run
``identities``         Airflow user -> ``{"stagerUser": [...], "drUser": [...]}``: whom a researcher may
                       act as; an Airflow user not listed may act as the POSIX and repository user of
                       the same name only
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields, replace

DEFAULT_DAC = {
    "3010000.01": "/nl.ru.donders/dccn/DAC_3010000.01",
    "3055000.01": "/nl.ru.donders/dccn/DAC_3055000.01",
}
DEFAULT_STREAMER_TIMEOUTS = {"MRI": [10800, 600], "MEG": [3600, 1800], "OPM": [1800, 600]}
DEFAULT_STREAMER_SOURCE = "/project/{projectId}/raw"


@dataclass(frozen=True)
class StagerSettings:
    threads: int = 4
    num_threads: int = 4
    parallel_threshold: int = 32 * 1024 * 1024
    runner_python: str = ""
    report_interval: float = 10.0
    admins: tuple[str, ...] = ("stager-admin@localhost",)
    from_email: str = "data-stager@localhost"
    dac_collections: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_DAC))
    streamer_timeouts: dict[str, list[int]] = field(default_factory=lambda: dict(DEFAULT_STREAMER_TIMEOUTS))
    streamer_source: str = DEFAULT_STREAMER_SOURCE
    min_uid: int = 1000
    max_uid: int = 60000
    allowed_users: tuple[str, ...] = ()
    allowed_groups: tuple[str, ...] = ()
    identities: dict[str, dict[str, list[str]]] = field(default_factory=dict)


def _coerce(name: str, value):
    if name in ("threads", "num_threads"):
        return max(1, int(value))
    if name == "parallel_threshold":
        return max(0, int(value))
    if name in ("runner_python", "streamer_source"):
        return str(value or "")
    if name == "report_interval":
        return float(value)
    if name in ("min_uid", "max_uid"):
        return int(value)
    if name in ("admins", "allowed_users", "allowed_groups"):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        return tuple(value)
    if name in ("dac_collections", "streamer_timeouts", "identities") and isinstance(value, str):
        return json.loads(value)
    return value


def load_settings(overrides: dict | None = None, environ=None) -> StagerSettings:
    env = os.environ if environ is None else environ
    values = {}
    for f in fields(StagerSettings):
        key = f"SDP_STAGER_{f.name.upper()}"
        if key in env:
            values[f.name] = _coerce(f.name, env[key])
    for name, value in (overrides or {}).items():
        if name in {f.name for f in fields(StagerSettings)}:
            values[name] = _coerce(name, value)
    return replace(StagerSettings(), **values)
