"""Hook shipping files to the supercomputer over SFTP (connection ``supercomputer_sftp``)."""

from __future__ import annotations

import os
from collections.abc import Callable

import paramiko
from airflow.providers.sftp.hooks.sftp import SFTPHook

from include.hpcs.errors import HpcsConfigError, HpcsTransientError
from include.hpcs.shipping import UploadResult, upload_resumable


class SupercomputerSftpHook(SFTPHook):
    """The sftp provider's ``SFTPHook`` on ``supercomputer_sftp``, plus a resumable, verified upload.

    SSH compression is off. Connection attempts are not retried inside the hook (``conn_retry_attempts=1``): an
    authentication failure fails at once with a clear message, a network failure is reported as
    transient and retried by the task.

    :param ssh_conn_id: the SFTP connection of the supercomputer
    """

    default_conn_name = "supercomputer_sftp"
    hook_name = "Supercomputer SFTP"

    def __init__(self, ssh_conn_id: str | None = default_conn_name, **kwargs):
        kwargs.setdefault("conn_retry_attempts", 1)
        super().__init__(ssh_conn_id=ssh_conn_id, **kwargs)
        # What we ship is encrypted, hence incompressible: SSH compression (on by default in
        # SSHHook) would only cost CPU, about a third of the throughput.
        self.compress = False

    def ship(
        self,
        local_path: str | os.PathLike,
        remote_dir: str,
        name: str,
        *,
        progress: Callable[[int], None] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> UploadResult:
        """Upload ``local_path`` to ``remote_dir/name`` (resuming, verified, renamed when complete)."""
        where = f"{self.remote_host}:{self.port or 22}" if getattr(self, "remote_host", None) else self.ssh_conn_id
        try:
            with self.get_managed_conn() as sftp:
                return upload_resumable(sftp, local_path, remote_dir, name, progress=progress, log=log or self.log.info)
        except paramiko.BadHostKeyException:
            raise HpcsConfigError(
                f"the host key of {where} does not match the one in connection '{self.ssh_conn_id}'"
            ) from None
        except paramiko.AuthenticationException:
            raise HpcsConfigError(
                f"SFTP authentication to {where} as {self.username!r} failed: check the "
                f"login and key of connection '{self.ssh_conn_id}'"
            ) from None
        except PermissionError as exc:
            raise HpcsConfigError(
                f"the SFTP server at {where} denies writing {remote_dir}: {exc.strerror or exc}"
            ) from None
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise HpcsTransientError(
                f"SFTP transfer to {where} interrupted ({type(exc).__name__}); the next attempt resumes"
            ) from None
