"""Confidential clean room, step 1: propose the collaboration's contract and collect the members' ballots."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from include.cleanroom.contract import DATASET_SCHEMA
from include.cleanroom.names import DOCUMENT_ID_PATTERN, MEMBER_PATTERN
from sensitive_data.common.retries import RETRIES_SERVICE, default_args
from sensitive_data.operators.cleanroom_governance import (
    CleanroomAwaitAcceptanceOperator,
    CleanroomProposeContractOperator,
    CleanroomVoteOperator,
)

VISITS = [
    {"name": "patient_id", "type": "string"},
    {"name": "region", "type": "string"},
    {"name": "age_band", "type": "string"},
    {"name": "visits", "type": "int"},
]

with DAG(
    dag_id="cleanroom_create",
    description="Confidential clean room: propose a contract, collect member ballots, wait until it is accepted",
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
            description="Id of the contract in governance: lowercase letters, digits and '-', "
            "at most 40 characters. An accepted contract never changes: new terms need a new id.",
        ),
        "title": Param(
            "Hospital visits by region",
            type="string",
            maxLength=200,
            title="Title",
            description="What the collaboration is about, for the members who vote on it.",
        ),
        "members": Param(
            ["analyst", "hospital_a", "hospital_b"],
            type="array",
            minItems=2,
            uniqueItems=True,
            items={"type": "string", "pattern": MEMBER_PATTERN},
            title="Members",
            description="The collaboration's members (one per line). Governance accepts the contract only when "
            "every active member of the consortium voted accept, each with its own credentials.",
        ),
        "datasets": Param(
            [
                {"name": "visits_a", "owner": "hospital_a", "format": "csv", "schema": VISITS},
                {"name": "visits_b", "owner": "hospital_b", "format": "csv", "schema": VISITS},
            ],
            type="array",
            minItems=1,
            items=DATASET_SCHEMA,
            title="Datasets",
            description="Each party's dataset: name (an SQL identifier, the view name in queries), owner (a member), "
            "format (csv with a header row in this column order, or parquet) and schema [{name, type}].",
        ),
        "min_group_size": Param(
            5,
            type="integer",
            minimum=2,
            maximum=1_000_000,
            title="Minimum group size",
            description="k: result rows describing fewer individuals than this are suppressed. "
            "Queries may be stricter, never looser.",
        ),
        "result_recipient": Param(
            "",
            type="string",
            pattern=f"^$|{MEMBER_PATTERN}",
            title="Result recipient",
            description="The member who receives results; empty: this deployment's member.",
        ),
        "acceptance_timeout_minutes": Param(
            7 * 24 * 60,
            type="integer",
            minimum=1,
            maximum=90 * 24 * 60,
            title="Voting period (minutes)",
            description="How long to wait (deferred, no worker held) for every "
            "member's ballot before failing with the names of those who did not vote.",
        ),
        "cleanroom_governance_conn_id": Param(
            "cleanroom_governance",
            type="string",
            minLength=1,
            title="Governance connection",
            description="This deployment's member connection to the clean room governance service (CGS).",
        ),
        "kubernetes_conn_id": Param(
            "cleanroom_k8s",
            type="string",
            minLength=1,
            title="Kubernetes connection",
            description="The cluster whose clean room job the contract's measurement describes.",
        ),
    },
    doc_md="""
### Confidential clean room: create

1. **propose_contract** - the contract (members, datasets with owners and schemas, minimum group
   size, result recipient, the measurement of the whole clean room job - main file, runtime
   package, arguments, env, conf - and governance's service identity, which the job pins) is
   written to governance and proposed. Re-running with the same terms changes nothing.
2. **vote** - this deployment's own member votes accept. Every other member votes itself.
3. **await_acceptance** - deferred until every active member has accepted; fails naming who
   rejected, or who has not voted when the voting period ends.

Then run `cleanroom_prepare`. See docs/cleanroom.md.
""",
) as dag:
    propose = CleanroomProposeContractOperator(
        task_id="propose_contract",
        contract_id="{{ params.contract_id }}",
        title="{{ params.title }}",
        members="{{ params.members }}",
        datasets="{{ params.datasets }}",
        min_group_size="{{ params.min_group_size }}",
        recipient="{{ params.result_recipient }}",
        cleanroom_governance_conn_id="{{ params.cleanroom_governance_conn_id }}",
        kubernetes_conn_id="{{ params.kubernetes_conn_id }}",
    )
    vote = CleanroomVoteOperator(
        task_id="vote",
        kind="contract",
        target_id="{{ params.contract_id }}",
        cleanroom_governance_conn_id="{{ params.cleanroom_governance_conn_id }}",
    )
    await_acceptance = CleanroomAwaitAcceptanceOperator(
        task_id="await_acceptance",
        kind="contract",
        target_id="{{ params.contract_id }}",
        acceptance_timeout_minutes="{{ params.acceptance_timeout_minutes }}",
        cleanroom_governance_conn_id="{{ params.cleanroom_governance_conn_id }}",
        retries=1,
    )
    propose >> vote >> await_acceptance
