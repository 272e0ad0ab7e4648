"""Health probes for ``platform_healthcheck``.

Each probe takes a connection id, makes one harmless call with the configured credentials through
the system's own hook, returns what it saw (never a secret), and raises with a plain reason on
failure. Imports are local: the DAG file imports this module's names only by dotted path.
"""

from __future__ import annotations

import socket


def _ok_or_raise(result: tuple[bool, str]) -> str:
    ok, message = result
    if not ok:
        raise RuntimeError(message)
    return message


def address(conn_id: str) -> str:
    """Where the connection points (host:port, or an endpoint URL), for messages; never credentials."""
    from airflow.sdk import BaseHook  # noqa: PLC0415

    conn = BaseHook.get_connection(conn_id)
    if conn.port:
        return f"{conn.host or ''}:{conn.port}"
    return conn.host or conn.extra_dejson.get("endpoint_url", "") or "its configured address"


def probe_hook(conn_id: str) -> str:
    """The stock hook registered for the connection's type, and its ``test_connection()``."""
    from airflow.sdk import BaseHook  # noqa: PLC0415

    return _ok_or_raise(BaseHook.get_connection(conn_id).get_hook().test_connection())


def probe_s3(conn_id: str) -> str:
    """List buckets at the connection's endpoint (the stock test calls AWS STS, absent from S3-only endpoints)."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook  # noqa: PLC0415 - keep DAG parsing light

    hook = S3Hook(aws_conn_id=conn_id)
    buckets = hook.get_conn().list_buckets().get("Buckets", [])
    return f"{len(buckets)} bucket(s) visible at {hook.conn_config.endpoint_url or 'AWS'}"


def probe_lega_broker(conn_id: str) -> str:
    from sensitive_data.hooks.ega_broker import EgaBrokerHook  # noqa: PLC0415

    return "AMQP " + _ok_or_raise(EgaBrokerHook(conn_id).test_connection())


def probe_lega_db(conn_id: str) -> str:
    """Connect with the configured credentials; the schema is created and migrated as on the
    pipeline's first use (idempotent), so that a new deployment checks green before its first file."""
    from sensitive_data.hooks.ega_db import EgaDbHook  # noqa: PLC0415

    hook = EgaDbHook(conn_id)
    hook.get_database(migrate=True).close()
    conn = hook.get_conn()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_database(), version()")
            database, version = cur.fetchone()
    finally:
        conn.close()
    return f"database {database} ({version.split(',')[0]})"


def probe_lega_storage(conn_id: str) -> str:
    """The inbox or archive root (POSIX directory, S3 bucket or SFTP directory) is reachable."""
    from sensitive_data.hooks.ega_storage import EgaArchiveHook, EgaInboxHook  # noqa: PLC0415

    hook = EgaArchiveHook(conn_id) if "archive" in conn_id else EgaInboxHook(conn_id)
    extra = hook.get_connection(conn_id).extra_dejson
    backend = extra.get("backend", "posix")
    store = hook.get_conn()
    try:
        if backend == "posix":
            import os  # noqa: PLC0415

            root = extra["root"]
            if not os.path.isdir(root):
                raise RuntimeError(f"directory {root} does not exist")
            if "archive" in conn_id and not os.access(root, os.W_OK):
                raise RuntimeError(f"directory {root} is not writable by the worker")
            return f"POSIX directory {root}"
        if backend == "s3":
            store.client.head_bucket(Bucket=extra["bucket"])
            return f"S3 bucket {extra['bucket']}"
        return f"{backend} store reachable"
    finally:
        hook.close()


def probe_lega_keys(conn_id: str) -> str:
    from sensitive_data.hooks.ega_keys import EgaKeysHook  # noqa: PLC0415

    keys = EgaKeysHook(conn_id).get_private_keys()
    if not keys:
        raise RuntimeError("no archive private key configured")
    return f"{len(keys)} archive private key(s) unlocked"


def probe_hpcs_server(conn_id: str) -> str:
    from sensitive_data.hooks.hpcs_server import HpcsServerHook  # noqa: PLC0415

    return _ok_or_raise(HpcsServerHook(conn_id).test_connection())


def probe_vault(conn_id: str) -> str:
    from sensitive_data.hooks.hpcs_vault import HpcsVaultHook  # noqa: PLC0415

    return _ok_or_raise(HpcsVaultHook(conn_id).test_connection())


def probe_tcp(conn_id: str) -> str:
    """The service accepts TCP connections (SPIRE server: its API is gRPC over mTLS)."""
    from airflow.sdk import BaseHook  # noqa: PLC0415

    conn = BaseHook.get_connection(conn_id)
    with socket.create_connection((conn.host, int(conn.port)), timeout=10):
        return f"{conn.host}:{conn.port} accepts connections"


def _service_account() -> tuple[str, str]:
    """The data streamer's service account; its password registered with the secrets masker."""
    from airflow.sdk.log import mask_secret  # noqa: PLC0415

    from sensitive_data.hooks.stager import StagerServiceAccountHook  # noqa: PLC0415

    user, password, _ = StagerServiceAccountHook().credential()
    if password:
        mask_secret(password)
    return user, password


def probe_irods(conn_id: str) -> str:
    """Log in to iRODS with the data streamer's service account and stat the zone."""
    from sensitive_data.hooks.stager import StagerIrodsHook  # noqa: PLC0415

    user, password = _service_account()
    hook = StagerIrodsHook(conn_id)
    with hook.client(user, password) as client:
        client.login()
    return f"logged in as {user} to zone {hook.zone}"


def probe_webdav(conn_id: str) -> str:
    """The repository's WebDAV accepts the data streamer's service account."""
    from sensitive_data.hooks.stager import StagerWebdavHook  # noqa: PLC0415

    user, password = _service_account()
    hook = StagerWebdavHook(conn_id)
    hook.check_credential(user, password)
    return f"PROPFIND {hook.url} accepted for {user}"


def probe_stager_keys(conn_id: str) -> str:
    from sensitive_data.hooks.stager import StagerKeysHook  # noqa: PLC0415

    key = StagerKeysHook(conn_id).private_key
    return f"RSA-{key.key_size} private key loaded"


def probe_cleanroom_governance(conn_id: str) -> str:
    from sensitive_data.hooks.cleanroom_governance import CleanroomGovernanceHook  # noqa: PLC0415

    return _ok_or_raise(CleanroomGovernanceHook(conn_id).test_connection())


def probe_cleanroom_k8s(conn_id: str) -> str:
    from sensitive_data.hooks.cleanroom_k8s import CleanroomSparkHook  # noqa: PLC0415

    return CleanroomSparkHook(conn_id).check_access()
