"""CSC HPCS server stand-in (``server/app.py`` of github.com/CSCfi/HPCS), same routes and JSON.

* ``POST /api/agents/token?hostname=<node>``: join token for a compute node's agent, whose
  SPIFFE ID becomes ``spiffe://<td>/h/<node>``.
* ``POST /api/client/register``: client id = first 9 hex digits of sha256 of the ``Remote-Addr``
  header, which Quart sets to the peer address (a header sent by the caller is ignored);
  writes the Vault policy ``client_<id>`` (create+update on ``kv/data/client_<id>/*``),
  a join token for the client's agent (``spiffe://<td>/c/<id>``), the workload entry
  ``spiffe://<td>/c/<id>/workload`` under that agent with selector ``unix:uid:<uid>`` (CSC
  registers ``unix:uid:0`` because its client containers run as root; the uid is configurable
  here) and the Vault JWT role ``client_<id>`` bound to the workload's SPIFFE ID.
* ``POST /api/client/create-workloads`` ``{jwt, secret, users, groups, compute_nodes}``: checks the
  client's JWT-SVID, then for each node registers ``spiffe://<td>/c/<id>/s/<secret>`` under the
  node's agent ``spiffe://<td>/h/<node>`` once per user (``unix:user:``) and group
  (``unix:supplementary_group:``), writes the read-only policy ``client_<id>/<secret>`` and the
  role ``client_<id>-<secret>``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from typing import Any

import aiohttp
import jwt as pyjwt
from aiohttp import web

from devstack.spire.common import JwtSvidError, validate_jwt_svid

log = logging.getLogger("devstack.hpcs_server")

# The UNIX name rule of CSC's client (utils/ship_a_key.py), applied to users, groups and nodes.
UNIX_NAME = re.compile(r"^[a-z_]([a-z0-9_-]{0,31}|[a-z0-9_-]{0,30}\$)$")
SECRET_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
JOIN_TOKEN_TTL = 600


class UpstreamError(Exception):
    """Vault or the SPIRE server refused or failed a call."""


class HPCSServer:
    def __init__(
        self,
        *,
        vault_url: str,
        vault_token: str,
        spire_url: str,
        spire_admin_token: str,
        trust_domain: str,
        workload_uid: int,
        audience: str = "TESTING",
        kv_mount: str = "kv",
        jwt_mount: str = "jwt",
    ):
        self.vault_url = vault_url.rstrip("/")
        self.vault_token = vault_token
        self.spire_url = spire_url.rstrip("/")
        self.spire_admin_token = spire_admin_token
        self.trust_domain = trust_domain
        self.workload_uid = workload_uid
        self.audience = audience
        self.kv_mount = kv_mount
        self.jwt_mount = jwt_mount
        self.session: aiohttp.ClientSession | None = None

    # -- upstream calls --------------------------------------------------------------------

    async def start(self, app: web.Application) -> None:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20))

    async def close(self, app: web.Application) -> None:
        if self.session:
            await self.session.close()

    async def vault(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        async with self.session.request(
            method, f"{self.vault_url}/v1/{path}", json=body, headers={"X-Vault-Token": self.vault_token}
        ) as resp:
            text = await resp.text()
            data = json.loads(text) if text.strip() else None
            if resp.status >= 400 and resp.status != 404:
                raise UpstreamError(f"vault {method} {path}: HTTP {resp.status} {data}")
            return resp.status, data

    async def spire(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.spire_admin_token}"}
        async with self.session.request(method, f"{self.spire_url}{path}", json=body, headers=headers) as resp:
            data = await resp.json(content_type=None)
            if resp.status >= 400 and resp.status != 409:
                raise UpstreamError(f"spire {method} {path}: HTTP {resp.status} {data}")
            return resp.status, data

    async def bootstrap_vault(self) -> None:
        """What HPCS's deployment does once: JWT auth trusting SPIRE's OIDC provider, KV v2 at ``kv``."""
        _, auths = await self.vault("GET", "sys/auth")
        if f"{self.jwt_mount}/" not in (auths or {}).get("data", {}):
            await self.vault("POST", f"sys/auth/{self.jwt_mount}", {"type": "jwt"})
        await self.vault("POST", f"auth/{self.jwt_mount}/config", {"oidc_discovery_url": self.spire_url})
        _, mounts = await self.vault("GET", "sys/mounts")
        if f"{self.kv_mount}/" not in (mounts or {}).get("data", {}):
            await self.vault("POST", f"sys/mounts/{self.kv_mount}", {"type": "kv", "options": {"version": "2"}})

    async def token_generate(self, spiffe_id: str) -> str:
        _, data = await self.spire("POST", "/admin/v1/join_tokens", {"spiffe_id": spiffe_id, "ttl": JOIN_TOKEN_TTL})
        return data["value"]

    async def entry_create(self, parent_id: str, spiffe_id: str, selectors: list[str]) -> None:
        """Create an entry; an existing similar entry is fine (as CSC's server treats it)."""
        await self.spire(
            "POST",
            "/admin/v1/entries",
            {"parent_id": parent_id, "spiffe_id": spiffe_id, "selectors": selectors},
        )

    async def write_policy(self, name: str, path: str, capabilities: list[str]) -> None:
        caps = ",".join(f'"{c}"' for c in capabilities)
        policy = f'\n        path "{path}" {{\n            capabilities = [{caps}]\n        }}\n    '
        await self.vault("PUT", f"sys/policies/acl/{name}", {"policy": policy})

    async def write_role(self, name: str, spiffe_id: str, policy: str) -> None:
        await self.vault(
            "POST",
            f"auth/{self.jwt_mount}/role/{name}",
            {
                "role_type": "jwt",
                "user_claim": "sub",
                "bound_audiences": self.audience,
                "bound_subject": spiffe_id,
                "token_policies": policy,
            },
        )

    async def validate_jwt_svid(self, token: str) -> str:
        """The SPIFFE ID of a valid JWT-SVID for our audience (signature from SPIRE's JWKS)."""
        async with self.session.get(f"{self.spire_url}/keys") as resp:
            jwks = await resp.json(content_type=None)
        # CSC validates through its agent's ValidateJWTSVID (spire pkg/common/jwtsvid/validate.go):
        # keys are looked up by the subject's trust domain and the kid, the subject must be a
        # SPIFFE ID; the server trusts only its own trust domain's bundle.
        keys = {k.get("kid"): pyjwt.PyJWK(k).key for k in jwks.get("keys", [])}
        subject, _ = validate_jwt_svid(token, {self.trust_domain: keys}, self.audience)
        return subject

    # -- HTTP ------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.on_startup.append(self.start)
        app.on_cleanup.append(self.close)
        app.router.add_post("/api/agents/token", self.agents_token)
        app.router.add_post("/api/client/register", self.client_register)
        app.router.add_post("/api/client/create-workloads", self.create_workloads)
        return app

    @staticmethod
    def client_id(request: web.Request) -> str:
        """CSC server/app.py: ``sha256(request.headers.get("Remote-Addr"))[:9]``. Quart
        (src/quart/asgi.py ``_create_request_from_scope``) sets ``Remote-Addr`` to the ASGI
        client's address *before* adding the request's own headers, and ``get`` returns the
        first value: the header is always there and is the peer address; a ``Remote-Addr`` the
        caller sends is ignored."""
        addr = request.remote or "<local>"
        return hashlib.sha256(addr.encode()).hexdigest()[0:9]

    async def agents_token(self, request: web.Request) -> web.Response:
        hostname = request.query.get("hostname")
        if hostname is not None:
            if not UNIX_NAME.match(hostname):
                return web.json_response({"success": False, "message": f"invalid hostname {hostname!r}"}, status=400)
            spiffe_id = f"spiffe://{self.trust_domain}/h/{hostname}"
            try:
                token = await self.token_generate(spiffe_id)
            except (UpstreamError, aiohttp.ClientError) as exc:
                log.error("token generation failed: %s", exc)
            else:
                return web.json_response(
                    {
                        "success": True,
                        "message": "spiffeID created, token expires in 60 seconds",
                        "spiffeID": spiffe_id,
                        "token": token,
                    }
                )
        return web.json_response({"success": False, "message": "Please provide the hostname bound to the token."})

    async def client_register(self, request: web.Request) -> web.Response:
        client_id = self.client_id(request)
        agent_id = f"spiffe://{self.trust_domain}/c/{client_id}"
        workload_id = f"{agent_id}/workload"
        try:
            await self.write_policy(
                f"client_{client_id}", f"{self.kv_mount}/data/client_{client_id}/*", ["create", "update"]
            )
            token = await self.token_generate(agent_id)
        except (UpstreamError, aiohttp.ClientError) as exc:
            log.error("client registration failed: %s", exc)
            return web.json_response({"success": "false", "message": "Error while creating agent's token"})
        try:
            await self.write_role(f"client_{client_id}", workload_id, f"client_{client_id}")
            await self.entry_create(agent_id, workload_id, [f"unix:uid:{self.workload_uid}"])
        except (UpstreamError, aiohttp.ClientError) as exc:
            log.error("workload registration failed: %s", exc)
            return web.json_response(
                {
                    "success": False,
                    "message": "token created, it expires in 60 seconds. An error occured while registering workloads.",
                    "client_id": client_id,
                    "token": token,
                }
            )
        log.info("registered client %s", client_id)
        return web.json_response(
            {
                "success": True,
                "message": "token created,it expires in 60 seconds. Workloads have been registered too.",
                "client_id": client_id,
                "spiffeID": agent_id,
                "token": token,
            }
        )

    @staticmethod
    def server_error(message: str) -> web.Response:
        """What CSC's Quart app answers when a handler raises: 500."""
        log.warning("request refused as CSC's server fails on it: %s", message)
        return web.json_response({"success": False, "message": f"500 Internal Server Error: {message}"}, status=500)

    @staticmethod
    def bad_request(message: str) -> web.Response:
        return web.json_response({"success": False, "message": message}, status=400)

    async def create_workloads(self, request: web.Request) -> web.Response:
        try:
            data = await request.json()
        except (json.JSONDecodeError, ValueError):
            return self.bad_request("the body must be a JSON object")
        if not isinstance(data, dict):
            return self.bad_request("the body must be a JSON object")
        # CSC server/app.py reads data["secret"], data["jwt"], data["compute_nodes"], data["users"]
        # and data["groups"] with [] (users/groups may be null, not absent): a missing key is a
        # KeyError, which Quart answers with 500.
        missing = [k for k in ("jwt", "secret", "users", "groups", "compute_nodes") if k not in data]
        if missing:
            return self.server_error(f"KeyError: {', '.join(repr(k) for k in missing)}")
        if not data["jwt"] or not data["secret"] or not data["compute_nodes"]:
            return self.bad_request("jwt, secret and compute_nodes must not be empty")
        users, groups, nodes = data.get("users") or [], data.get("groups") or [], data["compute_nodes"]
        if not all(isinstance(v, list) for v in (users, groups, nodes)):
            return self.bad_request("users, groups and compute_nodes must be lists")
        if not users and not groups:
            return self.bad_request("please provide at least one user or one group to give the access to the key")
        for kind, names in (("username", users), ("groupname", groups), ("compute node name", nodes)):
            for name in names:
                if not isinstance(name, str) or not UNIX_NAME.match(name):
                    return self.bad_request(f"invalid {kind} {name!r}")
        secret = data["secret"]
        if not isinstance(secret, str) or not SECRET_NAME.match(secret) or secret in (".", ".."):
            return self.bad_request(f"invalid secret name {secret!r}")

        client_id = self.client_id(request)
        spiffe_id = f"spiffe://{self.trust_domain}/c/{client_id}/s/{secret}"
        try:
            subject = await self.validate_jwt_svid(data["jwt"])
        except (JwtSvidError, pyjwt.PyJWTError, aiohttp.ClientError, ValueError) as exc:
            # CSC's server lets the Workload API's validation error escape: HTTP 500.
            return web.json_response({"success": False, "message": f"could not validate JWT-SVID: {exc}"}, status=500)
        if subject.split("/")[-2] != client_id or not subject.startswith(
            f"spiffe://{self.trust_domain}/c/{client_id}/"
        ):
            return web.json_response(
                {
                    "success": False,
                    "message": "your SVID doesn't match to your client_id. Please ensure this identity belongs to you",
                }
            )

        added: dict[str, dict[str, list[str]]] = {}
        for node in nodes:
            added[node] = {}
            parent_id = f"spiffe://{self.trust_domain}/h/{node}"
            done_users: list[str] = []
            done_groups: list[str] = []
            for kind, names, done in (
                ("user", users, done_users),
                ("supplementary_group", groups, done_groups),
            ):
                for name in names:
                    try:
                        await self.entry_create(parent_id, spiffe_id, [f"unix:{kind}:{name}"])
                    except (UpstreamError, aiohttp.ClientError) as exc:
                        log.error("entry creation failed: %s", exc)
                        return web.json_response(
                            {
                                "success": False,
                                "message": f"error occured while registering a workload : {spiffe_id}. "
                                "Registered selectors available in compute_nodes_added subobject.",
                                "clientID": client_id,
                                "spiffeID": spiffe_id,
                                "compute_nodes_added": added,
                            }
                        )
                    done.append(name)
            added[node]["users"] = done_users
            added[node]["groups"] = done_groups
        try:
            await self.write_policy(
                f"client_{client_id}/{secret}", f"{self.kv_mount}/data/client_{client_id}/{secret}", ["read"]
            )
            await self.write_role(f"client_{client_id}-{secret}", spiffe_id, f"client_{client_id}/{secret}")
        except (UpstreamError, aiohttp.ClientError) as exc:
            log.error("vault policy/role failed: %s", exc)
            return web.json_response(
                {"success": False, "message": "error while writing the Vault policy or role"}, status=500
            )
        log.info("client %s: secret %s readable on %s", client_id, secret, ",".join(nodes))
        return web.json_response(
            {
                "success": True,
                "message": "successfully registered spiffeID, policy and role",
                "clientID": client_id,
                "spiffeID": spiffe_id,
                "compute_nodes_added": added,
                "secrets_path": f"client_{client_id}/{secret}",
                "user_role": f"client_{client_id}-{secret}",
            }
        )


async def wait_for(check, timeout: float = 30.0) -> None:
    """Retry ``check`` (an async callable) until it stops raising connection errors."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await check()
            return
        except (aiohttp.ClientError, OSError, UpstreamError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)
