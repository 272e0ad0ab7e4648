"""Clean room governance service (CGS) stand-in: the API of Azure confidential clean room's
``cgs-client`` (the per-member client of the CCF governance app), aiohttp.

Paths and JSON follow microsoft/azure-cleanroom ``src/governance`` (``client/Controllers`` and
``ccf-app/js/src/endpoints``); errors are ``{"error": {"code", "message"}}`` with the status codes
and codes used there. One process serves every member of the consortium: a member is the holder
of its bearer token (the real client signs with the member's certificate). What it enforces:

* **contracts** ``PUT /contracts/{id}`` (``{version?, data}``; 409 ContractAlreadyExists without
  the current version, 412 PreconditionFailed on a stale one, 405 ContractAlreadyAccepted),
  ``POST .../propose`` (``{version}``), ``.../vote_accept|vote_reject`` (``{proposalId}``): the
  contract is Accepted when every member named in ``data.members`` (all consortium members when
  absent) has voted accept, Rejected as soon as one rejects. ``GET /proposals/{id}`` shows the
  votes.
* **user documents** (the queries) ``PUT /userdocuments/{id}`` (``{contractId, data, approvers,
  version?}``), ``.../propose``, ``.../vote_accept|vote_reject``: Accepted when every approver has
  accepted; only approvers vote.
* **consent** ``POST /contracts/{id}/enable|disable`` (per member; any disabling member disables
  execution), ``POST /userdocuments/{id}/runtimeoptions/execution/enable|disable``,
  ``checkstatus/execution`` (members), ``consentcheck/execution`` (the attested clean room).
* **attestation** ``attestation: {evidence, endorsements, uvmEndorsements}``: evidence is base64 JSON
  claims signed (Ed25519, ``endorsements``) by the confidential platform's attestation root; the
  host data must equal the accepted contract's ``data.policy.measurement``, the report data the
  sha256 of the caller's ``encrypt.publicKey`` (or ``sign.publicKey``), ``iat`` at most 15 minutes old.
* **secrets** ``PUT /contracts/{id}/secrets/{name}`` (member; stored as ``<member>_<name>``),
  ``GET /contracts/{id}/secrets``, ``POST /contracts/{id}/secrets/{secretId}``: released (wrapped
  with RSA-OAEP-AES-KWP for the caller's key) only to an attested clean room, and - a rule of this
  stand-in - only for an accepted query document (``documentId``) that the secret's owner approved,
  with contract and document consent enabled.
* **events** ``PUT /contracts/{id}/events?id=&scope=`` (attested and signed by the clean room),
  ``GET /contracts/{id}/events?id=&scope=&from_seqno=&to_seqno=``. Every governance action is also
  recorded in scope ``governance`` (id = the contract id): the audit log.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import time
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding

from devstack.cleanroom_governance.owners import OwnerDecisions, load_service_key

log = logging.getLogger("devstack.cleanroom_governance")

MAX_SECRET_LENGTH = 25600
ATTESTATION_MAX_AGE = 15 * 60
ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _execution(item: dict | None, statuses: dict, not_accepted: tuple[str, str], disabled_by: tuple[str, str]) -> dict:
    """CGS's execution status of a contract or document: disabled while it is not accepted or while
    any member has disabled it (the message names them as CGS does, ``m[a,b]``)."""
    if item is None or item["state"] != "Accepted":
        return {"status": "disabled", "reason": {"code": not_accepted[0], "message": not_accepted[1]}}
    disabled = sorted(m for m, s in statuses.items() if s == "disabled")
    if not disabled:
        return {"status": "enabled"}
    code, message = disabled_by
    return {"status": "disabled", "reason": {"code": code, "message": f"{message}m[{','.join(disabled)}]."}}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


class Governance(OwnerDecisions):
    ApiError = ApiError

    def __init__(
        self,
        members: dict[str, str],
        state_dir: Path,
        attestation_root_file: Path,
        automation: dict[str, str] | None = None,
    ):
        self.members = dict(members)  # id -> token
        self.by_token = {t: m for m, t in self.members.items()}
        # an owner's automation identity: token -> owner (powers only under the owner's policy)
        self.automation_tokens = {t: m for m, t in (automation or {}).items()}
        unknown = sorted(set(self.automation_tokens.values()) - set(self.members))
        if unknown:
            raise ValueError(f"automation identities of unknown members: {unknown}")
        self.analysis: dict[str, dict[str, dict]] = {}
        self.autoapproval: dict[str, dict[str, dict]] = {}
        self.service_key = load_service_key(Path(state_dir))
        self.state_dir = Path(state_dir)
        self.root_file = Path(attestation_root_file)
        self._root = None
        self.seqno = 1
        self.contracts: dict[str, dict] = {}
        self.documents: dict[str, dict] = {}
        self.proposals: dict[str, dict] = {}
        self.contract_status: dict[str, dict[str, str]] = {}
        self.document_status: dict[str, dict[str, str]] = {}
        self.secrets: dict[str, dict[str, dict]] = {}  # contract -> secret id -> {value, owner}
        self.events: dict[str, list[dict]] = {}  # "<contract>|<scope>|<id>" -> entries
        self.load()

    # ------------------------------------------------------------------ persistence
    _FIELDS = (
        "seqno",
        "contracts",
        "documents",
        "proposals",
        "contract_status",
        "document_status",
        "secrets",
        "events",
        "analysis",
        "autoapproval",
    )

    def load(self) -> None:
        path = self.state_dir / "state.json"
        if path.exists():
            data = json.loads(path.read_text())
            for f in self._FIELDS:
                setattr(self, f, data.get(f, getattr(self, f)))

    def save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / "state.json"
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds the secrets
        with os.fdopen(fd, "w") as fh:
            json.dump({f: getattr(self, f) for f in self._FIELDS}, fh)
        os.replace(tmp, path)

    def write(self) -> int:
        self.seqno += 1
        return self.seqno

    def version(self, seqno: int) -> str:
        return f"2.{seqno}"

    def audit(self, contract_id: str, action: str, **data: Any) -> None:
        seqno = self.write()
        self.events.setdefault(f"{contract_id}|governance|{contract_id}", []).append(
            {
                "scope": "governance",
                "id": contract_id,
                "seqno": seqno,
                "timestamp": str(int(time.time() * 1000)),
                "data": {"action": action, **data},
            }
        )

    # ------------------------------------------------------------------ callers
    def member(self, request: web.Request, automation: bool = False) -> str:
        """The calling member. An owner's automation identity may read (GET); it may write only
        where the handler allows it (``automation=True``) and then checks the owner's policy."""
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header.startswith("Bearer ") else ""
        member = self.by_token.get(token)
        if member is None and token in self.automation_tokens:
            member = self.automation_tokens[token]
            request["automation"] = True
            if request.method != "GET" and not automation:
                raise ApiError(
                    403,
                    "AutomationNotAllowed",
                    f"The automation identity of {member} may only vote on query documents and publish "
                    "dataset keys, under the policy its owner registered.",
                )
        if member is None:
            raise ApiError(
                401,
                "InvalidAuthenticationInfo",
                "The caller is not a member of the consortium: present a member's credentials.",
            )
        return member

    @staticmethod
    async def body(request: web.Request) -> dict:
        try:
            data = await request.json()
        except ValueError:
            raise ApiError(400, "InvalidJson", "The request body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise ApiError(400, "InvalidJson", "The request body must be a JSON object.")
        return data

    # ------------------------------------------------------------------ attestation
    def root(self):
        if self._root is None:
            if not self.root_file.exists():
                raise ApiError(400, "VerifySnpAttestationFailed", "No attestation root is configured.")
            self._root = serialization.load_pem_public_key(self.root_file.read_bytes())
        return self._root

    def verify_attestation(self, contract_id: str, attestation: Any, public_key_b64: Any) -> dict:
        """The claims of a valid report for this contract's policy, bound to ``public_key_b64``."""
        if not attestation:
            raise ApiError(400, "AttestationMissing", "Attestation payload must be supplied.")
        try:
            evidence = base64.b64decode(attestation["evidence"], validate=True)
            signature = base64.b64decode(attestation["endorsements"], validate=True)
        except (KeyError, TypeError, ValueError):
            raise ApiError(400, "VerifySnpAttestationFailed", "The attestation report is malformed.") from None
        try:
            self.root().verify(signature, evidence)
        except InvalidSignature:
            raise ApiError(
                400,
                "VerifySnpAttestationFailed",
                "The attestation report is not endorsed by the platform's attestation root.",
            ) from None
        claims = json.loads(evidence)
        contract = self.contracts.get(contract_id)
        if contract is None or contract["state"] != "Accepted":
            raise ApiError(
                400,
                "VerifySnpAttestationFailed",
                "The clean room policy is missing: the contract does not exist or has not been accepted.",
            )
        allowed = ((contract["data"] or {}).get("policy") or {}).get("measurement")
        host_data = claims.get("x-ms-sevsnpvm-hostdata")
        if not allowed or host_data != allowed:
            raise ApiError(
                400,
                "VerifySnpAttestationFailed",
                f"Attestation claim x-ms-sevsnpvm-hostdata, value {host_data} does not match the clean "
                f"room policy of contract {contract_id} (allowed: {allowed}).",
            )
        if claims.get("x-ms-sevsnpvm-is-debuggable") is not False:
            raise ApiError(400, "VerifySnpAttestationFailed", "A debuggable clean room is not allowed by the policy.")
        if abs(time.time() - float(claims.get("iat", 0))) > ATTESTATION_MAX_AGE:
            raise ApiError(400, "VerifySnpAttestationFailed", "The attestation report is stale; attest again.")
        try:
            pem = base64.b64decode(public_key_b64 or "", validate=True)
        except (TypeError, ValueError):
            pem = b""
        if not pem or hashlib.sha256(pem).hexdigest() != claims.get("x-ms-sevsnpvm-reportdata"):
            raise ApiError(
                400,
                "ReportDataMismatch",
                "The report data of the attestation does not match the hash of the public key.",
            )
        return claims

    @staticmethod
    def wrap(payload: bytes, public_key_b64: str) -> str:
        """RSA-OAEP-AES-KWP (as CCF's ``wrapKey``): RSA-OAEP-SHA256(aes key) || AES-KWP(payload)."""
        public_key = serialization.load_pem_public_key(base64.b64decode(public_key_b64))
        aes_key = os.urandom(32)
        wrapped_key = public_key.encrypt(
            aes_key, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
        )
        return base64.b64encode(wrapped_key + aes_key_wrap_with_padding(aes_key, payload)).decode()

    # ------------------------------------------------------------------ contracts
    def contract_view(self, cid: str) -> dict:
        c = self.contracts.get(cid)
        if c is None:
            raise ApiError(404, "ContractNotFound", "A contract with the specified id was not found.")
        view = {
            "id": cid,
            "version": self.version(c["seqno"]),
            "state": c["state"],
            "data": c["data"],
            "proposalId": c.get("proposalId") or "",
        }
        if c["state"] == "Accepted":
            view["finalVotes"] = c.get("finalVotes", [])
        return view

    def required_voters(self, data: dict) -> list[str]:
        """Every active member of the consortium: the clean room constitution resolves a
        ``set_contract`` proposal only when all active members voted accept (azure-cleanroom
        ``src/governance/ccf-app/js/constitution``, ``resolve``), whatever the contract lists."""
        return sorted(self.members)

    async def list_contracts(self, request: web.Request) -> web.Response:
        self.member(request)
        state = request.query.get("state")
        if state and state not in ("Draft", "Proposed", "Accepted"):
            raise ApiError(
                400, "InvalidParameter", "The state query parameter must be either 'Draft', 'Accepted' or 'Proposed'."
            )
        return web.json_response(
            {"value": [{"id": cid} for cid, c in sorted(self.contracts.items()) if not state or c["state"] == state]}
        )

    async def get_contract(self, request: web.Request) -> web.Response:
        self.member(request)
        return web.json_response(self.contract_view(request.match_info["id"]))

    async def put_contract(self, request: web.Request) -> web.Response:
        member = self.member(request)
        cid = request.match_info["id"]
        body = await self.body(request)
        if not ID.match(cid):
            raise ApiError(400, "InvalidContractId", "The contract id may hold letters, digits, '.', '_' and '-'.")
        current = self.contracts.get(cid)
        if current and current["state"] == "Accepted":
            raise ApiError(405, "ContractAlreadyAccepted", "An accepted contract cannot be changed.")
        if not body.get("data"):
            raise ApiError(400, "DataMissing", "data key must be present in contract payload.")
        if current:
            if not body.get("version"):
                raise ApiError(
                    409,
                    "ContractAlreadyExists",
                    "The specified contract already exists. If the intent was to update the existing "
                    "contract then retry the request after reading the latest version of the resource "
                    "and setting the version on the request.",
                )
            if body["version"] != self.version(current["seqno"]):
                raise ApiError(
                    412,
                    "PreconditionFailed",
                    "The operation specified a version that is different from the version available at "
                    "the server, that is, an optimistic concurrency error.",
                )
            if current["state"] == "Proposed":  # a change withdraws the open proposal
                self.proposals[current["proposalId"]]["state"] = "Dropped"
        self.contracts[cid] = {"data": body["data"], "state": "Draft", "seqno": self.write(), "proposalId": ""}
        self.audit(cid, "contract_put", memberId=member)
        self.save()
        return web.Response(status=200)

    async def _proposal_version(self, request: web.Request, view: dict, code: str) -> None:
        """A propose call names the version it saw; another one means the item changed since."""
        version = (await self.body(request)).get("version")
        if version is None:
            raise ApiError(400, "VersionMissing", "Musty specify a Version value.")  # sic, as CGS
        if str(version) != view["version"]:
            raise ApiError(
                400, code, "The version value specified in the input does not match the current version value."
            )

    async def propose_contract(self, request: web.Request) -> web.Response:
        member = self.member(request)
        cid = request.match_info["id"]
        view = self.contract_view(cid)
        await self._proposal_version(request, view, "ContractModified")
        c = self.contracts[cid]
        if c["state"] == "Accepted":
            raise ApiError(405, "ContractAlreadyAccepted", "An accepted contract cannot be changed.")
        if c["state"] == "Proposed":
            return web.json_response(self.proposal_view(c["proposalId"]))
        voters = self.required_voters(c["data"])
        pid = hashlib.sha256(f"{cid}|{uuid.uuid4()}".encode()).hexdigest()
        self.proposals[pid] = {
            "kind": "contract",
            "target": cid,
            "proposerId": member,
            "state": "Open",
            "votes": {},
            "required": voters,
            "seqno": self.write(),
            "actions": [{"name": "set_contract", "args": {"contractId": cid, "contract": view}}],
        }
        c["state"], c["proposalId"] = "Proposed", pid
        self.audit(cid, "contract_proposed", memberId=member, proposalId=pid, requiredVoters=voters)
        self.save()
        return web.json_response(self.proposal_view(pid))

    def proposal_view(self, pid: str) -> dict:
        p = self.proposals.get(pid)
        if p is None:
            raise ApiError(404, "ProposalNotFound", f"Could not find proposal {pid}.")
        view = {
            "proposalId": pid,
            "proposerId": p["proposerId"],
            # CCF's governance API (and so CGS) names the state ``proposalState``
            "proposalState": p["state"],
            "ballotCount": len(p["votes"]),
            "requiredVoters": p["required"],
            "votes": [{"memberId": m, "vote": v} for m, v in sorted(p["votes"].items())],
        }
        if p["state"] in ("Accepted", "Rejected"):
            view["finalVotes"] = {m: v for m, v in sorted(p["votes"].items())}
        return view

    async def get_proposal(self, request: web.Request) -> web.Response:
        self.member(request)
        return web.json_response(self.proposal_view(request.match_info["pid"]))

    async def get_proposal_actions(self, request: web.Request) -> web.Response:
        self.member(request)
        p = self.proposals.get(request.match_info["pid"])
        if p is None:
            raise ApiError(404, "ProposalNotFound", f"Could not find proposal {request.match_info['pid']}.")
        return web.json_response({"actions": p["actions"]})

    def _vote(self, member: str, pid: str, accept: bool) -> dict:
        p = self.proposals[pid]
        if p["state"] != "Open":
            raise ApiError(400, "ProposalNotOpen", f"Proposal {pid} is {p['state']}, not Open.")
        if p["kind"] == "userdocument" and member not in p["required"]:
            raise ApiError(
                403,
                "VoterNotAnApprover",
                f"Member {member} is not an approver of this document (approvers: {', '.join(p['required'])}).",
            )
        if member in p["votes"]:
            if p["votes"][member] == accept:  # the same ballot again: accepted, nothing changes
                return p
            raise ApiError(400, "VoteAlreadyExists", "Vote already submitted.")
        p["votes"][member] = accept
        if not accept and member in p["required"]:
            p["state"] = "Rejected"
        elif all(p["votes"].get(m) is True for m in p["required"]):
            p["state"] = "Accepted"
        return p

    async def _ballot(self, request: web.Request, view: dict, code: str, noun: str, kind: str) -> tuple[bool, str]:
        """(accept, proposalId) of a vote_accept/vote_reject call on a proposed ``view``, refused
        with CGS's codes and messages when nothing (or another proposal) is up for a vote."""
        accept = request.path.endswith("vote_accept")
        pid = (await self.body(request)).get("proposalId")
        if pid is None:
            raise ApiError(400, "ProposalIdMissing", "Musty specify the proposalId to vote on.")  # sic, as CGS
        if not view["proposalId"] or view["state"] != "Proposed":
            message = f"Cannot vote on the {noun} as it is currently not proposed. {kind} state is: {view['state']}"
            raise ApiError(400, code, message)
        if view["proposalId"] != pid:
            raise ApiError(
                400,
                "ProposalIdMismatch",
                f"The proposalId '{pid}' specified in the input does not match "
                f"the current proposalId '{view['proposalId']}' value.",
            )
        return accept, pid

    async def vote_contract(self, request: web.Request) -> web.Response:
        member = self.member(request)
        cid = request.match_info["id"]
        view = self.contract_view(cid)
        accept, pid = await self._ballot(request, view, "ContractNotProposed", "contract", "Contract")
        p = self._vote(member, pid, accept)
        c = self.contracts[cid]
        self.audit(cid, "contract_vote", memberId=member, proposalId=pid, ballot="accepted" if accept else "rejected")
        if p["state"] == "Accepted":
            c.update(
                state="Accepted",
                seqno=self.write(),
                finalVotes=[{"memberId": m, "vote": v} for m, v in sorted(p["votes"].items())],
            )
            self.audit(cid, "contract_accepted", proposalId=pid)
        elif p["state"] == "Rejected":
            c.update(state="Draft", proposalId="")
            self.audit(cid, "contract_rejected", proposalId=pid, rejectedBy=member)
        self.save()
        return web.json_response(self.proposal_view(pid))

    async def set_contract_execution(self, request: web.Request) -> web.Response:
        member = self.member(request)
        cid = request.match_info["id"]
        c = self.contracts.get(cid)
        if c is None or c["state"] != "Accepted":
            raise ApiError(400, "ContractNotAccepted", "Contract does not exist or has not been accepted.")
        status = "enabled" if request.path.endswith("/enable") else "disabled"
        self.contract_status.setdefault(cid, {})[member] = status
        self.audit(cid, f"contract_execution_{status}", memberId=member)
        self.save()
        return web.Response(status=200)

    def contract_execution(self, cid: str) -> dict:
        return _execution(
            self.contracts.get(cid),
            self.contract_status.get(cid, {}),
            ("ContractNotAccepted", "Contract does not exist or has not been accepted."),
            ("ContractDisabled", "Contract has been disabled by the following member(s): "),
        )

    async def check_contract_execution(self, request: web.Request) -> web.Response:
        self.member(request)
        return web.json_response(self.contract_execution(request.match_info["id"]))

    async def consent_check_contract(self, request: web.Request) -> web.Response:
        cid = request.match_info["id"]
        body = await self.body(request)
        if not body.get("attestation"):
            raise ApiError(400, "AttestationMissing", "Attestation payload must be supplied.")
        self.verify_attestation(cid, body["attestation"], (body.get("encrypt") or {}).get("publicKey"))
        result = self.contract_execution(cid)
        self.audit(cid, "consentcheck_execution", scope="contract", status=result["status"])
        self.save()
        return web.json_response(result)

    async def cleanroom_policy(self, request: web.Request) -> web.Response:
        self.member(request)
        view = self.contract_view(request.match_info["id"])
        if view["state"] != "Accepted":
            return web.json_response({"claims": {}})
        m = ((view["data"] or {}).get("policy") or {}).get("measurement")
        return web.json_response(
            {"claims": {"x-ms-sevsnpvm-is-debuggable": False, "x-ms-sevsnpvm-hostdata": [m] if m else []}}
        )

    # ------------------------------------------------------------------ user documents
    def document_view(self, did: str) -> dict:
        d = self.documents.get(did)
        if d is None:
            raise ApiError(404, "UserDocumentNotFound", "A document with the specified id was not found.")
        view = {
            "id": did,
            "version": self.version(d["seqno"]),
            "state": d["state"],
            "contractId": d["contractId"],
            "data": d["data"],
            "approvers": d.get("approvers") or [],
            "proposalId": d.get("proposalId") or "",
            "proposerId": d.get("proposerId") or "",
        }
        if d["state"] == "Accepted":
            view["finalVotes"] = d.get("finalVotes", [])
        return view

    async def list_documents(self, request: web.Request) -> web.Response:
        self.member(request)
        return web.json_response({"value": [{"id": did} for did in sorted(self.documents)]})

    async def get_document(self, request: web.Request) -> web.Response:
        self.member(request)
        return web.json_response(self.document_view(request.match_info["id"]))

    async def put_document(self, request: web.Request) -> web.Response:
        member = self.member(request)
        did = request.match_info["id"]
        body = await self.body(request)
        if not ID.match(did):
            raise ApiError(400, "InvalidDocumentId", "The document id may hold letters, digits, '.', '_' and '-'.")
        current = self.documents.get(did)
        if current and current["state"] == "Accepted":
            raise ApiError(405, "UserDocumentAlreadyAccepted", "The specified document has already been accepted.")
        cid = body.get("contractId")
        if not cid:
            raise ApiError(400, "ContractIdMissing", "ContractId must be specified in UserDocument payload.")
        if not body.get("data"):
            raise ApiError(400, "DataMissing", "data key must be present in UserDocument payload.")
        if cid not in self.contracts:
            raise ApiError(404, "ContractNotFound", "A contract with the specified id was not found.")
        approvers = body.get("approvers") or []
        if not isinstance(approvers, list) or not all(isinstance(a, dict) and a.get("approverId") for a in approvers):
            raise ApiError(400, "InvalidApprovers", "approvers must be a list of {approverId, approverIdType}.")
        unknown = sorted(a["approverId"] for a in approvers if a["approverId"] not in self.members)
        if unknown:
            raise ApiError(400, "InvalidApprovers", f"Unknown approver(s): {', '.join(unknown)}.")
        if current:
            if not body.get("version"):
                raise ApiError(
                    409,
                    "UserDocumentAlreadyExists",
                    "The specified document already exists. If the intent was to update the existing "
                    "document then retry the request after reading the latest version of the resource "
                    "and setting the version on the request.",
                )
            if body["version"] != self.version(current["seqno"]):
                raise ApiError(
                    412,
                    "PreconditionFailed",
                    "The operation specified a version that is different from the version available at "
                    "the server, that is, an optimistic concurrency error.",
                )
            if current["state"] == "Proposed":
                self.proposals[current["proposalId"]]["state"] = "Dropped"
        self.documents[did] = {
            "contractId": cid,
            "data": body["data"],
            "approvers": approvers,
            "state": "Draft",
            "seqno": self.write(),
            "proposalId": "",
            "proposerId": "",
        }
        self.audit(cid, "document_put", memberId=member, documentId=did)
        self.save()
        return web.Response(status=200)

    async def propose_document(self, request: web.Request) -> web.Response:
        member = self.member(request)
        did = request.match_info["id"]
        view = self.document_view(did)
        await self._proposal_version(request, view, "UserDocumentModified")
        d = self.documents[did]
        if d["state"] == "Accepted":
            raise ApiError(405, "UserDocumentAlreadyAccepted", "The specified document has already been accepted.")
        if d["state"] == "Proposed":
            return web.json_response(self.proposal_view(d["proposalId"]))
        required = sorted({a["approverId"] for a in d["approvers"]}) or self.required_voters(
            self.contracts[d["contractId"]]["data"]
        )
        pid = hashlib.sha256(f"{did}|{uuid.uuid4()}".encode()).hexdigest()
        self.proposals[pid] = {
            "kind": "userdocument",
            "target": did,
            "proposerId": member,
            "state": "Open",
            "votes": {},
            "required": required,
            "seqno": self.write(),
            "actions": [{"name": "set_user_document", "args": {"documentId": did, "document": view}}],
        }
        d.update(state="Proposed", proposalId=pid, proposerId=member)
        self.audit(
            d["contractId"], "document_proposed", memberId=member, documentId=did, proposalId=pid, approvers=required
        )
        self.save()
        return web.json_response(self.proposal_view(pid))

    async def vote_document(self, request: web.Request) -> web.Response:
        member = self.member(request, automation=True)
        did = request.match_info["id"]
        view = self.document_view(did)
        accept, pid = await self._ballot(request, view, "UserDocumentNotProposed", "document", "UserDocument")
        if request.get("automation"):
            self.automation_may_vote(member, view)
        p = self._vote(member, pid, accept)
        d = self.documents[did]
        self.audit(
            d["contractId"],
            "document_vote",
            memberId=member,
            documentId=did,
            proposalId=pid,
            ballot="accepted" if accept else "rejected",
            via="automation" if request.get("automation") else "member",
        )
        if p["state"] == "Accepted":
            d.update(
                state="Accepted",
                seqno=self.write(),
                finalVotes=[
                    {"approverId": m, "ballot": "accepted" if v else "rejected"} for m, v in sorted(p["votes"].items())
                ],
            )
            self.audit(d["contractId"], "document_accepted", documentId=did, proposalId=pid)
        elif p["state"] == "Rejected":
            d.update(state="Draft", proposalId="", proposerId="")
            self.audit(d["contractId"], "document_rejected", documentId=did, proposalId=pid, rejectedBy=member)
        self.save()
        return web.json_response(self.proposal_view(pid))

    async def set_document_execution(self, request: web.Request) -> web.Response:
        member = self.member(request)
        did = request.match_info["id"]
        if request.match_info["option"] != "execution":
            raise ApiError(400, "InvalidOption", "Only the 'execution' runtime option is supported.")
        view = self.document_view(did)
        if view["state"] != "Accepted":
            raise ApiError(400, "UserDocumentNotAccepted", "UserDocument does not exist or has not been accepted.")
        status = "enabled" if request.path.endswith("/enable") else "disabled"
        self.document_status.setdefault(did, {})[member] = status
        self.audit(view["contractId"], f"document_execution_{status}", memberId=member, documentId=did)
        self.save()
        return web.Response(status=200)

    def document_execution(self, did: str) -> dict:
        return _execution(
            self.documents.get(did),
            self.document_status.get(did, {}),
            ("UserDocumentNotAccepted", "UserDocument does not exist or has not been accepted."),
            ("UserDocumentDisabled", "Execution of the document has been disabled by the following member(s): "),
        )

    async def check_document_execution(self, request: web.Request) -> web.Response:
        self.member(request)
        self.document_view(request.match_info["id"])
        return web.json_response(self.document_execution(request.match_info["id"]))

    async def consent_check_document(self, request: web.Request) -> web.Response:
        cid, did = request.match_info["cid"], request.match_info["did"]
        body = await self.body(request)
        if not body.get("attestation"):
            raise ApiError(400, "AttestationMissing", "Attestation payload must be supplied.")
        self.verify_attestation(cid, body["attestation"], (body.get("encrypt") or {}).get("publicKey"))
        d = self.documents.get(did)
        if d is not None and d["contractId"] != cid:
            raise ApiError(400, "ContractIdMismatch", "The document does not belong to this contract.")
        result = self.contract_execution(cid)
        if result["status"] == "enabled":
            result = self.document_execution(did)
        self.audit(cid, "consentcheck_execution", scope="document", documentId=did, status=result["status"])
        self.save()
        return web.json_response(result)

    async def accepted_document(self, request: web.Request) -> web.Response:
        cid, did = request.match_info["cid"], request.match_info["did"]
        body = await self.body(request)
        if not body.get("attestation"):
            raise ApiError(400, "AttestationMissing", "Attestation payload must be supplied.")
        if not body.get("encrypt"):
            raise ApiError(400, "EncryptionMissing", "Encrypt payload must be supplied.")
        self.verify_attestation(cid, body["attestation"], body["encrypt"].get("publicKey"))
        d = self.documents.get(did)
        if d is None or d["state"] != "Accepted":
            raise ApiError(
                404, "UserDocumentNotFound", "A document with the specified id was not found or has not been accepted."
            )
        if d["contractId"] != cid:
            raise ApiError(
                400,
                "ContractIdMismatch",
                f"The contractId value specified in the URL {cid} and that in "
                f"the UserDocument {d['contractId']} don't match.",
            )
        self.audit(cid, "document_released", documentId=did)
        self.save()
        payload = json.dumps(self.document_view(did)).encode()
        return web.json_response({"value": self.wrap(payload, body["encrypt"]["publicKey"])})

    # ------------------------------------------------------------------ secrets
    async def put_secret(self, request: web.Request) -> web.Response:
        member = self.member(request, automation=True)
        cid, name = request.match_info["id"], request.match_info["name"]
        body = await self.body(request)
        if cid not in self.contracts:
            raise ApiError(404, "ContractNotFound", "A contract with the specified id was not found.")
        if request.get("automation"):
            self.automation_may_publish(member, cid, name)
        value = body.get("value")
        if not value or not isinstance(value, str):
            raise ApiError(400, "ValueMissing", "Value must be supplied.")
        if len(value) > MAX_SECRET_LENGTH:
            raise ApiError(
                400,
                "ValueTooLarge",
                f"Length of the value should not exceed {MAX_SECRET_LENGTH} "
                f"characters. Input is {len(value)} characters.",
            )
        secret_id = f"{member}_{name}"
        self.secrets.setdefault(cid, {})[secret_id] = {"value": value, "owner": member}
        self.audit(
            cid,
            "secret_put",
            memberId=member,
            secretId=secret_id,
            via="automation" if request.get("automation") else "member",
        )
        self.save()
        return web.json_response({"secretId": secret_id})

    async def list_secrets(self, request: web.Request) -> web.Response:
        self.member(request)
        cid = request.match_info["id"]
        return web.json_response({"value": [{"secretId": s} for s in sorted(self.secrets.get(cid, {}))]})

    async def get_secret(self, request: web.Request) -> web.Response:
        cid, secret_id = request.match_info["id"], request.match_info["name"]
        body = await self.body(request)
        try:
            if not body.get("attestation"):
                raise ApiError(400, "AttestationMissing", "Attestation payload must be supplied.")
            if not body.get("encrypt"):
                raise ApiError(400, "EncryptionMissing", "Encrypt payload must be supplied.")
            self.verify_attestation(cid, body["attestation"], body["encrypt"].get("publicKey"))
            item = self.secrets.get(cid, {}).get(secret_id)
            if item is None:
                raise ApiError(404, "SecretNotFound", f"A secret with the specified id '{secret_id}' was not found.")
            did = body.get("documentId")
            if not did:
                raise ApiError(400, "DocumentIdMissing", "The query document the secret is needed for must be named.")
            d = self.documents.get(did)
            if d is None or d["state"] != "Accepted" or d["contractId"] != cid:
                raise ApiError(
                    403,
                    "UserDocumentNotAccepted",
                    f"Document {did} does not exist, has not been accepted or is not of contract {cid}.",
                )
            owner = item["owner"]
            accepted = {v["approverId"] for v in d.get("finalVotes", []) if v.get("ballot") == "accepted"}
            if owner not in accepted:
                raise ApiError(
                    403,
                    "SecretOwnerNotApprover",
                    f"The owner of secret {secret_id} ({owner}) has not approved document {did}.",
                )
            for check in (self.contract_execution(cid), self.document_execution(did)):
                if check["status"] != "enabled":
                    raise ApiError(403, check["reason"]["code"], check["reason"]["message"])
        except ApiError as exc:
            self.audit(cid, "secret_refused", secretId=secret_id, code=exc.code, reason=exc.message[:300])
            self.save()
            raise
        self.audit(cid, "secret_released", secretId=secret_id, documentId=did)
        self.save()
        return web.json_response({"value": self.wrap(item["value"].encode(), body["encrypt"]["publicKey"])})

    # ------------------------------------------------------------------ events
    async def put_event(self, request: web.Request) -> web.Response:
        cid = request.match_info["id"]
        body = await self.body(request)
        if not body.get("attestation"):
            raise ApiError(400, "AttestationMissing", "Attestation payload must be supplied.")
        if not body.get("sign"):
            raise ApiError(400, "SignatureMissing", "Signature payload must be supplied.")
        if not body.get("timestamp"):
            raise ApiError(400, "TimestampMissing", "Timestamp must be supplied.")
        if int(str(body["timestamp"])) > 9999999999999:
            raise ApiError(400, "TimestampTooLarge", "Timestamp value is too large.")
        sign = body["sign"]
        self.verify_attestation(cid, body["attestation"], sign.get("publicKey"))
        try:
            data = base64.b64decode(body.get("data") or "", validate=True)
            key = serialization.load_pem_public_key(base64.b64decode(sign["publicKey"]))
            key.verify(
                base64.b64decode(sign["signature"]),
                data,
                padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH),
                hashes.SHA256(),
            )
            event = json.loads(data)
        except (KeyError, TypeError, ValueError, InvalidSignature):
            raise ApiError(400, "SignatureMismatch", "The signature does not match the data.") from None
        scope = request.query.get("scope", "")
        eid = request.query.get("id", cid)
        self.events.setdefault(f"{cid}|{scope}|{eid}", []).append(
            {
                "scope": scope,
                "id": eid,
                "seqno": self.write(),
                "timestamp": str(body["timestamp"]).zfill(13),
                "data": event,
            }
        )
        self.save()
        return web.Response(status=204)

    async def get_events(self, request: web.Request) -> web.Response:
        self.member(request)
        cid = request.match_info["id"]
        q = request.query
        scope, eid = q.get("scope", ""), q.get("id", cid)
        entries = self.events.get(f"{cid}|{scope}|{eid}", [])
        if "from_seqno" not in q and "to_seqno" not in q:
            entries = entries[-1:]
        else:
            try:
                lo, hi = int(q.get("from_seqno", 1)), int(q.get("to_seqno", self.seqno))
            except ValueError:
                raise ApiError(400, "InvalidParameter", "from_seqno and to_seqno must be integers.") from None
            if hi < lo:
                raise ApiError(400, "InvalidParameter", "to_seqno must be >= from_seqno")
            entries = [e for e in entries if lo <= e["seqno"] <= hi]
        out = []
        for e in entries:
            iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(e["timestamp"]) / 1000)) + "Z"
            out.append({**e, "timestamp_iso": iso})
        return web.json_response({"value": out})

    # ------------------------------------------------------------------ members
    async def show(self, request: web.Request) -> web.Response:
        member = self.member(request)
        return web.json_response({"memberId": member, "memberData": {"identifier": member}})

    async def list_members(self, request: web.Request) -> web.Response:
        self.member(request)
        return web.json_response(
            {
                "value": [
                    {"memberId": m, "status": "Active", "memberData": {"identifier": m}} for m in sorted(self.members)
                ]
            }
        )

    async def ready(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "up"})

    # ------------------------------------------------------------------ app
    def app(self) -> web.Application:
        @web.middleware
        async def errors(request: web.Request, handler):
            try:
                resp = await handler(request)
            except ApiError as exc:
                resp = error(exc.status, exc.code, exc.message)
            self.sign_response(request, resp)
            return resp

        app = web.Application(middlewares=[errors], client_max_size=4 * 1024 * 1024)
        r = app.router
        r.add_get("/ready", self.ready)
        r.add_get("/show", self.show)
        r.add_get("/members", self.list_members)
        r.add_get("/contracts", self.list_contracts)
        r.add_get("/contracts/{id}", self.get_contract)
        r.add_put("/contracts/{id}", self.put_contract)
        r.add_post("/contracts/{id}/propose", self.propose_contract)
        r.add_post("/contracts/{id}/vote_accept", self.vote_contract)
        r.add_post("/contracts/{id}/vote_reject", self.vote_contract)
        r.add_post("/contracts/{id}/enable", self.set_contract_execution)
        r.add_post("/contracts/{id}/disable", self.set_contract_execution)
        r.add_post("/contracts/{id}/checkstatus/execution", self.check_contract_execution)
        r.add_post("/contracts/{id}/consentcheck/execution", self.consent_check_contract)
        r.add_get("/contracts/{id}/cleanroompolicy", self.cleanroom_policy)
        r.add_get("/contracts/{id}/secrets", self.list_secrets)
        r.add_put("/contracts/{id}/secrets/{name}", self.put_secret)
        r.add_post("/contracts/{id}/secrets/{name}", self.get_secret)
        r.add_get("/contracts/{id}/events", self.get_events)
        r.add_put("/contracts/{id}/events", self.put_event)
        r.add_post("/contracts/{cid}/acceptedUserDocuments/{did}", self.accepted_document)
        r.add_post("/contracts/{cid}/userdocuments/{did}/consentcheck/execution", self.consent_check_document)
        r.add_get("/service/identity", self.service_identity)
        r.add_get("/contracts/{id}/datasets/{dataset}/analysisrules", self.get_rules)
        r.add_put("/contracts/{id}/datasets/{dataset}/analysisrules", self.put_rules)
        r.add_post("/contracts/{id}/datasets/{dataset}/analysisrules", self.runtime_rules)
        r.add_post("/contracts/{id}/budget/debit", self.debit_budget)
        r.add_get("/contracts/{id}/autoapproval", self.list_autoapproval)
        r.add_put("/contracts/{id}/autoapproval", self.put_autoapproval)
        r.add_delete("/contracts/{id}/autoapproval", self.put_autoapproval)
        r.add_get("/proposals/{pid}", self.get_proposal)
        r.add_get("/proposals/{pid}/actions", self.get_proposal_actions)
        r.add_get("/userdocuments", self.list_documents)
        r.add_get("/userdocuments/{id}", self.get_document)
        r.add_put("/userdocuments/{id}", self.put_document)
        r.add_post("/userdocuments/{id}/propose", self.propose_document)
        r.add_post("/userdocuments/{id}/vote_accept", self.vote_document)
        r.add_post("/userdocuments/{id}/vote_reject", self.vote_document)
        r.add_post("/userdocuments/{id}/runtimeoptions/{option}/enable", self.set_document_execution)
        r.add_post("/userdocuments/{id}/runtimeoptions/{option}/disable", self.set_document_execution)
        r.add_post("/userdocuments/{id}/checkstatus/execution", self.check_document_execution)
        return app
