"""Sample data of the demo collaboration (two hospitals' visit lists), and what the hospitals do
themselves in governance, with their own member credentials (the role each hospital's own CGS
client plays; the platform never holds them): vote on the contract, keep analysis rules with
their datasets, register their auto-approval policy. Used by the demo and the tests.

The DAGs' default Params describe this collaboration: datasets ``visits_a`` (hospital_a) and
``visits_b`` (hospital_b) with the columns below, and a query over patients seen by both.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import httpx

VISITS = [
    {"name": "patient_id", "type": "string"},
    {"name": "region", "type": "string"},
    {"name": "age_band", "type": "string"},
    {"name": "visits", "type": "int"},
]
QUERY = (
    "SELECT a.region, COUNT(DISTINCT a.patient_id) AS n, SUM(a.visits + b.visits) AS visits "
    "FROM visits_a a JOIN visits_b b ON a.patient_id = b.patient_id GROUP BY a.region"
)
# patients seen by both hospitals per region; "east" (3) is below k=5 and must be suppressed,
# "west" is only in hospital A's data and never joins
SHARED = {"north": 20, "south": 12, "east": 3}
MEMBER_TOKENS = {
    "analyst": "devstack-cgs-analyst",
    "hospital_a": "devstack-cgs-hospital-a",
    "hospital_b": "devstack-cgs-hospital-b",
}
OWNERS = {"visits_a": "hospital_a", "visits_b": "hospital_b"}


def analysis_rules(dataset: str, k: int = 5, dp: dict | None = None) -> dict:
    """The sample owners' rules: identity ``patient_id``; dimensions region and age_band; the
    measure visits (sum, avg, count); joins on patient_id; k = 5."""
    rules = {
        "dataset": dataset,
        "identityColumns": ["patient_id"],
        "dimensions": ["region", "age_band"],
        "aggregates": {"visits": ["sum", "avg", "count"], "*": ["count"]},
        "joinColumns": ["patient_id"],
        "k": k,
    }
    if dp:
        rules["dp"] = dp
    return rules


def make_sources(staging: Path) -> dict[str, Path]:
    """hospital_a/visits.csv and hospital_b/visits.csv; returns dataset -> path. Expected result of
    QUERY: north n=20 visits=20*(2+3), south n=12 visits=12*(2+3), east suppressed (3 < k=5)."""
    rows_a, rows_b = [], []
    for region, count in SHARED.items():
        for i in range(count):
            pid = f"{region}-{i:03d}"
            rows_a.append([pid, region, "40-49", 2])
            rows_b.append([pid, region, "40-49", 3])
    rows_a += [[f"west-{i:03d}", "west", "20-29", 1] for i in range(9)]
    out = {}
    for name, member, rows in (("visits_a", "hospital_a", rows_a), ("visits_b", "hospital_b", rows_b)):
        path = staging / member / "visits.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow([c["name"] for c in VISITS])
            writer.writerows(rows)
        out[name] = path
    return out


class Owner:
    """One hospital acting in governance with its own member credentials."""

    def __init__(self, cgs_url: str, member: str):
        self.member = member
        self.client = httpx.Client(
            base_url=cgs_url.rstrip("/"), headers={"Authorization": f"Bearer {MEMBER_TOKENS[member]}"}, timeout=60
        )

    def _ok(self, resp: httpx.Response) -> dict:
        if resp.status_code >= 300:
            raise RuntimeError(f"{self.member}: {resp.request.method} {resp.request.url.path}: {resp.text[:300]}")
        return resp.json() if resp.content.strip() else {}

    def accept_contract(self, contract_id: str, timeout: float = 120) -> None:
        """Wait until the contract is proposed, then vote accept (a repeated ballot is harmless)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            view = self.client.get(f"/contracts/{contract_id}")
            if view.status_code == 200 and view.json()["state"] == "Accepted":
                return
            if view.status_code == 200 and view.json()["state"] == "Proposed":
                pid = view.json()["proposalId"]
                self._ok(self.client.post(f"/contracts/{contract_id}/vote_accept", json={"proposalId": pid}))
                return
            time.sleep(1)
        raise RuntimeError(f"{self.member}: contract {contract_id} was not proposed within {timeout:.0f}s")

    def set_rules(self, contract_id: str, dataset: str, rules: dict) -> dict:
        path = f"/contracts/{contract_id}/datasets/{dataset}/analysisrules"
        current = self.client.get(path)
        body = {"rules": rules, "privacyBudget": {"totalEpsilon": float((rules.get("dp") or {}).get("totalBudget", 0))}}
        if current.status_code == 200:
            body["version"] = current.json()["version"]
        return self._ok(self.client.put(path, json=body))

    def register_autoapproval(self, contract_id: str, publish: list[str], queries: str | None = "analysis-rules"):
        return self._ok(
            self.client.put(f"/contracts/{contract_id}/autoapproval", json={"queries": queries, "publish": publish})
        )

    def vote_document(self, document_id: str, accept: bool = True) -> dict:
        view = self._ok(self.client.get(f"/userdocuments/{document_id}"))
        verb = "vote_accept" if accept else "vote_reject"
        return self._ok(
            self.client.post(f"/userdocuments/{document_id}/{verb}", json={"proposalId": view["proposalId"]})
        )


def owners_setup(
    cgs_url: str, contract_id: str, dp: dict | None = None, auto: tuple[str, ...] = ("hospital_a", "hospital_b")
):
    """After the contract is accepted: each hospital keeps its rules with its dataset, and those in
    ``auto`` register "accept queries that satisfy my analysis rules" and automated publishing."""
    for dataset, member in OWNERS.items():
        owner = Owner(cgs_url, member)
        owner.set_rules(contract_id, dataset, analysis_rules(dataset, dp=dp))
        if member in auto:
            owner.register_autoapproval(contract_id, [dataset])
        else:
            owner.register_autoapproval(contract_id, [dataset], queries=None)
