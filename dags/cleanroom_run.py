"""Confidential clean room, step 3: run an approved query in the attested Spark clean room."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from include.cleanroom.names import DOCUMENT_ID_PATTERN
from sensitive_data.common.retries import RETRIES_SERVICE, default_args
from sensitive_data.operators.cleanroom_governance import (
    CleanroomAuditTrailOperator,
    CleanroomCheckRunnableOperator,
)
from sensitive_data.operators.cleanroom_spark import CleanroomCollectResultOperator, CleanroomSparkRunOperator

STORAGE = "{{ var.value.get('cleanroom_storage_dir', '') }}"
OUTPUT = "{{ var.value.get('cleanroom_output_dir', '') }}"

with DAG(
    dag_id="cleanroom_run",
    description="Confidential clean room: check approvals and consent, run the query on Spark, collect the result",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=4,
    render_template_as_native_obj=True,
    tags=["cleanroom", "sensitive-data", "spark"],
    default_args=default_args(RETRIES_SERVICE, owner="cleanroom"),
    params={
        "contract_id": Param(
            "demo-visits",
            type="string",
            pattern=DOCUMENT_ID_PATTERN,
            title="Contract id",
            description="The accepted contract.",
        ),
        "document_id": Param(
            "visits-by-region",
            type="string",
            pattern=DOCUMENT_ID_PATTERN,
            title="Query id",
            description="The approved query document to run.",
        ),
        "run_timeout_minutes": Param(
            360,
            type="integer",
            minimum=1,
            maximum=7 * 24 * 60,
            title="Run timeout (minutes)",
            description="The Spark run is stopped (deleted) and the task fails after this.",
        ),
        "cleanroom_governance_conn_id": Param(
            "cleanroom_governance",
            type="string",
            minLength=1,
            title="Governance connection",
            description="This deployment's member connection to governance.",
        ),
        "kubernetes_conn_id": Param(
            "cleanroom_k8s",
            type="string",
            minLength=1,
            title="Kubernetes connection",
            description="The Kubernetes connection of the cluster with the Spark Operator.",
        ),
    },
    doc_md="""
### Confidential clean room: run

1. **check_runnable** - refuses, naming who, unless the contract is accepted, the query document
   is approved by every owner of the datasets it reads, no member has revoked consent (contract or
   document execution disabled), and every dataset's key and sealed file are published.
2. **run_query** - a SparkApplication (`sparkoperator.k8s.io/v1beta2`) runs the clean room job
   through the Spark Operator; the task waits deferred. Inside, the job attests the whole job,
   pins governance's identity, fetches the query, the owners' analysis rules and the keys,
   checks the query again, debits the privacy budget, and releases only groups of at least k
   distinct identities (with noise where an owner asks for differential privacy).
3. **collect_result** - the run's structured summary (rows, suppressed groups, epsilon, timings);
   the driver's log never reaches Airflow.
4. **audit_trail** - governance's record of the run and of the decisions behind it.

See docs/cleanroom.md.
""",
) as dag:
    check = CleanroomCheckRunnableOperator(
        task_id="check_runnable",
        contract_id="{{ params.contract_id }}",
        document_id="{{ params.document_id }}",
        storage_dir=STORAGE,
        cleanroom_governance_conn_id="{{ params.cleanroom_governance_conn_id }}",
    )
    run = CleanroomSparkRunOperator(
        task_id="run_query",
        contract_id="{{ params.contract_id }}",
        document_id="{{ params.document_id }}",
        output_dir=OUTPUT,
        runnable=check.output,
        run_timeout_minutes="{{ params.run_timeout_minutes }}",
        kubernetes_conn_id="{{ params.kubernetes_conn_id }}",
        cleanroom_governance_conn_id="{{ params.cleanroom_governance_conn_id }}",
    )
    collect = CleanroomCollectResultOperator(task_id="collect_result", run=run.output)
    audit = CleanroomAuditTrailOperator(
        task_id="audit_trail",
        contract_id="{{ params.contract_id }}",
        document_id="{{ params.document_id }}",
        run=run.output,
        cleanroom_governance_conn_id="{{ params.cleanroom_governance_conn_id }}",
    )
    collect >> audit
