"""What data owners decide in the governance stand-in, beyond CGS's contracts and documents:
each dataset's analysis rules and privacy budget, the owners' auto-approval policies, the
automation identities bound to them, and governance's own signing identity.

Real CGS has none of these as endpoints (see docs/cleanroom-standins.md, "Owners' decisions"):
there they would be user documents whose only approver is the owner, a member's own automation
running its own cgs-client, and CCF's service identity (TLS, service certificate). The rules
here are what the project needs from governance, enforced as strictly as the real thing would:

* **analysis rules** ``PUT /contracts/{c}/datasets/{d}/analysisrules`` ``{rules, privacyBudget?,
  version?}``: only the member that owns ``d`` in the accepted contract (403 NotDatasetOwner),
  never an automation identity; versions as for contracts (409 without the current version,
  412 on a stale one). Members read them with ``GET``; the attested clean room with ``POST``.
* **privacy budget** ``{totalEpsilon}`` set with the rules by the owner; ``spentEpsilon`` only grows,
  through ``POST /contracts/{c}/budget/debit`` by the attested clean room: every debit of one call
  is checked (the caller's ``expectedSpentEpsilon`` must be the current value: compare-and-set, 409
  BudgetConflict; the total must not be exceeded: 403 BudgetExhausted) and then applied together,
  in one step of the event loop (no await between check and write), or none is.
* **auto-approval policy** ``PUT|DELETE /contracts/{c}/autoapproval`` ``{queries:
  "analysis-rules", publish: [datasets]}`` by the owner itself; ``GET`` lists them. Only while an
  owner's policy is registered may the owner's **automation identity** (a separate credential,
  ``--automation OWNER=TOKEN``) vote on query documents the owner must approve, and store the
  keys of the datasets listed under ``publish`` (that the owner owns). The ballot is recorded as
  the owner's, with ``via: automation``. The automation identity can do nothing else but read.
* **service identity**: an Ed25519 key of this governance service (``service-identity.key`` in the
  state directory; ``GET /service/identity``). Every answer to a request that carries
  ``X-Request-Nonce`` is signed: ``X-Governance-Signature`` = base64 Ed25519 over ``nonce`` + ``\\n``
  + the response body. The contract names this key; the clean room refuses unsigned answers.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

QUERY_POLICIES = ("analysis-rules",)
NONCE_HEADER = "X-Request-Nonce"
SIGNATURE_HEADER = "X-Governance-Signature"


def load_service_key(state_dir: Path) -> Ed25519PrivateKey:
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "service-identity.key"
    if path.exists():
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    key = Ed25519PrivateKey.generate()
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    os.replace(tmp, path)
    return key


class OwnerDecisions:
    """Mixed into ``Governance`` (which provides members, contracts, documents, audit, save,
    verify_attestation, wrap and ApiError)."""

    # state: contract -> dataset -> {owner, rules, totalEpsilon, spentEpsilon, seqno, ledger}
    analysis: dict[str, dict[str, dict]]
    # contract -> member -> {queries, publish}
    autoapproval: dict[str, dict[str, dict]]

    # ------------------------------------------------------------------ identity
    def service_public_pem(self) -> str:
        return (
            self.service_key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    def sign_response(self, request: web.Request, resp: web.StreamResponse) -> None:
        nonce = request.headers.get(NONCE_HEADER)
        if not nonce or not isinstance(resp, web.Response):
            return
        body = resp.body if isinstance(resp.body, bytes) else b""
        signature = self.service_key.sign(nonce.encode() + b"\n" + body)
        resp.headers[SIGNATURE_HEADER] = base64.b64encode(signature).decode()

    async def service_identity(self, request: web.Request) -> web.Response:
        return web.json_response({"publicKey": self.service_public_pem(), "algorithm": "Ed25519"})

    # ------------------------------------------------------------------ helpers
    def _accepted_contract(self, cid: str) -> dict:
        c = self.contracts.get(cid)
        if c is None or c["state"] != "Accepted":
            raise self.ApiError(400, "ContractNotAccepted", "Contract does not exist or has not been accepted.")
        return c

    def dataset_owner(self, cid: str, dataset: str) -> str:
        c = self._accepted_contract(cid)
        for d in (c["data"] or {}).get("datasets") or []:
            if isinstance(d, dict) and d.get("name") == dataset:
                return str(d.get("owner"))
        raise self.ApiError(404, "DatasetNotFound", f"Contract {cid} has no dataset {dataset}.")

    def policy_of(self, cid: str, member: str) -> dict | None:
        return self.autoapproval.get(cid, {}).get(member)

    def _rules_view(self, cid: str, dataset: str) -> dict:
        owner = self.dataset_owner(cid, dataset)
        item = self.analysis.get(cid, {}).get(dataset)
        if item is None:
            raise self.ApiError(
                404, "AnalysisRulesNotFound", f"The owner {owner} has not set analysis rules for dataset {dataset}."
            )
        return {
            "contractId": cid,
            "datasetId": dataset,
            "ownerId": owner,
            "rules": item["rules"],
            "privacyBudget": {"totalEpsilon": item["totalEpsilon"], "spentEpsilon": item["spentEpsilon"]},
            "version": self.version(item["seqno"]),
        }

    # ------------------------------------------------------------------ analysis rules
    async def put_rules(self, request: web.Request) -> web.Response:
        member = self.member(request)
        cid, ds = request.match_info["id"], request.match_info["dataset"]
        body = await self.body(request)
        owner = self.dataset_owner(cid, ds)
        if member != owner:
            raise self.ApiError(
                403, "NotDatasetOwner", f"Only {owner}, the owner of dataset {ds}, may set its analysis rules."
            )
        rules = body.get("rules")
        if not isinstance(rules, dict) or not rules:
            raise self.ApiError(400, "RulesMissing", "rules must be a JSON object.")
        budget = body.get("privacyBudget") or {}
        total = budget.get("totalEpsilon", 0) if isinstance(budget, dict) else None
        if isinstance(total, bool) or not isinstance(total, int | float) or total < 0:
            raise self.ApiError(400, "InvalidBudget", "privacyBudget.totalEpsilon must be a number >= 0.")
        current = self.analysis.get(cid, {}).get(ds)
        if current is not None:
            if not body.get("version"):
                raise self.ApiError(
                    409,
                    "AnalysisRulesAlreadyExist",
                    "The rules already exist: read the current version and send it to change them.",
                )
            if body["version"] != self.version(current["seqno"]):
                raise self.ApiError(
                    412, "PreconditionFailed", "The version specified is different from the version at the server."
                )
        item = current or {"spentEpsilon": 0.0, "ledger": []}
        item.update(owner=owner, rules=rules, totalEpsilon=float(total), seqno=self.write())
        self.analysis.setdefault(cid, {})[ds] = item
        self.audit(cid, "analysis_rules_set", memberId=member, datasetId=ds, totalEpsilon=float(total))
        self.save()
        return web.json_response(self._rules_view(cid, ds))

    async def get_rules(self, request: web.Request) -> web.Response:
        self.member(request)
        return web.json_response(self._rules_view(request.match_info["id"], request.match_info["dataset"]))

    async def runtime_rules(self, request: web.Request) -> web.Response:
        """The attested clean room reads a dataset's rules (signed, like every runtime answer)."""
        cid, ds = request.match_info["id"], request.match_info["dataset"]
        body = await self.body(request)
        if not body.get("attestation"):
            raise self.ApiError(400, "AttestationMissing", "Attestation payload must be supplied.")
        self.verify_attestation(cid, body["attestation"], (body.get("encrypt") or {}).get("publicKey"))
        return web.json_response(self._rules_view(cid, ds))

    # ------------------------------------------------------------------ budget
    async def debit_budget(self, request: web.Request) -> web.Response:
        cid = request.match_info["id"]
        body = await self.body(request)
        if not body.get("attestation"):
            raise self.ApiError(400, "AttestationMissing", "Attestation payload must be supplied.")
        self.verify_attestation(cid, body["attestation"], (body.get("encrypt") or {}).get("publicKey"))
        did, run_id, debits = body.get("documentId"), str(body.get("runId") or ""), body.get("debits")
        d = self.documents.get(did or "")
        if d is None or d["state"] != "Accepted" or d["contractId"] != cid:
            raise self.ApiError(403, "UserDocumentNotAccepted", f"Document {did} is not accepted for contract {cid}.")
        if not isinstance(debits, list) or not debits:
            raise self.ApiError(400, "DebitsMissing", "debits must list {datasetId, epsilon, expectedSpentEpsilon}.")
        # check everything first; nothing awaits between the checks and the writes (one atomic step)
        planned = []
        for item in debits:
            ds = (item or {}).get("datasetId")
            eps, expected = (item or {}).get("epsilon"), (item or {}).get("expectedSpentEpsilon")
            if any(isinstance(v, bool) or not isinstance(v, int | float) for v in (eps, expected)) or eps <= 0:
                raise self.ApiError(400, "InvalidDebit", "epsilon (> 0) and expectedSpentEpsilon must be numbers.")
            state = self.analysis.get(cid, {}).get(ds)
            if state is None:
                raise self.ApiError(404, "AnalysisRulesNotFound", f"Dataset {ds} has no privacy budget.")
            if abs(state["spentEpsilon"] - float(expected)) > 1e-12:
                raise self.ApiError(
                    409,
                    "BudgetConflict",
                    f"The spent budget of {ds} is {state['spentEpsilon']}, not {expected}: read it again.",
                )
            if state["spentEpsilon"] + float(eps) > state["totalEpsilon"] + 1e-12:
                self.audit(cid, "budget_refused", datasetId=ds, documentId=did, runId=run_id, epsilon=float(eps))
                self.save()
                raise self.ApiError(
                    403,
                    "BudgetExhausted",
                    f"The privacy budget of dataset {ds} is exhausted: {state['spentEpsilon']:g} of "
                    f"{state['totalEpsilon']:g} spent, {float(eps):g} asked.",
                )
            planned.append((ds, state, float(eps)))
        out = []
        for ds, state, eps in planned:
            state["spentEpsilon"] += eps
            state["ledger"].append({"documentId": did, "runId": run_id, "epsilon": eps})
            self.audit(cid, "budget_debited", datasetId=ds, documentId=did, runId=run_id, epsilon=eps)
            out.append({"datasetId": ds, "spentEpsilon": state["spentEpsilon"], "totalEpsilon": state["totalEpsilon"]})
        self.save()
        return web.json_response({"debits": out})

    # ------------------------------------------------------------------ auto-approval
    async def put_autoapproval(self, request: web.Request) -> web.Response:
        member = self.member(request)
        cid = request.match_info["id"]
        self._accepted_contract(cid)
        if request.method == "DELETE":
            self.autoapproval.get(cid, {}).pop(member, None)
            self.audit(cid, "autoapproval_withdrawn", memberId=member)
            self.save()
            return web.Response(status=204)
        body = await self.body(request)
        queries = body.get("queries")
        if queries not in (None, *QUERY_POLICIES):
            raise self.ApiError(400, "InvalidPolicy", f"queries must be one of {', '.join(QUERY_POLICIES)} or null.")
        publish = body.get("publish") or []
        if not isinstance(publish, list):
            raise self.ApiError(400, "InvalidPolicy", "publish must list datasets.")
        for ds in publish:
            if self.dataset_owner(cid, ds) != member:
                raise self.ApiError(403, "NotDatasetOwner", f"{member} does not own dataset {ds}.")
        self.autoapproval.setdefault(cid, {})[member] = {"queries": queries, "publish": sorted(publish)}
        self.audit(cid, "autoapproval_registered", memberId=member, queries=queries, publish=sorted(publish))
        self.save()
        return web.json_response({"memberId": member, "queries": queries, "publish": sorted(publish)})

    async def list_autoapproval(self, request: web.Request) -> web.Response:
        self.member(request)
        cid = request.match_info["id"]
        return web.json_response(
            {"value": [{"memberId": m, **p} for m, p in sorted(self.autoapproval.get(cid, {}).items())]}
        )

    # ------------------------------------------------------------------ automation checks
    def automation_may_vote(self, member: str, document: dict) -> None:
        policy = self.policy_of(document["contractId"], member) or {}
        if policy.get("queries") not in QUERY_POLICIES:
            raise self.ApiError(
                403,
                "NoAutoApprovalPolicy",
                f"{member} has registered no auto-approval policy for contract {document['contractId']}: "
                "its automation may not vote.",
            )

    def automation_may_publish(self, member: str, cid: str, name: str) -> None:
        policy = self.policy_of(cid, member) or {}
        dataset = name[: -len("-dek")] if name.endswith("-dek") else None
        if dataset is None or dataset not in policy.get("publish", []):
            raise self.ApiError(
                403,
                "NoPublishPolicy",
                f"{member} has not registered its automation to publish {name} in contract {cid}.",
            )
