"""Confidential clean room, step 2: each party seals its dataset and publishes its key; propose the query."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from include.cleanroom.names import COLUMN_PATTERN, DATASET_PATTERN, DOCUMENT_ID_PATTERN
from sensitive_data.operators.cleanroom import (
    CleanroomAwaitAcceptanceOperator,
    CleanroomProposeQueryOperator,
    CleanroomPublishDatasetsOperator,
    CleanroomVoteOperator,
)

STORAGE = "{{ var.value.get('cleanroom_storage_dir', '') }}"
STAGING = "{{ var.value.get('cleanroom_staging_dir', '') }}"
QUERY = (
    "SELECT a.region, COUNT(DISTINCT a.patient_id) AS n, SUM(a.visits + b.visits) AS visits\n"
    "FROM visits_a a JOIN visits_b b ON a.patient_id = b.patient_id\n"
    "GROUP BY a.region"
)

default_args = {
    "owner": "cleanroom",
    "retries": 3,
    "retry_delay": pendulum.duration(seconds=15),
    "retry_exponential_backoff": True,
    "max_retry_delay": pendulum.duration(minutes=10),
}

with DAG(
    dag_id="cleanroom_prepare",
    description="Confidential clean room: seal the parties' datasets, publish their keys, propose and approve a query",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=4,
    render_template_as_native_obj=True,
    tags=["cleanroom", "sensitive-data", "spark"],
    default_args=default_args,
    params={
        "contract_id": Param(
            "demo-visits",
            type="string",
            pattern=DOCUMENT_ID_PATTERN,
            title="Contract id",
            description="The accepted contract (cleanroom_create).",
        ),
        "parties": Param(
            [
                {
                    "dataset": "visits_a",
                    "source": "hospital_a/visits.csv",
                    "member_conn_id": "cleanroom_member_hospital_a",
                },
                {
                    "dataset": "visits_b",
                    "source": "hospital_b/visits.csv",
                    "member_conn_id": "cleanroom_member_hospital_b",
                },
            ],
            type="array",
            minItems=1,
            title="Parties",
            items={
                "type": "object",
                "required": ["dataset", "source", "member_conn_id"],
                "additionalProperties": False,
                "properties": {
                    "dataset": {"type": "string", "pattern": DATASET_PATTERN},
                    "source": {"type": "string", "minLength": 1},
                    "member_conn_id": {"type": "string", "minLength": 1},
                },
            },
            description="For each dataset: its plaintext source (relative to the staging directory, Variable "
            "cleanroom_staging_dir, or absolute; either way inside <staging>/<owner>/) and the governance "
            "connection of its owner, who seals it and publishes its key.",
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
            description="One SELECT over the contract's datasets (by name). It must output each group's "
            "size in the count column; DDL, DML, other tables, paths and table functions are refused.",
            format="multiline",
        ),
        "count_column": Param(
            "n",
            type="string",
            pattern=COLUMN_PATTERN,
            title="Count column",
            description="The output column holding each group's size (groups below the minimum are suppressed).",
        ),
        "min_group_size": Param(
            None,
            type=["null", "integer"],
            minimum=2,
            title="Minimum group size",
            description="Stricter than the contract's minimum, or empty for the contract's.",
        ),
        "voter_conn_ids": Param(
            ["cleanroom_member_hospital_a", "cleanroom_member_hospital_b"],
            type="array",
            uniqueItems=True,
            items={"type": "string", "minLength": 1},
            title="Delegated approvals",
            description="Governance connections of data owners who delegated their approval: "
            "each re-checks the query against the contract and votes.",
        ),
        "acceptance_timeout_minutes": Param(
            7 * 24 * 60,
            type="integer",
            minimum=1,
            maximum=90 * 24 * 60,
            title="Approval period (minutes)",
            description="How long to wait (deferred) for the data owners' approvals.",
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

1. **publish_datasets** - for each party, as its own governance member: the plaintext source is
   checked against the contract's schema, sealed (AES-256-GCM, 64 KiB segments) with a fresh key
   into the party's storage, and the key is published as the owner's governance secret
   `<dataset>-dek`: governance releases it only to an attested clean room whose measurement is
   the contract's, for a query its owner approved, while consent stands.
2. **propose_query** - the Spark SQL is validated (one SELECT over the contract's datasets, group
   size column) and proposed as a query document whose approvers are the owners of the datasets
   it reads.
3. **vote_query** - delegated data owners re-check and approve it.
4. **await_query_approval** - deferred until every data owner has approved.

Then run `cleanroom_run`. See docs/cleanroom.md.
""",
) as dag:
    publish = CleanroomPublishDatasetsOperator(
        task_id="publish_datasets",
        contract_id="{{ params.contract_id }}",
        parties="{{ params.parties }}",
        storage_dir=STORAGE,
        staging_dir=STAGING,
        cleanroom_governance_conn_id="{{ params.cleanroom_governance_conn_id }}",
    )
    propose = CleanroomProposeQueryOperator(
        task_id="propose_query",
        contract_id="{{ params.contract_id }}",
        document_id="{{ params.document_id }}",
        query="{{ params.query }}",
        count_column="{{ params.count_column }}",
        min_group_size="{{ params.min_group_size }}",
        cleanroom_governance_conn_id="{{ params.cleanroom_governance_conn_id }}",
    )
    vote = CleanroomVoteOperator(
        task_id="vote_query",
        kind="document",
        target_id="{{ params.document_id }}",
        voter_conn_ids="{{ params.voter_conn_ids }}",
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
