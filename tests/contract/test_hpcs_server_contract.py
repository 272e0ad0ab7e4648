"""HPCS server: client registration, workload creation, and what they grant in SPIRE and Vault.

Against the real system when ``HPCS_SERVER_URL`` is set, together with ``VAULT_ADDR``,
``VAULT_TOKEN``, ``SPIRE_SERVER_ADDRESS``, ``SPIRE_SERVER_PORT``, ``HPCS_TRUST_DOMAIN`` and
``SPIRE_AGENT_COMMAND`` (e.g. ``spire-agent run -config {config} -joinToken {token}``); the real
server registers client workloads as ``unix:uid:0``, so run it as root there. Otherwise against
the devstack stand-ins (Vault, SPIRE server, HPCS server), with agents run as the pipeline runs
them. CSC's server derives the client id from ``Remote-Addr``, which Quart sets to the peer
address (a header the caller sends is ignored); against the stand-in each test connects from its
own loopback address (127.x.y.z) so that it is a new client.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import time
import uuid

import hvac
import hvac.exceptions
import pytest
import requests
from spiffe import WorkloadApiClient

from tests.contract.hpcs_support import Agent

pytestmark = pytest.mark.contract
REAL = bool(os.environ.get("HPCS_SERVER_URL"))


@pytest.fixture(scope="module")
def hpcs(devstack):
    if REAL:
        return {
            "url": os.environ["HPCS_SERVER_URL"].rstrip("/"),
            "vault": os.environ["VAULT_ADDR"].rstrip("/"),
            "vault_token": os.environ["VAULT_TOKEN"],
            "spire_address": os.environ["SPIRE_SERVER_ADDRESS"],
            "spire_port": int(os.environ["SPIRE_SERVER_PORT"]),
            "td": os.environ.get("HPCS_TRUST_DOMAIN", "hpcs.local"),
            "audience": os.environ.get("HPCS_AUDIENCE", "TESTING"),
        }
    env = devstack.start("hpcs_server")
    return {
        "url": f"http://127.0.0.1:{env['SDP_HPCS_PORT']}",
        "vault": f"http://127.0.0.1:{env['SDP_VAULT_PORT']}",
        "vault_token": "devstack-root-token",
        "spire_address": "127.0.0.1",
        "spire_port": int(env["SDP_SPIRE_PORT"]),
        "td": "hpcs.local",
        "audience": "TESTING",
    }


class SourceAddressAdapter(requests.adapters.HTTPAdapter):
    """Connects from a given local address (any 127.0.0.0/8 address works on loopback)."""

    def __init__(self, source: str):
        self.source = source
        super().__init__()

    def init_poolmanager(self, connections, maxsize, block=False, **kwargs):
        super().init_poolmanager(connections, maxsize, block, source_address=(self.source, 0), **kwargs)


def loopback_address() -> str:
    n = uuid.uuid4().int
    return f"127.{1 + n % 250}.{1 + (n >> 8) % 250}.{1 + (n >> 16) % 250}"


@pytest.fixture
def client_addr():
    """The local address making this test a new HPCS client (stand-in), or None (real server)."""
    return None if REAL else loopback_address()


@pytest.fixture
def agents(tmp_path, hpcs):
    started: list[Agent] = []

    def start(token: str) -> Agent:
        agent = Agent(
            tmp_path / f"agent{len(started)}",
            server_address=hpcs["spire_address"],
            server_port=hpcs["spire_port"],
            trust_domain=hpcs["td"],
            token=token,
        )
        started.append(agent)
        agent.wait_ready()
        return agent

    yield start
    for agent in started:
        agent.stop()


def post(hpcs, path: str, source: str | None, headers: dict | None = None, **kwargs) -> requests.Response:
    with requests.Session() as session:
        if source:
            session.mount("http://", SourceAddressAdapter(source))
        return session.post(f"{hpcs['url']}{path}", headers=headers, timeout=30, **kwargs)


def svid(agent: Agent, audience: str, subject: str | None = None):
    with WorkloadApiClient(socket_path=agent.endpoint) as client:
        return client.fetch_jwt_svid(audience={audience}, subject=subject)


def test_register_then_create_workloads_grants_exactly_what_hpcs_grants(hpcs, client_addr, agents):
    me = pwd.getpwuid(os.getuid()).pw_name
    td, aud = hpcs["td"], hpcs["audience"]

    reg = post(hpcs, "/api/client/register", client_addr)
    assert reg.status_code == 200
    body = reg.json()
    assert body["success"] is True and len(body["client_id"]) == 9 and body["token"]
    client_id = body["client_id"]
    if client_addr:
        assert client_id == hashlib.sha256(client_addr.encode()).hexdigest()[:9]
    assert body["spiffeID"] == f"spiffe://{td}/c/{client_id}"

    client_agent = agents(body["token"])
    client_svid = svid(client_agent, aud)
    assert str(client_svid.spiffe_id) == f"spiffe://{td}/c/{client_id}/workload"

    secret = f"ds-{uuid.uuid4().hex[:8]}.c4gh"
    writer = hvac.Client(url=hpcs["vault"])
    writer.auth.jwt.jwt_login(role=f"client_{client_id}", jwt=client_svid.token)
    writer.secrets.kv.v2.create_or_update_secret(
        f"client_{client_id}/{secret}", secret={"key": "s3cr3t"}, mount_point="kv"
    )
    writer.secrets.kv.v2.create_or_update_secret(
        f"client_{client_id}/{secret}", secret={"key": "s3cr3t"}, mount_point="kv"
    )  # update too
    with pytest.raises(hvac.exceptions.Forbidden):  # the client can write but never read
        writer.secrets.kv.v2.read_secret_version(
            f"client_{client_id}/{secret}", mount_point="kv", raise_on_deleted_version=True
        )

    node = f"node{uuid.uuid4().hex[:6]}"
    resp = post(
        hpcs,
        "/api/client/create-workloads",
        client_addr,
        json={
            "jwt": client_svid.token,
            "secret": secret,
            "users": [me],
            "groups": None,
            "compute_nodes": [node],
        },
    )
    assert resp.status_code == 200, resp.text
    created = resp.json()
    assert created["success"] is True
    assert created["clientID"] == client_id
    assert created["spiffeID"] == f"spiffe://{td}/c/{client_id}/s/{secret}"
    assert created["compute_nodes_added"] == {node: {"users": [me], "groups": []}}
    assert created["secrets_path"] == f"client_{client_id}/{secret}"
    assert created["user_role"] == f"client_{client_id}-{secret}"

    # The client's own agent does not get the secret's identity: it belongs under the node's agent.
    with pytest.raises(Exception):  # noqa: B017 - FetchJwtSvidError
        svid(client_agent, aud, subject=created["spiffeID"])

    node_token = requests.post(f"{hpcs['url']}/api/agents/token", params={"hostname": node}, timeout=30).json()
    assert node_token["success"] is True and node_token["spiffeID"] == f"spiffe://{td}/h/{node}"
    node_agent = agents(node_token["token"])
    user_svid = svid(node_agent, aud)
    assert str(user_svid.spiffe_id) == created["spiffeID"]

    reader = hvac.Client(url=hpcs["vault"])
    reader.auth.jwt.jwt_login(role=created["user_role"], jwt=user_svid.token)
    got = reader.secrets.kv.v2.read_secret_version(
        created["secrets_path"], mount_point="kv", raise_on_deleted_version=True
    )
    assert got["data"]["data"] == {"key": "s3cr3t"}
    with pytest.raises(hvac.exceptions.Forbidden):
        reader.secrets.kv.v2.create_or_update_secret(created["secrets_path"], secret={"k": 1}, mount_point="kv")
    with pytest.raises(hvac.exceptions.InvalidRequest):  # the client's SVID is not bound to the user role
        hvac.Client(url=hpcs["vault"]).auth.jwt.jwt_login(role=created["user_role"], jwt=client_svid.token)
    with pytest.raises(hvac.exceptions.InvalidRequest):  # an SVID for another audience is refused
        hvac.Client(url=hpcs["vault"]).auth.jwt.jwt_login(
            role=created["user_role"], jwt=svid(node_agent, "not-hpcs").token
        )

    policy = hvac.Client(url=hpcs["vault"], token=hpcs["vault_token"]).sys.read_acl_policy(f"client_{client_id}")[
        "data"
    ]["policy"]
    assert f"kv/data/client_{client_id}/*" in policy and '"read"' not in policy


def test_create_workloads_refusals(hpcs, client_addr, agents):
    aud = hpcs["audience"]
    reg = post(hpcs, "/api/client/register", client_addr).json()
    client_svid = svid(agents(reg["token"]), aud)
    good = {
        "jwt": client_svid.token,
        "secret": "ds1",
        "users": ["alice"],
        "groups": ["project_1"],
        "compute_nodes": ["node1"],
    }

    garbage = post(hpcs, "/api/client/create-workloads", client_addr, json={**good, "jwt": "not-a-jwt"})
    assert garbage.status_code >= 400  # CSC's server lets the validation error escape: 500

    if client_addr:  # someone else's SVID (stand-in: another local address is another client)
        other = post(hpcs, "/api/client/create-workloads", loopback_address(), json=good)
        assert other.status_code == 200 and other.json()["success"] is False
        assert "doesn't match" in other.json()["message"]
        for field, value in (
            ("users", ["Bad User"]),
            ("groups", ["x;y"]),
            ("compute_nodes", ["../n"]),
            ("secret", "a/b"),
        ):
            bad = post(hpcs, "/api/client/create-workloads", client_addr, json={**good, field: value})
            assert bad.status_code == 400 and bad.json()["success"] is False, (field, bad.text)
        nobody = post(hpcs, "/api/client/create-workloads", client_addr, json={**good, "users": None, "groups": None})
        assert nobody.status_code == 400

    # CSC's server indexes data["users"], data["groups"], ... : a missing key is a KeyError, 500
    for field in ("users", "groups", "secret", "compute_nodes", "jwt"):
        body = {k: v for k, v in good.items() if k != field}
        missing = post(hpcs, "/api/client/create-workloads", client_addr, json=body)
        assert missing.status_code == 500, (field, missing.text)
    # null users (or groups) is what CSC's server accepts: the other list is used
    only_users = post(hpcs, "/api/client/create-workloads", client_addr, json={**good, "groups": None})
    assert only_users.status_code == 200 and only_users.json()["success"] is True, only_users.text

    no_host = requests.post(f"{hpcs['url']}/api/agents/token", timeout=30)
    assert no_host.status_code == 200 and no_host.json()["success"] is False


@pytest.mark.skipif(REAL, reason="needs two local addresses reaching the server")
def test_client_id_is_the_peer_address_not_a_remote_addr_header(hpcs):
    """Quart sets Remote-Addr from the connection before the request's own headers: a client
    cannot pick another client's id by sending the header."""
    source = loopback_address()
    reg = post(hpcs, "/api/client/register", source, headers={"Remote-Addr": "192.0.2.7"}).json()
    assert reg["client_id"] == hashlib.sha256(source.encode()).hexdigest()[:9]
    assert reg["client_id"] != hashlib.sha256(b"192.0.2.7").hexdigest()[:9]


@pytest.mark.skipif(REAL, reason="forges SVIDs with the stand-in SPIRE server's signing key")
def test_an_svid_of_a_foreign_trust_domain_or_non_spiffe_subject_is_refused(hpcs, client_addr, agents, devstack):
    """CSC validates through the agent's ValidateJWTSVID: keys are looked up by the subject's trust
    domain and kid, so an SVID signed with the server's own key but naming another trust domain (or a
    non-SPIFFE subject) does not validate."""
    import jwt as pyjwt
    from cryptography.hazmat.primitives import serialization

    reg = post(hpcs, "/api/client/register", client_addr).json()
    keys = devstack.local / "spire" / "keys"
    key = serialization.load_pem_private_key((keys / "jwt_signing_key.pem").read_bytes(), password=None)
    kid = (keys / "jwt_signing_key.kid").read_text().strip()
    now = int(time.time())
    for sub, ok in (
        (f"spiffe://{hpcs['td']}/c/{reg['client_id']}/workload", True),
        (f"spiffe://other.example/c/{reg['client_id']}/workload", False),
        (f"c/{reg['client_id']}/workload", False),
    ):
        forged = pyjwt.encode(
            {"sub": sub, "aud": [hpcs["audience"]], "exp": now + 300, "iat": now},
            key,
            algorithm="ES256",
            headers={"kid": kid},
        )
        body = {"jwt": forged, "secret": "s1", "users": ["alice"], "groups": None, "compute_nodes": ["n1"]}
        resp = post(hpcs, "/api/client/create-workloads", client_addr, json=body)
        if ok:
            assert resp.status_code == 200 and resp.json()["success"] is True, resp.text
        else:
            assert resp.status_code == 500 and not resp.json().get("success"), (sub, resp.text)
