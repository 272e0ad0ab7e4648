"""Clean room operators that drive governance (CGS): the contract, ballots, publishing the owners'
datasets, the query document, the owners' automatic review, the run's preconditions and the audit
trail (see docs/cleanroom.md).

The platform votes only as its own member. An owner's ballot is cast by the owner, or by the
owner's automation identity (``cleanroom_automation_<owner>``) only while that owner has registered
its auto-approval policy in governance, which refuses it otherwise; the automation re-checks the
query against the owner's rules first. Nothing here takes a connection id from a run's conf.
Sealing and publishing the datasets is in ``cleanroom_datasets``, the run in ``cleanroom_spark``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from include.cleanroom.errors import CleanroomRefused, CleanroomUserError
from sensitive_data.common.errors import SensitiveDataOperatorMixin, translate_errors
from sensitive_data.operators.cleanroom_base import (
    accepted_contract,
    as_list,
    automation,
    governance,
    local_dir,
    owners_rules,
    runtime_setup,
    spark,
)


# ====================================================================================== contract
class CleanroomProposeContractOperator(SensitiveDataOperatorMixin, BaseOperator):
    """Write the contract to governance and propose it; idempotent. Its policy carries the
    measurement of the whole clean room job this platform builds (``job_measurement`` of the
    template SparkApplication) and governance's service identity, which the job pins.

    :param contract_id: the contract id (DNS label)
    :param title: a title for humans
    :param members: the collaboration's members
    :param datasets: ``[{name, owner, format, schema: [{name, type}]}]``
    :param min_group_size: the floor under every owner's k
    :param recipient: the member who receives results
    :param cleanroom_governance_conn_id: this deployment's member connection
    :param kubernetes_conn_id: the cluster whose job the measurement describes
    """

    template_fields: Sequence[str] = (
        "contract_id",
        "title",
        "members",
        "datasets",
        "min_group_size",
        "recipient",
        "cleanroom_governance_conn_id",
        "kubernetes_conn_id",
    )
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        contract_id: str,
        members: Any,
        datasets: Any,
        min_group_size: Any = 5,
        title: str = "",
        recipient: str = "",
        cleanroom_governance_conn_id: str = "cleanroom_governance",
        kubernetes_conn_id: str = "cleanroom_k8s",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.contract_id = contract_id
        self.title = title
        self.members = members
        self.datasets = datasets
        self.min_group_size = min_group_size
        self.recipient = recipient
        self.cleanroom_governance_conn_id = cleanroom_governance_conn_id
        self.kubernetes_conn_id = kubernetes_conn_id

    def execute(self, context) -> dict[str, Any]:
        from include.cleanroom.contract import Contract
        from include.cleanroom.manifest import job_measurement

        with translate_errors():
            hook = governance(self.cleanroom_governance_conn_id)
            key = hook.service_identity()
            template = runtime_setup(spark(self.kubernetes_conn_id), hook, self.contract_id, key, None)
            contract = Contract.from_data(
                self.contract_id,
                {
                    "title": self.title or self.contract_id,
                    "members": as_list(self.members, "members"),
                    "datasets": as_list(self.datasets, "datasets"),
                    "minGroupSize": int(self.min_group_size),
                    "resultRecipient": self.recipient or hook.member_id(),
                    "policy": {"measurement": job_measurement(template["spec"]), "governanceKey": key},
                },
            )
            view, proposal = hook.ensure_proposed("contract", self.contract_id, contract.to_data())
        self.log.info(
            "contract %s is %s; approved clean room measurement (the whole job): %s",
            self.contract_id,
            view.get("state"),
            contract.measurement,
        )
        return {
            "contract_id": self.contract_id,
            "state": view.get("state"),
            "proposal_id": view.get("proposalId"),
            "required_voters": (proposal or {}).get("requiredVoters", []),
            "measurement": contract.measurement,
            "datasets": [d.name for d in contract.datasets],
        }


class CleanroomVoteOperator(SensitiveDataOperatorMixin, BaseOperator):
    """This deployment's own member votes on a contract (never on another member's behalf).

    :param kind: ``contract`` or ``document``
    :param target_id: the contract or document id
    :param accept: accept (default) or reject
    """

    template_fields: Sequence[str] = ("kind", "target_id", "cleanroom_governance_conn_id")
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        kind: str,
        target_id: str,
        accept: bool = True,
        cleanroom_governance_conn_id: str = "cleanroom_governance",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.kind = kind
        self.target_id = target_id
        self.accept = accept
        self.cleanroom_governance_conn_id = cleanroom_governance_conn_id

    def execute(self, context) -> dict[str, Any]:
        with translate_errors():
            hook = governance(self.cleanroom_governance_conn_id)
            outcome = hook.cast_ballot(self.kind, self.target_id, self.accept)
            member = hook.member_id()
        self.log.info("%s on %s %s: %s", member, self.kind, self.target_id, outcome)
        return {"member": member, "kind": self.kind, "target_id": self.target_id, "outcome": outcome}


class CleanroomAwaitAcceptanceOperator(SensitiveDataOperatorMixin, BaseOperator):
    """Wait, deferred, until a proposed contract or query document is accepted by every member who
    must vote; fail naming who rejected it, or who has not voted when the time is up.

    :param kind: ``contract`` or ``document``
    :param target_id: the contract or query document id
    :param acceptance_timeout_minutes: how long members have to vote
    :param poll_interval: seconds between polls of governance
    """

    template_fields: Sequence[str] = ("kind", "target_id", "acceptance_timeout_minutes", "cleanroom_governance_conn_id")
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        kind: str,
        target_id: str,
        cleanroom_governance_conn_id: str = "cleanroom_governance",
        acceptance_timeout_minutes: Any = 7 * 24 * 60,
        poll_interval: float = 5.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.kind = kind
        self.target_id = target_id
        self.cleanroom_governance_conn_id = cleanroom_governance_conn_id
        self.acceptance_timeout_minutes = acceptance_timeout_minutes
        self.poll_interval = poll_interval

    def _timeout(self) -> timedelta:
        return timedelta(minutes=float(self.acceptance_timeout_minutes))

    def execute(self, context) -> dict[str, Any]:
        from include.cleanroom.governance import Tally
        from sensitive_data.triggers.cleanroom import GovernanceAcceptanceTrigger

        with translate_errors():
            seen = governance(self.cleanroom_governance_conn_id).acceptance(self.kind, self.target_id)
        if seen.get("state") == "Proposed" and seen.get("proposalState") in (None, "Open"):
            self.log.info(
                "waiting (deferred) for the ballots of %s on %s %s",
                ", ".join(Tally.of(seen).waiting) or "nobody",
                self.kind,
                self.target_id,
            )
            self.defer(
                trigger=GovernanceAcceptanceTrigger(
                    self.kind, self.target_id, self.cleanroom_governance_conn_id, self.poll_interval
                ),
                method_name="execute_complete",
                timeout=self._timeout(),
            )
        return self.execute_complete(context, {"status": "resolved", **seen})

    def deadline_message(self) -> str:
        """Who has not voted when the time is up (read from governance now; said plainly if it cannot be)."""
        from include.cleanroom.governance import ItemState, Tally, pending_reason
        from include.common.errors import SensitiveDataError

        within = f"{self.kind} {self.target_id} was not accepted within {self._timeout().total_seconds() / 3600:.1f} h"
        try:
            seen = governance(self.cleanroom_governance_conn_id).acceptance(self.kind, self.target_id)
        except SensitiveDataError as exc:
            return f"{within} (the votes could not be read: {exc.reason})"
        tally = Tally.of(seen) if seen.get("proposalId") else None
        return f"{within}: {pending_reason(ItemState(seen.get('state') or 'Missing'), tally)}"

    def execute_complete(self, context, event: dict[str, Any]) -> dict[str, Any]:
        from include.cleanroom.governance import ItemState, Tally, pending_reason

        what = f"{self.kind} {self.target_id}"
        self.raise_for_event(event)
        state = ItemState(event.get("state") or "Missing")
        if state is ItemState.ACCEPTED:
            self.log.info("%s accepted", what)
            return {"kind": self.kind, "target_id": self.target_id, "state": state.value}
        tally = Tally.of(event) if event.get("proposalId") else None
        raise AirflowFailException(f"{what} is not accepted: {pending_reason(state, tally)}")


# ====================================================================================== prepare
class CleanroomProposeQueryOperator(SensitiveDataOperatorMixin, BaseOperator):
    """Check a Spark SQL query against the owners' analysis rules (kept in governance) and propose
    it as a query document whose approvers are the owners of the datasets it reads; idempotent.

    :param contract_id: the accepted contract
    :param document_id: the query document id (DNS label)
    :param query: one Spark SQL SELECT over the contract's datasets
    :param min_group_size: stricter than the contract's, or empty for the contract's
    """

    template_fields: Sequence[str] = (
        "contract_id",
        "document_id",
        "query",
        "min_group_size",
        "cleanroom_governance_conn_id",
    )
    template_fields_renderers = {"query": "sql"}
    ui_color = "#fdf3e8"

    def __init__(
        self,
        *,
        contract_id: str,
        document_id: str,
        query: str,
        min_group_size: Any = None,
        cleanroom_governance_conn_id: str = "cleanroom_governance",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.contract_id = contract_id
        self.document_id = document_id
        self.query = query
        self.min_group_size = min_group_size
        self.cleanroom_governance_conn_id = cleanroom_governance_conn_id

    def execute(self, context) -> dict[str, Any]:
        from include.cleanroom.contract import QueryDocument

        with translate_errors():
            hook = governance(self.cleanroom_governance_conn_id)
            contract = accepted_contract(hook, self.contract_id)
            k = None if self.min_group_size in (None, "", "None", 0) else int(self.min_group_size)
            doc = QueryDocument.create(self.document_id, contract, self.query, owners_rules(hook, contract), k)
            view, _ = hook.ensure_proposed(
                "document", self.document_id, doc.to_data(), contract_id=self.contract_id, approvers=doc.approvers
            )
        self.log.info(
            "query document %s is %s; approvers (the data owners): %s",
            self.document_id,
            view.get("state"),
            ", ".join(doc.approvers),
        )
        return {
            "document_id": self.document_id,
            "contract_id": self.contract_id,
            "state": view.get("state"),
            "approvers": doc.approvers,
            "datasets": [d.name for d in doc.datasets],
            "min_group_size": doc.min_group_size,
        }


class CleanroomAutoApproveOperator(SensitiveDataOperatorMixin, BaseOperator):
    """Each data owner that registered "accept queries that satisfy my analysis rules" has its
    own automation identity re-check the proposed document against its rules and vote; every
    other owner votes itself (the DAG then waits for it).

    :param document_id: the proposed query document
    """

    template_fields: Sequence[str] = ("document_id", "cleanroom_governance_conn_id")
    ui_color = "#fdf3e8"

    def __init__(self, *, document_id: str, cleanroom_governance_conn_id: str = "cleanroom_governance", **kwargs):
        super().__init__(**kwargs)
        self.document_id = document_id
        self.cleanroom_governance_conn_id = cleanroom_governance_conn_id

    def execute(self, context) -> dict[str, Any]:
        from include.cleanroom.contract import QueryDocument
        from include.cleanroom.governance import ItemState, Tally, automated_owners, item_state

        voted, waiting = [], []
        with translate_errors():
            hook = governance(self.cleanroom_governance_conn_id)
            view = hook.get_document(self.document_id)
            if item_state(view) is ItemState.ACCEPTED:
                return {"document_id": self.document_id, "voted": [], "waiting_for": []}
            if item_state(view) is not ItemState.PROPOSED:
                raise CleanroomUserError(f"query document {self.document_id} is not proposed")
            tally = Tally.of(hook.get_proposal(view["proposalId"]))
            approvers = [a.get("approverId") for a in view.get("approvers") or []]
            policies = hook.autoapproval_policies(view["contractId"])
            for owner in automated_owners(policies, approvers, tally.waiting):
                auto = automation(owner)
                contract = accepted_contract(auto, view["contractId"])
                problem = ""
                try:
                    QueryDocument.from_data(
                        self.document_id, contract, view.get("data") or {}, owners_rules(auto, contract)
                    )
                except CleanroomUserError as exc:
                    problem = str(exc)
                outcome = auto.cast_ballot("document", self.document_id, not problem)
                self.log.info(
                    "%s's automation (its auto-approval policy): %s %s",
                    owner,
                    "reject" if problem else "accept",
                    outcome,
                )
                voted.append({"member": owner, "ballot": "reject" if problem else "accept", "outcome": outcome})
                if problem:
                    raise CleanroomRefused(f"{owner}'s rules refuse query document {self.document_id}: {problem}")
            waiting = sorted(set(tally.waiting) - {v["member"] for v in voted})
        for owner in waiting:
            self.log.info("%s has no auto-approval policy: the query waits for its own ballot", owner)
        return {"document_id": self.document_id, "voted": voted, "waiting_for": waiting}


# ====================================================================================== run
class CleanroomCheckRunnableOperator(SensitiveDataOperatorMixin, BaseOperator):
    """Refuse, naming who, unless the run is allowed: the contract accepted, the document accepted
    by every owner of the datasets it reads and still within their rules, no consent revoked,
    every key published and every sealed file in place. Returns what the run needs.

    :param contract_id: the contract
    :param document_id: the query document
    :param storage_dir: where sealed datasets are (default ``$SDP_LOCAL/cleanroom/storage``)
    """

    template_fields: Sequence[str] = ("contract_id", "document_id", "storage_dir", "cleanroom_governance_conn_id")
    ui_color = "#e8fde9"

    def __init__(
        self,
        *,
        contract_id: str,
        document_id: str,
        storage_dir: str = "",
        cleanroom_governance_conn_id: str = "cleanroom_governance",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.contract_id = contract_id
        self.document_id = document_id
        self.storage_dir = storage_dir
        self.cleanroom_governance_conn_id = cleanroom_governance_conn_id

    def execute(self, context) -> dict[str, Any]:
        from include.cleanroom import datasets as sealing
        from include.cleanroom.contract import QueryDocument
        from include.cleanroom.governance import (
            ItemState,
            Tally,
            consent_problem,
            item_state,
            missing_approvals,
            pending_reason,
        )
        from include.cleanroom.names import secret_id

        with translate_errors():
            hook = governance(self.cleanroom_governance_conn_id)
            contract = accepted_contract(hook, self.contract_id)
            view = hook.get_document(self.document_id)
            state = item_state(view)
            if state is ItemState.MISSING:
                raise CleanroomUserError(f"query document {self.document_id} does not exist: run cleanroom_prepare")
            if view.get("contractId") != self.contract_id:
                raise CleanroomUserError(f"query document {self.document_id} belongs to another contract")
            if state is not ItemState.ACCEPTED:
                tally = Tally.of(hook.get_proposal(view["proposalId"])) if view.get("proposalId") else None
                raise CleanroomRefused(
                    f"query document {self.document_id} is not approved: {pending_reason(state, tally)}"
                )
            doc = QueryDocument.from_data(
                self.document_id, contract, view.get("data") or {}, owners_rules(hook, contract)
            )
            missing = missing_approvals(view, doc.approvers)
            if missing:
                raise CleanroomRefused(f"query document {self.document_id} lacks the approval of {', '.join(missing)}")
            for what, status in (
                (f"contract {self.contract_id}", hook.contract_execution_status(self.contract_id)),
                (f"query document {self.document_id}", hook.document_execution_status(self.document_id)),
            ):
                problem = consent_problem(what, status)
                if problem:
                    raise CleanroomRefused(problem)
            published = set(hook.list_secrets(self.contract_id))
            storage = local_dir(self.storage_dir, "storage")
            datasets = {}
            for dataset in doc.datasets:
                path = sealing.sealed_path(storage, self.contract_id, dataset)
                if secret_id(dataset.owner, dataset.name) not in published or not path.is_file():
                    raise CleanroomRefused(
                        f"dataset {dataset.name} is not published: its owner {dataset.owner} has not sealed it "
                        "or stored its key"
                    )
                datasets[dataset.name] = Path(path).resolve().as_uri()
        self.log.info(
            "runnable: contract %s accepted, query %s approved by %s, consent enabled, %d dataset(s) published",
            self.contract_id,
            self.document_id,
            ", ".join(doc.approvers),
            len(datasets),
        )
        return {
            "contract_id": self.contract_id,
            "document_id": self.document_id,
            "datasets": datasets,
            "approvers": doc.approvers,
            "governance_key": contract.governance_key,
        }


class CleanroomAuditTrailOperator(SensitiveDataOperatorMixin, BaseOperator):
    """The run's audit trail from governance: the clean room's own events (attested and signed)
    and governance's record (votes, consent, rules, budget debits, keys released or refused),
    written next to the result as ``audit.jsonl`` and summarised in the task log.

    :param contract_id: the contract
    :param document_id: the query document
    :param run: the run task's result (``.output``)
    """

    template_fields: Sequence[str] = ("contract_id", "document_id", "run", "cleanroom_governance_conn_id")
    ui_color = "#e8fde9"

    def __init__(
        self,
        *,
        contract_id: str,
        document_id: str,
        run: Any = None,
        cleanroom_governance_conn_id: str = "cleanroom_governance",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.contract_id = contract_id
        self.document_id = document_id
        self.run = run
        self.cleanroom_governance_conn_id = cleanroom_governance_conn_id

    def execute(self, context) -> dict[str, Any]:
        import json

        app = self.run or {}
        with translate_errors():
            hook = governance(self.cleanroom_governance_conn_id)
            name = app.get("application")
            runtime = hook.events(self.contract_id, scope=self.document_id, event_id=name) if name else []
            gov = [
                e
                for e in hook.events(self.contract_id, scope="governance")
                if (e.get("data") or {}).get("documentId") in (None, self.document_id)
            ]
        for e in gov + runtime:
            data = e.get("data") or {}
            self.log.info(
                "audit #%s %s %s %s",
                e.get("seqno"),
                e.get("timestamp_iso", ""),
                data.get("action") or data.get("event"),
                {k: v for k, v in data.items() if k not in ("action", "event")},
            )
        if app.get("output") and Path(app["output"]).is_dir():
            with open(Path(app["output"]) / "audit.jsonl", "w") as fh:
                for e in gov + runtime:
                    fh.write(json.dumps(e, sort_keys=True) + "\n")
        return {
            "contract_id": self.contract_id,
            "document_id": self.document_id,
            "runtime_events": [(e.get("data") or {}).get("event") for e in runtime],
            "governance_actions": sorted({(e.get("data") or {}).get("action") for e in gov} - {None}),
            "governance_events": len(gov),
        }
