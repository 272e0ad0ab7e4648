"""HashiCorp Vault stand-in: the HTTP API subset the HPCS pipeline and hvac use.

Implemented: ``sys/health``, ``sys/seal-status``, ``sys/mounts[/<path>]``, ``sys/auth[/<path>]``,
``sys/policies/acl[/<name>]``, ``sys/capabilities-self``, ``sys/internal/ui/mounts/<path>``,
token auth (``X-Vault-Token``; ``auth/token/lookup-self``, ``create``, ``revoke-self``), JWT auth
(``auth/<mount>/config``, ``role/<name>``, ``login``) verifying signatures against a JWKS/OIDC
discovery URL or static PEM keys, and KV version 2 (``<mount>/data``, ``<mount>/metadata``).
Every authenticated request is checked against the token's ACL (see ``policy.py``); KV v2 and
JWT roles have Vault's existence check (a write needs ``create`` when new, ``update`` when not).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import secrets
import string
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import jwt as pyjwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization

from devstack.vault.policy import ACL, DEFAULT_POLICY, PolicyError, parse_policy

log = logging.getLogger("devstack.vault")

VERSION = "1.17.0+devstack"
DEFAULT_TOKEN_TTL = 768 * 3600
SUDO_PREFIXES = ("sys/auth/", "sys/audit", "sys/raw", "sys/rotate", "sys/seal")
# hashicorp/cap jwt/jwt.go: DefaultLeewaySeconds (exp/nbf when missing) and go-jose's DefaultLeeway
# (clock skew, the only leeway applied to exp, nbf and iat themselves)
CAP_DEFAULT_LEEWAY = 150
CAP_DEFAULT_CLOCK_SKEW = 60
JWT_ALGS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA"]


class VaultError(Exception):
    def __init__(self, status: int, *errors: str):
        super().__init__(errors[0] if errors else str(status))
        self.status = status
        self.errors = list(errors)


def denied() -> VaultError:
    return VaultError(403, "permission denied")


def not_found() -> VaultError:
    return VaultError(404)


def now_rfc3339(ts: float | None = None) -> str:
    dt = datetime.fromtimestamp(ts if ts is not None else time.time(), tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def parse_duration(value: Any, default: int = 0) -> int:
    """Vault durations: an int (seconds) or a string like ``90``, ``30s``, ``5m``, ``1h``, ``2d``."""
    if value in (None, ""):
        return default
    if isinstance(value, bool):
        raise VaultError(400, f"invalid duration {value!r}")
    if isinstance(value, int | float):
        return int(value)
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    total = 0
    num = ""
    for ch in text:
        if ch.isdigit() or ch == ".":
            num += ch
        elif ch in units and num:
            total += int(float(num) * units[ch])
            num = ""
        else:
            raise VaultError(400, f"invalid duration {value!r}")
    if num:
        raise VaultError(400, f"invalid duration {value!r}")
    return total


def str_list(value: Any) -> list[str]:
    """Vault's comma-string-or-list fields."""
    if value in (None, ""):
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list):
        return [str(v) for v in value]
    raise VaultError(400, f"expected a list or a comma-separated string, got {value!r}")


def field_int(value: Any, field: str) -> int:
    """A ``framework.TypeInt`` field as Vault's ``FieldData.Validate`` converts it (weakly: JSON
    numbers and numeric strings); anything else is a 400."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = str(value).strip()
    try:
        return int(text) if text else 0
    except ValueError:
        raise VaultError(
            400,
            f"error converting input {value} for field \"{field}\": cannot parse '{value}' as int: "
            f'strconv.ParseInt: parsing "{value}": invalid syntax',
        ) from None


def field_bool(value: Any, field: str) -> bool:
    """A ``framework.TypeBool`` field: JSON booleans, numbers and strconv.ParseBool's strings."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    text = str(value).strip()
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False", ""):
        return False
    raise VaultError(400, f"error converting input {value} for field \"{field}\": cannot parse '{value}' as bool")


def comma_ints(value: Any, field: str) -> list[int]:
    """A ``framework.TypeCommaIntSlice``: a list of ints or a comma-separated string."""
    if value in (None, ""):
        return []
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else [value]
    return [field_int(v, field) for v in items if str(v).strip() != ""]


def addr_in_cidrs(addr: str | None, cidrs: list[str]) -> bool:
    """sdk/helper/cidrutil ``RemoteAddrIsOk``: the address is inside one of the CIDR blocks."""
    if not addr:
        return False
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    for block in cidrs:
        try:
            if ip in ipaddress.ip_network(block, strict=False):
                return True
        except ValueError:
            continue
    return False


def signed_seconds(value: Any, field: str) -> int:
    """A ``TypeSignedDurationSecond``/``TypeInt`` leeway: seconds, may be negative."""
    if isinstance(value, str) and value.strip().startswith("-"):
        return -parse_duration(value.strip()[1:])
    if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
        return int(value)
    try:
        return parse_duration(value)
    except VaultError as exc:
        raise VaultError(400, f'error converting input {value} for field "{field}"') from exc


def json_pointer(doc: Any, pointer: str) -> Any:
    """RFC 6901 lookup as mitchellh/pointerstructure ``Get``; ``None`` when it does not resolve
    (vault-plugin-auth-jwt claims.go ``getClaim`` logs and returns nil)."""
    if pointer == "":
        return doc
    if not pointer.startswith("/"):
        return None
    for raw_part in pointer[1:].split("/"):
        part = raw_part.replace("~1", "/").replace("~0", "~")
        if isinstance(doc, dict):
            if part not in doc:
                return None
            doc = doc[part]
        elif isinstance(doc, list):
            if not part.isdigit() or int(part) >= len(doc):
                return None
            doc = doc[int(part)]
        else:
            return None
    return doc


def get_claim(claims: dict, name: str) -> Any:
    """claims.go ``getClaim``: a name starting with ``/`` is a JSON pointer into the claims."""
    return json_pointer(claims, name) if name.startswith("/") else claims.get(name)


def _claim_value(value: Any) -> tuple[str, Any] | None:
    """claims.go ``normalizeList`` items, compared as Go compares interface values: strings,
    bools, and numbers as json.Number (an integral float becomes its integer text)."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, int):
        return ("num", str(value))
    if isinstance(value, float):
        return ("num", str(int(value)))
    return None


def _normalize_list(value: Any) -> list[tuple[str, Any]] | None:
    items = value if isinstance(value, list) else [value]
    if not isinstance(value, list | str | bool | int | float):
        return None
    out = []
    for item in items:
        norm = _claim_value(item)
        out.append(norm if norm is not None else ("other", json.dumps(item, sort_keys=True)))
    return out


def glob_match(pattern: str, value: str) -> bool:
    """ryanuber/go-glob ``Glob``: ``*`` matches any run of characters (``/`` included)."""
    parts = pattern.split("*")
    if len(parts) == 1:
        return pattern == value
    if not value.startswith(parts[0]) or not value.endswith(parts[-1]):
        return False
    pos = len(parts[0])
    end = len(value) - len(parts[-1])
    for part in parts[1:-1]:
        idx = value.find(part, pos, end)
        if idx < 0:
            return False
        pos = idx + len(part)
    return pos <= end


def validate_bound_claims(claims_type: str, bound: dict, claims: dict) -> None:
    """vault-plugin-auth-jwt claims.go ``validateBoundClaims``/``matchFound``: every bound claim
    (a name or a JSON pointer) must be present and one of its values must equal (or, for
    ``glob``, match) one of the claim's values."""
    for name, expected in bound.items():
        actual = get_claim(claims, name)
        if actual is None:
            raise ValueError(f"claim {name!r} is missing")
        act = _normalize_list(actual)
        if act is None:
            raise ValueError(f"received claim is not a string, bool, int or list: {actual}")
        exp = _normalize_list(expected)
        if exp is None:
            raise ValueError(f"bound claim is not a string, bool, int or list: {expected}")
        found = False
        for e_kind, e_val in exp:
            for a_kind, a_val in act:
                if claims_type == "glob":
                    if e_kind != "str":
                        raise ValueError(f"received claim is not a glob string: {e_val}")
                    if a_kind == "str" and glob_match(e_val, a_val):
                        found = True
                elif (e_kind, e_val) == (a_kind, a_val):
                    found = True
        if not found:
            raise ValueError(f"claim {name!r} does not match any associated bound claim values")


def _random_id(prefix: str = "", n: int = 24) -> str:
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(n))


def new_kv_record(now: str) -> dict:
    """A KV v2 key with no version yet (its metadata)."""
    return {
        "versions": {},
        "current_version": 0,
        "oldest_version": 0,
        "created_time": now,
        "updated_time": now,
        "max_versions": 0,
        "cas_required": False,
        "custom_metadata": None,
    }


class VaultState:
    """Everything Vault holds, JSON-serialisable, optionally persisted to ``state.json``."""

    def __init__(self, state_dir: Path | None):
        self.file = state_dir / "state.json" if state_dir else None
        self.tokens: dict[str, dict] = {}
        self.policies: dict[str, str] = {"default": DEFAULT_POLICY}
        self.auth: dict[str, dict] = {"token/": {"type": "token", "description": "token based credentials"}}
        self.jwt: dict[str, dict] = {}  # auth mount path -> {"config": {}, "roles": {}}
        self.mounts: dict[str, dict] = {
            "sys/": {"type": "system", "options": None},
            "cubbyhole/": {"type": "cubbyhole", "options": None},
        }
        self.kv: dict[str, dict[str, dict]] = {}  # mount path -> key -> record
        if self.file and self.file.exists():
            self._load()

    def _load(self) -> None:
        data = json.loads(self.file.read_text())
        for name in ("tokens", "policies", "auth", "jwt", "mounts", "kv"):
            setattr(self, name, data[name])

    def save(self) -> None:
        if not self.file:
            return
        data = {n: getattr(self, n) for n in ("tokens", "policies", "auth", "jwt", "mounts", "kv")}
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.chmod(tmp, 0o600)
        tmp.replace(self.file)

    def add_token(
        self,
        *,
        policies: list[str],
        ttl: int,
        path: str,
        display_name: str,
        meta: dict | None = None,
        token_id: str | None = None,
        max_ttl: int = 0,
        role: tuple[str, str] | None = None,
    ) -> dict:
        now = time.time()
        token = {
            "id": token_id or _random_id("hvs."),
            "accessor": _random_id(),
            "policies": sorted(set(policies)),
            "path": path,
            "display_name": display_name,
            "meta": meta,
            "creation_time": int(now),
            "creation_ttl": ttl,
            "expire_at": now + ttl if ttl else None,
            "entity_id": "",
            "max_ttl": max_ttl,
            "role": list(role) if role else None,
        }
        self.tokens[token["id"]] = token
        return token


class Request:
    """One API request, once its token (if any) is known."""

    def __init__(self, method: str, path: str, body: dict, query: dict, token: dict | None, remote: str | None = None):
        self.remote = remote
        self.method = method
        self.path = path
        self.body = body
        self.query = query
        self.token = token


class VaultServer:
    def __init__(self, state: VaultState, *, jwks_timeout: float = 10.0):
        self.state = state
        self.jwks_cache: dict[str, tuple[float, dict]] = {}
        self.jwks_timeout = jwks_timeout

    # -- plumbing ---------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_route("*", "/v1/{tail:.*}", self.handle)
        return app

    async def handle(self, http: web.Request) -> web.StreamResponse:
        method = http.method.upper()
        if method == "GET" and http.query.get("list") in ("true", "1"):
            method = "LIST"
        path = http.match_info["tail"]
        if method == "LIST" and not path.endswith("/"):
            path += "/"  # Vault appends the slash to LIST paths before routing and ACL checks
        body: dict = {}
        if http.can_read_body:
            raw = await http.read()
            if raw.strip():
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    return self.error(400, "failed to parse JSON input: invalid character")
                if not isinstance(body, dict):
                    return self.error(400, "failed to parse JSON input: expected an object")
        try:
            token = None
            if not self.unauthenticated(method, path):
                token = self.lookup_token(http)
            req = Request(method, path, body, dict(http.query), token, http.remote)
            result = await self.route(req)
        except VaultError as exc:
            return self.error(exc.status, *exc.errors)
        if method in ("POST", "PUT", "DELETE", "PATCH"):
            self.state.save()
        if result is None:
            return web.Response(status=204)
        if isinstance(result, web.StreamResponse):
            return result
        return web.json_response(result)

    @staticmethod
    def error(status: int, *errors: str) -> web.Response:
        return web.json_response({"errors": list(errors)}, status=status)

    def unauthenticated(self, method: str, path: str) -> bool:
        if path in ("sys/health", "sys/seal-status", "sys/leader", "sys/init"):
            return True
        parts = path.split("/")
        return len(parts) == 3 and parts[0] == "auth" and parts[2] == "login" and f"{parts[1]}/" in self.state.jwt

    def lookup_token(self, http: web.Request) -> dict:
        value = http.headers.get("X-Vault-Token")
        if not value:
            auth = http.headers.get("Authorization", "")
            if auth.startswith("Bearer "):
                value = auth[7:]
        if not value:
            raise denied()
        token = self.state.tokens.get(value)
        if token is None:
            raise denied()
        if token["expire_at"] is not None and token["expire_at"] < time.time():
            del self.state.tokens[value]
            raise denied()
        return token

    def acl(self, token: dict) -> ACL:
        if "root" in token["policies"]:
            return ACL([], root=True)
        rules = []
        for name in token["policies"]:
            text = self.state.policies.get(name)
            if text is not None:
                rules.append(parse_policy(text))
        return ACL(rules)

    def authorize(self, req: Request, capability: str, path: str | None = None) -> None:
        path = req.path if path is None else path
        sudo = path.startswith(SUDO_PREFIXES)
        if req.token is None or not self.acl(req.token).allows(
            path, capability, sudo=sudo, list_op=req.method == "LIST"
        ):
            raise denied()

    @staticmethod
    def write_cap(exists: bool) -> str:
        return "update" if exists else "create"

    @staticmethod
    def envelope(data: Any = None, auth: dict | None = None, **extra: Any) -> dict:
        out = {
            "request_id": str(uuid.uuid4()),
            "lease_id": "",
            "renewable": False,
            "lease_duration": 0,
            "data": data,
            "wrap_info": None,
            "warnings": None,
            "auth": auth,
        }
        out.update(extra)
        return out

    # -- routing ----------------------------------------------------------------------------

    async def route(self, req: Request) -> Any:
        path = req.path
        if path.startswith("sys/"):
            return self.route_sys(req)
        if path.startswith("auth/"):
            parts = path.split("/")
            mount = parts[1] + "/" if len(parts) > 1 else ""
            if mount == "token/":
                return self.route_token(req, "/".join(parts[2:]))
            if mount in self.state.jwt:
                return await self.route_jwt(req, mount, "/".join(parts[2:]))
            self.authorize(req, self.op_cap(req))
            raise VaultError(404, f'no handler for route "{path}". route entry not found.')
        for mount, info in self.state.mounts.items():
            if path.startswith(mount) and info["type"] in ("kv", "kv-v2") and self.kv_version(info) == 2:
                return self.route_kv2(req, mount, path[len(mount) :])
        self.authorize(req, self.op_cap(req))
        raise VaultError(404, f'no handler for route "{path}". route entry not found.')

    @staticmethod
    def op_cap(req: Request) -> str:
        return {"GET": "read", "LIST": "list", "DELETE": "delete", "PATCH": "patch"}.get(req.method, "update")

    @staticmethod
    def kv_version(info: dict) -> int:
        if info["type"] == "kv-v2":
            return 2
        return int(str((info.get("options") or {}).get("version", "1")))

    # -- sys --------------------------------------------------------------------------------

    def route_sys(self, req: Request) -> Any:
        path, m = req.path, req.method
        if path == "sys/health":
            return {
                "initialized": True,
                "sealed": False,
                "standby": False,
                "performance_standby": False,
                "replication_performance_mode": "disabled",
                "replication_dr_mode": "disabled",
                "server_time_utc": int(time.time()),
                "version": VERSION,
                "enterprise": False,
                "cluster_name": "devstack",
                "cluster_id": "00000000-0000-0000-0000-000000000000",
            }
        if path == "sys/seal-status":
            return {
                "type": "shamir",
                "initialized": True,
                "sealed": False,
                "t": 1,
                "n": 1,
                "progress": 0,
                "nonce": "",
                "version": VERSION,
                "migration": False,
                "recovery_seal": False,
                "storage_type": "inmem",
            }
        if path in ("sys/mounts", "sys/mounts/") and m in ("GET", "LIST"):
            self.authorize(req, "read", "sys/mounts")
            mounts = {k: self.mount_view(v) for k, v in self.state.mounts.items()}
            return self.envelope(mounts, **mounts)
        if path.startswith("sys/mounts/"):
            name = path[len("sys/mounts/") :].strip("/") + "/"
            return self.sys_mount(req, name)
        if path in ("sys/auth", "sys/auth/") and m in ("GET", "LIST"):
            self.authorize(req, "read", "sys/auth")
            auths = {k: self.mount_view(v) for k, v in self.state.auth.items()}
            return self.envelope(auths, **auths)
        if path.startswith("sys/auth/"):
            name = path[len("sys/auth/") :].strip("/") + "/"
            return self.sys_auth(req, name)
        if path in ("sys/policies/acl", "sys/policies/acl/"):
            if m not in ("LIST", "GET"):
                raise VaultError(405, "unsupported operation")
            self.authorize(req, "list", "sys/policies/acl/" if m == "LIST" else "sys/policies/acl")
            keys = sorted(self.state.policies) + ["root"]
            return self.envelope({"keys": sorted(keys), "policies": sorted(keys)}, keys=sorted(keys))
        if path.startswith("sys/policies/acl/"):
            return self.sys_policy(req, path[len("sys/policies/acl/") :].lower())
        if path == "sys/capabilities-self" and m in ("POST", "PUT"):
            self.authorize(req, "update")
            paths = str_list(req.body.get("paths") or req.body.get("path"))
            acl = self.acl(req.token)
            out: dict[str, Any] = {}
            for p in paths:
                caps = sorted(acl.capabilities(p)) or ["deny"]
                if acl.root:
                    caps = ["root"]
                out[p] = caps
            if len(paths) == 1:
                out["capabilities"] = out[paths[0]]
            return self.envelope(out, **out)
        if path.startswith("sys/internal/ui/mounts/") and m == "GET":
            target = path[len("sys/internal/ui/mounts/") :]
            for mount, info in self.state.mounts.items():
                if target == mount.rstrip("/") or target.startswith(mount):
                    self.authorize_any(req, mount)
                    view = self.mount_view(info)
                    view["path"] = mount
                    return self.envelope(view)
            raise denied()
        self.authorize(req, self.op_cap(req))
        raise VaultError(404, f'no handler for route "{path}". route entry not found.')

    def authorize_any(self, req: Request, mount: str) -> None:
        """Vault's ui/mounts answers when the token has any capability under the mount."""
        acl = self.acl(req.token)
        if acl.root:
            return
        for rule in list(acl.exact) + list(acl.prefix) + list(acl.segment):
            if rule.startswith(mount) or mount.startswith(rule):
                return
        raise denied()

    @staticmethod
    def mount_view(info: dict) -> dict:
        return {
            "type": info["type"],
            "description": info.get("description", ""),
            "options": info.get("options"),
            "config": info.get("config") or {"default_lease_ttl": 0, "max_lease_ttl": 0, "force_no_cache": False},
            "local": False,
            "seal_wrap": False,
            "accessor": info.get("accessor", ""),
            "uuid": info.get("uuid", ""),
        }

    def sys_mount(self, req: Request, name: str) -> Any:
        if req.method in ("POST", "PUT"):
            self.authorize(req, "update")
            if name in self.state.mounts:
                raise VaultError(400, f"path is already in use at {name}")
            mtype = req.body.get("type")
            if not mtype:
                raise VaultError(400, "backend type must be specified as a string")
            options = req.body.get("options") or {}
            if mtype == "kv-v2":
                options = {**options, "version": "2"}
            if mtype not in ("kv", "kv-v2"):
                raise VaultError(400, f"plugin not found in the catalog: {mtype}")
            self.state.mounts[name] = {
                "type": mtype,
                "description": req.body.get("description", ""),
                "options": {k: str(v) for k, v in options.items()} or {"version": "1"},
                "config": req.body.get("config"),
                "accessor": _random_id(f"{mtype}_", 8),
                "uuid": str(uuid.uuid4()),
            }
            self.state.kv.setdefault(name, {})
            return None
        if req.method == "DELETE":
            self.authorize(req, "delete")
            if name in ("sys/", "cubbyhole/"):
                raise VaultError(400, f"cannot unmount {name!r}")
            self.state.mounts.pop(name, None)
            self.state.kv.pop(name, None)
            return None
        if req.method == "GET":
            self.authorize(req, "read")
            if name not in self.state.mounts:
                raise VaultError(400, f"No secret engine mount at {name}")
            return self.envelope(self.mount_view(self.state.mounts[name]))
        raise VaultError(405, "unsupported operation")

    def sys_auth(self, req: Request, name: str) -> Any:
        if req.method in ("POST", "PUT"):
            self.authorize(req, "update")
            if name in self.state.auth:
                raise VaultError(400, f"path is already in use at {name}")
            atype = req.body.get("type")
            if not atype:
                raise VaultError(400, "backend type must be specified as a string")
            if atype not in ("jwt", "oidc"):
                raise VaultError(400, f"plugin not found in the catalog: {atype}")
            self.state.auth[name] = {
                "type": atype,
                "description": req.body.get("description", ""),
                "accessor": _random_id(f"auth_{atype}_", 8),
                "uuid": str(uuid.uuid4()),
            }
            self.state.jwt[name] = {"config": {}, "roles": {}}
            return None
        if req.method == "DELETE":
            self.authorize(req, "delete")
            if name == "token/":
                raise VaultError(400, "token credential backend cannot be disabled")
            self.state.auth.pop(name, None)
            self.state.jwt.pop(name, None)
            return None
        raise VaultError(405, "unsupported operation")

    def sys_policy(self, req: Request, name: str) -> Any:
        m = req.method
        if not name:
            raise VaultError(400, "policy name must be provided")
        if m == "GET":
            self.authorize(req, "read")
            if name == "root":
                return self.envelope({"name": "root", "policy": ""}, name="root", policy="")
            if name not in self.state.policies:
                raise not_found()
            text = self.state.policies[name]
            return self.envelope({"name": name, "policy": text}, name=name, policy=text)
        if m in ("POST", "PUT"):
            self.authorize(req, self.write_cap(name in self.state.policies))
            if name == "root":
                raise VaultError(400, 'cannot update "root" policy')
            text = req.body.get("policy")
            if not isinstance(text, str) or not text.strip():
                raise VaultError(400, "'policy' parameter not supplied or empty")
            try:
                parse_policy(text)
            except PolicyError as exc:
                raise VaultError(400, str(exc)) from exc
            self.state.policies[name] = text
            return None
        if m == "DELETE":
            self.authorize(req, "delete")
            if name in ("root", "default"):
                raise VaultError(400, f'cannot delete "{name}" policy')
            self.state.policies.pop(name, None)
            return None
        raise VaultError(405, "unsupported operation")

    # -- token auth -------------------------------------------------------------------------

    def token_view(self, token: dict) -> dict:
        ttl = int(token["expire_at"] - time.time()) if token["expire_at"] else 0
        return {
            "accessor": token["accessor"],
            "creation_time": token["creation_time"],
            "creation_ttl": token["creation_ttl"],
            "display_name": token["display_name"],
            "entity_id": token["entity_id"],
            "expire_time": now_rfc3339(token["expire_at"]) if token["expire_at"] else None,
            "explicit_max_ttl": 0,
            "id": token["id"],
            "issue_time": now_rfc3339(token["creation_time"]),
            "meta": token["meta"],
            "num_uses": 0,
            "orphan": token["path"] != "auth/token/create",
            "path": token["path"],
            "policies": token["policies"],
            "renewable": bool(token["expire_at"]),
            "ttl": max(ttl, 0),
            "type": "service",
        }

    def auth_block(self, token: dict, token_policies: list[str]) -> dict:
        return {
            "client_token": token["id"],
            "accessor": token["accessor"],
            "policies": token["policies"],
            "token_policies": sorted(set(token_policies)),
            "identity_policies": None,
            "metadata": token["meta"],
            "lease_duration": token["creation_ttl"],
            "renewable": bool(token["expire_at"]),
            "entity_id": token["entity_id"],
            "token_type": "service",
            "orphan": True,
            "mfa_requirement": None,
            "num_uses": 0,
        }

    def route_token(self, req: Request, sub: str) -> Any:
        if sub == "lookup-self" and req.method in ("GET", "POST"):
            self.authorize(req, "read" if req.method == "GET" else "update")
            return self.envelope(self.token_view(req.token))
        if sub == "revoke-self" and req.method in ("POST", "PUT"):
            self.authorize(req, "update")
            self.state.tokens.pop(req.token["id"], None)
            return None
        if sub == "renew-self" and req.method in ("POST", "PUT"):
            self.authorize(req, "update")
            return self.renew(req.token, req.body.get("increment"))
        if sub in ("create", "create-orphan") and req.method in ("POST", "PUT"):
            self.authorize(req, "update")
            policies = str_list(req.body.get("policies")) or list(req.token["policies"])
            if "root" not in req.token["policies"] and not set(policies) <= set(req.token["policies"]):
                raise VaultError(400, "child policies must be subset of parent")
            no_default = bool(req.body.get("no_default_policy"))
            if not no_default and "root" not in policies:
                policies = policies + ["default"]
            ttl = parse_duration(req.body.get("ttl"), DEFAULT_TOKEN_TTL)
            if "root" in policies and "ttl" not in req.body:
                ttl = 0
            token = self.state.add_token(
                policies=policies,
                ttl=ttl,
                path="auth/token/create",
                display_name="token" + (f"-{req.body['display_name']}" if req.body.get("display_name") else ""),
                meta=req.body.get("meta"),
                token_id=req.body.get("id"),
            )
            return self.envelope(None, auth=self.auth_block(token, token["policies"]))
        self.authorize(req, self.op_cap(req))
        raise VaultError(404, f'no handler for route "{req.path}". route entry not found.')

    def renew(self, token: dict, increment: Any) -> dict:
        """vault/token_store.go ``handleRenewSelf`` -> ``handleRenew``: the token's lease is
        extended by ``increment`` (else by its own TTL: a JWT token by its role's ``token_ttl``,
        path_login.go ``pathLoginRenew``, which also fails when the role is gone), never past its
        max TTL from creation (the role's ``token_max_ttl``, else the system's 768h)."""
        if token["expire_at"] is None:
            raise VaultError(400, "invalid lease ID")  # vault/expiration.go RenewToken: no lease entry
        inc = parse_duration(increment, 0)
        ttl = token["creation_ttl"]
        if token.get("role"):
            mount, name = token["role"]
            role = self.state.jwt.get(mount, {}).get("roles", {}).get(name)
            if role is None:
                raise VaultError(400, f"role {name} does not exist during renewal")
            ttl = role.get("token_ttl") or DEFAULT_TOKEN_TTL
            token["max_ttl"] = role.get("token_max_ttl") or 0
        if inc > 0:
            ttl = inc
        now = time.time()
        limit = token["creation_time"] + (token.get("max_ttl") or DEFAULT_TOKEN_TTL)
        expire = min(now + ttl, limit)
        token["expire_at"] = expire
        auth = self.auth_block(token, token["policies"])
        auth["lease_duration"] = max(int(expire - now), 0)
        return self.envelope(None, auth=auth)

    # -- JWT auth ---------------------------------------------------------------------------

    async def route_jwt(self, req: Request, mount: str, sub: str) -> Any:
        backend = self.state.jwt[mount]
        if sub == "config":
            if req.method == "GET":
                self.authorize(req, "read")
                return self.envelope(dict(backend["config"]))
            if req.method in ("POST", "PUT"):
                self.authorize(req, "update")
                return self.jwt_config(mount, req.body)
        if sub in ("role", "role/") and req.method == "LIST":
            self.authorize(req, "list")
            if not backend["roles"]:
                raise not_found()
            return self.envelope({"keys": sorted(backend["roles"])})
        if sub.startswith("role/"):
            # vault-plugin-auth-jwt path_role.go: "name" is a framework.TypeLowerCaseString, so
            # roles are stored, read and deleted under their lower-cased name.
            name = sub[len("role/") :].lower()
            roles = backend["roles"]
            if req.method == "GET":
                self.authorize(req, "read")
                if name not in roles:
                    raise not_found()
                return self.envelope(dict(roles[name]))
            if req.method in ("POST", "PUT"):
                self.authorize(req, self.write_cap(name in roles))
                roles[name] = self.jwt_role(req.body, roles.get(name))
                return None
            if req.method == "DELETE":
                self.authorize(req, "delete")
                roles.pop(name, None)
                return None
        if sub == "login" and req.method in ("POST", "PUT"):
            return await self.jwt_login(mount, req.body, req.remote)
        self.authorize(req, self.op_cap(req))
        raise VaultError(404, f'no handler for route "{req.path}". route entry not found.')

    def jwt_config(self, mount: str, body: dict) -> None:
        sources = [k for k in ("jwks_url", "oidc_discovery_url", "jwt_validation_pubkeys") if body.get(k)]
        if len(sources) != 1:
            raise VaultError(
                400, "exactly one of 'jwt_validation_pubkeys', 'jwks_url' or 'oidc_discovery_url' must be set"
            )
        config = {
            "jwks_url": body.get("jwks_url", ""),
            "oidc_discovery_url": body.get("oidc_discovery_url", ""),
            "jwt_validation_pubkeys": str_list(body.get("jwt_validation_pubkeys"))
            if isinstance(body.get("jwt_validation_pubkeys"), list)
            else ([body["jwt_validation_pubkeys"]] if body.get("jwt_validation_pubkeys") else []),
            "bound_issuer": body.get("bound_issuer", ""),
            "jwt_supported_algs": str_list(body.get("jwt_supported_algs")),
            "default_role": body.get("default_role", ""),
            "oidc_discovery_ca_pem": body.get("oidc_discovery_ca_pem", ""),
            "jwks_ca_pem": body.get("jwks_ca_pem", ""),
        }
        for pem in config["jwt_validation_pubkeys"]:
            try:
                serialization.load_pem_public_key(pem.encode())
            except ValueError as exc:
                raise VaultError(400, f"error parsing public key: {exc}") from exc
        self.state.jwt[mount]["config"] = config
        self.jwks_cache.pop(mount, None)
        return None

    def jwt_role(self, body: dict, old: dict | None) -> dict:
        """A role as vault-plugin-auth-jwt's ``pathRoleCreateUpdate`` (path_role.go) stores it."""
        role = dict(old or {})
        # path_role.go: role_type is read with data.Get, so a write without it means "oidc",
        # also when it updates an existing jwt role.
        role_type = body.get("role_type") or "oidc"
        if role_type not in ("jwt", "oidc"):
            raise VaultError(400, f"invalid 'role_type': {role_type}")
        role["role_type"] = role_type
        for key in ("bound_audiences", "token_policies", "allowed_redirect_uris", "token_bound_cidrs"):
            if key in body:
                role[key] = str_list(body[key])
        if "policies" in body and "token_policies" not in body:
            role["token_policies"] = str_list(body["policies"])
        for key in ("bound_subject", "user_claim", "groups_claim"):
            if key in body:
                role[key] = body[key] or ""
        # path_role.go: the leeways are stored as given (0 when not given); 0 means the default of
        # hashicorp/cap jwt.go (150 s, clock skew 60 s) and a negative value means none.
        for key in ("token_ttl", "token_max_ttl"):
            if key in body:
                role[key] = parse_duration(body[key], 0)
            else:
                role.setdefault(key, 0)
        for key in ("clock_skew_leeway", "expiration_leeway", "not_before_leeway"):
            if key in body:
                role[key] = signed_seconds(body[key], key)
            else:
                role.setdefault(key, 0)
        if "token_no_default_policy" in body:
            role["token_no_default_policy"] = bool(body["token_no_default_policy"])
        if "user_claim_json_pointer" in body:
            role["user_claim_json_pointer"] = bool(body["user_claim_json_pointer"])
        # path_role.go: bound_claims_type defaults to "string"; "glob" needs string values.
        claims_type = body.get("bound_claims_type") or "string"
        if claims_type not in ("string", "glob"):
            raise VaultError(400, f"invalid 'bound_claims_type': {claims_type}")
        role["bound_claims_type"] = claims_type
        if "bound_claims" in body:
            bound = body["bound_claims"] or {}
            if not isinstance(bound, dict):
                raise VaultError(400, f"error converting input {bound} for field 'bound_claims'")
            if claims_type == "glob":
                for values in bound.values():
                    listed = values if isinstance(values, list) else [values]
                    if not isinstance(values, list | str | bool | int | float):
                        raise VaultError(400, f"claim is not a string or list: {values}")
                    for v in listed:
                        if not isinstance(v, str):
                            raise VaultError(400, f"claim is not a string: {v}")
            role["bound_claims"] = bound
        role.setdefault("bound_audiences", [])
        role.setdefault("token_policies", [])
        role.setdefault("allowed_redirect_uris", [])
        role.setdefault("bound_subject", "")
        role.setdefault("bound_claims", {})
        role.setdefault("token_no_default_policy", False)
        role.setdefault("user_claim_json_pointer", False)
        if not role.get("user_claim"):
            raise VaultError(400, "a user claim must be defined on the role")
        if role_type == "oidc" and not role["allowed_redirect_uris"]:
            raise VaultError(400, "'allowed_redirect_uris' must be set if 'role_type' is 'oidc' or unspecified.")
        if role_type == "jwt" and not (
            role["bound_audiences"] or role["bound_subject"] or role["bound_claims"] or role.get("token_bound_cidrs")
        ):
            raise VaultError(400, "must have at least one bound constraint when creating/updating a role")
        if role["token_max_ttl"] and role["token_ttl"] > role["token_max_ttl"]:
            raise VaultError(400, "ttl should not be greater than max ttl")
        role["policies"] = role["token_policies"]
        return role

    async def jwks(self, mount: str, force: bool = False) -> dict[str, Any]:
        """``{kid: key}`` for the configured source, cached for a minute (refetched on an unknown kid)."""
        cfg = self.state.jwt[mount]["config"]
        cached = self.jwks_cache.get(mount)
        if cached and not force and time.monotonic() - cached[0] < 60:
            return cached[1]
        url = cfg.get("jwks_url")
        timeout = aiohttp.ClientTimeout(total=self.jwks_timeout)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                if cfg.get("oidc_discovery_url"):
                    base = cfg["oidc_discovery_url"].rstrip("/")
                    async with session.get(f"{base}/.well-known/openid-configuration") as resp:
                        if resp.status != 200:
                            raise VaultError(500, f"error checking oidc discovery URL: status {resp.status}")
                        disco = await resp.json(content_type=None)
                    if disco.get("issuer") and disco["issuer"].rstrip("/") != base:
                        raise VaultError(
                            500,
                            "error checking oidc discovery URL: issuer did not match "
                            f"the issuer returned by provider, expected {base!r} got "
                            f"{disco['issuer']!r}",
                        )
                    url = disco["jwks_uri"]
                async with session.get(url) as resp:
                    if resp.status != 200:
                        raise VaultError(500, f"error fetching JWKS: status {resp.status}")
                    doc = await resp.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError, KeyError) as exc:
            raise VaultError(500, f"error fetching keys: {exc.__class__.__name__}") from exc
        keys = {}
        for jwk in doc.get("keys", []):
            try:
                keys[jwk.get("kid", "")] = pyjwt.PyJWK(jwk).key
            except (pyjwt.PyJWKError, pyjwt.InvalidKeyError):
                continue
        self.jwks_cache[mount] = (time.monotonic(), keys)
        return keys

    async def jwt_login(self, mount: str, body: dict, remote: str | None = None) -> dict:
        """vault-plugin-auth-jwt path_login.go ``pathLogin``; the token checks are those of
        hashicorp/cap jwt/jwt.go ``Validator.validateAll``, in the same order."""
        backend = self.state.jwt[mount]
        cfg = backend["config"]
        if not cfg:
            raise VaultError(400, "could not load configuration")
        # path_login.go: "role" is a TypeLowerCaseString, as the stored role names.
        name = str(body.get("role") or cfg.get("default_role") or "").lower()
        if not name:
            raise VaultError(400, "missing role")
        role = backend["roles"].get(name)
        if role is None:
            raise VaultError(400, f'role "{name}" could not be found')
        if role["role_type"] != "jwt":
            raise VaultError(400, "role with oidc role_type is not allowed")
        token = body.get("jwt")
        if not token:
            raise VaultError(400, "missing token")
        # path_login.go: token_bound_cidrs are checked against the caller's address before the JWT
        # (cidrutil.RemoteAddrIsOk), a mismatch is a plain permission denied
        if role.get("token_bound_cidrs") and not addr_in_cidrs(remote, role["token_bound_cidrs"]):
            raise denied()
        try:
            header = pyjwt.get_unverified_header(token)
        except pyjwt.PyJWTError as exc:
            raise VaultError(400, f"error validating token: error verifying token signature: {exc}") from exc
        alg = header.get("alg")
        candidates: list[Any]
        if cfg.get("jwt_validation_pubkeys"):
            candidates = [serialization.load_pem_public_key(p.encode()) for p in cfg["jwt_validation_pubkeys"]]
        else:
            keys = await self.jwks(mount)
            kid = header.get("kid")
            if kid not in keys:
                keys = await self.jwks(mount, force=True)
            candidates = [keys[kid]] if kid in keys else list(keys.values())
        claims = None
        for key in candidates:  # cap: the signature first, whatever the algorithm
            try:
                claims = pyjwt.decode(
                    token,
                    key,
                    algorithms=[alg] if alg in JWT_ALGS else JWT_ALGS,
                    options={
                        "verify_aud": False,
                        "verify_exp": False,
                        "verify_nbf": False,
                        "verify_iat": False,
                        "verify_iss": False,
                    },
                )
                break
            except (pyjwt.InvalidSignatureError, pyjwt.InvalidAlgorithmError, pyjwt.InvalidKeyError):
                continue
            except pyjwt.PyJWTError as exc:
                raise VaultError(400, f"error validating token: error verifying token signature: {exc}") from exc
        if claims is None:
            raise VaultError(
                400, "error validating token: error verifying token signature: failed to verify id token signature"
            )
        # path_login.go: jwt_supported_algs, else every algorithm Vault knows
        if alg not in (cfg.get("jwt_supported_algs") or JWT_ALGS):
            raise VaultError(
                400,
                "error validating token: invalid algorithm (alg) header parameter: "
                f"unsupported signing algorithm {alg!r}",
            )
        if cfg.get("bound_issuer") and claims.get("iss") != cfg["bound_issuer"]:
            raise VaultError(400, "error validating token: invalid issuer (iss) claim")
        if role["bound_subject"] and claims.get("sub") != role["bound_subject"]:
            raise VaultError(400, "error validating token: invalid subject (sub) claim")
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else list(aud or [])
        if role["bound_audiences"] and not set(auds) & set(role["bound_audiences"]):
            raise VaultError(
                400,
                "error validating token: invalid audience (aud) claim: "
                "audience claim does not match any expected audience",
            )
        self.check_times(claims, role)
        if not role["bound_audiences"] and any(auds):
            raise VaultError(400, "audience claim found in JWT but no audiences bound to the role")
        # path_login.go createIdentity: the user claim before the bound claims
        user_claim = role["user_claim"]
        user = json_pointer(claims, user_claim) if role.get("user_claim_json_pointer") else claims.get(user_claim)
        if user is None:
            raise VaultError(400, f'claim "{user_claim}" not found in token')
        if not isinstance(user, str):
            raise VaultError(400, f'claim "{user_claim}" could not be converted to string')
        try:
            validate_bound_claims(role.get("bound_claims_type") or "string", role.get("bound_claims") or {}, claims)
        except ValueError as exc:
            raise VaultError(400, f"error validating claims: {exc}") from exc
        # Vault core (request_handling.go, policyutil.SanitizePolicies): "default" is added to the
        # token's policies unless token_no_default_policy; token_policies is that sorted list.
        policies = list(role["token_policies"])
        if not role.get("token_no_default_policy"):
            policies.append("default")
        ttl = role.get("token_ttl") or DEFAULT_TOKEN_TTL
        new = self.state.add_token(
            policies=policies,
            ttl=ttl,
            path=f"auth/{mount}login",
            display_name=f"{mount.rstrip('/')}-{user}",
            meta={"role": name},
            max_ttl=role.get("token_max_ttl") or 0,
            role=(mount, name),
        )
        self.state.save()
        return self.envelope(None, auth=self.auth_block(new, new["policies"]))

    @staticmethod
    def check_times(claims: dict, role: dict, now: float | None = None) -> None:
        """hashicorp/cap jwt/jwt.go: at least one of iat/nbf/exp; a missing exp is the later of
        iat/nbf plus expiration_leeway, a missing nbf is iat (or exp minus not_before_leeway);
        then nbf, exp and iat are each checked with the clock-skew leeway only."""
        now = time.time() if now is None else now

        def num(name: str) -> float:
            value = claims.get(name)
            if value is None:
                return 0
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise VaultError(400, f"error validating token: json: cannot unmarshal {name} into a NumericDate")
            return float(value)

        def leeway(value: int, default: int) -> int:
            return 0 if value < 0 else (value or default)

        iat, exp, nbf = num("iat"), num("exp"), num("nbf")
        if not (iat or exp or nbf):
            raise VaultError(
                400,
                "error validating token: no issued at (iat), not before (nbf), or expiration time (exp) "
                "claims in token",
            )
        if not exp:
            exp = max(iat, nbf) + leeway(role.get("expiration_leeway", 0), CAP_DEFAULT_LEEWAY)
        if not nbf:
            nbf = iat or exp - leeway(role.get("not_before_leeway", 0), CAP_DEFAULT_LEEWAY)
        skew = leeway(role.get("clock_skew_leeway", 0), CAP_DEFAULT_CLOCK_SKEW)
        if now + skew < nbf:
            raise VaultError(400, "error validating token: invalid not before (nbf) claim: token not yet valid")
        if now - skew > exp:
            raise VaultError(400, "error validating token: invalid expiration time (exp) claim: token is expired")
        if iat and now + skew < iat:
            raise VaultError(400, "error validating token: invalid issued at (iat) claim: token issued in the future")

    # -- KV version 2 -----------------------------------------------------------------------

    def route_kv2(self, req: Request, mount: str, rest: str) -> Any:
        store = self.state.kv.setdefault(mount, {})
        kind, _, key = rest.partition("/")
        config = self.state.mounts[mount].setdefault(
            "kv_config", {"max_versions": 0, "cas_required": False, "delete_version_after": "0s"}
        )
        if kind == "config" and not key:
            return self.kv_config(req, config)
        if kind == "data":
            return self.kv_data(req, store, key, config)
        if kind == "metadata":
            return self.kv_metadata(req, store, key)
        if kind in ("delete", "undelete", "destroy") and key:
            return self.kv_versions(req, store, kind, key)
        self.authorize(req, self.op_cap(req))
        raise VaultError(404, f'no handler for route "{req.path}". route entry not found.')

    def kv_config(self, req: Request, config: dict) -> Any:
        """vault-plugin-secrets-kv path_config.go: read, or update max_versions/cas_required."""
        if req.method == "GET":
            self.authorize(req, "read")
            return self.envelope(dict(config))
        if req.method in ("POST", "PUT"):
            self.authorize(req, "update")
            body = req.body
            if "max_versions" in body:
                config["max_versions"] = field_int(body["max_versions"], "max_versions")
            if "cas_required" in body:
                config["cas_required"] = field_bool(body["cas_required"], "cas_required")
            if "delete_version_after" in body:
                seconds = signed_seconds(body["delete_version_after"], "delete_version_after")
                if seconds:
                    raise VaultError(400, "delete_version_after is not supported by the devstack Vault")
                config["delete_version_after"] = "0s"
            return None
        raise VaultError(405, "unsupported operation")

    def kv_versions(self, req: Request, store: dict, kind: str, key: str) -> Any:
        """path_delete.go (``delete``/``undelete``) and path_destroy.go: an update on
        ``<mount>/<kind>/<key>`` with ``versions``; unknown or destroyed versions are skipped,
        a missing key is not an error."""
        if req.method not in ("POST", "PUT"):
            self.authorize(req, self.op_cap(req))
            raise VaultError(405, "unsupported operation")
        self.authorize(req, "update")
        versions = comma_ints(req.body.get("versions"), "versions")
        if not versions:
            raise VaultError(400, "no version number provided" if kind == "destroy" else "No version number provided")
        rec = store.get(key)
        if rec is None:
            return None
        now = now_rfc3339()
        for number in versions:
            v = rec["versions"].get(str(number))
            if v is None or v["destroyed"]:
                continue
            if kind == "delete":
                if not v["deletion_time"]:
                    v["deletion_time"] = now
            elif kind == "undelete":
                v["deletion_time"] = ""
            else:
                v["destroyed"] = True
                v["data"] = None
        rec["updated_time"] = now
        return None

    @staticmethod
    def kv_meta_view(rec: dict, version: int) -> dict:
        v = rec["versions"][str(version)]
        return {
            "created_time": v["created_time"],
            "custom_metadata": rec.get("custom_metadata"),
            "deletion_time": v["deletion_time"],
            "destroyed": v["destroyed"],
            "version": version,
        }

    def kv_data(self, req: Request, store: dict, key: str, config: dict) -> Any:
        if not key:
            raise VaultError(404, "no handler for route")
        rec = store.get(key)
        m = req.method
        if m == "GET":
            self.authorize(req, "read")
            if rec is None or rec["current_version"] == 0:
                if "version" in req.query:
                    field_int(req.query["version"], "version")
                raise not_found()
            # path_data.go: "version" is a framework.TypeInt; Vault's field validation refuses
            # what does not parse (400) and a version <= 0 means the current one.
            version = field_int(req.query.get("version") or 0, "version")
            version = version if version > 0 else rec["current_version"]
            v = rec["versions"].get(str(version))
            if v is None:
                raise not_found()
            meta = self.kv_meta_view(rec, version)
            if v["deletion_time"] or v["destroyed"]:
                return web.json_response(self.envelope({"data": None, "metadata": meta}), status=404)
            return self.envelope({"data": v["data"], "metadata": meta})
        if m in ("POST", "PUT"):
            self.authorize(req, self.write_cap(rec is not None))
            data = req.body.get("data")
            if data is None:
                raise VaultError(400, "no data provided")
            if not isinstance(data, dict):
                raise VaultError(400, "data must be a JSON object")
            opts = req.body.get("options") or {}
            if not isinstance(opts, dict):
                raise VaultError(400, f'error converting input {opts} for field "options"')
            cas = opts.get("cas")
            current = rec["current_version"] if rec else 0
            # path_data.go validateCheckAndSetOption: the engine's config or the key's metadata
            cas_required = (rec or {}).get("cas_required") or config.get("cas_required")
            if cas is None and cas_required:
                raise VaultError(400, "check-and-set parameter required for this call")
            if cas is not None:
                try:
                    cas_value = int(str(cas))
                except ValueError:
                    raise VaultError(400, "error parsing check-and-set parameter") from None
                if cas_value != current:
                    raise VaultError(400, "check-and-set parameter did not match the current version")
            now = now_rfc3339()
            if rec is None:
                rec = store[key] = new_kv_record(now)
            version = current + 1
            rec["versions"][str(version)] = {
                "data": data,
                "created_time": now,
                "deletion_time": "",
                "destroyed": False,
            }
            rec["current_version"] = version
            rec["updated_time"] = now
            # path_data.go AddVersion: the larger of the key's and the engine's max_versions, else 10
            keep = max(rec["max_versions"], config.get("max_versions") or 0) or 10
            for old in sorted(int(v) for v in rec["versions"]):
                if len(rec["versions"]) <= keep:
                    break
                del rec["versions"][str(old)]
            rec["oldest_version"] = min(int(v) for v in rec["versions"])
            return self.envelope(self.kv_meta_view(rec, version))
        if m == "DELETE":
            self.authorize(req, "delete")
            if rec is not None and rec["current_version"]:
                v = rec["versions"].get(str(rec["current_version"]))
                if v and not v["deletion_time"]:
                    v["deletion_time"] = now_rfc3339()
            return None
        raise VaultError(405, "unsupported operation")

    def kv_metadata(self, req: Request, store: dict, key: str) -> Any:
        m = req.method
        if m == "LIST":
            self.authorize(req, "list")
            prefix = key if key.endswith("/") or key == "" else key + "/"
            if prefix == "/":
                prefix = ""
            children = set()
            for k in store:
                if k.startswith(prefix):
                    rest = k[len(prefix) :]
                    head, sep, _ = rest.partition("/")
                    children.add(head + sep)
            if not children:
                raise not_found()
            return self.envelope({"keys": sorted(children)})
        rec = store.get(key)
        if m == "GET":
            self.authorize(req, "read")
            if rec is None:
                raise not_found()
            versions = {
                k: {
                    "created_time": v["created_time"],
                    "deletion_time": v["deletion_time"],
                    "destroyed": v["destroyed"],
                }
                for k, v in rec["versions"].items()
            }
            return self.envelope(
                {
                    "cas_required": rec["cas_required"],
                    "created_time": rec["created_time"],
                    "current_version": rec["current_version"],
                    "custom_metadata": rec["custom_metadata"],
                    "delete_version_after": "0s",
                    "max_versions": rec["max_versions"],
                    "oldest_version": rec["oldest_version"],
                    "updated_time": rec["updated_time"],
                    "versions": versions,
                }
            )
        if m in ("POST", "PUT"):
            self.authorize(req, self.write_cap(rec is not None))
            now = now_rfc3339()
            if rec is None:
                rec = store[key] = new_kv_record(now)
            if "max_versions" in req.body:
                rec["max_versions"] = field_int(req.body["max_versions"], "max_versions")
            if "cas_required" in req.body:
                rec["cas_required"] = field_bool(req.body["cas_required"], "cas_required")
            if "custom_metadata" in req.body:
                rec["custom_metadata"] = req.body["custom_metadata"]
            rec["updated_time"] = now
            return None
        if m == "DELETE":
            self.authorize(req, "delete")
            store.pop(key, None)
            return None
        raise VaultError(405, "unsupported operation")


async def serve(host: str, port: int, state: VaultState, stop: asyncio.Event) -> None:
    runner = web.AppRunner(VaultServer(state).app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("vault stand-in listening on http://%s:%d", host, port)
    await stop.wait()
    await runner.cleanup()
