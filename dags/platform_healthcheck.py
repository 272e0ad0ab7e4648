"""Operators' first stop: is every outside system reachable with the configured credentials?"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from sensitive_data.common.retries import RETRIES_NONE, default_args
from sensitive_data.healthchecks import HEALTHCHECKS
from sensitive_data.operators.healthcheck import HealthCheckOperator

with DAG(
    dag_id="platform_healthcheck",
    description="Checks reachability and credentials of every outside system the pipelines use",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=4,
    tags=["platform", "operations"],
    default_args=default_args(RETRIES_NONE, owner="platform"),
    params={
        "systems": Param(
            [c.name for c in HEALTHCHECKS],
            type="array",
            items={"type": "string", "enum": [c.name for c in HEALTHCHECKS]},
            minItems=1,
            uniqueItems=True,
            title="Systems to check",
            description="Which outside systems to check (default: all). The others are skipped.",
        ),
    },
    doc_md="""
### Platform health check

One task per outside system (message broker, databases, Vault, SFTP, S3, iRODS, ...). Each task
opens the system's Airflow connection, makes one harmless call with the configured credentials,
and either logs `OK` with what it saw or fails with a message that says **which system, at which
address, what went wrong and what to do**. Secrets are never printed.

Run it after deploying, after rotating credentials, or when a pipeline fails with a network error.
The systems checked are listed in `plugins/sensitive_data/healthchecks.py`.
""",
) as dag:
    for check in HEALTHCHECKS:
        HealthCheckOperator(
            task_id=check.name, conn_id=check.conn_id, system=check.system, probe=check.probe, hint=check.hint,
        )
