"""Resumable, verified upload of one file over SFTP (any client with paramiko's SFTPClient API).

The file is written as ``<name>.part``; an interrupted upload resumes from the size already on
the remote side after checking that the last bytes sent match the local file at that offset (a
different or corrupt ``.part`` restarts from zero). The remote size is checked once all is sent,
and only then is the ``.part`` renamed to its final name (atomically where the server has the
``posix-rename@openssh.com`` extension).
"""

from __future__ import annotations

import errno
import os
import posixpath
from collections.abc import Callable
from dataclasses import asdict, dataclass

from include.hpcs.errors import HpcsTransientError

CHUNK = 256 * 1024
TAIL_CHECK = 1024 * 1024


@dataclass
class UploadResult:
    remote_path: str
    size: int
    resumed_from: int = 0
    sent: int = 0
    already_there: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def _stat_size(sftp, path: str) -> int | None:
    try:
        return sftp.stat(path).st_size
    except OSError as exc:  # paramiko raises IOError(ENOENT) / FileNotFoundError
        if getattr(exc, "errno", None) in (errno.ENOENT, None) or isinstance(exc, FileNotFoundError):
            return None
        raise


def _same_tail(sftp, remote: str, local_path: str, end: int, span: int = TAIL_CHECK) -> bool:
    start = max(0, end - span)
    with open(local_path, "rb") as f:
        f.seek(start)
        want = f.read(end - start)
    with sftp.open(remote, "rb") as r:
        r.seek(start)
        got = b""
        while len(got) < len(want):
            block = r.read(len(want) - len(got))
            if not block:
                break
            got += block
    return got == want


def makedirs(sftp, remote_dir: str) -> None:
    parts = []
    d = remote_dir.rstrip("/")
    while d and _stat_size(sftp, d) is None:
        parts.append(d)
        d = posixpath.dirname(d)
        if d in ("", "/"):
            break
    for p in reversed(parts):
        try:
            sftp.mkdir(p)
        except OSError:
            if _stat_size(sftp, p) is None:
                raise


def upload_resumable(
    sftp,
    local_path: str | os.PathLike,
    remote_dir: str,
    name: str,
    *,
    progress: Callable[[int], None] | None = None,
    chunk: int = CHUNK,
    log: Callable[[str], None] = lambda _m: None,
) -> UploadResult:
    """Upload ``local_path`` to ``remote_dir/name``, resuming a ``.part`` left by an earlier attempt."""
    local_path = str(local_path)
    size = os.stat(local_path).st_size
    final = posixpath.join(remote_dir, name)
    part = final + ".part"
    makedirs(sftp, remote_dir)

    existing = _stat_size(sftp, final)
    if existing == size and _same_tail(sftp, final, local_path, size):
        log(f"{final} is already complete ({size} bytes): nothing to send")
        if progress:
            progress(size)
        return UploadResult(remote_path=final, size=size, resumed_from=size, already_there=True)

    offset = _stat_size(sftp, part) or 0
    if offset > size:
        log(f"{part} is larger than the local file: starting again")
        offset = 0
    elif offset and not _same_tail(sftp, part, local_path, offset):
        log(f"{part} does not match the local file: starting again")
        offset = 0
    elif offset:
        log(f"resuming {final} from byte {offset} of {size}")

    sent = 0
    with open(local_path, "rb") as src, sftp.open(part, "r+b" if offset else "wb") as dst:
        if hasattr(dst, "set_pipelined"):
            dst.set_pipelined(True)
        if offset:
            src.seek(offset)
            dst.seek(offset)
        done = offset
        while block := src.read(chunk):
            dst.write(block)
            done += len(block)
            sent += len(block)
            if progress:
                progress(done)
    remote_size = _stat_size(sftp, part)
    if remote_size != size:
        raise HpcsTransientError(
            f"{part} has {remote_size} bytes after the upload, expected {size}; the next attempt resumes"
        )
    try:
        sftp.posix_rename(part, final)
    except (OSError, AttributeError):
        if _stat_size(sftp, final) is not None:
            sftp.remove(final)
        sftp.rename(part, final)
    return UploadResult(remote_path=final, size=size, resumed_from=offset, sent=sent)
