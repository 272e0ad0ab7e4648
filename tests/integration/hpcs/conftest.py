"""HPCS stand-ins (Vault, SPIRE server, HPCS server, the supercomputer's SFTP) and the Airflow
connections that point at them, as ``AIRFLOW_CONN_*`` variables."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from .standins import audience, connections

__all__ = ["INPUTS", "connections", "run_task"]


@pytest.fixture(scope="module")
def hpcs_stack(devstack):
    v = devstack.start("hpcs_server", "supercomputer_sftp")
    conns = connections(v)
    mp = pytest.MonkeyPatch()
    for conn_id, conn in conns.items():
        mp.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    local = Path(v["SDP_LOCAL"])
    yield SimpleNamespace(
        vars=v,
        local=local,
        conns=conns,
        audience=audience(conns),
        hpcs_url=f"http://127.0.0.1:{v['SDP_HPCS_PORT']}",
        vault_url=f"http://127.0.0.1:{v['SDP_VAULT_PORT']}",
        spire_port=v["SDP_SPIRE_PORT"],
        sftp_port=v["SDP_SUPERCOMPUTER_SFTP_PORT"],
        sftp_root=local / "supercomputer_sftp" / "root",
        sftp_key=local / "supercomputer_sftp" / "id_ed25519",
        root_token=(local / "vault" / "root-token").read_text().strip()
        if (local / "vault" / "root-token").exists()
        else "devstack-root-token",
    )
    mp.undo()


# what the DAG passes as ``.output`` XComArgs: operator argument -> the task whose result it is
INPUTS = {
    "setup": "setup_spire_agent",
    "prepared": "prepare",
    "svid": "svid",
    "workloads": "workloads",
    "info": "info_file",
}


def run_task(op, store: dict, dag_id: str, run_id: str, user: str = "alice"):
    """Execute ``op`` with a minimal context, its upstream results taken from ``store`` (task id ->
    return value) as Airflow resolves the DAG's XComArgs (a task that has not run: ``None``);
    ``user`` is the run's ``triggering_user_name`` (who the API server says triggered it)."""
    for arg, upstream in INPUTS.items():
        if arg in op.template_fields:
            setattr(op, arg, store.get(upstream))
    ctx = {"dag_run": SimpleNamespace(dag_id=dag_id, run_id=run_id, triggering_user_name=user)}
    result = op.execute(ctx)
    store[op.task_id] = result
    return result


@pytest.fixture
def clean_env():
    keep = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(keep)
