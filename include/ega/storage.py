"""Inbox and archive backends: small classes over file objects.

Inboxes (read side): a POSIX directory, an SFTP server (a paramiko ``SFTPClient`` passed in),
an S3 bucket (a boto3 client passed in). Each user's inbox is ``<root>/<user>/``; a file path
from a message is resolved inside it only (``include.common.paths``: ``..``, absolute paths and
symlinks that leave the inbox are refused).

Archives (write side): a POSIX directory or an S3 bucket. Writes are atomic: a temporary name
then a rename (POSIX), a multipart upload completed last (S3); a failed write leaves nothing.
A writer killed outright (SIGKILL, OOM, a lost worker) cannot clean up: on POSIX the temporary
file of a ``tmp_key`` (the file id) is locked while written, and the next writer of that key
takes the unlocked leftover over, so a retry leaves no debris (S3: the unfinished multipart
upload is invisible; a bucket lifecycle rule aborts it).
"""

from __future__ import annotations

import fcntl
import io
import os
import posixpath
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, Protocol

from include.common.paths import confine, safe_relpath
from include.ega.errors import TransientError, UserError


def _relpath(filepath: str) -> str:
    """A message's ``filepath`` as a clean path relative to the user's inbox (see ``safe_relpath``)."""
    return safe_relpath(filepath, what="file path", error=UserError)


def user_dir(user: str) -> str:
    if not user or "/" in user or "\\" in user or user in (".", "..") or "\0" in user:
        raise UserError(f"Invalid user name {user!r}")
    return user


class Inbox(Protocol):
    def open(self, user: str, filepath: str) -> BinaryIO: ...
    def size(self, user: str, filepath: str) -> int: ...


def _not_found(filepath: str) -> UserError:
    return UserError(f"File not found in the inbox: {filepath!r}. Upload it before asking for ingestion.")


class PosixInbox:
    """Inboxes in a local directory: ``<root>/<user>/<filepath>``."""

    def __init__(self, root: str | os.PathLike):
        self.root = os.fspath(root)

    def path(self, user: str, filepath: str) -> str:
        """The file's real path; links inside the inbox are followed, links out of it refused."""
        base = os.path.join(self.root, user_dir(user))
        rel = _relpath(filepath)
        return str(confine(base, rel, follow_symlinks=True, what="file path", where="your inbox", error=UserError))

    def open(self, user: str, filepath: str) -> BinaryIO:
        path = self.path(user, filepath)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            raise _not_found(filepath) from None
        except OSError as exc:
            raise UserError(f"Cannot read {filepath!r} from the inbox: {exc.strerror}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise UserError(f"Invalid file path {filepath!r}: not a regular file")
        return os.fdopen(fd, "rb", buffering=1024 * 1024)

    def size(self, user: str, filepath: str) -> int:
        try:
            return os.stat(self.path(user, filepath)).st_size
        except FileNotFoundError:
            raise _not_found(filepath) from None


class SftpInbox:
    """Inboxes on an SFTP server, through a paramiko ``SFTPClient`` (``<root>/<user>/<filepath>``)."""

    def __init__(self, sftp: Any, root: str = "."):
        self.sftp = sftp
        self.root = root

    def path(self, user: str, filepath: str) -> str:
        base = posixpath.join(self.root, user_dir(user))
        full = posixpath.join(base, _relpath(filepath))
        try:
            real_base = self.sftp.normalize(base)
            real = self.sftp.normalize(full)  # resolves symlinks on the server
        except FileNotFoundError:
            raise _not_found(filepath) from None
        except OSError as exc:
            if getattr(exc, "errno", None) == 2 or "No such file" in str(exc):
                raise _not_found(filepath) from None
            raise TransientError(f"SFTP error resolving {filepath!r}: {exc}") from exc
        if not real.startswith(real_base.rstrip("/") + "/"):
            raise UserError(f"Invalid file path {filepath!r}: it points outside your inbox")
        return real

    def open(self, user: str, filepath: str) -> BinaryIO:
        path = self.path(user, filepath)
        try:
            attrs = self.sftp.stat(path)
            if not stat.S_ISREG(attrs.st_mode or 0):
                raise UserError(f"Invalid file path {filepath!r}: not a regular file")
            f = self.sftp.open(path, "rb", bufsize=1024 * 1024)
            f.prefetch(attrs.st_size)
        except FileNotFoundError:
            raise _not_found(filepath) from None
        return f

    def size(self, user: str, filepath: str) -> int:
        return self.sftp.stat(self.path(user, filepath)).st_size


class _S3Reader(io.RawIOBase):
    """A raw, readable stream over a boto3 ``StreamingBody``."""

    def __init__(self, body: Any):
        self.body = body

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self.body.read(len(b))
        n = len(data)
        b[:n] = data
        return n

    def close(self) -> None:
        self.body.close()
        super().close()


def _s3_missing(exc: Exception) -> bool:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    return code in ("404", "NoSuchKey", "NotFound")


class S3Inbox:
    """Inboxes in an S3 bucket: key ``<prefix><user>/<filepath>`` (S3 has no symlinks)."""

    def __init__(self, client: Any, bucket: str, prefix: str = ""):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def key(self, user: str, filepath: str) -> str:
        return f"{self.prefix}{user_dir(user)}/{_relpath(filepath)}"

    def open(self, user: str, filepath: str) -> BinaryIO:
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self.key(user, filepath))
        except Exception as exc:
            if _s3_missing(exc):
                raise _not_found(filepath) from None
            raise
        return io.BufferedReader(_S3Reader(obj["Body"]), buffer_size=1024 * 1024)

    def size(self, user: str, filepath: str) -> int:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self.key(user, filepath))["ContentLength"]
        except Exception as exc:
            if _s3_missing(exc):
                raise _not_found(filepath) from None
            raise


class Archive(Protocol):
    location: str

    def writer(self, name: str, tmp_key: str | None = None) -> Any: ...
    def open(self, path: str) -> BinaryIO: ...
    def size(self, path: str) -> int: ...
    def delete(self, path: str) -> None: ...
    def exists(self, path: str) -> bool: ...


def new_archive_name() -> str:
    return str(uuid.uuid4())


class PosixArchive:
    """The archive in a local directory: one file per archived body, named by a UUID."""

    def __init__(self, root: str | os.PathLike, fsync: bool = True):
        self.root = os.fspath(root)
        self.fsync = fsync
        self.location = f"file://{os.path.abspath(self.root)}"

    def _path(self, name: str) -> str:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"invalid archive name {name!r}")
        return os.path.join(self.root, name)

    def _locked_tmp(self, key: str) -> tuple[str, int]:
        """Open and lock ``.tmp-<key>``, taking over a dead writer's leftover (emptied).

        :raises TransientError: a live writer holds it (another worker on the same file)
        """
        self._path(key)  # a plain name
        tmp = os.path.join(self.root, f".tmp-{key}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
        for _ in range(5):
            fd = os.open(tmp, flags, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise TransientError(f"archive: {key} is being written by another worker") from None
            try:  # the name may have been renamed or removed by the writer that held the lock
                current = os.stat(tmp, follow_symlinks=False)
            except FileNotFoundError:
                current = None
            if current is not None and os.path.samestat(current, os.fstat(fd)):
                os.ftruncate(fd, 0)
                return tmp, fd
            os.close(fd)
        raise TransientError(f"archive: could not take the temporary file of {key}")

    @contextmanager
    def writer(self, name: str, tmp_key: str | None = None) -> Iterator[BinaryIO]:
        """Write ``name`` atomically: a hidden temporary file, fsync, then rename.

        :param tmp_key: names the temporary file (``.tmp-<tmp_key>``, locked while written) so
            that a writer killed mid-copy leaves nothing the next writer of that key does not
            take over; without it, a unique temporary name.
        """
        os.makedirs(self.root, exist_ok=True)
        final = self._path(name)
        if tmp_key is None:
            tmp = os.path.join(self.root, f".tmp-{name}-{uuid.uuid4().hex[:8]}")
            f = open(tmp, "wb", buffering=0)  # noqa: SIM115 - closed below on every path
        else:
            tmp, fd = self._locked_tmp(tmp_key)
            f = os.fdopen(fd, "wb", buffering=0)
        try:
            yield f
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
            os.replace(tmp, final)  # still locked: nobody takes the file over in between
            f.close()
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            f.close()
            raise

    def open(self, path: str) -> BinaryIO:
        return open(self._path(path), "rb", buffering=1024 * 1024)  # noqa: SIM115

    def size(self, path: str) -> int:
        return os.stat(self._path(path)).st_size

    def exists(self, path: str) -> bool:
        return os.path.exists(self._path(path))

    def delete(self, path: str) -> None:
        try:
            os.unlink(self._path(path))
        except FileNotFoundError:
            pass


class _MultipartWriter(io.RawIOBase):
    """Buffer writes into parts of ``part_size`` and upload them; ``complete`` makes the object appear."""

    def __init__(self, client: Any, bucket: str, key: str, part_size: int):
        self.client, self.bucket, self.key, self.part_size = client, bucket, key, part_size
        self.upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        self.parts: list[dict] = []
        self.buf = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.buf += b
        while len(self.buf) >= self.part_size:
            self._upload(bytes(self.buf[: self.part_size]))
            del self.buf[: self.part_size]
        return len(b)

    def _upload(self, data: bytes) -> None:
        n = len(self.parts) + 1
        resp = self.client.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=n, Body=data
        )
        self.parts.append({"PartNumber": n, "ETag": resp["ETag"]})

    def complete(self) -> None:
        if self.buf or not self.parts:
            self._upload(bytes(self.buf))
            self.buf.clear()
        self.client.complete_multipart_upload(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": self.parts}
        )

    def abort(self) -> None:
        self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)


class S3Archive:
    """The archive in an S3 bucket, one object per body, written by multipart upload."""

    def __init__(self, client: Any, bucket: str, prefix: str = "", part_size: int = 16 * 1024 * 1024):
        self.client, self.bucket, self.prefix, self.part_size = client, bucket, prefix, part_size
        self.location = f"s3://{bucket}/{prefix}"

    @contextmanager
    def writer(self, name: str, tmp_key: str | None = None) -> Iterator[BinaryIO]:
        w = _MultipartWriter(self.client, self.bucket, self.prefix + name, self.part_size)
        try:
            yield w
            w.complete()
        except BaseException:
            w.abort()
            raise

    def open(self, path: str) -> BinaryIO:
        obj = self.client.get_object(Bucket=self.bucket, Key=self.prefix + path)
        return io.BufferedReader(_S3Reader(obj["Body"]), buffer_size=1024 * 1024)

    def size(self, path: str) -> int:
        return self.client.head_object(Bucket=self.bucket, Key=self.prefix + path)["ContentLength"]

    def exists(self, path: str) -> bool:
        try:
            self.size(path)
            return True
        except Exception as exc:
            if _s3_missing(exc):
                return False
            raise

    def delete(self, path: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.prefix + path)
