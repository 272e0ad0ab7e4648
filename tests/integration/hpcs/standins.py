"""The HPCS connections of airflow_settings.yaml, filled with a stack's SDP_* variables."""

from __future__ import annotations

import json
import os

from devstack.settings import load

HPCS_CONNECTIONS = ("hpcs_server", "spire_agent", "vault", "supercomputer_sftp")


def connections(v: dict[str, str]) -> dict[str, dict]:
    """conn_id -> the JSON form Airflow reads from ``AIRFLOW_CONN_*``, as airflow_settings.yaml defines it."""
    settings = load(variables={**os.environ, **v})
    found = {c.conn_id: c.as_dict() for c in settings.connections if c.conn_id in HPCS_CONNECTIONS}
    missing = sorted(set(HPCS_CONNECTIONS) - set(found))
    assert not missing, f"airflow_settings.yaml lacks the connections {missing} (see docs/hpcs-standins.md)"
    return found


def audience(conns: dict[str, dict]) -> str:
    """The JWT-SVID audience the pipeline uses: the hpcs_server connection's svid_audience."""
    extra = conns["hpcs_server"].get("extra") or {}
    if isinstance(extra, str):
        extra = json.loads(extra)
    return extra.get("svid_audience") or "vault"
