"""Confidential clean room, step 2: each party seals its dataset and publishes its key; propose the query."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from include.cleanroom.names import DATASET_PATTERN, DOCUMENT_ID_PATTERN
from sensitive_data.common.retries import RETRIES_SERVICE, default_args
from sensitive_data.operators.cleanroom_datasets import CleanroomPublishDatasetsOperator
from sensitive_data.operators.cleanroom_governance import (
    CleanroomAutoApproveOperator,
    CleanroomAwaitAcceptanceOperator,
    CleanroomProposeQueryOperator,
)

STORAGE = "{{ var.value.get('cleanroom_storage_dir', '') }}"
STAGING = "{{ var.value.get('cleanroom_staging_dir', '') }}"
QUERY = (
    "SELECT a.region, COUNT(DISTINCT a.patient_id) AS n, SUM(a.visits + b.visits) AS visits\n"
    "FROM visits_a a JOIN visits_b b ON a.patient_id = b.patient_id\n"
    "GROUP BY a.region"
)

with DAG(
    dag_id="cleanroom_prepare",
    description="Confidential clean room: seal the parties' datasets, publish their keys, propose and approve a query",
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
            description="The accepted contract (cleanroom_create).",
        ),
        "sources": Param(
            [
                {"dataset": "visits_a", "source": "hospital_a/visits.csv"},
                {"dataset": "visits_b", "source": "hospital_b/visits.csv"},
            ],
            type="array",
            minItems=1,
            title="Sources",
            items={
                "type": "object",
                "required": ["dataset", "source"],
                "additionalProperties": False,
                "properties": {
                    "dataset": {"type": "string", "pattern": DATASET_PATTERN},
                    "source": {"type": "string", "minLength": 1},
                },
            },
            description="For each dataset: its plaintext source, relative to the staging directory (Variable "
            "cleanroom_staging_dir) or absolute, in either case inside <staging>/<owner>/. Only datasets whose "
            "owner registered its automation to publish them are sealed here; the owner's automation identity "
            "seals and publishes, never a connection chosen here.",
        ),
        "document_id": Param(
            "visits-by-region",
            type="string",
            pattern=DOCUMENT_ID_PATTERN,
            title="Query id",
            description="Id of the query document in governance (lowercase letters, digits, '-').",
        ),
        "query": Param(
            QUERY,
            type="string",
            minLength=1,
            maxLength=20_000,
            title="Spark SQL query",
            description="One Spark SQL SELECT over the contract's datasets (by name), within every owner's "
            "analysis rules: group by allowed dimensions, aggregate allowed measures; the clean room computes "
            "the group sizes itself and drops groups below k.",
            format="multiline",
        ),
        "min_group_size": Param(
            None,
            type=["null", "integer"],
            minimum=2,
            title="Minimum group size",
            description="Stricter than the contract's minimum, or empty for the contract's.",
        ),
        "acceptance_timeout_minutes": Param(
            7 * 24 * 60,
            type="integer",
            minimum=1,
            maximum=90 * 24 * 60,
            title="Approval period (minutes)",
            description="How long to wait (deferred) for the approvals of data owners without an "
            "auto-approval policy, who vote themselves.",
        ),
        "cleanroom_governance_conn_id": Param(
            "cleanroom_governance",
            type="string",
            minLength=1,
            title="Governance connection",
            description="The member connection that proposes the query.",
        ),
    },
    doc_md="""
### Confidential clean room: prepare

1. **publish_datasets** - for each dataset whose owner registered its automation to publish it:
   as that owner's automation identity, the source is checked against the contract's schema,
   sealed (AES-256-GCM) with a fresh key, and the key published as the owner's secret
   `<dataset>-dek` (released only to the attested clean room, for a query its owner approved).
2. **propose_query** - the SQL is checked against the owners' analysis rules (kept in governance)
   and proposed; the approvers are the owners of the datasets it reads.
3. **auto_approve** - owners who registered "accept queries that satisfy my analysis rules" have
   their own automation re-check and vote; everyone else votes themselves.
4. **await_query_approval** - deferred until every data owner has approved.

Then run `cleanroom_run`. See docs/cleanroom.md.
""",
) as dag:
    publish = CleanroomPublishDatasetsOperator(
        task_id="publish_datasets",
        contract_id="{{ params.contract_id }}",
        sources="{{ params.sources }}",
        storage_dir=STORAGE,
        staging_dir=STAGING,
        cleanroom_governance_conn_id="{{ params.cleanroom_governance_conn_id }}",
    )
    propose = CleanroomProposeQueryOperator(
        task_id="propose_query",
        contract_id="{{ params.contract_id }}",
        document_id="{{ params.document_id }}",
        query="{{ params.query }}",
        min_group_size="{{ params.min_group_size }}",
        cleanroom_governance_conn_id="{{ params.cleanroom_governance_conn_id }}",
    )
    vote = CleanroomAutoApproveOperator(
        task_id="auto_approve",
        document_id="{{ params.document_id }}",
        cleanroom_governance_conn_id="{{ params.cleanroom_governance_conn_id }}",
    )
    await_approval = CleanroomAwaitAcceptanceOperator(
        task_id="await_query_approval",
        kind="document",
        target_id="{{ params.document_id }}",
        acceptance_timeout_minutes="{{ params.acceptance_timeout_minutes }}",
        cleanroom_governance_conn_id="{{ params.cleanroom_governance_conn_id }}",
        retries=1,
    )
    publish >> propose >> vote >> await_approval
