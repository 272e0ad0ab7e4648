"""Hooks of the data stager: the repository (iRODS and its WebDAV door), the stager's key pair,
the seal key, the streamer's service account and the stager settings. Only these read
Connections/Variables. Every secret they decrypt or read is registered with Airflow's secrets
masker (``mask_secret``) before it is returned."""

from __future__ import annotations

import base64
import binascii
import os
import pwd
from functools import cached_property
from pathlib import Path

from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret

from include.common.errors import ConfigError
from include.stager import seal as job_seal
from include.stager.credentials import (
    decrypt_bound,
    decrypt_client,
    encrypt_bound,
    load_private_key,
    looks_encrypted,
)
from include.stager.settings import StagerSettings, load_settings
from include.stager.webdav import check_credential
from sensitive_data.common.settings import variable_json


class _StagerHook(BaseHook):
    """One connection of the stager, read lazily."""

    default_conn_name = ""

    def __init__(self, conn_id: str | None = None):
        super().__init__()
        self.conn_id = conn_id or self.default_conn_name

    @cached_property
    def conn(self):
        return self.get_connection(self.conn_id)


class StagerIrodsHook(_StagerHook):
    """The Radboud Data Repository's iRODS service: host, port and ``extra.zone`` of the connection.

    Jobs bring their own credential (``drUser``/``drPass``); the connection's login, if any, is
    not used for jobs.

    :param irods_conn_id: the iRODS connection.
    """

    conn_name_attr = "irods_conn_id"
    default_conn_name = "irods"
    conn_type = "irods"
    hook_name = "iRODS (data stager)"

    def __init__(self, irods_conn_id: str = default_conn_name):
        super().__init__(irods_conn_id)

    @property
    def zone(self) -> str:
        return self.conn.extra_dejson.get("zone", "tempZone")

    def account(self, user: str, password: str):
        from include.stager.irods import IrodsAccount  # python-irodsclient only where it is used

        return IrodsAccount(host=self.conn.host or "127.0.0.1", port=int(self.conn.port or 1247),
                            zone=self.zone, user=user, password=password)

    def client(self, user: str, password: str):
        from include.stager.irods import IrodsClient

        return IrodsClient(self.account(user, password))


class StagerKeysHook(_StagerHook):
    """The stager's RSA key pair; ``drPass`` of every job is encrypted with its public key.

    The private key is taken from the connection's ``extra.private_key`` (PEM; how a Vault
    secrets backend delivers it), else from the file ``extra.private_key_file``. The connection's
    password, if set, is the key's passphrase.

    :param stager_keys_conn_id: the connection holding the private key.
    """

    conn_name_attr = "stager_keys_conn_id"
    default_conn_name = "stager_keys"
    conn_type = "generic"
    hook_name = "Data stager keys"

    def __init__(self, stager_keys_conn_id: str = default_conn_name):
        super().__init__(stager_keys_conn_id)

    @cached_property
    def private_key(self):
        conn = self.conn
        extra = conn.extra_dejson
        pem = extra.get("private_key")
        if not pem:
            path = extra.get("private_key_file")
            if not path:
                raise ValueError(f"connection {self.conn_id} has neither private_key "
                                 "nor private_key_file in its extra")
            pem = Path(path).read_bytes()
        return load_private_key(pem, conn.password.encode() if conn.password else None)

    def decrypt_bound(self, value: str, *, dr_user: str, stager_user: str, job_id: str) -> str:
        """A job's ``drPass``: OAEP bound to this job only (what tasks accept); masked in logs."""
        password = decrypt_bound(value, self.private_key, dr_user=dr_user, stager_user=stager_user,
                                 job_id=job_id)
        mask_secret(password)
        return password

    def encrypt_bound(self, password: str, *, dr_user: str, stager_user: str, job_id: str) -> str:
        return encrypt_bound(password, self.private_key, dr_user=dr_user, stager_user=stager_user,
                             job_id=job_id)

    def decrypt_client(self, value: str) -> str:
        """A client's ciphertext (PKCS#1 v1.5 or unlabelled OAEP): the stager API only, and the result
        must pass the repository's credential check before it is trusted; masked in logs."""
        password = decrypt_client(value, self.private_key)
        mask_secret(password)
        return password

    def looks_encrypted(self, value) -> bool:
        return looks_encrypted(value, self.private_key)


class StagerSealHook(_StagerHook):
    """The key that seals stager jobs (HMAC-SHA256, :mod:`include.stager.seal`).

    The key is the connection's password, base64 (at least 32 bytes); from Vault in production.
    Only the stager API, the streamer and the workers that verify seals read it.

    :param stager_seal_conn_id: the connection holding the seal key.
    """

    conn_name_attr = "stager_seal_conn_id"
    default_conn_name = "stager_seal"
    conn_type = "generic"
    hook_name = "Data stager seal key"

    def __init__(self, stager_seal_conn_id: str = default_conn_name):
        super().__init__(stager_seal_conn_id)

    @cached_property
    def key(self) -> bytes:
        secret = self.conn.password or ""
        mask_secret(secret)
        try:
            key = base64.b64decode(secret, validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) < job_seal.MIN_KEY_BYTES:
            raise ValueError(f"connection {self.conn_id}: the password must be a base64 key of at least "
                             f"{job_seal.MIN_KEY_BYTES} bytes")
        return key

    def seal(self, job: dict, job_id: str, submitted_by: str) -> str:
        return job_seal.seal(job, job_id, submitted_by, self.key)

    def verify(self, job: dict, job_id: str, seal_value, submitted_by, triggering_user: str | None) -> None:
        job_seal.verify(job, job_id, seal_value, submitted_by, self.key, triggering_user=triggering_user)


class StagerWebdavHook(_StagerHook):
    """The repository's WebDAV door, used to check a job's credential before accepting it.

    :param stager_webdav_conn_id: connection with schema (http/https), host, port and
        optionally ``extra.path`` (the collection probed with PROPFIND).
    """

    conn_name_attr = "stager_webdav_conn_id"
    default_conn_name = "stager_webdav"
    conn_type = "http"
    hook_name = "Data stager WebDAV"

    def __init__(self, stager_webdav_conn_id: str = default_conn_name):
        super().__init__(stager_webdav_conn_id)

    @cached_property
    def url(self) -> str:
        conn = self.conn
        scheme = conn.schema or "https"
        port = f":{conn.port}" if conn.port else ""
        path = conn.extra_dejson.get("path", "/")
        return f"{scheme}://{conn.host}{port}/{path.lstrip('/')}"

    def check_credential(self, user: str, password: str) -> None:
        check_credential(self.url, user, password)


class StagerServiceAccountHook(_StagerHook):
    """The streamer's repository service account (login/password of the connection).

    :param stager_streamer_conn_id: the service account connection.
    """

    conn_name_attr = "stager_streamer_conn_id"
    default_conn_name = "stager_streamer"
    conn_type = "generic"
    hook_name = "Data streamer service account"

    def __init__(self, stager_streamer_conn_id: str = default_conn_name):
        super().__init__(stager_streamer_conn_id)

    def credential(self) -> tuple[str, str, str]:
        """``(repository user, password, posix user)``; the POSIX user is ``extra.stager_user``, by
        default the user the worker runs as (refused at transfer time when that is root or a system
        account: configure an unprivileged, allow-listed account)."""
        conn = self.conn
        posix_user = conn.extra_dejson.get("stager_user") or pwd.getpwuid(os.geteuid()).pw_name
        if conn.password:
            mask_secret(conn.password)
        return conn.login, conn.password, posix_user


def stager_settings() -> StagerSettings:
    """Settings from ``SDP_STAGER_*`` environment variables, overridden by the ``stager_settings``
    Airflow Variable (a JSON object) when it exists; read when called (in a task or the API).

    :raises ConfigError: the Variable is set but is not a JSON object, or a setting has a value of
        the wrong kind (``"threads": "many"``): never silently replaced by the defaults
    """
    overrides = variable_json("stager_settings", {}, expect=dict)
    try:
        return load_settings(overrides)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"a stager setting has a value of the wrong kind ({exc})",
                          hint="fix the Airflow Variable 'stager_settings' or the SDP_STAGER_* environment "
                               "variables (see docs/stager.md, Settings)") from None
