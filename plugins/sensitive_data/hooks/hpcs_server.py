"""Hook for the HPCS server's client API (connection ``hpcs_server``), on the shared HTTP hook base."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import requests
from airflow.sdk.log import mask_secret

from include.hpcs.errors import HpcsConfigError, HpcsError, HpcsTransientError, HpcsUserError
from sensitive_data.common.http import TRANSIENT_STATUS, SensitiveDataHttpHook


@dataclass(frozen=True)
class ClientRegistration:
    """What ``/api/client/register`` returns. ``repr`` never shows the join token."""

    client_id: str
    spiffe_id: str
    token: str = field(repr=False)
    message: str = ""


class HpcsServerHook(SensitiveDataHttpHook):
    """Talk to the HPCS server: register this client's SPIRE agent and create the workloads that may
    read a secret.

    The connection (type ``http``) is read by ``SensitiveDataHttpHook``: ``host`` (or a full URL),
    ``port``, ``schema`` (``http`` or ``https``); extras ``verify`` (true/false or a CA bundle path,
    default true), ``timeout`` (seconds, default 30), and this hook's own ``svid_audience`` (the JWT
    audience of the Vault roles, default ``vault``; never sent as a header).

    Status codes map as for every HTTP hook (refused/timeout/408/429/5xx: ``HpcsTransientError``;
    401/403: ``HpcsConfigError``; 400: ``HpcsUserError`` with the server's message), with what the
    HPCS protocol adds: any other 4xx (404, 405: the connection does not point at an HPCS server)
    is an ``HpcsConfigError``, and a 200 answer whose ``success`` is not ``true`` (the server reports
    its failures so, e.g. ``{"success": "false"}``) is an ``HpcsError`` carrying the server's message.

    :param hpcs_server_conn_id: the HPCS server connection
    """

    conn_name_attr = "hpcs_server_conn_id"
    default_conn_name = "hpcs_server"
    conn_type = "http"
    hook_name = "HPCS server"
    system: ClassVar[str] = "HPCS server"
    own_extras: ClassVar[frozenset[str]] = frozenset({"svid_audience"})
    user_error = HpcsUserError
    transient_error = HpcsTransientError
    config_error = permission_error = HpcsConfigError

    def __init__(self, hpcs_server_conn_id: str = default_conn_name, **kwargs: Any):
        super().__init__(hpcs_server_conn_id, **kwargs)
        self.hpcs_server_conn_id = hpcs_server_conn_id

    def check_status(self, response: requests.Response, what: str) -> None:  # type: ignore[override]
        """The shared mapping, except that only 400 is the submitter's error: another 4xx means the
        connection does not point at an HPCS server's client API."""
        status = response.status_code
        if 400 < status < 500 and status not in (401, 403) and status not in TRANSIENT_STATUS:
            code, message = self.server_error(response)
            detail = f" ({code}: {message})" if message else ""
            raise self._error(
                self.config_error,
                f"{self.system} refused {what} (HTTP {status}){detail}",
                status,
                code,
                hint=f"check that the '{self.http_conn_id}' connection points at the HPCS server",
            )
        super().check_status(response, what)

    def _post(self, path: str, what: str, **kwargs: Any) -> dict[str, Any]:
        body = self.request("POST", path, what, **kwargs)
        if not isinstance(body, dict):
            raise HpcsError(f"HPCS server sent an unexpected answer while {what}")
        if body.get("success") is not True:
            message = str(body.get("message") or "no message")[:300]
            raise HpcsError(f"HPCS server could not complete {what}: {message}")
        return body

    @property
    def svid_audience(self) -> str:
        """The JWT audience the HPCS server binds its Vault roles to (extra ``svid_audience``)."""
        return str(self.extras().get("svid_audience") or "vault")

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
