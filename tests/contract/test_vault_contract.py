"""Vault: what the HPCS pipeline relies on, checked with hvac and raw HTTP.

Against a real Vault when ``VAULT_ADDR`` and ``VAULT_TOKEN`` (a root or equally privileged token)
are set, else against the devstack stand-in. Every test works under its own mount paths and
policy names and removes them.
"""

from __future__ import annotations

import os
import time
import uuid

import hvac
import hvac.exceptions
import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

pytestmark = pytest.mark.contract


@pytest.fixture(scope="module")
def vault(devstack):
    if os.environ.get("VAULT_ADDR") and os.environ.get("VAULT_TOKEN"):
        return os.environ["VAULT_ADDR"].rstrip("/"), os.environ["VAULT_TOKEN"]
    env = devstack.start("vault")
    return f"http://127.0.0.1:{env['SDP_VAULT_PORT']}", "devstack-root-token"


@pytest.fixture(scope="module")
def root(vault):
    return hvac.Client(url=vault[0], token=vault[1])


@pytest.fixture
def kv(root):
    """A fresh KV v2 mount, removed afterwards."""
    mount = f"kv-{uuid.uuid4().hex[:8]}"
    root.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
    yield mount
    root.sys.disable_secrets_engine(mount)


@pytest.fixture
def policies(root):
    created: list[str] = []

    def make(text: str) -> str:
        name = f"contract-{uuid.uuid4().hex[:8]}"
        root.sys.create_or_update_acl_policy(name=name, policy=text)
        created.append(name)
        return name

    yield make
    for name in created:
        root.sys.delete_acl_policy(name)


def token_for(root: hvac.Client, vault, *policy_names: str) -> hvac.Client:
    token = root.auth.token.create(policies=list(policy_names), ttl="10m")["auth"]["client_token"]
    return hvac.Client(url=vault[0], token=token)


def raw(vault, method: str, path: str, token: str | None = None, **kwargs) -> requests.Response:
    headers = {"X-Vault-Token": token} if token else {}
    return requests.request(method, f"{vault[0]}/v1/{path}", headers=headers, timeout=10, **kwargs)


def test_health_and_token_lookup(vault, root):
    health = raw(vault, "GET", "sys/health")
    assert health.status_code == 200
    assert health.json()["initialized"] is True and health.json()["sealed"] is False
    assert root.is_authenticated()
    me = root.lookup_token()["data"]
    assert "root" in me["policies"] or me["policies"]
    for token in (None, "not-a-token"):
        resp = raw(vault, "GET", "auth/token/lookup-self", token)
        assert resp.status_code == 403
        assert "permission denied" in " ".join(resp.json()["errors"])
    assert not hvac.Client(url=vault[0], token="not-a-token").is_authenticated()


def test_kv2_versions_cas_metadata_and_list(vault, root, kv):
    kv2 = root.secrets.kv.v2
    assert kv2.create_or_update_secret("app/one", secret={"v": "1"}, mount_point=kv)["data"]["version"] == 1
    assert (
        kv2.create_or_update_secret("app/one", secret={"v": "2"}, mount_point=kv, cas=1)["data"]["version"]
        == 2
    )
    with pytest.raises(hvac.exceptions.InvalidRequest, match="check-and-set"):
        kv2.create_or_update_secret("app/one", secret={"v": "x"}, mount_point=kv, cas=1)
    with pytest.raises(hvac.exceptions.InvalidRequest):  # cas=0: only if it does not exist yet
        kv2.create_or_update_secret("app/one", secret={"v": "x"}, mount_point=kv, cas=0)
    latest = kv2.read_secret_version("app/one", mount_point=kv, raise_on_deleted_version=True)["data"]
    assert latest["data"] == {"v": "2"} and latest["metadata"]["version"] == 2
    first = kv2.read_secret_version("app/one", version=1, mount_point=kv, raise_on_deleted_version=True)
    assert first["data"]["data"] == {"v": "1"}
    meta = kv2.read_secret_metadata("app/one", mount_point=kv)["data"]
    assert meta["current_version"] == 2 and set(meta["versions"]) == {"1", "2"}
    kv2.create_or_update_secret("app/sub/two", secret={"v": "3"}, mount_point=kv)
    assert sorted(kv2.list_secrets("app", mount_point=kv)["data"]["keys"]) == ["one", "sub/"]
    resp = raw(vault, "GET", f"{kv}/metadata/app", vault[1], params={"list": "true"})
    assert resp.status_code == 200 and sorted(resp.json()["data"]["keys"]) == ["one", "sub/"]
    assert raw(vault, "GET", f"{kv}/data/app/missing", vault[1]).status_code == 404
    assert raw(vault, "LIST", f"{kv}/metadata/nothing-here", vault[1]).status_code == 404
    bad = raw(vault, "POST", f"{kv}/data/app/one", vault[1], json={"nodata": 1})
    assert bad.status_code == 400 and bad.json()["errors"]
    kv2.delete_metadata_and_all_versions("app/one", mount_point=kv)
    with pytest.raises(hvac.exceptions.InvalidPath):
        kv2.read_secret_version("app/one", mount_point=kv, raise_on_deleted_version=True)


def test_policy_crud_and_invalid_policy(vault, root):
    name = f"contract-{uuid.uuid4().hex[:8]}"
    text = 'path "kv/data/x/*" {\n  capabilities = ["read"]\n}\n'
    root.sys.create_or_update_acl_policy(name=name, policy=text)
    got = root.sys.read_acl_policy(name)["data"]
    assert got["name"] == name and "kv/data/x/*" in got["policy"]
    assert name in root.sys.list_acl_policies()["data"]["keys"]
    root.sys.delete_acl_policy(name)
    assert raw(vault, "GET", f"sys/policies/acl/{name}", vault[1]).status_code == 404
    bad = raw(
        vault,
        "PUT",
        f"sys/policies/acl/{name}-bad",
        vault[1],
        json={"policy": 'path "a" { capabilities = ["fly"] }'},
    )
    assert bad.status_code == 400


def test_write_only_policy_create_vs_update_and_no_read(vault, root, kv, policies):
    """HPCS's client policy: create+update under a prefix, no read."""
    writer = token_for(
        root, vault, policies(f'path "{kv}/data/client_a/*" {{\n  capabilities = ["create", "update"]\n}}\n')
    )
    creator = token_for(root, vault, policies(f'path "{kv}/data/client_a/*" {{ capabilities = ["create"] }}'))
    kv2 = writer.secrets.kv.v2
    kv2.create_or_update_secret("client_a/s1", secret={"key": "k"}, mount_point=kv)
    kv2.create_or_update_secret("client_a/s1", secret={"key": "k2"}, mount_point=kv)
    with pytest.raises(hvac.exceptions.Forbidden):
        kv2.read_secret_version("client_a/s1", mount_point=kv, raise_on_deleted_version=True)
    with pytest.raises(hvac.exceptions.Forbidden):
        kv2.create_or_update_secret("client_b/s1", secret={"key": "k"}, mount_point=kv)
    with pytest.raises(hvac.exceptions.Forbidden):  # the prefix rule does not cover the folder itself
        kv2.create_or_update_secret("client_a", secret={"key": "k"}, mount_point=kv)
    creator.secrets.kv.v2.create_or_update_secret("client_a/s2", secret={"key": "k"}, mount_point=kv)
    with pytest.raises(hvac.exceptions.Forbidden):  # existing: needs update
        creator.secrets.kv.v2.create_or_update_secret("client_a/s2", secret={"key": "k"}, mount_point=kv)
    resp = raw(vault, "GET", f"{kv}/data/client_a/s1", writer.token)
    assert resp.status_code == 403 and "permission denied" in " ".join(resp.json()["errors"])


def test_read_only_policy_on_exact_path(vault, root, kv, policies):
    """HPCS's per-secret policy: read on one exact path only."""
    root.secrets.kv.v2.create_or_update_secret("client_a/s1", secret={"key": "k"}, mount_point=kv)
    root.secrets.kv.v2.create_or_update_secret("client_a/s10", secret={"key": "k"}, mount_point=kv)
    reader = token_for(root, vault, policies(f'path "{kv}/data/client_a/s1" {{ capabilities = ["read"] }}'))
    kv2 = reader.secrets.kv.v2
    assert kv2.read_secret_version("client_a/s1", mount_point=kv, raise_on_deleted_version=True)["data"][
        "data"
    ]
    for path in ("client_a/s10", "client_a/s1/x"):
        with pytest.raises(hvac.exceptions.Forbidden):
            kv2.read_secret_version(path, mount_point=kv, raise_on_deleted_version=True)
    with pytest.raises(hvac.exceptions.Forbidden):
        kv2.create_or_update_secret("client_a/s1", secret={"key": "x"}, mount_point=kv)
    with pytest.raises(hvac.exceptions.Forbidden):
        kv2.list_secrets("client_a", mount_point=kv)


def test_glob_priority_segment_wildcard_and_deny(vault, root, kv, policies):
    for path in ("team/shared", "team/private", "other/shared", "team/deep/x"):
        root.secrets.kv.v2.create_or_update_secret(path, secret={"p": path}, mount_point=kv)
    name = policies(
        f'path "{kv}/data/team/*" {{ capabilities = ["read"] }}\n'
        f'path "{kv}/data/team/private" {{ capabilities = ["deny"] }}\n'
        f'path "{kv}/data/+/shared" {{ capabilities = ["read", "create", "update"] }}\n'
        f'path "{kv}/metadata/team/" {{ capabilities = ["list"] }}\n'
    )
    client = token_for(root, vault, name)
    kv2 = client.secrets.kv.v2

    def can_read(path: str) -> bool:
        try:
            kv2.read_secret_version(path, mount_point=kv, raise_on_deleted_version=True)
            return True
        except hvac.exceptions.Forbidden:
            return False

    assert can_read("team/shared") and can_read("other/shared") and can_read("team/deep/x")
    assert not can_read("team/private")  # exact deny beats the glob
    # team/shared: the glob rule's wildcard comes later than the segment rule's, so it wins (read only)
    with pytest.raises(hvac.exceptions.Forbidden):
        kv2.create_or_update_secret("team/shared", secret={"x": 1}, mount_point=kv)
    kv2.create_or_update_secret("other/shared", secret={"x": 1}, mount_point=kv)  # segment rule applies
    with pytest.raises(hvac.exceptions.Forbidden):
        kv2.read_secret_version("a/b/shared", mount_point=kv, raise_on_deleted_version=True)
    assert sorted(kv2.list_secrets("team", mount_point=kv)["data"]["keys"]) == ["deep/", "private", "shared"]
    with pytest.raises(hvac.exceptions.Forbidden):
        kv2.list_secrets("other", mount_point=kv)
    with pytest.raises(hvac.exceptions.Forbidden):  # no sys access beyond the default policy
        client.sys.create_or_update_acl_policy(name="x", policy='path "*" { capabilities = ["sudo"] }')


@pytest.fixture
def jwt_auth(root):
    """A JWT auth mount trusting a key this test holds, and a role bound like HPCS's."""
    path = f"jwt-{uuid.uuid4().hex[:8]}"
    key = ec.generate_private_key(ec.SECP256R1())
    pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    root.sys.enable_auth_method("jwt", path=path)
    root.auth.jwt.configure(jwt_validation_pubkeys=[pem], path=path)
    subject = "spiffe://hpcs.local/c/abc123456/workload"
    root.auth.jwt.create_role(
        name="client_abc123456",
        role_type="jwt",
        user_claim="sub",
        bound_audiences="TESTING",
        bound_subject=subject,
        token_policies="client_abc123456",
        allowed_redirect_uris=None,
        path=path,
    )
    yield path, key, subject
    root.sys.disable_auth_method(path)


def signed(key, **claims) -> str:
    now = int(time.time())
    body = {
        "sub": "spiffe://hpcs.local/c/abc123456/workload",
        "aud": ["TESTING"],
        "iat": now,
        "exp": now + 300,
    }
    body.update(claims)
    return jwt.encode(
        {k: v for k, v in body.items() if v is not None}, key, algorithm="ES256", headers={"kid": "k1"}
    )


def test_jwt_login_issues_token_with_role_policies(vault, root, jwt_auth):
    path, key, _ = jwt_auth
    client = hvac.Client(url=vault[0])
    auth = client.auth.jwt.jwt_login(role="client_abc123456", jwt=signed(key), path=path)["auth"]
    assert auth["client_token"] and auth["lease_duration"] > 0
    assert "client_abc123456" in auth["policies"] and "default" in auth["policies"]
    assert client.token == auth["client_token"]
    assert "client_abc123456" in client.lookup_token()["data"]["policies"]
    role = root.auth.jwt.read_role("client_abc123456", path=path)["data"]
    assert role["bound_subject"] == "spiffe://hpcs.local/c/abc123456/workload"
    assert role["bound_audiences"] == ["TESTING"] and role["role_type"] == "jwt"


@pytest.mark.parametrize(
    "case", ["wrong_audience", "expired", "wrong_subject", "other_key", "unknown_role", "garbage"]
)
def test_jwt_login_refusals(vault, jwt_auth, case):
    path, key, _ = jwt_auth
    role = "client_abc123456"
    token = signed(key)
    if case == "wrong_audience":
        token = signed(key, aud=["vault"])
    elif case == "expired":
        token = signed(key, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)
    elif case == "wrong_subject":
        token = signed(key, sub="spiffe://hpcs.local/c/other/workload")
    elif case == "other_key":
        token = signed(ec.generate_private_key(ec.SECP256R1()))
    elif case == "unknown_role":
        role = "no-such-role"
    elif case == "garbage":
        token = "not.a.jwt"
    resp = raw(vault, "POST", f"auth/{path}/login", json={"role": role, "jwt": token})
    assert resp.status_code == 400, resp.text
    assert resp.json()["errors"] and resp.json().get("auth") is None
