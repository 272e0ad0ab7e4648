"""Hook for the HPCS server's client API (connection ``hpcs_server``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import requests
from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret

from include.hpcs.errors import HpcsConfigError, HpcsError, HpcsTransientError, HpcsUserError


@dataclass(frozen=True)
class ClientRegistration:
    """What ``/api/client/register`` returns. ``repr`` never shows the join token."""

    client_id: str
    spiffe_id: str
    token: str = field(repr=False)
    message: str = ""


class HpcsServerHook(BaseHook):
    """Talk to the HPCS server: register this client's SPIRE agent and create the workloads that may
    read a secret.

    The connection (type ``http``) gives ``host``, ``port`` and ``schema`` (``http`` or ``https``);
    extras: ``verify`` (true/false or a CA bundle path, default true), ``timeout`` (seconds, default 30).

    :param hpcs_server_conn_id: the HPCS server connection
    """

    conn_name_attr = "hpcs_server_conn_id"
    default_conn_name = "hpcs_server"
    conn_type = "http"
    hook_name = "HPCS server"

    def __init__(self, hpcs_server_conn_id: str = default_conn_name, **kwargs):
        super().__init__(**kwargs)
        self.hpcs_server_conn_id = hpcs_server_conn_id
        self._base_url: str | None = None
        self._verify: bool | str = True
        self._timeout: float = 30.0
        self._session: requests.Session | None = None

    def _load(self) -> None:
        if self._base_url is not None:
            return
        conn = self.get_connection(self.hpcs_server_conn_id)
        extra = conn.extra_dejson
        scheme = conn.schema if conn.schema in ("http", "https") else "http"
        host = conn.host or "127.0.0.1"
        if "://" in host:
            self._base_url = host.rstrip("/")
        else:
            self._base_url = f"{scheme}://{host}" + (f":{conn.port}" if conn.port else "")
        verify = extra.get("verify", True)
        self._verify = (
            verify
            if isinstance(verify, bool) or str(verify).lower() not in ("true", "false")
            else str(verify).lower() == "true"
        )
        self._timeout = float(extra.get("timeout", 30))

    @property
    def base_url(self) -> str:
        self._load()
        assert self._base_url is not None
        return self._base_url

    def get_conn(self) -> requests.Session:
        if self._session is None:
            self._load()
            self._session = requests.Session()
            self._session.verify = self._verify
        return self._session

    def _post(self, path: str, what: str, **kwargs) -> dict[str, Any]:
        url = self.base_url + path
        try:
            resp = self.get_conn().post(url, timeout=self._timeout, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise HpcsTransientError(
                f"HPCS server at {self.base_url} is unreachable while {what} ({type(exc).__name__}); retrying later"
            ) from None
        if resp.status_code >= 500 or resp.status_code in (408, 429):
            raise HpcsTransientError(f"HPCS server answered HTTP {resp.status_code} while {what}; retrying later")
        if resp.status_code == 400:
            raise HpcsUserError(f"HPCS server rejected the request while {what}: {self._message(resp)}")
        if resp.status_code >= 400:
            raise HpcsConfigError(
                f"HPCS server refused the request while {what} (HTTP {resp.status_code}); "
                f"check the '{self.hpcs_server_conn_id}' connection"
            )
        try:
            body = resp.json()
        except ValueError:
            raise HpcsTransientError(f"HPCS server sent a non-JSON answer while {what}") from None
        if not isinstance(body, dict):
            raise HpcsError(f"HPCS server sent an unexpected answer while {what}")
        if body.get("success") is not True:
            message = str(body.get("message") or "no message")[:300]
            raise HpcsError(f"HPCS server could not complete {what}: {message}")
        return body

    @staticmethod
    def _message(resp: requests.Response) -> str:
        try:
            body = resp.json()
        except ValueError:
            return "no message"
        return str(body.get("message") or "no message")[:300] if isinstance(body, dict) else "no message"

    @property
    def svid_audience(self) -> str:
        """The JWT audience the HPCS server binds its Vault roles to (extra ``svid_audience``)."""
        extra = self.get_connection(self.hpcs_server_conn_id).extra_dejson
        return str(extra.get("svid_audience") or "vault")

    def register_client(self) -> ClientRegistration:
        """``POST /api/client/register``: a join token for this client's SPIRE agent."""
        body = self._post("/api/client/register", "registering the client")
        if body.get("token"):
            mask_secret(str(body["token"]))
        try:
            return ClientRegistration(
                client_id=str(body["client_id"]),
                spiffe_id=str(body["spiffeID"]),
                token=str(body["token"]),
                message=str(body.get("message", "")),
            )
        except KeyError as exc:
            raise HpcsError(f"HPCS server registration answer lacks {exc.args[0]!r}") from None

    def create_workloads(
        self, *, jwt: str, secret: str, users: list[str], groups: list[str], compute_nodes: list[str]
    ) -> dict[str, Any]:
        """``POST /api/client/create-workloads``: let the workloads (compute nodes x users/groups) read
        the secret. Returns the server's answer (clientID, spiffeID, compute_nodes_added,
        secrets_path, user_role)."""
        payload = {
            "jwt": jwt,
            "secret": secret,
            "users": users or None,
            "groups": groups or None,
            "compute_nodes": compute_nodes,
        }
        body = self._post("/api/client/create-workloads", f"creating the workloads of secret {secret!r}", json=payload)
        missing = [k for k in ("spiffeID", "secrets_path", "user_role") if k not in body]
        if missing:
            raise HpcsError(f"HPCS server workload answer lacks {', '.join(missing)}")
        return {k: v for k, v in body.items() if k not in ("jwt", "token")}

    def test_connection(self) -> tuple[bool, str]:
        try:
            resp = self.get_conn().get(self.base_url + "/", timeout=self._timeout)
        except requests.RequestException as exc:
            return False, f"{type(exc).__name__}"
        return True, f"HPCS server answered HTTP {resp.status_code}"
