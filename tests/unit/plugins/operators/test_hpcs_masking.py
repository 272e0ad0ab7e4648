"""Every secret an HPCS or platform hook produces or decrypts is registered with Airflow's secrets
masker (docs/security.md, "Secrets"): after the call, the value is redacted from any log line."""

from __future__ import annotations

import json
from types import SimpleNamespace

from airflow.sdk.log import redact


def _masked(value: str) -> bool:
    return value not in str(redact(f"before {value} after"))


def test_vault_login_masks_the_jwt_and_the_token(monkeypatch):
    from sensitive_data.hooks.hpcs_vault import HpcsVaultHook

    monkeypatch.setenv("AIRFLOW_CONN_VAULT", json.dumps({"conn_type": "vault", "host": "127.0.0.1", "port": 1}))
    hook = HpcsVaultHook()
    client = hook.get_conn()

    def login(role, jwt, path):
        client.token = "hvs.masked-vault-token-1"

    monkeypatch.setattr(client.auth.jwt, "jwt_login", login)
    hook.login_jwt("client_x", "eyJ.masked-jwt-svid.sig")
    assert _masked("eyJ.masked-jwt-svid.sig") and _masked("hvs.masked-vault-token-1")


def test_registration_masks_the_join_token(monkeypatch):
    from sensitive_data.hooks.hpcs_server import HpcsServerHook

    hook = HpcsServerHook()
    monkeypatch.setattr(hook, "_post", lambda *a, **k: {"client_id": "c1", "spiffeID": "spiffe://x/c/c1",
                                                       "token": "join-token-masked-2"})
    assert hook.register_client().token == "join-token-masked-2"
    assert _masked("join-token-masked-2")


def test_prepare_masks_the_archive_key(tmp_path):
    from sensitive_data.operators import hpcs as ops

    staging = tmp_path / "staging"
    (staging / "ds").mkdir(parents=True)
    (staging / "ds" / "f").write_text("x")
    op = ops.HpcsPrepareOperator(task_id="prepare", input_path="ds", staging_dir=str(staging),
                                 scratch_dir=str(tmp_path / "s"), setup={"client_id": "c0ffee"})
    out = op.execute({"dag_run": SimpleNamespace(dag_id="d", run_id="r", triggering_user_name="alice")})
    pem = open(out["private_key_path"]).read()
    body = "".join(line for line in pem.splitlines() if "-----" not in line)
    assert _masked(pem) and _masked(body)


def test_ega_keys_masks_passphrase_and_pems(monkeypatch, tmp_path):
    from sensitive_data.hooks import ega_keys

    monkeypatch.setattr(ega_keys, "load_private_key", lambda pem, passphrase: b"k" * 32)
    monkeypatch.setenv("AIRFLOW_CONN_LEGA_KEYS", json.dumps({
        "conn_type": "generic", "password": "ega-passphrase-masked-3",
        "extra": {"private_keys": ["-----BEGIN KEY-----pem-masked-4-----END KEY-----"]}}))
    assert ega_keys.EgaKeysHook().get_private_keys() == [b"k" * 32]
    assert _masked("ega-passphrase-masked-3") and _masked("-----BEGIN KEY-----pem-masked-4-----END KEY-----")


def test_health_masks_the_service_account_password(monkeypatch):
    from sensitive_data.hooks import health, stager

    monkeypatch.setattr(stager.StagerServiceAccountHook, "credential",
                        lambda self: ("stager-streamer", "streamer-password-masked-5", None))
    assert health._service_account() == ("stager-streamer", "streamer-password-masked-5")
    assert _masked("streamer-password-masked-5")
