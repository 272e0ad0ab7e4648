"""Hook for writing a secret to HashiCorp Vault after a JWT login (connection ``vault``)."""

from __future__ import annotations

from typing import Any

import hvac
import requests
from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret
from hvac import exceptions as vault_errors

from include.hpcs.errors import HpcsConfigError, HpcsError, HpcsTransientError


class HpcsSecretExists(HpcsError):
    """A check-and-set write found the secret already there (another version than expected)."""

_TRANSIENT = (
    vault_errors.VaultDown,
    vault_errors.InternalServerError,
    vault_errors.BadGateway,
    vault_errors.RateLimitExceeded,
    vault_errors.VaultNotInitialized,
    requests.ConnectionError,
    requests.Timeout,
)


class HpcsVaultHook(BaseHook):
    """Log into Vault with a JWT (a JWT-SVID) and write a KV v2 secret with the token obtained.

    The provider's ``VaultHook`` authenticates with credentials held in the connection; here the
    credential is a short-lived JWT-SVID fetched at run time, hence hvac's
    ``client.auth.jwt.jwt_login``. The connection gives ``host``, ``port`` and ``schema``
    (``http``/``https``, or the ``url`` extra); extras: ``kv_mount`` (default ``kv``),
    ``jwt_mount`` (default ``jwt``), ``verify`` (true/false or a CA path), ``timeout``.
    The Vault token lives only in this hook's memory (and is registered with the secrets masker);
    ``revoke_self`` ends it as soon as its one write is done.

    :param vault_conn_id: the Vault connection
    """

    conn_name_attr = "vault_conn_id"
    default_conn_name = "vault"
    conn_type = "vault"
    hook_name = "Vault (JWT login)"

    def __init__(self, vault_conn_id: str = default_conn_name, **kwargs):
        super().__init__(**kwargs)
        self.vault_conn_id = vault_conn_id
        self._client: hvac.Client | None = None
        self.url = ""
        self.kv_mount = "kv"
        self.jwt_mount = "jwt"

    def get_conn(self) -> hvac.Client:
        if self._client is None:
            conn = self.get_connection(self.vault_conn_id)
            extra = conn.extra_dejson
            if extra.get("url"):
                self.url = str(extra["url"]).rstrip("/")
            else:
                scheme = conn.schema if conn.schema in ("http", "https") else str(extra.get("url_scheme", "http"))
                self.url = f"{scheme}://{conn.host or '127.0.0.1'}" + (f":{conn.port}" if conn.port else "")
            self.kv_mount = str(extra.get("kv_mount", extra.get("mount_point", "kv")))
            self.jwt_mount = str(extra.get("jwt_mount", "jwt"))
            verify = extra.get("verify", True)
            if isinstance(verify, str) and verify.lower() in ("true", "false"):
                verify = verify.lower() == "true"
            self._client = hvac.Client(url=self.url, verify=verify, timeout=int(extra.get("timeout", 30)))
        return self._client

    def login_jwt(self, role: str, jwt: str) -> None:
        """Log in with ``role`` and ``jwt``; the token is kept in the client only."""
        client = self.get_conn()
        mask_secret(jwt)
        try:
            client.auth.jwt.jwt_login(role=role, jwt=jwt, path=self.jwt_mount)
        except _TRANSIENT as exc:
            raise HpcsTransientError(
                f"Vault at {self.url} is unavailable for the JWT login ({type(exc).__name__}); retrying later"
            ) from None
        except (
            vault_errors.InvalidRequest,
            vault_errors.Forbidden,
            vault_errors.Unauthorized,
            vault_errors.InvalidPath,
        ) as exc:
            raise HpcsConfigError(
                f"Vault refused the JWT login with role {role!r} at mount "
                f"{self.jwt_mount!r} ({type(exc).__name__}): the role or the SVID's "
                "audience does not match what the HPCS server registered"
            ) from None
        except vault_errors.VaultError as exc:
            raise HpcsError(f"Vault JWT login failed ({type(exc).__name__})") from None
        if client.token:
            mask_secret(client.token)

    def revoke_self(self) -> bool:
        """Revoke the token of the login (``auth/token/revoke-self``); True when one was revoked."""
        client = self.get_conn()
        if not client.token:
            return False
        try:
            client.auth.token.revoke_self()
        except _TRANSIENT as exc:
            raise HpcsTransientError(
                f"Vault at {self.url} is unavailable for revoking the client token ({type(exc).__name__})"
            ) from None
        except vault_errors.VaultError as exc:
            raise HpcsError(f"Vault refused revoking the client token ({type(exc).__name__})") from None
        client.token = None
        return True

    def write_secret(self, path: str, secret: dict[str, Any], cas: int | None = None) -> int:
        """Create or update ``path`` in the KV v2 mount; returns the new version.

        :param cas: check-and-set: write only if the secret's current version is ``cas`` (``0``: only
            if it does not exist yet); otherwise ``HpcsSecretExists``
        """
        client = self.get_conn()
        kwargs = {"cas": cas} if cas is not None else {}
        try:
            resp = client.secrets.kv.v2.create_or_update_secret(
                path=path, secret=secret, mount_point=self.kv_mount, **kwargs
            )
        except _TRANSIENT as exc:
            raise HpcsTransientError(
                f"Vault at {self.url} is unavailable for writing {self.kv_mount}/{path} "
                f"({type(exc).__name__}); retrying later"
            ) from None
        except vault_errors.InvalidRequest as exc:
            if cas is not None and "check-and-set" in str(exc):
                raise HpcsSecretExists(f"{self.kv_mount}/{path} already exists (check-and-set {cas})") from None
            raise HpcsError(f"Vault refused writing {self.kv_mount}/{path} (InvalidRequest)") from None
        except (vault_errors.Forbidden, vault_errors.Unauthorized, vault_errors.InvalidPath) as exc:
            raise HpcsConfigError(
                f"Vault refused writing {self.kv_mount}/{path} ({type(exc).__name__}): "
                "the client's policy does not cover this path"
            ) from None
        except vault_errors.VaultError as exc:
            raise HpcsError(f"Vault write to {self.kv_mount}/{path} failed ({type(exc).__name__})") from None
        data = (resp or {}).get("data") or {}
        return int(data.get("version", 0))

    def test_connection(self) -> tuple[bool, str]:
        try:
            status = self.get_conn().sys.read_health_status(method="GET")
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            return False, type(exc).__name__
        return True, f"Vault health: {getattr(status, 'status_code', status)}"
