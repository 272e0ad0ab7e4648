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
    assert kv2.create_or_update_secret("app/one", secret={"v": "2"}, mount_point=kv, cas=1)["data"]["version"] == 2
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
    assert kv2.read_secret_version("client_a/s1", mount_point=kv, raise_on_deleted_version=True)["data"]["data"]
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
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm="ES256", headers={"kid": "k1"})


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


@pytest.mark.parametrize("case", ["wrong_audience", "expired", "wrong_subject", "other_key", "unknown_role", "garbage"])
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


# -- strictness as the real Vault (issue 13) -------------------------------------------------


def login(vault, path: str, role: str, token: str) -> requests.Response:
    return raw(vault, "POST", f"auth/{path}/login", json={"role": role, "jwt": token})


@pytest.mark.parametrize(
    ("claims", "accepted"),
    [
        ({"exp": -30}, True),  # within the 60 s clock-skew leeway
        ({"exp": -90}, False),  # beyond it: no extra expiration_leeway on a present exp
        ({"nbf": 90}, False),
        ({"nbf": 30}, True),
        ({"iat": 90}, False),  # issued in the future
        ({"iat": 30}, True),
        ({"iat": None, "exp": None}, False),  # none of iat/nbf/exp
        ({"iat": -300, "exp": None}, False),  # exp = iat + expiration_leeway (150 s), + 60 s skew: expired
        ({"iat": -100, "exp": None}, True),
    ],
)
def test_jwt_login_time_claims_use_only_the_clock_skew_leeway(vault, jwt_auth, claims, accepted):
    """hashicorp/cap jwt.go: exp/nbf/iat are checked with clock_skew_leeway (60 s) only;
    expiration_leeway (150 s) only stands in for a missing exp."""
    path, key, _ = jwt_auth
    now = int(time.time())
    token = signed(key, **{k: (None if v is None else now + v) for k, v in claims.items()})
    resp = login(vault, path, "client_abc123456", token)
    assert (resp.status_code == 200) is accepted, resp.text
    if not accepted:
        assert resp.status_code == 400 and "error validating token" in resp.json()["errors"][0]


def test_jwt_role_names_are_case_insensitive(vault, root, jwt_auth):
    path, key, subject = jwt_auth
    body = {"role_type": "jwt", "user_claim": "sub", "bound_audiences": "TESTING", "bound_subject": subject}
    assert raw(vault, "POST", f"auth/{path}/role/Mixed_Case", vault[1], json=body).status_code == 204
    keys = raw(vault, "LIST", f"auth/{path}/role", vault[1]).json()["data"]["keys"]
    assert "mixed_case" in keys and "Mixed_Case" not in keys
    assert raw(vault, "GET", f"auth/{path}/role/MIXED_CASE", vault[1]).status_code == 200
    assert login(vault, path, "mIxEd_CaSe", signed(key)).status_code == 200


def test_jwt_login_token_policies_include_default_unless_disabled(vault, root, jwt_auth):
    path, key, subject = jwt_auth
    auth = login(vault, path, "client_abc123456", signed(key)).json()["auth"]
    assert auth["token_policies"] == ["client_abc123456", "default"]
    body = {
        "role_type": "jwt",
        "user_claim": "sub",
        "bound_subject": subject,
        "bound_audiences": "TESTING",
        "token_policies": "client_abc123456",
        "token_no_default_policy": True,
    }
    assert raw(vault, "POST", f"auth/{path}/role/nodefault", vault[1], json=body).status_code == 204
    auth = login(vault, path, "nodefault", signed(key)).json()["auth"]
    assert auth["token_policies"] == ["client_abc123456"] and "default" not in auth["policies"]


def test_jwt_bound_claims_lists_globs_and_json_pointers(vault, jwt_auth):
    path, key, _ = jwt_auth

    def role(name: str, bound: dict, claims_type: str = "string") -> None:
        body = {
            "role_type": "jwt",
            "user_claim": "sub",
            "bound_audiences": "TESTING",
            "bound_claims": bound,
            "bound_claims_type": claims_type,
        }
        resp = raw(vault, "POST", f"auth/{path}/role/{name}", vault[1], json=body)
        assert resp.status_code == 204, resp.text

    role("listed", {"groups": ["admins", "ops"]})
    role("globbed", {"sub": "spiffe://hpcs.local/c/*/workload"}, "glob")
    role("pointer", {"/org/team": "data"})
    assert login(vault, path, "listed", signed(key, groups=["users", "ops"])).status_code == 200
    assert login(vault, path, "listed", signed(key, groups="ops")).status_code == 200
    assert login(vault, path, "listed", signed(key, groups=["users"])).status_code == 400
    assert login(vault, path, "listed", signed(key)).status_code == 400  # claim missing
    assert login(vault, path, "globbed", signed(key)).status_code == 200
    assert login(vault, path, "globbed", signed(key, sub="spiffe://hpcs.local/h/node1")).status_code == 400
    assert login(vault, path, "pointer", signed(key, org={"team": "data"})).status_code == 200
    refused = login(vault, path, "pointer", signed(key, org={"team": "other"}))
    assert refused.status_code == 400 and "error validating claims" in refused.json()["errors"][0]
    bad = raw(
        vault,
        "POST",
        f"auth/{path}/role/badglob",
        vault[1],
        json={"role_type": "jwt", "user_claim": "sub", "bound_claims": {"n": [1]}, "bound_claims_type": "glob"},
    )
    assert bad.status_code == 400


def test_oidc_role_needs_allowed_redirect_uris(vault, jwt_auth):
    path, _, _ = jwt_auth
    for body in ({"user_claim": "sub"}, {"role_type": "oidc", "user_claim": "sub"}):
        resp = raw(vault, "POST", f"auth/{path}/role/web", vault[1], json=body)
        assert resp.status_code == 400 and "allowed_redirect_uris" in resp.json()["errors"][0]
    ok = {"role_type": "oidc", "user_claim": "sub", "allowed_redirect_uris": "https://app.example/cb"}
    assert raw(vault, "POST", f"auth/{path}/role/web", vault[1], json=ok).status_code == 204


def test_kv2_delete_undelete_destroy(vault, root, kv):
    kv2 = root.secrets.kv.v2
    for v in ("1", "2", "3"):
        kv2.create_or_update_secret("k", secret={"v": v}, mount_point=kv)
    kv2.delete_secret_versions("k", versions=[1, 2], mount_point=kv)
    assert raw(vault, "GET", f"{kv}/data/k", vault[1], params={"version": 2}).status_code == 404
    kv2.undelete_secret_versions("k", versions=[2], mount_point=kv)
    back = kv2.read_secret_version("k", version=2, mount_point=kv, raise_on_deleted_version=True)
    assert back["data"]["data"] == {"v": "2"}
    kv2.destroy_secret_versions("k", versions=[2], mount_point=kv)
    gone = raw(vault, "GET", f"{kv}/data/k", vault[1], params={"version": 2})
    assert gone.status_code == 404 and gone.json()["data"]["metadata"]["destroyed"] is True
    kv2.undelete_secret_versions("k", versions=[2], mount_point=kv)  # a destroyed version stays destroyed
    assert raw(vault, "GET", f"{kv}/data/k", vault[1], params={"version": 2}).status_code == 404
    meta = kv2.read_secret_metadata("k", mount_point=kv)["data"]["versions"]
    assert meta["2"]["destroyed"] is True and meta["1"]["deletion_time"] and not meta["3"]["deletion_time"]
    for kind in ("delete", "undelete", "destroy"):
        resp = raw(vault, "POST", f"{kv}/{kind}/k", vault[1], json={})
        assert resp.status_code == 400 and "version number provided" in resp.json()["errors"][0].lower()
    assert raw(vault, "POST", f"{kv}/destroy/never-written", vault[1], json={"versions": [1]}).status_code == 204


def test_kv2_config_max_versions_and_cas_required(vault, root, kv):
    kv2 = root.secrets.kv.v2
    kv2.configure(max_versions=2, cas_required=True, mount_point=kv)
    cfg = kv2.read_configuration(mount_point=kv)["data"]
    assert cfg["max_versions"] == 2 and cfg["cas_required"] is True
    with pytest.raises(hvac.exceptions.InvalidRequest, match="check-and-set parameter required"):
        kv2.create_or_update_secret("c", secret={"v": "0"}, mount_point=kv)
    for n in range(3):
        kv2.create_or_update_secret("c", secret={"v": str(n)}, mount_point=kv, cas=n)
    meta = kv2.read_secret_metadata("c", mount_point=kv)["data"]
    assert meta["current_version"] == 3 and sorted(meta["versions"]) == ["2", "3"]
    assert meta["oldest_version"] == 2


@pytest.mark.parametrize("version", ["abc", "1.5", "-x"])
def test_kv2_read_with_a_non_integer_version_is_400(vault, root, kv, version):
    root.secrets.kv.v2.create_or_update_secret("v", secret={"v": "1"}, mount_point=kv)
    resp = raw(vault, "GET", f"{kv}/data/v", vault[1], params={"version": version})
    assert resp.status_code == 400, resp.text
    assert 'for field "version"' in resp.json()["errors"][0]


def test_token_renew_self_and_revoke_self(vault, root, policies):
    name = policies('path "kv/data/x" { capabilities = ["read"] }')
    client = token_for(root, vault, name)
    before = client.lookup_token()["data"]
    assert before["renewable"] is True and before["ttl"] <= 600
    renewed = client.auth.token.renew_self(increment="1h")["auth"]
    assert 3500 <= renewed["lease_duration"] <= 3600
    assert renewed["client_token"] == client.token and sorted(renewed["token_policies"]) == sorted(["default", name])
    assert client.lookup_token()["data"]["ttl"] > 600
    client.auth.token.revoke_self()
    assert not client.is_authenticated()


def test_jwt_token_renew_self(vault, jwt_auth):
    path, key, _ = jwt_auth
    token = login(vault, path, "client_abc123456", signed(key)).json()["auth"]["client_token"]
    resp = raw(vault, "POST", "auth/token/renew-self", token, json={"increment": "120s"})
    assert resp.status_code == 200, resp.text
    assert 110 <= resp.json()["auth"]["lease_duration"] <= 120


def test_jwt_login_checks_token_bound_cidrs(vault, jwt_auth):
    """path_login.go: the caller's address must be in token_bound_cidrs (permission denied)."""
    path, key, subject = jwt_auth
    for name, cidrs, status in (("far", "192.0.2.0/24", 403), ("near", "127.0.0.0/8", 200)):
        body = {
            "role_type": "jwt",
            "user_claim": "sub",
            "bound_audiences": "TESTING",
            "bound_subject": subject,
            "token_bound_cidrs": cidrs,
        }
        assert raw(vault, "POST", f"auth/{path}/role/{name}", vault[1], json=body).status_code == 204
        if os.environ.get("VAULT_ADDR") and name == "near":
            continue  # a remote Vault sees another address than loopback
        assert login(vault, path, name, signed(key)).status_code == status


def test_role_update_without_role_type_means_oidc(vault, jwt_auth):
    """path_role.go reads role_type with data.Get on every write: an update of a jwt role that
    leaves it out turns it into an oidc role, which needs allowed_redirect_uris."""
    path, _, _ = jwt_auth
    resp = raw(vault, "POST", f"auth/{path}/role/client_abc123456", vault[1], json={"token_ttl": "1h"})
    assert resp.status_code == 400 and "allowed_redirect_uris" in resp.json()["errors"][0]
    role = raw(vault, "GET", f"auth/{path}/role/client_abc123456", vault[1]).json()["data"]
    assert role["role_type"] == "jwt"  # the refused write changed nothing
