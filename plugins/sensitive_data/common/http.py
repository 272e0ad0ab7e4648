"""One HTTP hook base: the http provider's ``HttpHook``, with status codes mapped to the error classes.

=========================================  ==========================================================
what happened                              raised (the hook's class attributes, so that a pipeline's
                                           hook raises its own subclasses)
=========================================  ==========================================================
refused, reset, DNS failure, timeout       ``transient_error`` (``TransientError``)
HTTP 401, 403                              ``permission_error`` (``PermissionDenied``, a ``ConfigError``)
HTTP 404 with ``missing_ok=True``          nothing: ``request`` returns ``None``
HTTP 408, 425, 429, 5xx                    ``transient_error``
any other 4xx                              ``user_error`` (``UserError``), with the server's message
2xx with a body that is not JSON           ``transient_error`` (a proxy or a restarting service)
=========================================  ==========================================================

Every error has ``status`` (``None`` without an answer) and ``code`` (the service's error code, or
``HTTP<status>``). Messages say which system, while doing what, and what to do; they never carry
the request body, headers or the connection's password.

The connection (type ``http``) is read as ``HttpHook`` reads it: ``host`` (or a full URL),
``port``, ``schema`` (``http``/``https``), ``login``/``password`` (basic auth); extras ``timeout``,
``verify`` (``true``/``false`` or a CA bundle), ``cert``, ``proxies``; other extras become
headers, except those the hook names in ``own_extras``. With ``bearer_token = True`` the
password is sent as ``Authorization: Bearer``. A pipeline's hook::

    class HpcsServerHook(SensitiveDataHttpHook):
        conn_name_attr = "hpcs_server_conn_id"
        default_conn_name = "hpcs_server"
        hook_name = "HPCS server"
        system = "HPCS server"
        own_extras = frozenset({"svid_audience"})
        user_error, transient_error = HpcsUserError, HpcsTransientError
        config_error = permission_error = HpcsConfigError

        def register_client(self) -> dict:
            return self.request("POST", "/api/client/register", "registering the client")

Triggers resolve the connection asynchronously and pass it in (``connection=``), then call the
blocking ``request`` in a thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import json as jsonlib
from typing import Any, ClassVar

import requests
from airflow.providers.http.hooks.http import HttpHook

from include.common.errors import ConfigError, PermissionDenied, SensitiveDataError, TransientError, UserError

__all__ = ["BearerAuth", "SensitiveDataHttpHook"]

TRANSIENT_STATUS = frozenset({408, 425, 429})


class BearerAuth(requests.auth.AuthBase):
    """``Authorization: Bearer <token>``; the token never shows in ``repr``."""

    def __init__(self, token: str):
        self._token = token

    def __call__(self, request):
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "BearerAuth(***)"


class _Extras:
    """The connection as ``HttpHook`` reads its extras, without the hook's own keys."""

    def __init__(self, conn: Any, drop: frozenset[str]):
        self.host = conn.host
        extra = dict(conn.extra_dejson or {})
        for key in drop:
            extra.pop(key, None)
        verify = extra.get("verify")
        if isinstance(verify, str) and verify.lower() in ("true", "false"):
            extra["verify"] = verify.lower() == "true"
        self.extra_dejson = extra


class SensitiveDataHttpHook(HttpHook):
    """Base of the hooks for HTTP services.

    :param http_conn_id: the connection (subclasses name the argument after their system)
    :param connection: an already resolved Connection (triggers resolve it asynchronously first)
    """

    system: ClassVar[str] = "HTTP service"
    own_extras: ClassVar[frozenset[str]] = frozenset()
    bearer_token: ClassVar[bool] = False
    default_timeout: ClassVar[float] = 30.0
    user_error: ClassVar[type[UserError]] = UserError
    config_error: ClassVar[type[ConfigError]] = ConfigError
    permission_error: ClassVar[type[ConfigError]] = PermissionDenied
    transient_error: ClassVar[type[TransientError]] = TransientError

    def __init__(self, http_conn_id: str | None = None, *, connection: Any = None, **kwargs: Any):
        super().__init__(method="GET", http_conn_id=http_conn_id or self.default_conn_name, **kwargs)
        self._connection = connection
        self._session: requests.Session | None = None

    # -- the connection ----------------------------------------------------------------------
    def get_connection(self, conn_id: str) -> Any:  # type: ignore[override]
        if self._connection is not None and self._connection.conn_id == conn_id:
            return self._connection
        return super().get_connection(conn_id)

    def _extract_auth(self, connection: Any) -> Any:
        if self.bearer_token:
            return BearerAuth(connection.password) if connection.password else None
        return super()._extract_auth(connection)

    def _configure_session_from_extra(self, session, connection, extra_options):
        return super()._configure_session_from_extra(session, _Extras(connection, self.own_extras), extra_options)

    def extras(self) -> dict[str, Any]:
        """The connection's extras (all of them, ``own_extras`` included)."""
        return dict(self.get_connection(self.http_conn_id).extra_dejson or {})

    def get_conn(self, headers: dict[Any, Any] | None = None, extra_options: dict[str, Any] | None = None):
        """A ``requests.Session`` configured from the connection, kept for the hook's life."""
        if headers or extra_options:
            return super().get_conn(headers, extra_options)
        if self._session is None:
            self._session = super().get_conn()
        return self._session

    @property
    def url(self) -> str:
        """The service's base URL."""
        if not self.base_url:
            self._set_base_url(self.get_connection(self.http_conn_id))
        return self.base_url.rstrip("/")

    # -- requests ----------------------------------------------------------------------------
    def request(
        self,
        method: str,
        endpoint: str,
        what: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        missing_ok: bool = False,
    ) -> Any:
        """One call: the decoded JSON answer (``None`` for an empty one, or for 404 when ``missing_ok``).

        :param what: what the call does, for messages ("registering the client")
        :raises SensitiveDataError: the classes of the module's table
        """
        response = self.send(method, endpoint, what, json=json, params=params)
        if response.status_code == 404 and missing_ok:
            return None
        self.check_status(response, what)
        if not response.content.strip():
            return None
        try:
            return response.json()
        except ValueError:
            raise self._error(self.transient_error, f"{self.system} sent an answer that is not JSON while {what}",
                              response.status_code, f"HTTP{response.status_code}") from None

    def send(self, method: str, endpoint: str, what: str, **kwargs: Any) -> requests.Response:
        """The raw response (no status check); a connection failure raises ``transient_error``."""
        session = self.get_conn()
        timeout = float(self.merged_extra.get("timeout") or self.default_timeout)
        try:
            return session.request(method.upper(), self.url_from_endpoint(endpoint), timeout=timeout, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise self._error(
                self.transient_error,
                f"{self.system} at {self.url} is unreachable while {what} ({type(exc).__name__})",
                None,
                type(exc).__name__,
            ) from None

    def check_status(self, response: requests.Response, what: str) -> None:  # type: ignore[override]
        """Raise the error class of ``response``'s status code (see the module's table)."""
        status = response.status_code
        if status < 400:
            return
        code, message = self.server_error(response)
        detail = f" ({code}: {message})" if message else ""
        if status in (401, 403):
            raise self._error(
                self.permission_error,
                f"{self.system} refused our credentials while {what} (HTTP {status}){detail}",
                status,
                code,
                hint=f"check the credentials of the '{self.http_conn_id}' connection and what they may do",
            )
        if status >= 500 or status in TRANSIENT_STATUS:
            raise self._error(self.transient_error, f"{self.system} answered HTTP {status} while {what}{detail}",
                              status, code)
        raise self._error(self.user_error, f"{self.system} rejected {what} (HTTP {status}){detail}", status, code)

    def check_response(self, response: requests.Response) -> None:
        """``HttpHook``'s check (used by its ``run``), with this hook's error classes."""
        self.check_status(response, f"{response.request.method} {response.request.path_url}")

    @staticmethod
    def server_error(response: requests.Response) -> tuple[str, str]:
        """The service's error code and message: ``{"error": {"code", "message"}}``, ``{"message"}``
        or ``{"detail"}`` bodies, else the start of the text (at most 300 characters)."""
        code = f"HTTP{response.status_code}"
        try:
            body = response.json()
        except ValueError:
            return code, response.text[:300].strip()
        if isinstance(body, dict):
            err = body.get("error")
            if isinstance(err, dict):
                return str(err.get("code") or code), str(err.get("message") or "")[:300]
            for key in ("message", "detail", "error"):
                if body.get(key):
                    value = body[key]
                    return code, (value if isinstance(value, str) else jsonlib.dumps(value))[:300]
        return code, ""

    def _error(self, cls: type[SensitiveDataError], message: str, status: int | None, code: str,
               hint: str | None = None) -> SensitiveDataError:
        err = cls(message, hint=hint)
        err.status, err.code = status, code
        return err

    def test_connection(self) -> tuple[bool, str]:
        try:
            response = self.send("GET", "/", "testing the connection")
        except SensitiveDataError as exc:
            return False, str(exc)
        return True, f"{self.system} answered HTTP {response.status_code}"
