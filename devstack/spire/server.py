"""SPIRE server stand-in: registration entries, join tokens, agent attestation, JWT-SVID signing,
and the OIDC discovery provider (``/.well-known/openid-configuration``, ``/keys``) on one HTTP port.

The real server speaks gRPC (admin API on a local socket, agent API over mTLS) and the OIDC
provider is a separate process; here all of it is HTTP/JSON (see ``README.md`` for the routes).
The admin routes need ``Authorization: Bearer <admin token>``, standing in for the real admin
socket's file permissions; the agent routes need the secret an agent got when it redeemed its
join token, standing in for the agent's X.509-SVID.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

import jwt as pyjwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from devstack.spire.common import (
    SpiffeIdError,
    agent_id_for_join_token,
    parse_selector,
    parse_spiffe_id,
    selector_str,
)

log = logging.getLogger("devstack.spire.server")

DEFAULT_JWT_SVID_TTL = 300  # SPIRE's default_jwt_svid_ttl (5m)
DEFAULT_JOIN_TOKEN_TTL = 600  # spire-server token generate -ttl default


def _json_error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


class Datastore:
    """Entries, join tokens and attested agents; persisted as JSON under the data directory."""

    def __init__(self, data_dir: Path):
        self.file = data_dir / "datastore.json"
        self.entries: dict[str, dict] = {}
        self.join_tokens: dict[str, dict] = {}
        self.agents: dict[str, dict] = {}  # agent secret -> {"agent_id", "attested_at"}
        if self.file.exists():
            data = json.loads(self.file.read_text())
            self.entries, self.join_tokens, self.agents = data["entries"], data["join_tokens"], data["agents"]

    def save(self) -> None:
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"entries": self.entries, "join_tokens": self.join_tokens, "agents": self.agents}))
        os.chmod(tmp, 0o600)
        tmp.replace(self.file)


class SigningKey:
    """The JWT-SVID signing key (EC P-256, ES256 as SPIRE's default ``ec-p256`` key type)."""

    def __init__(self, data_dir: Path):
        keys = data_dir / "keys"
        keys.mkdir(parents=True, exist_ok=True)
        pem, kid_file = keys / "jwt_signing_key.pem", keys / "jwt_signing_key.kid"
        if pem.exists() and kid_file.exists():
            self.key = serialization.load_pem_private_key(pem.read_bytes(), password=None)
            self.kid = kid_file.read_text().strip()
        else:
            self.key = ec.generate_private_key(ec.SECP256R1())
            self.kid = secrets.token_urlsafe(24)
            fd = os.open(pem, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(
                    self.key.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    )
                )
            kid_file.write_text(self.kid)
        self.alg = "ES256"

    def jwk(self, use: str) -> dict:
        doc = json.loads(pyjwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        doc.update({"kid": self.kid, "use": use})
        if use == "sig":
            doc["alg"] = self.alg
        return doc

    def sign(self, claims: dict) -> str:
        return pyjwt.encode(claims, self.key, algorithm=self.alg, headers={"kid": self.kid, "typ": "JWT"})


class SpireServer:
    def __init__(
        self,
        *,
        trust_domain: str,
        data_dir: Path,
        admin_token: str,
        jwt_issuer: str | None = None,
        jwt_svid_ttl: int = DEFAULT_JWT_SVID_TTL,
    ):
        parse_spiffe_id(f"spiffe://{trust_domain}")
        self.trust_domain = trust_domain
        self.store = Datastore(data_dir)
        self.key = SigningKey(data_dir)
        self.admin_token = admin_token
        self.jwt_issuer = jwt_issuer
        self.jwt_svid_ttl = jwt_svid_ttl
        self.lock = asyncio.Lock()

    def app(self) -> web.Application:
        app = web.Application()
        r = app.router
        r.add_get("/.well-known/openid-configuration", self.oidc_discovery)
        r.add_get("/keys", self.oidc_keys)
        r.add_get("/bundle", self.bundle)
        r.add_post("/agent/v1/attest", self.attest)
        r.add_post("/agent/v1/authorized_entries", self.authorized_entries)
        r.add_post("/agent/v1/jwt_svid", self.new_jwt_svid)
        r.add_post("/admin/v1/join_tokens", self.create_join_token)
        r.add_post("/admin/v1/entries", self.create_entry)
        r.add_get("/admin/v1/entries", self.list_entries)
        r.add_get("/admin/v1/entries/{id}", self.get_entry)
        r.add_delete("/admin/v1/entries/{id}", self.delete_entry)
        r.add_get("/admin/v1/agents", self.list_agents)
        return app

    # -- OIDC discovery provider and bundle ------------------------------------------------

    async def oidc_discovery(self, request: web.Request) -> web.Response:
        """support/oidc-discovery-provider/handler.go ``serveWellKnown``: the issuer is the
        request's scheme and host (or the configured jwt_issuer), jwks_uri ``<base>/keys`` (or
        ``<jwt_issuer>/keys``), and the fixed fields exactly as SPIRE hardcodes them."""
        base = f"{request.scheme}://{request.host}"
        jwks_uri = f"{self.jwt_issuer.rstrip('/')}/keys" if self.jwt_issuer else f"{base}/keys"
        return web.json_response(
            {
                "issuer": self.jwt_issuer or base,
                "jwks_uri": jwks_uri,
                "authorization_endpoint": "",
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256", "ES256", "ES384"],
            },
            headers={"Access-Control-Allow-Origin": "*"},
        )

    async def oidc_keys(self, request: web.Request) -> web.Response:
        """handler.go ``serveKeys``/``enrichJwksKeys``: ``alg`` from the key; ``use`` only with
        the provider's ``set_key_use`` (off by default); not cached."""
        jwk = self.key.jwk("sig")
        jwk.pop("use", None)
        return web.json_response(
            {"keys": [jwk]},
            headers={
                "Cache-Control": "no-cache, no-store, must-revalidate",
                "Pragma": "no-cache",
                "Expires": "0",
                "Access-Control-Allow-Origin": "*",
            },
        )

    def bundle_doc(self) -> dict:
        return {"keys": [self.key.jwk("jwt-svid")], "spiffe_sequence": 1, "spiffe_refresh_hint": 300}

    async def bundle(self, request: web.Request) -> web.Response:
        return web.json_response({"trust_domain": self.trust_domain, "jwks": self.bundle_doc()})

    # -- authentication --------------------------------------------------------------------

    @staticmethod
    def bearer(request: web.Request) -> str:
        auth = request.headers.get("Authorization", "")
        return auth[7:] if auth.startswith("Bearer ") else ""

    def require_admin(self, request: web.Request) -> None:
        if not secrets.compare_digest(self.bearer(request), self.admin_token):
            raise web.HTTPUnauthorized(
                text=json.dumps({"error": "admin credentials required"}), content_type="application/json"
            )

    def require_agent(self, request: web.Request) -> dict:
        agent = self.store.agents.get(self.bearer(request))
        if agent is None:
            raise web.HTTPUnauthorized(
                text=json.dumps({"error": "agent is not attested"}), content_type="application/json"
            )
        return agent

    @staticmethod
    async def body(request: web.Request) -> dict:
        try:
            data = await request.json()
        except (json.JSONDecodeError, ValueError) as exc:
            raise web.HTTPBadRequest(
                text=json.dumps({"error": f"invalid JSON body: {exc}"}), content_type="application/json"
            ) from exc
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(
                text=json.dumps({"error": "body must be a JSON object"}), content_type="application/json"
            )
        return data

    def check_id(self, value: Any, what: str) -> str:
        try:
            td, _ = parse_spiffe_id(value)
        except SpiffeIdError as exc:
            raise web.HTTPBadRequest(
                text=json.dumps({"error": f"invalid {what}: {exc}"}), content_type="application/json"
            ) from exc
        if td != self.trust_domain:
            raise web.HTTPBadRequest(
                text=json.dumps(
                    {"error": f"invalid {what}: {value!r} is not a member of trust domain {self.trust_domain!r}"}
                ),
                content_type="application/json",
            )
        return value

    # -- admin API -------------------------------------------------------------------------

    async def create_join_token(self, request: web.Request) -> web.Response:
        self.require_admin(request)
        body = await self.body(request)
        ttl = int(body.get("ttl") or DEFAULT_JOIN_TOKEN_TTL)
        spiffe_id = body.get("spiffe_id")
        if spiffe_id:
            self.check_id(spiffe_id, "spiffe_id")
        async with self.lock:
            token = str(uuid.uuid4())
            expires_at = int(time.time()) + ttl
            self.store.join_tokens[token] = {"expires_at": expires_at}
            if spiffe_id:
                agent_id = agent_id_for_join_token(self.trust_domain, token)
                self._add_entry(spiffe_id, agent_id, [{"type": "spiffe_id", "value": agent_id}])
            self.store.save()
        return web.json_response({"value": token, "expires_at": expires_at}, status=201)

    def _similar(self, spiffe_id: str, parent_id: str, selectors: list[dict]) -> dict | None:
        key = sorted(selector_str(s) for s in selectors)
        for entry in self.store.entries.values():
            if (
                entry["spiffe_id"] == spiffe_id
                and entry["parent_id"] == parent_id
                and sorted(selector_str(s) for s in entry["selectors"]) == key
            ):
                return entry
        return None

    def _add_entry(self, spiffe_id: str, parent_id: str, selectors: list[dict], **extra: Any) -> dict:
        entry = {
            "id": str(uuid.uuid4()),
            "spiffe_id": spiffe_id,
            "parent_id": parent_id,
            "selectors": selectors,
            "created_at": int(time.time()),
            "jwt_svid_ttl": int(extra.get("jwt_svid_ttl") or 0),
            "hint": extra.get("hint", ""),
        }
        self.store.entries[entry["id"]] = entry
        return entry

    async def create_entry(self, request: web.Request) -> web.Response:
        self.require_admin(request)
        body = await self.body(request)
        spiffe_id = self.check_id(body.get("spiffe_id"), "spiffe_id")
        parent_id = self.check_id(body.get("parent_id"), "parent_id")
        raw = body.get("selectors") or []
        if not isinstance(raw, list) or not raw:
            return _json_error(400, "invalid entry: missing selector list")
        try:
            selectors = [parse_selector(s) for s in raw]
        except ValueError as exc:
            return _json_error(400, f"invalid entry: {exc}")
        async with self.lock:
            existing = self._similar(spiffe_id, parent_id, selectors)
            if existing:
                return _json_error(409, "similar entry already exists", entry=existing)
            entry = self._add_entry(
                spiffe_id,
                parent_id,
                selectors,
                jwt_svid_ttl=body.get("jwt_svid_ttl"),
                hint=body.get("hint", ""),
            )
            self.store.save()
        return web.json_response({"entry": entry}, status=201)

    async def list_entries(self, request: web.Request) -> web.Response:
        self.require_admin(request)
        out = list(self.store.entries.values())
        for field in ("spiffe_id", "parent_id"):
            if request.query.get(field):
                out = [e for e in out if e[field] == request.query[field]]
        if request.query.get("selector"):
            want = request.query["selector"]
            out = [e for e in out if want in [selector_str(s) for s in e["selectors"]]]
        return web.json_response({"entries": sorted(out, key=lambda e: (e["spiffe_id"], e["id"]))})

    async def get_entry(self, request: web.Request) -> web.Response:
        self.require_admin(request)
        entry = self.store.entries.get(request.match_info["id"])
        if entry is None:
            return _json_error(404, "entry not found")
        return web.json_response({"entry": entry})

    async def delete_entry(self, request: web.Request) -> web.Response:
        self.require_admin(request)
        async with self.lock:
            if self.store.entries.pop(request.match_info["id"], None) is None:
                return _json_error(404, "entry not found")
            self.store.save()
        return web.Response(status=204)

    async def list_agents(self, request: web.Request) -> web.Response:
        self.require_admin(request)
        return web.json_response(
            {"agents": [{"id": a["agent_id"], "attested_at": a["attested_at"]} for a in self.store.agents.values()]}
        )

    # -- agent API -------------------------------------------------------------------------

    async def attest(self, request: web.Request) -> web.Response:
        body = await self.body(request)
        token = body.get("join_token", "")
        async with self.lock:
            info = self.store.join_tokens.pop(token, None)  # redeemed once, whatever the outcome
            if info is None:
                return _json_error(403, "failed to attest: join token does not exist or has already been used")
            if info["expires_at"] < time.time():
                self.store.save()
                return _json_error(403, "failed to attest: join token expired")
            agent_id = agent_id_for_join_token(self.trust_domain, token)
            secret = secrets.token_urlsafe(32)
            self.store.agents[secret] = {"agent_id": agent_id, "attested_at": int(time.time())}
            self.store.save()
        log.info("attested agent %s", agent_id)
        return web.json_response(
            {
                "agent_id": agent_id,
                "agent_secret": secret,
                "trust_domain": self.trust_domain,
                "bundle": self.bundle_doc(),
            }
        )

    def authorized_for(self, agent_id: str) -> list[dict]:
        """Entries parented by the agent, and their descendants (as SPIRE's entry cache resolves)."""
        out: list[dict] = []
        seen_parents = {agent_id}
        frontier = [agent_id]
        while frontier:
            parent = frontier.pop()
            for entry in self.store.entries.values():
                if entry["parent_id"] == parent and entry not in out:
                    out.append(entry)
                    if entry["spiffe_id"] not in seen_parents:
                        seen_parents.add(entry["spiffe_id"])
                        frontier.append(entry["spiffe_id"])
        return out

    async def authorized_entries(self, request: web.Request) -> web.Response:
        agent = self.require_agent(request)
        return web.json_response(
            {
                "agent_id": agent["agent_id"],
                "entries": self.authorized_for(agent["agent_id"]),
                "bundle": self.bundle_doc(),
            }
        )

    async def new_jwt_svid(self, request: web.Request) -> web.Response:
        agent = self.require_agent(request)
        body = await self.body(request)
        spiffe_id = body.get("spiffe_id")
        audience = body.get("audience") or []
        if not isinstance(audience, list) or not audience or not all(isinstance(a, str) and a for a in audience):
            return _json_error(400, "invalid argument: audience must be specified")
        entry = next((e for e in self.authorized_for(agent["agent_id"]) if e["spiffe_id"] == spiffe_id), None)
        if entry is None:
            return _json_error(403, f"agent {agent['agent_id']!r} is not authorized for {spiffe_id!r}")
        now = int(time.time())
        ttl = entry.get("jwt_svid_ttl") or self.jwt_svid_ttl
        claims = {"sub": spiffe_id, "aud": audience, "exp": now + ttl, "iat": now}
        if self.jwt_issuer:
            claims["iss"] = self.jwt_issuer
        return web.json_response({"token": self.key.sign(claims), "expires_at": now + ttl, "issued_at": now})


async def serve(server: SpireServer, host: str, port: int, stop: asyncio.Event) -> None:
    runner = web.AppRunner(server.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("spire server stand-in for trust domain %s on http://%s:%d", server.trust_domain, host, port)
    await stop.wait()
    await runner.cleanup()
