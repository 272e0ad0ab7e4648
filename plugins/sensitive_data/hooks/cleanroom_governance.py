"""Hook for the clean room governance service (connection ``cleanroom_governance`` and one per member).

A ``SensitiveDataHttpHook`` (the http provider's ``HttpHook``): the connection is parsed, and HTTP
statuses become errors, by the shared base (``sensitive_data.common.http``), with the clean
room's classes: unreachable, 408/425/429, 5xx and a 2xx that is not JSON ->
``CleanroomTransientError``; 401/403 -> ``CleanroomPermissionDenied`` (a ``CleanroomConfigError``);
404 -> ``None`` where the call says "missing is fine", else, like any other 4xx,
``GovernanceError`` (a ``CleanroomUserError``) with governance's ``status`` and error ``code``.

The connection points at a member's CGS client (``cgs-client`` of Azure confidential clean room):
``host``, ``port`` and ``schema`` (``http``/``https``), or ``host`` as a full URL; ``password``
is the member's bearer token (``bearer_token = True``: the devstack stand-in serves every member
and tells them apart by token; a real cgs-client holds the member's signing key itself).
Extras: ``verify`` (true/false or a CA bundle path), ``timeout`` (seconds, default 30),
``runtime_url`` (the governance address as the clean room runtime reaches it; default: the same;
the hook's own extra, not sent as a header).

What stays outside the base, and why: answers signed over a fresh nonce
(``X-Request-Nonce`` / ``X-Governance-Signature``) are verified by the clean room runtime
(``include.cleanroom.spark_job.PinnedGovernance``), which runs inside Spark without Airflow and
pins governance's key; this hook is the platform's member client and trusts the TLS connection
like any other hook. The governance protocol the operators share stays here too: make sure a
contract or query document is proposed with given terms (``ensure_proposed``), cast this member's
ballot (``cast_ballot``), read the state of a vote (``acceptance``). Decisions over what it reads
are in ``include.cleanroom.governance``. The member token and every secret value sent are
registered with Airflow's secrets masker.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from airflow.sdk.log import mask_secret

from include.cleanroom.errors import (
    CleanroomConfigError,
    CleanroomPermissionDenied,
    CleanroomRefused,
    CleanroomTransientError,
    CleanroomUserError,
)
from include.cleanroom.governance import ItemState, Tally, item_state, pending_reason
from include.common.errors import SensitiveDataError
from sensitive_data.common.http import SensitiveDataHttpHook


class GovernanceError(CleanroomUserError):
    """Governance refused a request (a 4xx other than 401/403); ``status`` and ``code`` are the
    service's (set by ``SensitiveDataHttpHook``)."""

    status: int | None = None
    code: str = ""


def _q(value: str) -> str:
    return quote(value, safe="")


class CleanroomGovernanceHook(SensitiveDataHttpHook):
    """Contracts, proposals and ballots, query documents, consent, secrets and the audit log of a
    clean room's governance service, as one member.

    :param cleanroom_governance_conn_id: the member's governance connection
    :param connection: an already resolved Connection (triggers resolve it asynchronously first)
    """

    conn_name_attr = "cleanroom_governance_conn_id"
    default_conn_name = "cleanroom_governance"
    conn_type = "http"
    hook_name = "Clean room governance (CGS)"
    system = "governance"
    own_extras = frozenset({"runtime_url"})
    bearer_token = True
    user_error = GovernanceError
    config_error = CleanroomConfigError
    permission_error = CleanroomPermissionDenied
    transient_error = CleanroomTransientError

    def __init__(self, cleanroom_governance_conn_id: str = default_conn_name, connection: Any = None, **kwargs):
        super().__init__(cleanroom_governance_conn_id, connection=connection, **kwargs)
        self.cleanroom_governance_conn_id = cleanroom_governance_conn_id
        self._member: str | None = None

    def _extract_auth(self, connection: Any) -> Any:
        if connection.password:
            mask_secret(connection.password)
        return super()._extract_auth(connection)

    @property
    def runtime_url(self) -> str:
        """Where the clean room runtime reaches governance (extra ``runtime_url``; default: ``url``)."""
        return str(self.extras().get("runtime_url") or self.url).rstrip("/")

    # ---------------------------------------------------------------- members
    def member_id(self) -> str:
        """This connection's member (``GET /show``)."""
        if self._member is None:
            self._member = str(self.request("GET", "/show", "identifying the member")["memberId"])
        return self._member

    # ---------------------------------------------------------------- contracts
    def get_contract(self, contract_id: str) -> dict | None:
        return self.request("GET", f"/contracts/{_q(contract_id)}", f"reading contract {contract_id}", missing_ok=True)

    def put_contract(self, contract_id: str, data: dict, version: str | None = None) -> None:
        body = {"data": data, **({"version": version} if version else {})}
        self.request("PUT", f"/contracts/{_q(contract_id)}", f"writing contract {contract_id}", json=body)

    def propose_contract(self, contract_id: str, version: str) -> dict:
        return self.request(
            "POST",
            f"/contracts/{_q(contract_id)}/propose",
            f"proposing contract {contract_id}",
            json={"version": version},
        )

    def vote_contract(self, contract_id: str, proposal_id: str, accept: bool = True) -> dict:
        verb = "vote_accept" if accept else "vote_reject"
        return self.request(
            "POST",
            f"/contracts/{_q(contract_id)}/{verb}",
            f"voting on contract {contract_id}",
            json={"proposalId": proposal_id},
        )

    def get_proposal(self, proposal_id: str) -> dict:
        return self.request("GET", f"/proposals/{_q(proposal_id)}", f"reading proposal {proposal_id[:12]}")

    def contract_execution_status(self, contract_id: str) -> dict:
        """``{"status": "enabled"}`` or ``{"status": "disabled", "reason": {code, message}}``."""
        return self.request(
            "POST",
            f"/contracts/{_q(contract_id)}/checkstatus/execution",
            f"checking the execution consent of contract {contract_id}",
        )

    def set_contract_execution(self, contract_id: str, enabled: bool) -> None:
        """This member's consent to execution under the contract (enable, or revoke with disable)."""
        verb = "enable" if enabled else "disable"
        self.request("POST", f"/contracts/{_q(contract_id)}/{verb}", f"{verb.rstrip('e')}ing contract {contract_id}")

    # ---------------------------------------------------------------- query documents
    def get_document(self, document_id: str) -> dict | None:
        return self.request(
            "GET", f"/userdocuments/{_q(document_id)}", f"reading document {document_id}", missing_ok=True
        )

    def put_document(
        self, document_id: str, contract_id: str, data: dict, approvers: list[str], version: str | None = None
    ) -> None:
        body = {
            "contractId": contract_id,
            "data": data,
            "approvers": [{"approverId": a, "approverIdType": "member"} for a in approvers],
            **({"version": version} if version else {}),
        }
        self.request("PUT", f"/userdocuments/{_q(document_id)}", f"writing document {document_id}", json=body)

    def propose_document(self, document_id: str, version: str) -> dict:
        return self.request(
            "POST",
            f"/userdocuments/{_q(document_id)}/propose",
            f"proposing document {document_id}",
            json={"version": version},
        )

    def vote_document(self, document_id: str, proposal_id: str, accept: bool = True) -> dict:
        verb = "vote_accept" if accept else "vote_reject"
        return self.request(
            "POST",
            f"/userdocuments/{_q(document_id)}/{verb}",
            f"voting on document {document_id}",
            json={"proposalId": proposal_id},
        )

    def document_execution_status(self, document_id: str) -> dict:
        return self.request(
            "POST",
            f"/userdocuments/{_q(document_id)}/checkstatus/execution",
            f"checking the execution consent of document {document_id}",
        )

    def set_document_execution(self, document_id: str, enabled: bool) -> None:
        verb = "enable" if enabled else "disable"
        self.request(
            "POST",
            f"/userdocuments/{_q(document_id)}/runtimeoptions/execution/{verb}",
            f"{verb.rstrip('e')}ing document {document_id}",
        )

    # ---------------------------------------------------------------- secrets
    def put_secret(self, contract_id: str, name: str, value: str) -> str:
        """Store ``value`` as this member's secret ``name``; returns the secret id (``<member>_<name>``).
        The value is sent once and never logged."""
        mask_secret(value)
        body = self.request(
            "PUT",
            f"/contracts/{_q(contract_id)}/secrets/{_q(name)}",
            f"storing secret {name} of contract {contract_id}",
            json={"value": value},
        )
        return str(body["secretId"])

    def list_secrets(self, contract_id: str) -> list[str]:
        body = self.request("GET", f"/contracts/{_q(contract_id)}/secrets", f"listing the secrets of {contract_id}")
        return [str(s["secretId"]) for s in (body or {}).get("value", [])]

    # ---------------------------------------------------------------- audit log
    def events(self, contract_id: str, scope: str = "", event_id: str | None = None, from_seqno: int = 1) -> list[dict]:
        params = {"scope": scope, "id": event_id or contract_id, "from_seqno": str(from_seqno)}
        body = self.request(
            "GET", f"/contracts/{_q(contract_id)}/events", f"reading the events of {contract_id}", params=params
        )
        return list((body or {}).get("value", []))

    # ---------------------------------------------------------------- owners' decisions
    def service_identity(self) -> str:
        """Governance's service identity (base64 PEM) that the clean room pins."""
        import base64  # noqa: PLC0415

        body = self.request("GET", "/service/identity", "reading governance's service identity")
        return base64.b64encode(str(body["publicKey"]).encode()).decode()

    def get_rules(self, contract_id: str, dataset: str) -> dict | None:
        """``{datasetId, ownerId, rules, privacyBudget: {totalEpsilon, spentEpsilon}, version}``."""
        return self.request(
            "GET",
            f"/contracts/{_q(contract_id)}/datasets/{_q(dataset)}/analysisrules",
            f"reading the analysis rules of {dataset}",
            missing_ok=True,
        )

    def put_rules(self, contract_id: str, dataset: str, rules: dict, total_epsilon: float = 0.0) -> dict:
        """Set (as the dataset's owner) its analysis rules and total privacy budget."""
        current = self.get_rules(contract_id, dataset)
        body = {
            "rules": rules,
            "privacyBudget": {"totalEpsilon": total_epsilon},
            **({"version": current["version"]} if current else {}),
        }
        return self.request(
            "PUT",
            f"/contracts/{_q(contract_id)}/datasets/{_q(dataset)}/analysisrules",
            f"setting the analysis rules of {dataset}",
            json=body,
        )

    def autoapproval_policies(self, contract_id: str) -> list[dict]:
        body = self.request(
            "GET", f"/contracts/{_q(contract_id)}/autoapproval", f"reading the auto-approval policies of {contract_id}"
        )
        return list((body or {}).get("value", []))

    def register_autoapproval(self, contract_id: str, queries: str | None, publish: list[str]) -> dict:
        """As an owner: let my automation accept queries that satisfy my rules / publish my datasets."""
        return self.request(
            "PUT",
            f"/contracts/{_q(contract_id)}/autoapproval",
            f"registering the auto-approval policy of {contract_id}",
            json={"queries": queries, "publish": publish},
        )

    # ---------------------------------------------------------------- the protocol
    def view(self, kind: str, target_id: str) -> dict | None:
        if kind == "contract":
            return self.get_contract(target_id)
        if kind == "document":
            return self.get_document(target_id)
        raise CleanroomUserError(f"kind must be contract or document, not {kind!r}")

    def ensure_proposed(
        self, kind: str, target_id: str, data: dict, contract_id: str = "", approvers: list[str] | None = None
    ) -> tuple[dict, dict | None]:
        """Make sure ``target_id`` is in governance with these terms and proposed (an accepted one
        must already have them: it cannot change). Returns (view, proposal or None if accepted)."""
        what = f"{kind} {target_id}"

        def same(view: dict) -> bool:
            return view.get("data") == data and (kind == "contract" or view.get("contractId") == contract_id)

        def write(version: str | None) -> None:
            if kind == "contract":
                self.put_contract(target_id, data, version=version)
            else:
                self.put_document(target_id, contract_id, data, approvers or [], version=version)

        view = self.view(kind, target_id)
        state = item_state(view)
        if state is ItemState.ACCEPTED:
            if not same(view):
                raise CleanroomUserError(f"{what} is already accepted with other terms; choose another id")
            return view, None
        if state is ItemState.MISSING:
            write(None)
        elif not same(view):
            write(view["version"])
        view = self.view(kind, target_id)
        if item_state(view) is ItemState.PROPOSED:
            return view, self.get_proposal(view["proposalId"])
        verb = self.propose_contract if kind == "contract" else self.propose_document
        proposal = verb(target_id, view["version"])
        return self.view(kind, target_id), proposal

    def acceptance(self, kind: str, target_id: str) -> dict:
        """The target's state and, while proposed, its proposal's state and votes (what the
        acceptance trigger polls)."""
        view = self.view(kind, target_id)
        out: dict[str, Any] = {"state": item_state(view).value, "proposalId": (view or {}).get("proposalId") or ""}
        if out["proposalId"] and out["state"] == ItemState.PROPOSED.value:
            proposal = self.get_proposal(out["proposalId"])
            out["votes"] = proposal.get("votes", [])
            out["requiredVoters"] = proposal.get("requiredVoters", [])
            out["proposalState"] = proposal.get("proposalState")
        return out

    def cast_ballot(self, kind: str, target_id: str, accept: bool) -> str:
        """This member's ballot on a proposed contract or document: 'voted', or why not
        ('already accepted', 'already voted', 'not a required voter')."""
        member = self.member_id()
        view = self.view(kind, target_id)
        state = item_state(view)
        if state is ItemState.ACCEPTED:
            return "already accepted"
        if state is not ItemState.PROPOSED:
            raise CleanroomRefused(f"{kind} {target_id} cannot be voted on: {pending_reason(state, None)}")
        proposal = self.get_proposal(view["proposalId"])
        tally = Tally.of(proposal)
        if member in tally.accepted + tally.rejected:
            return "already voted"
        if member not in proposal.get("requiredVoters", []):
            return "not a required voter"
        vote = self.vote_contract if kind == "contract" else self.vote_document
        vote(target_id, view["proposalId"], accept)
        return "voted"

    def test_connection(self) -> tuple[bool, str]:
        try:
            return True, f"governance member {self.member_id()} at {self.url}"
        except SensitiveDataError as exc:
            return False, str(exc)
