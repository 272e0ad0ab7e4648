"""The HPCS operators in sequence against the stand-ins, then the other side: a compute node reads
the key and decrypts the shipped archive; others are refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from airflow.sdk.exceptions import AirflowFailException

from include.hpcs.archive import sha512_file
from include.hpcs.scratch import RunScratch

from . import compute_node as cn
from .conftest import run_task

pytestmark = pytest.mark.integration

DAG_ID = "hpcs_data_preparation"


def operators(
    scratch_root,
    staging,
    input_path,
    *,
    users=("root",),
    nodes=("cn01",),
    remote="/project/rest",
    secret_name="",
    compression="gzip",
):
    from sensitive_data.operators import hpcs as ops

    common = {"scratch_dir": str(scratch_root)}
    return [
        ops.HpcsSpireAgentSetupOperator(task_id="setup_spire_agent", **common),
        ops.HpcsPrepareOperator(
            task_id="prepare",
            input_path=str(input_path),
            staging_dir=str(staging),
            secret_name=secret_name,
            compression=compression,
            **common,
        ),
        ops.HpcsSvidOperator(task_id="svid", **common),
        ops.HpcsVaultKeyOperator(task_id="vault", **common),
        ops.HpcsWorkloadsOperator(
            task_id="workloads", users=list(users), groups=[], compute_nodes=list(nodes), **common
        ),
        ops.HpcsInfoFileOperator(task_id="info_file", path_at_rest=remote, **common),
        ops.HpcsShipOperator(task_id="ship", path_at_rest=remote, progress_interval=0.0, **common),
    ], ops.HpcsSpireAgentTeardownOperator(task_id="teardown_spire_agent", **common)


def run_all(work, teardown, store, run_id, user="alice"):
    try:
        for op in work:
            run_task(op, store, DAG_ID, run_id, user)
    finally:
        run_task(teardown, store, DAG_ID, run_id, user)
    return store


@pytest.fixture
def staging(tmp_path):
    s = tmp_path / "staging"
    cn.make_input(s / "dataset")
    return s


def test_full_sequence_and_compute_node_access(hpcs_stack, staging, tmp_path):
    scratch_root = tmp_path / "scratch"
    work, teardown = operators(scratch_root, staging, "dataset")
    store: dict = {}
    run_all(work, teardown, store, "manual__1")

    prepared, info = store["prepare"], store["info_file"]["info"]["info"]
    assert prepared["secret_name"] == "dataset" and prepared["archive_name"] == "dataset.tar.gz.c4gh"
    assert prepared["outside_links"] == ["outside-link"]
    assert store["vault"]["written"] is True and store["vault"]["version"] == 1
    assert store["workloads"]["user_role"] == f"client_{store['setup_spire_agent']['client_id']}-dataset"
    assert store["teardown_spire_agent"]["agent_stopped"] is True
    assert sorted(store["teardown_spire_agent"]["key_material_removed"]) == ["archive.sec", "jwt"]

    # nothing secret in XCom
    xcoms = json.dumps(store)
    assert "PRIVATE KEY" not in xcoms and "eyJ" not in xcoms

    # teardown: agent gone, key material gone, shipped archive removed locally
    scratch = RunScratch(scratch_root, DAG_ID, "manual__1")
    assert not scratch.private_key_path.exists() and not scratch.svid_path.exists()
    assert not scratch.agent_dir.exists() and not scratch.archive_dir.exists()

    # on the supercomputer
    remote = hpcs_stack.sftp_root / "project" / "rest"
    assert sorted(p.name for p in remote.iterdir()) == ["dataset.info.yaml", "dataset.tar.gz.c4gh"]
    on_disk = yaml.safe_load((remote / "dataset.info.yaml").read_text())["info"]
    assert on_disk == info
    assert on_disk["checksum"] == sha512_file(remote / "dataset.tar.gz.c4gh") == prepared["sha512"]
    assert on_disk["path_at_rest"] == "/project/rest/dataset.tar.gz.c4gh"

    # a compute node: cn01 agent, workload (uid root) reads the key with the role of the info file
    node = cn.NodeAgent(tmp_path / "cn01", cn.node_token(hpcs_stack.hpcs_url, "cn01"), hpcs_stack.spire_port)
    try:
        jwt = node.jwt_svid(hpcs_stack.audience, subject=on_disk["spiffeID"])
        login = cn.vault_login(hpcs_stack.vault_url, on_disk["access_role"], jwt)
        assert login.status_code == 200, login.text
        token = login.json()["auth"]["client_token"]
        read = cn.vault_read(hpcs_stack.vault_url, token, on_disk["secret_path"])
        assert read.status_code == 200, read.text
        key_pem = read.json()["data"]["data"]["key"]
    finally:
        node.stop()

    archive = tmp_path / "downloaded.c4gh"
    cn.sftp_download(hpcs_stack.sftp_port, hpcs_stack.sftp_key, on_disk["path_at_rest"], archive)
    out = cn.decrypt_and_untar(archive, key_pem, tmp_path / "restored" / "out")
    assert cn.tree_listing(out / "dataset") == cn.tree_listing(staging / "dataset")

    # the client itself may write but not read; a node not registered gets no identity for the secret
    client_id, token = cn.client_token(hpcs_stack.hpcs_url)
    client = cn.NodeAgent(tmp_path / "client", token, hpcs_stack.spire_port)
    try:
        client_jwt = client.jwt_svid(hpcs_stack.audience)
    finally:
        client.stop()
    ctoken = cn.vault_login(hpcs_stack.vault_url, f"client_{client_id}", client_jwt).json()["auth"]["client_token"]
    assert cn.vault_read(hpcs_stack.vault_url, ctoken, on_disk["secret_path"]).status_code == 403
    assert cn.vault_login(hpcs_stack.vault_url, on_disk["access_role"], client_jwt).status_code in (400, 403)


def test_rerun_reuses_archive_and_key(hpcs_stack, staging, tmp_path):
    scratch_root = tmp_path / "scratch"
    work, teardown = operators(scratch_root, staging, "dataset", secret_name="rerun-ds", remote="/project/rerun")
    store: dict = {}
    # first attempt: everything up to the vault write, then "the worker dies" (teardown runs)
    ship_index = [op.task_id for op in work].index("ship")
    try:
        for op in work[:ship_index]:
            run_task(op, store, DAG_ID, "manual__2")
    finally:
        run_task(teardown, store, DAG_ID, "manual__2")
    first_sha = store["prepare"]["sha512"]
    assert store["vault"]["version"] == 1

    # a second run of the same run: same archive, no new key version, shipping completes
    work, teardown = operators(scratch_root, staging, "dataset", secret_name="rerun-ds", remote="/project/rerun")
    store2: dict = {}
    run_all(work, teardown, store2, "manual__2")
    assert store2["prepare"]["reused"] is True and store2["prepare"]["sha512"] == first_sha
    assert store2["vault"]["written"] is False and store2["vault"]["version"] == 1
    remote = hpcs_stack.sftp_root / "project" / "rerun" / "rerun-ds.tar.gz.c4gh"
    assert sha512_file(remote) == first_sha

    # a changed input makes a new archive, whose key would replace the one in Vault: refused, the
    # key (version 1) and the shipped archive stay as they were
    (staging / "dataset" / "readme.txt").write_text("changed\n")
    work, teardown = operators(scratch_root, staging, "dataset", secret_name="rerun-ds", remote="/project/rerun")
    store3: dict = {}
    with pytest.raises(AirflowFailException, match="changed since its key was written"):
        run_all(work, teardown, store3, "manual__2")
    assert store3["prepare"]["reused"] is False and "vault" not in store3
    assert sha512_file(remote) == first_sha
    assert _kv_version(hpcs_stack, f"client_{store['setup_spire_agent']['client_id']}/rerun-ds") == 1


def _kv_version(hpcs_stack, path: str) -> int:
    import httpx

    resp = httpx.get(f"{hpcs_stack.vault_url}/v1/kv/metadata/{path}", headers={"X-Vault-Token": hpcs_stack.root_token})
    resp.raise_for_status()
    return resp.json()["data"]["current_version"]


def test_client_token_revoked_and_secret_name_kept_for_its_owner(hpcs_stack, staging, tmp_path, monkeypatch):
    """The Vault token is revoked right after the write (lookup-self: 403); another user's run with the
    same secret_name is refused before anything is archived, written or registered."""
    import httpx

    from sensitive_data.hooks.hpcs_vault import HpcsVaultHook

    tokens = []
    revoke = HpcsVaultHook.revoke_self

    def spy(self):
        tokens.append(self.get_conn().token)
        return revoke(self)

    monkeypatch.setattr(HpcsVaultHook, "revoke_self", spy)
    scratch_root = tmp_path / "scratch"
    work, teardown = operators(scratch_root, staging, "dataset", secret_name="owned-ds", remote="/project/owned")
    store: dict = {}
    run_all(work, teardown, store, "manual__a", user="alice")
    assert store["vault"]["written"] is True and len(tokens) == 1 and tokens[0]
    lookup = httpx.get(f"{hpcs_stack.vault_url}/v1/auth/token/lookup-self", headers={"X-Vault-Token": tokens[0]})
    assert lookup.status_code == 403, lookup.text
    secret_path = f"client_{store['setup_spire_agent']['client_id']}/owned-ds"
    policies_before = httpx.get(f"{hpcs_stack.vault_url}/v1/sys/policies/acl?list=true",
                                headers={"X-Vault-Token": hpcs_stack.root_token}).json()["data"]["keys"]

    work, teardown = operators(scratch_root, staging, "dataset", secret_name="owned-ds", remote="/project/owned",
                               users=("mallory",))
    store2: dict = {}
    with pytest.raises(AirflowFailException, match="belongs to another Airflow user"):
        run_all(work, teardown, store2, "manual__b", user="mallory")
    refused = RunScratch(scratch_root, DAG_ID, "manual__b")
    assert "prepare" not in store2 and not any(refused.archive_dir.glob("*")) and not refused.private_key_path.exists()
    assert _kv_version(hpcs_stack, secret_path) == 1
    policies_after = httpx.get(f"{hpcs_stack.vault_url}/v1/sys/policies/acl?list=true",
                               headers={"X-Vault-Token": hpcs_stack.root_token}).json()["data"]["keys"]
    assert policies_after == policies_before  # no workload (read policy/role) was added for mallory


def test_shipping_resumes_a_partial_upload(hpcs_stack, tmp_path, monkeypatch):
    from sensitive_data.hooks.hpcs_sftp import SupercomputerSftpHook

    local = tmp_path / "big.c4gh"
    local.write_bytes(os.urandom(5 * 1024 * 1024))
    part = hpcs_stack.sftp_root / "resume" / "big.c4gh.part"
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(local.read_bytes()[: 2 * 1024 * 1024])
    seen: list[int] = []
    result = SupercomputerSftpHook().ship(local, "/resume", "big.c4gh", progress=seen.append)
    assert result.resumed_from == 2 * 1024 * 1024 and result.sent == 3 * 1024 * 1024
    assert (hpcs_stack.sftp_root / "resume" / "big.c4gh").read_bytes() == local.read_bytes()
    assert not part.exists() and seen[-1] == local.stat().st_size


def test_sftp_authentication_failure_is_not_retried(hpcs_stack, tmp_path, monkeypatch):
    import paramiko

    from include.hpcs.errors import HpcsConfigError
    from sensitive_data.hooks.hpcs_sftp import SupercomputerSftpHook

    wrong = tmp_path / "wrong_key"
    paramiko.Ed25519Key  # noqa: B018 - the type the stand-in's keys have
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=False)
    if not wrong.exists():
        import asyncssh

        asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(wrong))
    conn = dict(hpcs_stack.conns["supercomputer_sftp"], extra={"key_file": str(wrong), "no_host_key_check": True})
    monkeypatch.setenv("AIRFLOW_CONN_SUPERCOMPUTER_SFTP", json.dumps(conn))
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(HpcsConfigError, match="authentication .* failed"):
        SupercomputerSftpHook().ship(tmp_path / "f", "/x", "f")


def test_services_down_are_transient(hpcs_stack, tmp_path, monkeypatch):
    from devstack.procs import free_port
    from include.hpcs.errors import HpcsTransientError
    from sensitive_data.common.errors import TransientFailure
    from sensitive_data.hooks.hpcs_sftp import SupercomputerSftpHook

    dead = free_port()
    monkeypatch.setenv("AIRFLOW_CONN_HPCS_SERVER", json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": dead}))
    monkeypatch.setenv(
        "AIRFLOW_CONN_SUPERCOMPUTER_SFTP", json.dumps(dict(hpcs_stack.conns["supercomputer_sftp"], port=dead))
    )
    work, teardown = operators(tmp_path / "scratch", tmp_path, "x")
    with pytest.raises(TransientFailure, match="unreachable"):
        run_task(work[0], {}, DAG_ID, "manual__down")
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(HpcsTransientError):
        SupercomputerSftpHook().ship(tmp_path / "f", "/x", "f")


def test_user_errors_fail_without_retry(hpcs_stack, staging, tmp_path):
    (staging / "empty").mkdir()
    cases = [("missing", {}), ("empty", {}), ("dataset", {"secret_name": "bad/name"}), ("../outside", {})]
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "f").write_text("x")
    for input_path, kw in cases:
        work, _ = operators(tmp_path / "scratch", staging, input_path, **kw)
        with pytest.raises(AirflowFailException) as err:
            run_task(work[1], {"setup_spire_agent": {"client_id": "0user0err"}}, DAG_ID,
                     f"manual__{input_path.strip('./')}")
        assert "input" in str(err.value) or "secret name" in str(err.value)
    work, _ = operators(tmp_path / "scratch", staging, "dataset", users=("Bad",))
    with pytest.raises(AirflowFailException, match="invalid user name"):
        run_task(work[4], {"prepare": {"secret_name": "x"}, "svid": {"svid_path": "/nonexistent"}}, DAG_ID, "m")


def test_python_is_venv():
    assert Path(sys.executable).exists()
