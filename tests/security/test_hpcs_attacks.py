"""Attacks on the HPCS data preparation with real accounts (docs/security.md, "HPCS").

Two researchers (role ``Researcher``, which may trigger ``hpcs_data_preparation``) and the Vault and
HPCS stand-ins: the client's Vault token does not outlive its write; a second researcher's run with
the first one's ``secret_name`` is refused before anything is archived, written or registered; the
owner's retry with the unchanged archive goes on; a changed archive never replaces the key.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest

from tests.security.conftest import ME, assert_no_secret

DAG_ID = "hpcs_data_preparation"


def _input(stack, name: str) -> Path:
    root = Path(stack.vars["SDP_LOCAL"]) / "staging" / name
    for i in range(3):
        (root / f"part{i}.txt").parent.mkdir(parents=True, exist_ok=True)
        (root / f"part{i}.txt").write_text(f"sensitive {i} {uuid.uuid4().hex}\n")
    return root


def _vault(stack, method: str, path: str, token: str | None = None) -> httpx.Response:
    root = token or (Path(stack.vars["SDP_LOCAL"]) / "vault" / "root-token").read_text().strip()
    return httpx.request(method, f"http://127.0.0.1:{stack.vars['SDP_VAULT_PORT']}/v1/{path}",
                         headers={"X-Vault-Token": root}, timeout=30)


def _tokens(stack) -> dict[str, dict]:
    """Vault's live tokens (the stand-in's persisted state: the test reads it as an operator would
    list token accessors)."""
    state = json.loads((Path(stack.vars["SDP_LOCAL"]) / "vault" / "state.json").read_text())
    return state["tokens"]


def _trigger_as(stack, user: str, conf: dict) -> str:
    resp = stack.api_as(user, "POST", f"/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": conf})
    assert resp.status_code == 200, f"{user}: {resp.status_code} {resp.text}"
    return resp.json()["dag_run_id"]


def _conf(name: str, users=("root",), input_path: str = "") -> dict:
    return {"input_path": input_path or name, "secret_name": name, "users": list(users),
            "compute_nodes": ["cn01"], "path_at_rest": f"/project/{name}", "compression": "none"}


@pytest.fixture(scope="module")
def owned(stack):
    """A secret prepared by the first researcher, and the Vault tokens that existed before."""
    stack.wait_for_dags([DAG_ID])
    stack.unpause(DAG_ID)
    name = f"sec-{uuid.uuid4().hex[:8]}"
    _input(stack, name)
    before = set(_tokens(stack))
    run_id = _trigger_as(stack, ME, _conf(name))
    result = stack.wait(DAG_ID, run_id, timeout=300)
    assert result.state == "success", result.explain()
    setup = result.xcom("setup_spire_agent")
    return {"name": name, "run_id": run_id, "result": result, "client_id": setup["client_id"],
            "secret_path": f"client_{setup['client_id']}/{name}", "tokens_before": before}


def test_the_client_token_does_not_outlive_its_write(stack, owned):
    """Every Vault token the run's JWT login created is revoked (lookup-self: 403)."""
    client_policy = f"client_{owned['client_id']}"
    new = {tid: t for tid, t in _tokens(stack).items() if tid not in owned["tokens_before"]}
    assert not [t for t in new.values() if client_policy in t["policies"]], "a client token is still alive"
    assert owned["result"].xcom("vault")["written"] is True
    meta = _vault(stack, "GET", f"kv/metadata/{owned['secret_path']}")
    assert meta.status_code == 200 and meta.json()["data"]["current_version"] == 1


def test_another_researcher_cannot_take_over_a_secret_name(stack, owned):
    name = owned["name"]
    role = f"client_{owned['client_id']}-{name}"
    role_before = _vault(stack, "GET", f"auth/jwt/role/{role}").json()["data"]
    policies_before = _vault(stack, "LIST", "sys/policies/acl").json()["data"]["keys"]
    _input(stack, f"{name}-bob")  # bob stages his own data, to be kept under the same secret name
    run_id = _trigger_as(stack, "bob", _conf(name, users=["mallory"], input_path=f"{name}-bob"))
    result = stack.wait(DAG_ID, run_id, timeout=300)
    assert result.state == "failed"
    assert result.tasks["prepare"] == "failed" and result.try_numbers.get("prepare", 1) == 1
    assert result.tasks["vault"] == "upstream_failed" and result.tasks["workloads"] == "upstream_failed"
    assert "belongs to another Airflow user" in result.log("prepare")
    # nothing was added: the key, its read role (bound workloads) and the policies are as they were
    assert _vault(stack, "GET", f"kv/metadata/{owned['secret_path']}").json()["data"]["current_version"] == 1
    assert _vault(stack, "GET", f"auth/jwt/role/{role}").json()["data"] == role_before
    assert _vault(stack, "LIST", "sys/policies/acl").json()["data"]["keys"] == policies_before
    # bob reads the owner's run (Airflow's permissions are per DAG, not per run: docs/security.md)
    # but finds no secret in it
    seen = stack.api_as("bob", "GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{owned['run_id']}/taskInstances")
    assert seen.status_code == 200
    assert "PRIVATE KEY" not in seen.text and "eyJ" not in seen.text
    for task in ("prepare", "vault", "workloads"):
        log = stack.api_as("bob", "GET",
                           f"/api/v2/dags/{DAG_ID}/dagRuns/{owned['run_id']}/taskInstances/{task}/logs/1",
                           params={"full_content": "true"}, headers={"Accept": "application/json"})
        assert log.status_code == 200 and "PRIVATE KEY" not in log.text and "eyJ" not in log.text


def test_a_researcher_cannot_clear_or_patch_anothers_run(stack, owned):
    """Researchers trigger; they may not clear or mark runs (theirs or others')."""
    base = f"/api/v2/dags/{DAG_ID}"
    clear = stack.api_as("bob", "POST", f"{base}/clearTaskInstances",
                         json={"dag_run_id": owned["run_id"], "dry_run": False, "only_failed": False})
    assert clear.status_code == 403, clear.text
    patch = stack.api_as("bob", "PATCH", f"{base}/dagRuns/{owned['run_id']}/taskInstances/ship",
                         json={"new_state": "failed"})
    assert patch.status_code == 403, patch.text
    assert stack.task_states(DAG_ID, owned["run_id"])[0]["ship"] == "success"


def _clear_all(stack, run_id: str) -> None:
    resp = stack.api("POST", f"/api/v2/dags/{DAG_ID}/clearTaskInstances",
                     json={"dag_run_id": run_id, "dry_run": False, "only_failed": False, "reset_dag_runs": True})
    assert resp.status_code == 200, resp.text


def test_a_retry_with_the_unchanged_archive_succeeds_a_changed_one_is_refused(stack, owned, configured_secrets):
    _clear_all(stack, owned["run_id"])  # an Admin re-runs the owner's run: same input
    again = stack.wait(DAG_ID, owned["run_id"], timeout=300)
    assert again.state == "success", again.explain()
    assert again.xcom("prepare")["reused"] is True and again.xcom("vault")["written"] is False
    # the input changes, the run is cleared again: the new archive's key would replace the old one
    (Path(stack.vars["SDP_LOCAL"]) / "staging" / owned["name"] / "part0.txt").write_text("changed\n")
    _clear_all(stack, owned["run_id"])
    changed = stack.wait(DAG_ID, owned["run_id"], timeout=300)
    assert changed.state == "failed"
    assert changed.tasks["vault"] == "failed" and changed.tasks["workloads"] == "upstream_failed"
    assert "changed since its key was written" in changed.log("vault", )
    assert _vault(stack, "GET", f"kv/metadata/{owned['secret_path']}").json()["data"]["current_version"] == 1
    for task in ("setup_spire_agent", "prepare", "svid", "vault"):
        assert_no_secret(changed.log(task), configured_secrets, f"{task} log")


def test_a_secret_name_cannot_be_prepared_twice_even_by_its_owner(stack, owned):
    _input(stack, f"{owned['name']}-again")
    run_id = _trigger_as(stack, ME, _conf(owned["name"], input_path=f"{owned['name']}-again"))
    result = stack.wait(DAG_ID, run_id, timeout=300)
    assert result.state == "failed" and result.tasks["prepare"] == "failed"
    assert "never replaced: choose a new secret_name" in result.log("prepare")
