"""Hooks for the EGA inbox (``lega_inbox``) and archive (``lega_archive``).

Connection extra ``backend``:
- ``posix``: ``root`` is a local directory (inboxes are ``<root>/<user>/``).
- ``s3``: ``bucket``, optional ``prefix``, and ``aws_conn_id`` (an Amazon connection with the
  endpoint and credentials).
- ``sftp`` (inbox only): ``ssh_conn_id`` (an SSH connection) and ``root`` on the server.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook

from include.ega.storage import PosixArchive, PosixInbox, S3Archive, S3Inbox, SftpInbox


class _EgaStorageHook(BaseHook):
    conn_type = "generic"

    def __init__(self, conn_id: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self._sftp_hook = None

    def _extra(self) -> dict[str, Any]:
        return self.get_connection(self.conn_id).extra_dejson or {}

    @staticmethod
    def _s3_client(extra: dict[str, Any]) -> Any:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(aws_conn_id=extra.get("aws_conn_id", "aws_default")).get_conn()

    def close(self) -> None:
        if self._sftp_hook is not None:
            self._sftp_hook.close_conn()
            self._sftp_hook = None


class EgaInboxHook(_EgaStorageHook):
    """:param lega_inbox_conn_id: the inbox connection"""

    conn_name_attr = "lega_inbox_conn_id"
    default_conn_name = "lega_inbox"
    hook_name = "EGA inbox"

    def __init__(self, lega_inbox_conn_id: str = default_conn_name, **kwargs: Any):
        super().__init__(lega_inbox_conn_id, **kwargs)

    def get_conn(self) -> PosixInbox | S3Inbox | SftpInbox:
        extra = self._extra()
        backend = extra.get("backend", "posix")
        if backend == "posix":
            return PosixInbox(extra["root"])
        if backend == "s3":
            return S3Inbox(self._s3_client(extra), extra["bucket"], extra.get("prefix", ""))
        if backend == "sftp":
            from airflow.providers.sftp.hooks.sftp import SFTPHook

            self._sftp_hook = SFTPHook(ssh_conn_id=extra.get("ssh_conn_id", "sftp_default"))
            return SftpInbox(self._sftp_hook.get_conn(), extra.get("root", "."))
        raise ValueError(f"connection {self.conn_id}: unknown inbox backend {backend!r}")


class EgaArchiveHook(_EgaStorageHook):
    """:param lega_archive_conn_id: the archive connection"""

    conn_name_attr = "lega_archive_conn_id"
    default_conn_name = "lega_archive"
    hook_name = "EGA archive"

    def __init__(self, lega_archive_conn_id: str = default_conn_name, **kwargs: Any):
        super().__init__(lega_archive_conn_id, **kwargs)

    def get_conn(self) -> PosixArchive | S3Archive:
        extra = self._extra()
        backend = extra.get("backend", "posix")
        if backend == "posix":
            return PosixArchive(extra["root"])
        if backend == "s3":
            client = self._s3_client(extra)
            bucket = extra["bucket"]
            if str(extra.get("create_bucket", "false")).lower() == "true":
                try:
                    client.head_bucket(Bucket=bucket)
                except Exception:  # noqa: BLE001 - missing bucket: create it (development stacks)
                    client.create_bucket(Bucket=bucket)
            return S3Archive(client, bucket, extra.get("prefix", ""))
        raise ValueError(f"connection {self.conn_id}: unknown archive backend {backend!r}")
