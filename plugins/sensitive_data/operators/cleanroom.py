"""Operators of the confidential clean room (see docs/cleanroom.md).

Thin operators over ``include.cleanroom`` and the ``cleanroom*`` hooks:

- create: ``CleanroomProposeContractOperator``, ``CleanroomVoteOperator``,
  ``CleanroomAwaitAcceptanceOperator`` (deferred, no worker slot while members vote);
- prepare: ``CleanroomPublishDatasetsOperator`` (seal each party's dataset, key to governance),
  ``CleanroomProposeQueryOperator``, then vote and await as above;
- run: ``CleanroomCheckRunnableOperator`` (approvals, consent, published keys),
  ``CleanroomSparkRunOperator`` (SparkApplication through the Spark Operator, waits deferred),
  ``CleanroomCollectResultOperator`` (result summary and driver log), ``CleanroomAuditTrailOperator``.

Errors are translated once: bad input, configuration and governance refusals fail without retry
(``AirflowFailException``), transient failures raise for a retry with backoff. Dataset keys live
only in memory between their creation and governance; XComs hold ids, paths, counts and hashes.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from include.cleanroom.errors import (
    CleanroomConfigError,
    CleanroomError,
    CleanroomRefused,
    CleanroomTransientError,
    CleanroomUserError,
)

CHECK_TASK = "check_runnable"
RUN_TASK = "run_query"
COLLECT_TASK = "collect_result"


class CleanroomTransientFailure(AirflowException):
    """A service was unavailable; the task is retried with backoff."""


@contextlib.contextmanager
def cleanroom_errors() -> Iterator[None]:
    """Translate ``include.cleanroom`` errors into Airflow's retry semantics (messages carry no secrets)."""
    try:
        yield
    except (CleanroomUserError, CleanroomConfigError) as exc:
        raise AirflowFailException(str(exc)) from None
    except CleanroomTransientError as exc:
        raise CleanroomTransientFailure(str(exc)) from None
    except CleanroomError as exc:
        raise AirflowException(str(exc)) from None


def local_dir(configured: str, name: str) -> Path:
    """A configured directory, else ``$SDP_LOCAL/cleanroom/<name>`` (or the temp dir's)."""
    if configured:
        return Path(configured)
    local = os.environ.get("SDP_LOCAL")
    return (Path(local) if local else Path(tempfile.gettempdir()) / "sdp") / "cleanroom" / name


def _governance(conn_id: str):
    from sensitive_data.hooks.cleanroom_governance import CleanroomGovernanceHook

    return CleanroomGovernanceHook(conn_id)


def _as_list(value: Any, what: str) -> list:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise CleanroomUserError(f"{what} must be a list, not {value[:80]!r}") from None
    if not isinstance(value, list | tuple):
        raise CleanroomUserError(f"{what} must be a list")
    return list(value)


def accepted_contract(hook, contract_id: str):
    """The contract as governance accepted it (``include.cleanroom.contract.Contract``)."""
    from include.cleanroom.contract import Contract

    view = hook.get_contract(contract_id)
    if view is None:
        raise CleanroomUserError(f"contract {contract_id} does not exist in governance: run cleanroom_create first")
    if view.get("state") != "Accepted":
        raise CleanroomRefused(
            f"contract {contract_id} is not accepted (state {view.get('state')})" + pending_voters(hook, view)
        )
    return Contract.from_data(contract_id, view.get("data") or {})


def pending_voters(hook, view: dict) -> str:
    """': <who> has/have not voted' for a proposed contract or document ('' otherwise)."""
    pid = view.get("proposalId")
    if not pid:
        return ": it has not been proposed"
    proposal = hook.get_proposal(pid)
    voted = {v["memberId"]: v["vote"] for v in proposal.get("votes", [])}
    rejected = sorted(m for m, v in voted.items() if v is False)
    if rejected:
        return f": rejected by {', '.join(rejected)}"
    waiting = sorted(m for m in proposal.get("requiredVoters", []) if m not in voted)
    if waiting:
        return f": {', '.join(waiting)} {'has' if len(waiting) == 1 else 'have'} not voted"
    return ""


def disabled_by(reason: dict) -> str:
    """The members named in a CGS 'disabled by the following member(s): m[a,b]' message."""
    message = str((reason or {}).get("message") or "")
    match = re.search(r"m\[([^\]]*)\]", message)
    if match:
        return ", ".join(m.strip() for m in match.group(1).split(",") if m.strip())
    return message or str((reason or {}).get("code") or "unknown")


# ====================================================================================== create
class CleanroomProposeContractOperator(BaseOperator):
    """Write the contract to governance and propose it; idempotent (an identical accepted or
    proposed contract is left as it is, a changed draft is updated first).

    :param contract_id: the contract id (DNS label)
    :param title: a title for humans
    :param members: the members who must accept the contract
    :param datasets: ``[{name, owner, format, schema: [{name, type}]}]``
    :param min_group_size: groups smaller than this are suppressed from results
    :param recipient: the member who receives results
    :param cleanroom_governance_conn_id: this deployment's member connection
    """

    template_fields: Sequence[str] = (
        "contract_id",
        "title",
        "members",
        "datasets",
        "min_group_size",
        "recipient",
        "cleanroom_governance_conn_id",
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

    def execute(self, context) -> dict[str, Any]:
        from include.cleanroom.contract import Contract, application_measurement

        with cleanroom_errors():
            hook = _governance(self.cleanroom_governance_conn_id)
            members = _as_list(self.members, "members")
            contract = Contract.from_data(
                self.contract_id,
                {
                    "title": self.title or self.contract_id,
                    "members": members,
                    "datasets": _as_list(self.datasets, "datasets"),
                    "minGroupSize": int(self.min_group_size),
                    "resultRecipient": self.recipient or hook.member_id(),
                    "policy": {"measurement": application_measurement()},
                },
            )
            data = contract.to_data()
            view = hook.get_contract(self.contract_id)
            if view is not None and view.get("state") == "Accepted":
                if view.get("data") != data:
                    raise CleanroomUserError(
                        f"contract {self.contract_id} is already accepted with other terms; an accepted contract "
                        "cannot change: choose another contract id"
                    )
                self.log.info("contract %s is already accepted with these terms", self.contract_id)
                return self._result(view, contract, [])
            if view is None:
                hook.put_contract(self.contract_id, data)
            elif view.get("data") != data:
                self.log.info("contract %s exists as %s with other terms: updating it", self.contract_id, view["state"])
                hook.put_contract(self.contract_id, data, version=view["version"])
            view = hook.get_contract(self.contract_id)
            if view["state"] == "Proposed":
                proposal = hook.get_proposal(view["proposalId"])
                self.log.info(
                    "contract %s is already proposed (proposal %s)", self.contract_id, view["proposalId"][:12]
                )
            else:
                proposal = hook.propose_contract(self.contract_id, view["version"])
                view = hook.get_contract(self.contract_id)
                self.log.info(
                    "contract %s proposed (proposal %s); members who must accept: %s",
                    self.contract_id,
                    proposal["proposalId"][:12],
                    ", ".join(proposal.get("requiredVoters", [])),
                )
            self.log.info("approved clean room measurement (sha256 of the Spark application): %s", contract.measurement)
            return self._result(view, contract, proposal.get("requiredVoters", []))

    def _result(self, view: dict, contract, voters: list[str]) -> dict[str, Any]:
        return {
            "contract_id": self.contract_id,
            "state": view.get("state"),
            "proposal_id": view.get("proposalId"),
            "required_voters": voters or list(contract.members),
            "measurement": contract.measurement,
            "datasets": [d.name for d in contract.datasets],
        }


class CleanroomVoteOperator(BaseOperator):
    """Cast the ballots of the members whose governance connections this deployment holds (members
    who delegated their vote to the platform). A data owner's connection re-checks a query
    document against the accepted contract first and votes it down when it breaks the rules.

    :param kind: ``contract`` or ``document``
    :param target_id: the contract or query document id
    :param voter_conn_ids: governance connections, one per voting member
    :param accept: vote accept (default) or reject
    """

    template_fields: Sequence[str] = ("kind", "target_id", "voter_conn_ids")
    ui_color = "#e8f4fd"

    def __init__(self, *, kind: str, target_id: str, voter_conn_ids: Any = (), accept: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.kind = kind
        self.target_id = target_id
        self.voter_conn_ids = voter_conn_ids
        self.accept = accept

    def execute(self, context) -> dict[str, Any]:
        voted, skipped = [], []
        with cleanroom_errors():
            if self.kind not in ("contract", "document"):
                raise CleanroomUserError(f"kind must be contract or document, not {self.kind!r}")
            for conn_id in _as_list(self.voter_conn_ids, "voter connections"):
                hook = _governance(conn_id)
                member = hook.member_id()
                view = (
                    hook.get_contract(self.target_id) if self.kind == "contract" else hook.get_document(self.target_id)
                )
                if view is None:
                    raise CleanroomUserError(f"{self.kind} {self.target_id} does not exist in governance")
                if view.get("state") == "Accepted":
                    skipped.append({"member": member, "why": "already accepted"})
                    continue
                if view.get("state") != "Proposed":
                    raise CleanroomUserError(f"{self.kind} {self.target_id} is {view.get('state')}, not proposed")
                proposal = hook.get_proposal(view["proposalId"])
                if member in {v["memberId"] for v in proposal.get("votes", [])}:
                    skipped.append({"member": member, "why": "already voted"})
                    continue
                if member not in proposal.get("requiredVoters", []):
                    skipped.append({"member": member, "why": "not a required voter"})
                    self.log.info("%s is not a required voter of %s %s: no ballot", member, self.kind, self.target_id)
                    continue
                accept, why = self.accept, ""
                if self.kind == "document" and accept:
                    why = self._document_problem(hook, view)
                    accept = not why
                if self.kind == "contract":
                    hook.vote_contract(self.target_id, view["proposalId"], accept)
                else:
                    hook.vote_document(self.target_id, view["proposalId"], accept)
                self.log.info(
                    "%s voted %s on %s %s%s",
                    member,
                    "accept" if accept else "reject",
                    self.kind,
                    self.target_id,
                    f" ({why})" if why else "",
                )
                voted.append({"member": member, "ballot": "accept" if accept else "reject"})
                if why:
                    raise CleanroomRefused(f"{member} rejected query document {self.target_id}: {why}")
        return {"kind": self.kind, "target_id": self.target_id, "voted": voted, "skipped": skipped}

    @staticmethod
    def _document_problem(hook, view: dict) -> str:
        from include.cleanroom.contract import QueryDocument

        try:
            contract = accepted_contract(hook, view.get("contractId", ""))
            doc = QueryDocument.from_data(view["id"], contract, view.get("data") or {})
        except CleanroomUserError as exc:
            return str(exc)
        approvers = sorted(a.get("approverId") for a in view.get("approvers") or [])
        if set(doc.approvers) - set(approvers):
            return f"its approvers {approvers} leave out data owner(s) {sorted(set(doc.approvers) - set(approvers))}"
        return ""


class CleanroomAwaitAcceptanceOperator(BaseOperator):
    """Wait, deferred, until a proposed contract or query document is accepted by every member who
    must vote; fail naming who rejected it, or who has not voted when ``acceptance_timeout`` passes.

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

    def _timeout_s(self) -> float:
        return float(self.acceptance_timeout_minutes) * 60

    def execute(self, context) -> dict[str, Any]:
        from sensitive_data.triggers.cleanroom import GovernanceAcceptanceTrigger

        with cleanroom_errors():
            seen = GovernanceAcceptanceTrigger.poll(
                _governance(self.cleanroom_governance_conn_id).get_connection(self.cleanroom_governance_conn_id),
                self.kind,
                self.target_id,
            )
        if seen.get("state") == "Proposed" and seen.get("proposalState") != "Rejected":
            waiting = sorted(set(seen.get("requiredVoters", [])) - {v["memberId"] for v in seen.get("votes", [])})
            self.log.info(
                "waiting (deferred) for the ballots of %s on %s %s", ", ".join(waiting), self.kind, self.target_id
            )
            self.defer(
                trigger=GovernanceAcceptanceTrigger(
                    self.kind,
                    self.target_id,
                    self.cleanroom_governance_conn_id,
                    self.poll_interval,
                    time.time() + self._timeout_s(),
                ),
                method_name="execute_complete",
            )
        return self.execute_complete(context, {"status": "resolved", **seen})

    def execute_complete(self, context, event: dict[str, Any]) -> dict[str, Any]:
        state = event.get("state")
        votes = {v["memberId"]: v["vote"] for v in event.get("votes", [])}
        what = f"{self.kind} {self.target_id}"
        if state == "Accepted":
            self.log.info("%s accepted", what)
            return {"kind": self.kind, "target_id": self.target_id, "state": "Accepted"}
        if state == "Missing":
            raise AirflowFailException(f"{what} does not exist in governance")
        rejected = sorted(m for m, v in votes.items() if v is False)
        if rejected or event.get("proposalState") == "Rejected":
            raise AirflowFailException(f"{what} was rejected by {', '.join(rejected) or 'a member'}")
        waiting = sorted(m for m in event.get("requiredVoters", []) if m not in votes)
        if event.get("status") == "timeout":
            raise AirflowFailException(
                f"{what} was not accepted within {self._timeout_s() / 3600:.1f} h: "
                f"{', '.join(waiting) or 'nobody'} {'has' if len(waiting) == 1 else 'have'} not voted"
            )
        raise AirflowFailException(f"{what} is {state}: it is no longer proposed (changed or withdrawn)")


# ====================================================================================== prepare
class CleanroomPublishDatasetsOperator(BaseOperator):
    """Each party seals its dataset and publishes the key to governance, as its own member.

    For each ``{dataset, source, member_conn_id}``: the connection's member must own the dataset
    in the accepted contract; the source is checked against the contract's schema, encrypted with
    a fresh key into the storage (``<storage>/<owner>/<contract>/<dataset>.sealed``), the key stored
    as the owner's secret ``<dataset>-dek``, bound to the contract's clean room policy. A re-run
    reuses a completed sealing of an unchanged source whose key is in governance.

    :param contract_id: the accepted contract
    :param parties: ``[{dataset, source, member_conn_id}]``
    :param storage_dir: where sealed datasets go (default ``$SDP_LOCAL/cleanroom/storage``)
    :param staging_dir: where relative sources are found (default ``$SDP_LOCAL/cleanroom/staging``)
    """

    template_fields: Sequence[str] = (
        "contract_id",
        "parties",
        "storage_dir",
        "staging_dir",
        "cleanroom_governance_conn_id",
    )
    ui_color = "#fdf3e8"

    def __init__(
        self,
        *,
        contract_id: str,
        parties: Any,
        storage_dir: str = "",
        staging_dir: str = "",
        cleanroom_governance_conn_id: str = "cleanroom_governance",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.contract_id = contract_id
        self.parties = parties
        self.storage_dir = storage_dir
        self.staging_dir = staging_dir
        self.cleanroom_governance_conn_id = cleanroom_governance_conn_id

    def execute(self, context) -> dict[str, Any]:
        from include.cleanroom import datasets as sealing
        from include.cleanroom.names import party_source, secret_id, secret_name

        out: dict[str, Any] = {}
        with cleanroom_errors():
            contract = accepted_contract(_governance(self.cleanroom_governance_conn_id), self.contract_id)
            storage = local_dir(self.storage_dir, "storage")
            staging = local_dir(self.staging_dir, "staging")
            parties = _as_list(self.parties, "parties")
            if not parties:
                raise CleanroomUserError("no party given: list {dataset, source, member_conn_id} for each dataset")
            for party in parties:
                if not isinstance(party, dict) or not {"dataset", "source", "member_conn_id"} <= set(party):
                    raise CleanroomUserError(f"each party is {{dataset, source, member_conn_id}}, not {party!r}")
                dataset = contract.dataset(party["dataset"])
                hook = _governance(party["member_conn_id"])
                member = hook.member_id()
                if member != dataset.owner:
                    raise CleanroomUserError(
                        f"connection {party['member_conn_id']} is member {member}, but dataset {dataset.name} is owned "
                        f"by {dataset.owner}: only the owner publishes a dataset's key"
                    )
                source = party_source(staging, dataset.owner, party["source"])
                sid = secret_id(dataset.owner, dataset.name)
                done = sealing.completed(storage, self.contract_id, dataset, source) if source.is_file() else None
                if done is not None and sid in hook.list_secrets(self.contract_id):
                    self.log.info(
                        "dataset %s: already sealed from this source (sha256 %s), key in governance as %s",
                        dataset.name,
                        done.source_sha256[:16],
                        sid,
                    )
                    out[dataset.name] = {**done.as_dict(), "secret_id": sid, "reused": True}
                    continue
                sealing.forget(storage, self.contract_id, dataset)
                key = os.urandom(32)
                started = time.monotonic()
                info, tmp = sealing.seal_dataset(source, storage, self.contract_id, dataset, key)
                stored = hook.put_secret(self.contract_id, secret_name(dataset.name), base64.b64encode(key).decode())
                del key
                sealing.commit(info, tmp)
                self.log.info(
                    "dataset %s (owner %s): %d bytes sealed in %.1fs to %s; key stored in governance as %s",
                    dataset.name,
                    dataset.owner,
                    info.size,
                    time.monotonic() - started,
                    info.path,
                    stored,
                )
                out[dataset.name] = {**info.as_dict(), "secret_id": stored, "reused": False}
        return {"contract_id": self.contract_id, "datasets": out}


class CleanroomProposeQueryOperator(BaseOperator):
    """Validate a Spark SQL query against the accepted contract and propose it as a query document
    whose approvers are the owners of the datasets it reads; idempotent like the contract.

    :param contract_id: the accepted contract
    :param document_id: the query document id (DNS label)
    :param query: one Spark SQL SELECT over the contract's datasets
    :param count_column: the output column with each group's size
    :param min_group_size: stricter than the contract's, or empty for the contract's
    """

    template_fields: Sequence[str] = (
        "contract_id",
        "document_id",
        "query",
        "count_column",
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
        count_column: str = "n",
        min_group_size: Any = None,
        cleanroom_governance_conn_id: str = "cleanroom_governance",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.contract_id = contract_id
        self.document_id = document_id
        self.query = query
        self.count_column = count_column
        self.min_group_size = min_group_size
        self.cleanroom_governance_conn_id = cleanroom_governance_conn_id

    def execute(self, context) -> dict[str, Any]:
        from include.cleanroom.contract import QueryDocument

        with cleanroom_errors():
            hook = _governance(self.cleanroom_governance_conn_id)
            contract = accepted_contract(hook, self.contract_id)
            k = None if self.min_group_size in (None, "", "None", 0) else int(self.min_group_size)
            doc = QueryDocument.create(self.document_id, contract, self.query, self.count_column or "n", k)
            data = doc.to_data()
            view = hook.get_document(self.document_id)
            if view is not None and view.get("state") == "Accepted":
                if view.get("data") != data or view.get("contractId") != self.contract_id:
                    raise CleanroomUserError(
                        f"query document {self.document_id} is already accepted with another query; choose another id"
                    )
                self.log.info("query document %s is already accepted", self.document_id)
                return self._result(view, doc)
            if view is None:
                hook.put_document(self.document_id, self.contract_id, data, doc.approvers)
            elif view.get("data") != data or view.get("contractId") != self.contract_id:
                hook.put_document(self.document_id, self.contract_id, data, doc.approvers, version=view["version"])
            view = hook.get_document(self.document_id)
            if view["state"] != "Proposed":
                hook.propose_document(self.document_id, view["version"])
                view = hook.get_document(self.document_id)
            self.log.info(
                "query document %s proposed; it reads %s; approvers (the data owners): %s",
                self.document_id,
                ", ".join(doc.query.datasets),
                ", ".join(doc.approvers),
            )
            return self._result(view, doc)

    def _result(self, view: dict, doc) -> dict[str, Any]:
        return {
            "document_id": self.document_id,
            "contract_id": self.contract_id,
            "state": view.get("state"),
            "proposal_id": view.get("proposalId"),
            "approvers": doc.approvers,
            "datasets": list(doc.query.datasets),
            "min_group_size": doc.min_group_size,
        }


# ====================================================================================== run
class CleanroomCheckRunnableOperator(BaseOperator):
    """Refuse, naming who, unless the run is allowed: the contract accepted, the query document
    accepted by every owner of the datasets it reads (and still within the rules), no member's
    consent revoked (contract or document), every dataset's key published and its sealed file in
    place.

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
        from include.cleanroom.names import secret_id

        with cleanroom_errors():
            hook = _governance(self.cleanroom_governance_conn_id)
            contract = accepted_contract(hook, self.contract_id)
            view = hook.get_document(self.document_id)
            if view is None:
                raise CleanroomUserError(f"query document {self.document_id} does not exist: run cleanroom_prepare")
            if view.get("contractId") != self.contract_id:
                raise CleanroomUserError(
                    f"query document {self.document_id} belongs to contract {view.get('contractId')}, not "
                    f"{self.contract_id}"
                )
            if view.get("state") != "Accepted":
                raise CleanroomRefused(
                    f"query document {self.document_id} is not approved (state {view.get('state')})"
                    + pending_voters(hook, view)
                )
            doc = QueryDocument.from_data(self.document_id, contract, view.get("data") or {})
            accepted = {v.get("approverId") for v in view.get("finalVotes") or [] if v.get("ballot") == "accepted"}
            missing = sorted(set(doc.approvers) - accepted)
            if missing:
                raise CleanroomRefused(
                    f"query document {self.document_id} lacks the approval of data owner(s) {', '.join(missing)}"
                )
            for what, status in (
                (f"contract {self.contract_id}", hook.contract_execution_status(self.contract_id)),
                (f"query document {self.document_id}", hook.document_execution_status(self.document_id)),
            ):
                if status.get("status") != "enabled":
                    reason = status.get("reason") or {}
                    raise CleanroomRefused(
                        f"consent revoked: execution of {what} is disabled by "
                        f"{disabled_by(reason)} ({reason.get('code', 'disabled')})"
                    )
            published = set(hook.list_secrets(self.contract_id))
            storage = local_dir(self.storage_dir, "storage")
            datasets = {}
            for ds in doc.query.datasets:
                dataset = contract.dataset(ds)
                if secret_id(dataset.owner, ds) not in published:
                    raise CleanroomRefused(
                        f"dataset {ds} has no key in governance: its owner {dataset.owner} has "
                        "not published it (cleanroom_prepare)"
                    )
                path = sealing.sealed_path(storage, self.contract_id, dataset)
                if not path.is_file():
                    raise CleanroomRefused(
                        f"the sealed file of dataset {ds} ({path}) is missing: its owner "
                        f"{dataset.owner} has not published it (cleanroom_prepare)"
                    )
                datasets[ds] = path.resolve().as_uri()
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
                "min_group_size": doc.min_group_size,
                "measurement": contract.measurement,
            }


class CleanroomSparkRunOperator(BaseOperator):
    """Submit the run as a SparkApplication through the Spark Operator and wait for it, deferred.

    The application is named after the query document and the DAG run, so a retried task finds the
    application it submitted instead of starting a second one.

    :param contract_id: the contract
    :param document_id: the query document
    :param output_dir: where results go (``<output>/<contract>/<document>/<application>``)
    :param executor_instances: Spark executors
    :param executor_memory: memory per executor (e.g. ``1g``)
    :param run_timeout_minutes: how long the run may take; it is deleted (stopped) after that
    :param poll_interval: seconds between status polls
    """

    template_fields: Sequence[str] = (
        "contract_id",
        "document_id",
        "output_dir",
        "executor_instances",
        "executor_memory",
        "run_timeout_minutes",
        "kubernetes_conn_id",
        "cleanroom_governance_conn_id",
    )
    ui_color = "#e8fde9"

    def __init__(
        self,
        *,
        contract_id: str,
        document_id: str,
        output_dir: str = "",
        executor_instances: Any = 1,
        executor_memory: str = "1g",
        kubernetes_conn_id: str = "cleanroom_k8s",
        cleanroom_governance_conn_id: str = "cleanroom_governance",
        run_timeout_minutes: Any = 360,
        poll_interval: float = 3.0,
        check_task_id: str = CHECK_TASK,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.contract_id = contract_id
        self.document_id = document_id
        self.output_dir = output_dir
        self.executor_instances = executor_instances
        self.executor_memory = executor_memory
        self.kubernetes_conn_id = kubernetes_conn_id
        self.cleanroom_governance_conn_id = cleanroom_governance_conn_id
        self.run_timeout_minutes = run_timeout_minutes
        self.poll_interval = poll_interval
        self.check_task_id = check_task_id

    def _k8s(self):
        from sensitive_data.hooks.cleanroom_k8s import CleanroomSparkHook

        return CleanroomSparkHook(self.kubernetes_conn_id)

    def execute(self, context) -> dict[str, Any]:
        from include.cleanroom.manifest import TERMINAL_STATES, application_state, build_spark_application
        from include.cleanroom.names import application_name
        from sensitive_data.triggers.cleanroom import SparkApplicationTrigger

        check = context["ti"].xcom_pull(task_ids=self.check_task_id) or {}
        with cleanroom_errors():
            if not check.get("datasets"):
                raise CleanroomUserError(f"no runnable datasets: the '{self.check_task_id}' task has not passed")
            k8s = self._k8s()
            gov = _governance(self.cleanroom_governance_conn_id)
            name = application_name(self.document_id, context["dag_run"].run_id)
            namespace = k8s.cleanroom_namespace
            output = local_dir(self.output_dir, "output") / self.contract_id / self.document_id / name
            output.parent.mkdir(parents=True, exist_ok=True)
            manifest = build_spark_application(
                name=name,
                namespace=namespace,
                main_application_file=k8s.main_application_file,
                cgs_url=gov.runtime_url,
                contract_id=self.contract_id,
                document_id=self.document_id,
                run_id=name,
                datasets=check["datasets"],
                output=str(output),
                image=str(k8s.setting("image", "apache/spark:4.0.1-python3")),
                spark_version=str(k8s.setting("spark_version", "4.0.1")),
                service_account=str(k8s.setting("service_account", "spark-cleanroom")),
                executor_instances=int(self.executor_instances),
                executor_memory=str(self.executor_memory),
            )
            obj, created = k8s.submit(manifest)
        state = application_state(obj)
        self.log.info(
            "SparkApplication %s/%s %s (state %s); result to %s",
            namespace,
            name,
            "submitted" if created else "already submitted by an earlier try",
            state or "new",
            output,
        )
        context["ti"].xcom_push(key="application", value={"name": name, "namespace": namespace, "output": str(output)})
        if state in TERMINAL_STATES:
            status = obj.get("status") or {}
            return self.execute_complete(
                context,
                {
                    "status": "done",
                    "name": name,
                    "state": state,
                    "error": (status.get("applicationState") or {}).get("errorMessage", ""),
                    "driver_pod": (status.get("driverInfo") or {}).get("podName", ""),
                },
            )
        self.defer(
            trigger=SparkApplicationTrigger(
                name,
                namespace,
                self.kubernetes_conn_id,
                self.poll_interval,
                time.time() + float(self.run_timeout_minutes) * 60,
            ),
            method_name="execute_complete",
        )

    def execute_complete(self, context, event: dict[str, Any]) -> dict[str, Any]:
        app = context["ti"].xcom_pull(task_ids=self.task_id, key="application") or {}
        name, namespace = event.get("name") or app.get("name"), app.get("namespace")
        k8s = self._k8s()
        if event.get("status") == "timeout":
            with cleanroom_errors():
                k8s.delete_application(name, namespace)
            raise AirflowFailException(
                f"SparkApplication {name} did not finish within {self.run_timeout_minutes} minutes; it was "
                "deleted (stopped)"
            )
        if event.get("status") == "missing":
            raise AirflowException(f"SparkApplication {name} disappeared before it finished")
        state = event.get("state")
        pod = event.get("driver_pod") or f"{name}-driver"
        if state == "COMPLETED":
            self.log.info("SparkApplication %s completed (driver %s)", name, pod)
            return {
                "application": name,
                "namespace": namespace,
                "state": state,
                "driver_pod": pod,
                "output": app.get("output"),
            }
        with cleanroom_errors():
            log = k8s.driver_log(pod, namespace, tail_lines=200)
        refused = [line for line in log.splitlines() if "CLEANROOM REFUSED" in line]
        for line in log.splitlines()[-40:]:
            self.log.info("driver | %s", line)
        if refused:
            raise AirflowFailException(
                f"the clean room refused the run: {refused[-1].split('REFUSED:', 1)[-1].strip()}"
            )
        raise AirflowFailException(
            f"SparkApplication {name} ended {state}: {event.get('error') or 'see the driver log'}"
        )


class CleanroomCollectResultOperator(BaseOperator):
    """The run's result summary (rows, columns, suppressed groups) and the driver log in the task log.

    :param run_task_id: the task that ran the SparkApplication
    """

    template_fields: Sequence[str] = ("kubernetes_conn_id",)
    ui_color = "#e8fde9"

    def __init__(
        self, *, run_task_id: str = RUN_TASK, kubernetes_conn_id: str = "cleanroom_k8s", log_lines: int = 200, **kwargs
    ):
        super().__init__(**kwargs)
        self.run_task_id = run_task_id
        self.kubernetes_conn_id = kubernetes_conn_id
        self.log_lines = log_lines

    def execute(self, context) -> dict[str, Any]:
        from sensitive_data.hooks.cleanroom_k8s import CleanroomSparkHook

        run = context["ti"].xcom_pull(task_ids=self.run_task_id) or {}
        if not run.get("output"):
            raise AirflowFailException(f"no completed run: the '{self.run_task_id}' task has not succeeded")
        output = Path(run["output"])
        with cleanroom_errors():
            log = CleanroomSparkHook(self.kubernetes_conn_id).driver_log(
                run["driver_pod"], run["namespace"], tail_lines=self.log_lines
            )
        self.log.info("driver log of %s (last %d lines):", run["driver_pod"], self.log_lines)
        for line in log.splitlines():
            self.log.info("driver | %s", line)
        try:
            summary = json.loads((output / "summary.json").read_text())
        except (OSError, ValueError):
            raise AirflowFailException(f"the run completed but left no result summary in {output}") from None
        result = output / "result.csv"
        self.log.info(
            "result: %d row(s) x %d column(s) in %s; %d group(s) below %d suppressed",
            summary["rows"],
            len(summary["columns"]),
            result,
            summary["suppressedGroups"],
            summary["minGroupSize"],
        )
        return {
            "result_path": str(result),
            "rows": summary["rows"],
            "columns": summary["columns"],
            "suppressed_groups": summary["suppressedGroups"],
            "min_group_size": summary["minGroupSize"],
            "application": run["application"],
        }


class CleanroomAuditTrailOperator(BaseOperator):
    """The run's audit trail from governance: the clean room's own events (attested and signed)
    and governance's record of the contract and document (votes, consent, secrets released or
    refused). Written next to the result as ``audit.jsonl`` and summarised in the task log.

    :param contract_id: the contract
    :param document_id: the query document
    """

    template_fields: Sequence[str] = ("contract_id", "document_id", "cleanroom_governance_conn_id")
    ui_color = "#e8fde9"

    def __init__(
        self,
        *,
        contract_id: str,
        document_id: str,
        run_task_id: str = RUN_TASK,
        cleanroom_governance_conn_id: str = "cleanroom_governance",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.contract_id = contract_id
        self.document_id = document_id
        self.run_task_id = run_task_id
        self.cleanroom_governance_conn_id = cleanroom_governance_conn_id

    def execute(self, context) -> dict[str, Any]:
        ti = context["ti"]
        app = ti.xcom_pull(task_ids=self.run_task_id, key="application") or {}
        with cleanroom_errors():
            hook = _governance(self.cleanroom_governance_conn_id)
            runtime = hook.events(self.contract_id, scope=self.document_id, event_id=app.get("name")) if app else []
            governance = [
                e
                for e in hook.events(self.contract_id, scope="governance")
                if (e.get("data") or {}).get("documentId") in (None, self.document_id)
            ]
        for e in governance + runtime:
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
                for e in governance + runtime:
                    fh.write(json.dumps(e, sort_keys=True) + "\n")
        events = [(e.get("data") or {}).get("event") for e in runtime]
        actions = sorted({(e.get("data") or {}).get("action") for e in governance} - {None})
        return {
            "contract_id": self.contract_id,
            "document_id": self.document_id,
            "runtime_events": events,
            "governance_actions": actions,
            "governance_events": len(governance),
        }
