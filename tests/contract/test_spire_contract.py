"""SPIRE: the Workload API the pipeline uses to get JWT-SVIDs, and the server's OIDC discovery.

With ``SPIFFE_ENDPOINT_SOCKET`` set (a real agent whose workload entries include this process),
the Workload API tests run against it (``SPIRE_OIDC_URL`` for the discovery provider). Otherwise
a devstack SPIRE server is started and an agent stand-in is run the way the pipeline runs it. The
registration tests (which selectors get which SVID, join tokens used once, clean shutdown) need
the server's admin API and always run against the stand-in.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc
import jwt
import pytest
import requests
from spiffe import WorkloadApiClient
from spiffe._proto import workload_pb2, workload_pb2_grpc
from spiffe.workloadapi.errors import FetchJwtSvidError, ValidateJwtSvidError

from tests.contract.hpcs_support import Agent, SpireAdmin

pytestmark = pytest.mark.contract
TD = "hpcs.local"
HEADER = (("workload.spiffe.io", "true"),)


@pytest.fixture(scope="module")
def spire_server(devstack):
    env = devstack.start("spire")
    port = int(env["SDP_SPIRE_PORT"])
    token = (devstack.local / "spire" / "admin-token").read_text().strip()
    return {
        "url": f"http://127.0.0.1:{port}",
        "port": port,
        "admin": SpireAdmin(f"http://127.0.0.1:{port}", token),
    }


def start_agent(tmp_path, spire_server, alias: str) -> Agent:
    token = spire_server["admin"].join_token(spiffe_id=alias)
    agent = Agent(
        tmp_path / f"agent-{uuid.uuid4().hex[:6]}",
        server_address="127.0.0.1",
        server_port=spire_server["port"],
        trust_domain=TD,
        token=token,
    )
    agent.token = token
    agent.wait_ready()
    return agent


@pytest.fixture(scope="module")
def workload(spire_server, tmp_path_factory):
    """``(endpoint, spiffe_id, oidc_url)`` of a Workload API that has an identity for this process."""
    if os.environ.get("SPIFFE_ENDPOINT_SOCKET"):
        yield os.environ["SPIFFE_ENDPOINT_SOCKET"], None, os.environ.get("SPIRE_OIDC_URL")
        return
    alias = f"spiffe://{TD}/c/{uuid.uuid4().hex[:9]}"
    agent = start_agent(tmp_path_factory.mktemp("spire"), spire_server, alias)
    spiffe_id = f"{alias}/workload"
    assert spire_server["admin"].entry(spiffe_id, alias, [f"unix:uid:{os.getuid()}"]).status_code == 201
    yield agent.endpoint, spiffe_id, spire_server["url"]
    agent.stop()


def stub(endpoint: str):
    channel = grpc.insecure_channel(endpoint.replace("unix://", "unix:", 1))
    return channel, workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)


def test_fetch_jwt_svid_has_audience_subject_and_expiry(workload):
    endpoint, spiffe_id, _ = workload
    with WorkloadApiClient(socket_path=endpoint) as client:
        svid = client.fetch_jwt_svid(audience={"vault"})
    assert str(svid.spiffe_id).startswith("spiffe://")
    if spiffe_id:
        assert str(svid.spiffe_id) == spiffe_id
    assert svid.audience == {"vault"}
    assert svid.expiry > time.time() + 30
    header = jwt.get_unverified_header(svid.token)
    assert header["kid"] and header["alg"] in ("ES256", "ES384", "RS256", "PS256")
    claims = jwt.decode(svid.token, options={"verify_signature": False})
    assert claims["sub"] == str(svid.spiffe_id) and "vault" in claims["aud"] and claims["iat"] <= time.time()


def test_jwt_svid_verifies_against_bundle_and_oidc_jwks(workload):
    endpoint, _, oidc_url = workload
    with WorkloadApiClient(socket_path=endpoint) as client:
        svid = client.fetch_jwt_svid(audience={"vault"})
        bundles = client.fetch_jwt_bundles()
    td = str(svid.spiffe_id).split("/")[2]
    bundle = next(b for b in bundles.bundles if str(b.trust_domain) == td)
    kid = jwt.get_unverified_header(svid.token)["kid"]
    jwt.decode(
        svid.token,
        bundle.get_jwt_authority(kid),
        algorithms=["ES256", "ES384", "RS256", "PS256"],
        audience="vault",
    )
    if oidc_url:
        disco = requests.get(f"{oidc_url}/.well-known/openid-configuration", timeout=10).json()
        assert disco["jwks_uri"] and "id_token" in disco["response_types_supported"]
        keys = {k["kid"]: jwt.PyJWK(k).key for k in requests.get(disco["jwks_uri"], timeout=10).json()["keys"]}
        jwt.decode(svid.token, keys[kid], algorithms=["ES256", "ES384", "RS256", "PS256"], audience="vault")


def test_validate_jwt_svid_checks_audience(workload):
    endpoint, _, _ = workload
    with WorkloadApiClient(socket_path=endpoint) as client:
        svid = client.fetch_jwt_svid(audience={"vault"})
        assert str(client.validate_jwt_svid(svid.token, "vault").spiffe_id) == str(svid.spiffe_id)
        with pytest.raises(ValidateJwtSvidError):
            client.validate_jwt_svid(svid.token, "someone-else")
        with pytest.raises(ValidateJwtSvidError):
            client.validate_jwt_svid(svid.token[:-4] + "AAAA", "vault")


def test_security_header_and_audience_are_required(workload):
    endpoint, _, _ = workload
    channel, api = stub(endpoint)
    with channel:
        with pytest.raises(grpc.RpcError) as err:
            api.FetchJWTSVID(workload_pb2.JWTSVIDRequest(audience=["vault"]), timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "security header" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            api.FetchJWTSVID(workload_pb2.JWTSVIDRequest(audience=[]), metadata=HEADER, timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        resp = api.FetchJWTSVID(workload_pb2.JWTSVIDRequest(audience=["vault"]), metadata=HEADER, timeout=10)
        assert resp.svids and resp.svids[0].svid


@pytest.fixture
def open_dir():
    """A directory every user can traverse (the ``nobody`` client must reach the socket)."""
    path = tempfile.mkdtemp(prefix="spire-contract-")
    os.chmod(path, 0o755)
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)


def test_unregistered_uid_gets_no_svid(spire_server, open_dir):
    """Selectors must all match: an entry for another uid gives this process nothing."""
    alias = f"spiffe://{TD}/c/{uuid.uuid4().hex[:9]}"
    agent = start_agent(open_dir, spire_server, alias)
    try:
        other_uid = os.getuid() + 4242
        assert spire_server["admin"].entry(f"{alias}/workload", alias, [f"unix:uid:{other_uid}"]).status_code == 201
        # A partial match is no match: our uid plus a group we are not in.
        assert (
            spire_server["admin"]
            .entry(f"{alias}/partial", alias, [f"unix:uid:{os.getuid()}", "unix:gid:4243"])
            .status_code
            == 201
        )
        with WorkloadApiClient(socket_path=agent.endpoint) as client, pytest.raises(FetchJwtSvidError) as err:
            client.fetch_jwt_svid(audience={"vault"})
        assert "PERMISSION_DENIED" in str(err.value) or "no identity" in str(err.value)
        if os.getuid() == 0:  # a process of another user, registered or not
            nobody = pwd.getpwnam("nobody").pw_uid
            # Import as root (the venv may not be readable by nobody), then drop to nobody and ask.
            code = (
                "import os\nfrom spiffe import WorkloadApiClient\n"
                f"os.setgroups([]); os.setgid({nobody}); os.setuid({nobody})\n"
                f"c = WorkloadApiClient(socket_path={agent.endpoint!r})\n"
                "print(c.fetch_jwt_svid(audience={'vault'}).spiffe_id)\n"
            )
            run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
            assert run.returncode != 0 and "no identity issued" in run.stderr, run.stderr
            assert spire_server["admin"].entry(f"{alias}/nobody", alias, [f"unix:uid:{nobody}"]).status_code == 201
            run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
            assert run.returncode == 0, run.stderr
            assert run.stdout.strip() == f"{alias}/nobody"
    finally:
        agent.stop()


def test_user_and_group_selectors_and_subject_choice(spire_server, tmp_path):
    alias = f"spiffe://{TD}/h/node{uuid.uuid4().hex[:6]}"
    agent = start_agent(tmp_path, spire_server, alias)
    user = pwd.getpwuid(os.getuid()).pw_name
    groups = [g for g in open(f"/proc/{os.getpid()}/status").read().split("Groups:")[1].split("\n")[0].split()]
    import grp

    try:
        admin = spire_server["admin"]
        assert admin.entry(f"{alias}/by-user", alias, [f"unix:user:{user}"]).status_code == 201
        assert admin.entry(f"{alias}/by-user", alias, [f"unix:user:{user}"]).status_code == 409  # similar entry
        if groups:
            name = grp.getgrgid(int(groups[0])).gr_name
            assert admin.entry(f"{alias}/by-group", alias, [f"unix:supplementary_group:{name}"]).status_code == 201
        with WorkloadApiClient(socket_path=agent.endpoint) as client:
            ids = {str(s.spiffe_id) for s in client.fetch_jwt_svids(audience={"vault"})}
            assert f"{alias}/by-user" in ids
            if groups:
                assert f"{alias}/by-group" in ids
            one = client.fetch_jwt_svid(audience={"vault"}, subject=f"{alias}/by-user")
            assert str(one.spiffe_id) == f"{alias}/by-user"
    finally:
        agent.stop()


def test_entries_of_other_agents_are_not_issued_descendants_are(spire_server, tmp_path):
    admin = spire_server["admin"]
    mine = f"spiffe://{TD}/c/{uuid.uuid4().hex[:9]}"
    other = f"spiffe://{TD}/c/{uuid.uuid4().hex[:9]}"
    admin.join_token(spiffe_id=other)  # another agent's alias, never attested here
    agent = start_agent(tmp_path, spire_server, mine)
    try:
        uid = f"unix:uid:{os.getuid()}"
        assert admin.entry(f"{other}/workload", other, [uid]).status_code == 201
        # A descendant: an intermediate (never matching) entry under our alias, a workload under it.
        assert admin.entry(f"{mine}/group", mine, ["spiffe_id:unused"]).status_code == 201
        assert admin.entry(f"{mine}/group/leaf", f"{mine}/group", [uid]).status_code == 201
        with WorkloadApiClient(socket_path=agent.endpoint) as client:
            ids = {str(s.spiffe_id) for s in client.fetch_jwt_svids(audience={"vault"})}
        assert ids == {f"{mine}/group/leaf"}
    finally:
        agent.stop()


def test_join_token_is_redeemed_once_and_sigterm_removes_socket(spire_server, tmp_path):
    alias = f"spiffe://{TD}/c/{uuid.uuid4().hex[:9]}"
    first = start_agent(tmp_path / "a", spire_server, alias)
    assert first.stop() == 0
    assert not first.socket.exists()
    second = Agent(
        tmp_path / "b",
        server_address="127.0.0.1",
        server_port=spire_server["port"],
        trust_domain=TD,
        token=first.token,
    )
    assert second.proc.wait(20) != 0
    assert "already been used" in second.log.read_text()
    resp = requests.post(f"{spire_server['url']}/admin/v1/join_tokens", json={}, timeout=10)
    assert resp.status_code == 401  # the admin API needs its credentials


# -- strictness as the real SPIRE (issue 13) -------------------------------------------------


def test_oidc_discovery_document_as_spire_serves_it(workload):
    """support/oidc-discovery-provider/handler.go: fixed fields; keys carry alg, and use only
    with set_key_use."""
    _, _, oidc_url = workload
    if not oidc_url:
        pytest.fail("SPIRE_OIDC_URL must be set with SPIFFE_ENDPOINT_SOCKET")
    disco = requests.get(f"{oidc_url}/.well-known/openid-configuration", timeout=10).json()
    assert disco["subject_types_supported"] == ["public"]
    assert disco["response_types_supported"] == ["id_token"]
    assert disco["id_token_signing_alg_values_supported"] == ["RS256", "ES256", "ES384"]
    assert disco["authorization_endpoint"] == ""
    assert set(disco) == {
        "issuer",
        "jwks_uri",
        "authorization_endpoint",
        "response_types_supported",
        "subject_types_supported",
        "id_token_signing_alg_values_supported",
    }
    keys = requests.get(disco["jwks_uri"], timeout=10)
    assert "no-store" in keys.headers.get("Cache-Control", "")
    for key in keys.json()["keys"]:
        assert key["alg"] and key["kid"]


def test_jwt_bundles_need_an_identity(spire_server, tmp_path):
    """handler.go sendJWTBundlesResponse: a caller no entry matches gets PermissionDenied."""
    alias = f"spiffe://{TD}/c/{uuid.uuid4().hex[:9]}"
    agent = start_agent(tmp_path, spire_server, alias)  # no workload entry for this uid
    try:
        channel, api = stub(agent.endpoint)
        with channel:
            with pytest.raises(grpc.RpcError) as err:
                next(iter(api.FetchJWTBundles(workload_pb2.JWTBundlesRequest(), metadata=HEADER, timeout=10)))
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "no identity issued" in err.value.details()
        assert spire_server["admin"].entry(f"{alias}/w", alias, [f"unix:uid:{os.getuid()}"]).status_code == 201
        with WorkloadApiClient(socket_path=agent.endpoint) as client:
            assert client.fetch_jwt_bundles().bundles
    finally:
        agent.stop()


def server_key(devstack):
    """The stand-in server's JWT signing key and kid (to forge otherwise valid SVIDs)."""
    from cryptography.hazmat.primitives import serialization

    keys = devstack.local / "spire" / "keys"
    key = serialization.load_pem_private_key((keys / "jwt_signing_key.pem").read_bytes(), password=None)
    return key, (keys / "jwt_signing_key.kid").read_text().strip()


def test_validate_jwt_svid_looks_keys_up_by_trust_domain_and_kid(spire_server, devstack, tmp_path):
    """pkg/common/jwtsvid/validate.go: the subject must be a SPIFFE ID and the key is found by
    its trust domain AND the kid; the trust domain's own key signing for another one is refused."""
    alias = f"spiffe://{TD}/c/{uuid.uuid4().hex[:9]}"
    agent = start_agent(tmp_path, spire_server, alias)
    spire_server["admin"].entry(f"{alias}/w", alias, [f"unix:uid:{os.getuid()}"])
    key, kid = server_key(devstack)
    now = int(time.time())

    def forged(sub: str) -> str:
        claims = {"sub": sub, "aud": ["vault"], "iat": now, "exp": now + 300}
        return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid})

    try:
        with WorkloadApiClient(socket_path=agent.endpoint) as client:
            assert str(client.validate_jwt_svid(forged(f"spiffe://{TD}/x"), "vault").spiffe_id) == f"spiffe://{TD}/x"
        channel, api = stub(agent.endpoint)
        with channel:
            for sub, why in (
                ("spiffe://other.example/x", "no keys found for trust domain"),
                ("not-a-spiffe-id", "invalid subject claim"),
            ):
                req = workload_pb2.ValidateJWTSVIDRequest(audience="vault", svid=forged(sub))
                with pytest.raises(grpc.RpcError) as err:
                    api.ValidateJWTSVID(req, metadata=HEADER, timeout=10)
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert why in err.value.details(), err.value.details()
    finally:
        agent.stop()


def test_fetch_jwt_svid_refuses_an_invalid_requested_spiffe_id(workload):
    """handler.go FetchJWTSVID: a requested SPIFFE ID that does not parse is InvalidArgument."""
    endpoint, _, _ = workload
    channel, api = stub(endpoint)
    with channel:
        with pytest.raises(grpc.RpcError) as err:
            api.FetchJWTSVID(
                workload_pb2.JWTSVIDRequest(audience=["vault"], spiffe_id="not a spiffe id"),
                metadata=HEADER,
                timeout=10,
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "invalid requested SPIFFE ID" in err.value.details()
