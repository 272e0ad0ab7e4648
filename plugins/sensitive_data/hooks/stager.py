"""Hooks of the data stager: the repository (iRODS and its WebDAV door), the stager's key pair,
the streamer's service account and the stager settings. Only these read Connections/Variables."""

from __future__ import annotations

import json
import os
import pwd
from functools import cached_property
from pathlib import Path

from airflow.sdk import BaseHook

from include.stager.credentials import decrypt_password, encrypt_password, load_private_key
from include.stager.settings import StagerSettings, load_settings
from include.stager.webdav import check_credential


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

    def decrypt(self, value: str) -> str:
        return decrypt_password(value, self.private_key)

    def encrypt(self, password: str) -> str:
        return encrypt_password(password, self.private_key)


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
        default the user the worker runs as."""
        conn = self.conn
        posix_user = conn.extra_dejson.get("stager_user") or pwd.getpwuid(os.geteuid()).pw_name
        return conn.login, conn.password, posix_user


def stager_settings() -> StagerSettings:
    """Settings from ``SDP_STAGER_*`` environment variables, overridden by the ``stager_settings``
    Airflow Variable (JSON) when it exists."""
    overrides = {}
    try:
        from airflow.sdk import Variable

        raw = Variable.get("stager_settings", default=None)
        if raw:
            overrides = json.loads(raw) if isinstance(raw, str) else dict(raw)
    except Exception:  # noqa: BLE001 - no Airflow context (unit tests, CLI): environment only
        overrides = {}
    return load_settings(overrides)
