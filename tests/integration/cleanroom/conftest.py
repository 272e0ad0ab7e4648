"""The clean room stand-ins (governance, Kubernetes + Spark Operator) and the Airflow connections that
point at them, as ``AIRFLOW_CONN_*`` variables; sealed data under a temporary directory."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from .support import connections


@pytest.fixture(scope="module")
def cleanroom(devstack, tmp_path_factory):
    v = devstack.start("cleanroom_governance")
    conns = connections(v)
    work = tmp_path_factory.mktemp("cleanroom")
    mp = pytest.MonkeyPatch()
    for conn_id, conn in conns.items():
        mp.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    yield SimpleNamespace(
        vars=v,
        cgs_url=f"http://127.0.0.1:{v['SDP_CGS_PORT']}",
        k8s_url=f"http://127.0.0.1:{v['SDP_K8S_PORT']}",
        storage=work / "storage",
        staging=work / "staging",
        output=work / "output",
        conns=conns,
    )
    mp.undo()
