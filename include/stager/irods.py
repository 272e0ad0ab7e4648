"""A thin adapter over python-irodsclient: what the transfer engine needs from iRODS.

Transfers are single-stream through the open/read/write API (``num_threads=0`` semantics): the
engine runs several files at once, each thread with its own session, instead of iRODS parallel
transfer, which needs the separate port protocol.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass

import irods.exception as iexc
import irods.keywords as kw
from irods.column import Like
from irods.models import Collection, DataObject
from irods.session import iRODSSession

from include.stager.errors import StagerError, TransientError, UserError

CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True)
class IrodsAccount:
    host: str
    port: int
    zone: str
    user: str
    password: str

    def __repr__(self) -> str:  # never show the password
        return f"IrodsAccount({self.user}@{self.host}:{self.port}/{self.zone})"


@dataclass(frozen=True)
class RemoteFile:
    size: int
    checksum: str  # "sha2:<base64>" or ""


def sha2_of(digest: bytes) -> str:
    return "sha2:" + base64.b64encode(digest).decode()


def translate(exc: BaseException, what: str) -> StagerError:
    """An iRODS client error as a user or transient error, with what to do."""
    if isinstance(exc, StagerError):
        return exc
    if isinstance(exc, (iexc.CAT_INVALID_AUTHENTICATION, iexc.CAT_INVALID_USER, iexc.CAT_PASSWORD_EXPIRED)):
        return UserError("the repository rejected the data-repository credential (drUser/drPass); "
                         "check the user name and password")
    if isinstance(exc, iexc.CAT_NO_ACCESS_PERMISSION):
        return UserError(f"permission denied in the repository: {what}")
    if isinstance(exc, (iexc.CAT_UNKNOWN_COLLECTION, iexc.OBJ_PATH_DOES_NOT_EXIST,
                        iexc.CollectionDoesNotExist, iexc.DataObjectDoesNotExist)):
        return UserError(f"does not exist in the repository: {what}")
    if isinstance(exc, (iexc.CAT_NAME_EXISTS_AS_COLLECTION, iexc.CAT_NAME_EXISTS_AS_DATAOBJ)):
        return UserError(f"a collection and a data object clash in the repository: {what}")
    if isinstance(exc, iexc.NetworkException | OSError):
        return TransientError(f"cannot reach the repository ({type(exc).__name__}) while {what}")
    return TransientError(f"repository error {type(exc).__name__} while {what}")


class IrodsClient:
    """One iRODS session (use one per thread)."""

    def __init__(self, account: IrodsAccount, timeout: float = 120):
        self.account = account
        self.session = iRODSSession(host=account.host, port=account.port, user=account.user,
                                    password=account.password, zone=account.zone)
        self.session.connection_timeout = timeout

    def close(self) -> None:
        self.session.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def login(self) -> None:
        """Authenticate now (the client connects lazily)."""
        try:
            conn = self.session.pool.get_connection()
            conn.release()
        except Exception as exc:  # noqa: BLE001 - translated
            raise translate(exc, "logging in") from None

    # ---- catalog ------------------------------------------------------------------------------------
    def kind(self, path: str) -> str | None:
        """``"coll"``, ``"obj"`` or ``None``."""
        try:
            if self.session.query(Collection.id).filter(Collection.name == path).first() is not None:
                return "coll"
            parent, name = path.rsplit("/", 1)
            row = (self.session.query(DataObject.id)
                   .filter(Collection.name == (parent or "/"), DataObject.name == name).first())
            return "obj" if row is not None else None
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, f"looking up {path}") from None

    def stat(self, path: str) -> RemoteFile | None:
        parent, name = path.rsplit("/", 1)
        try:
            rows = (self.session.query(DataObject.size, DataObject.checksum)
                    .filter(Collection.name == (parent or "/"), DataObject.name == name).all())
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, f"looking up {path}") from None
        for row in rows:
            return RemoteFile(int(row[DataObject.size]), row[DataObject.checksum] or "")
        return None

    def walk(self, root: str) -> tuple[list[str], dict[str, RemoteFile]]:
        """Sub-collections (relative, parents first) and data objects (relative path -> file) under root."""
        prefix = root.rstrip("/") + "/"
        like = prefix + "%"  # "_" and "%" in names widen the match: filtered by prefix below
        colls: set[str] = set()
        files: dict[str, RemoteFile] = {}
        columns = (Collection.name, DataObject.name, DataObject.size, DataObject.checksum)
        try:
            for row in self.session.query(Collection.name).filter(Like(Collection.name, like)):
                name = row[Collection.name]
                if name.startswith(prefix):
                    colls.add(name[len(prefix):])
            rows = [*self.session.query(*columns).filter(Collection.name == root),
                    *self.session.query(*columns).filter(Like(Collection.name, like))]
            for row in rows:
                coll = row[Collection.name]
                if coll != root and not coll.startswith(prefix):
                    continue
                rel = (coll[len(prefix):] + "/" if coll != root else "") + row[DataObject.name]
                files.setdefault(rel, RemoteFile(int(row[DataObject.size]), row[DataObject.checksum] or ""))
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, f"listing {root}") from None
        return sorted(colls, key=lambda p: (p.count("/"), p)), files

    def mkdirs(self, path: str) -> None:
        try:
            self.session.collections.create(path, recurse=True)
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, f"creating collection {path}") from None

    def checksum(self, path: str, force: bool = False) -> str:
        options = {kw.FORCE_CHKSUM_KW: ""} if force else {}
        try:
            return self.session.data_objects.chksum(path, **options)
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, f"checksumming {path}") from None

    # ---- data --------------------------------------------------------------------------------------
    def put(self, local: str, remote: str, on_bytes: Callable[[int], None]) -> str:
        """Upload ``local`` to ``remote`` (overwriting), register its checksum and verify it.

        :param on_bytes: called with the size of every chunk sent; may raise to abort.
        :return: the ``sha2:`` checksum.
        """
        digest = hashlib.sha256()
        try:
            objects = self.session.data_objects
            with open(local, "rb") as src, objects.open(remote, "w", auto_close=False) as dst:
                for chunk in iter(lambda: src.read(CHUNK), b""):
                    dst.write(chunk)
                    digest.update(chunk)
                    on_bytes(len(chunk))
        except (StagerError, PermissionError, FileNotFoundError):
            raise
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, f"writing {remote}") from None
        local_sum = sha2_of(digest.digest())
        remote_sum = self.checksum(remote, force=True)
        if remote_sum != local_sum:
            raise TransientError(f"checksum mismatch after upload of {remote}: {remote_sum} != {local_sum}")
        return local_sum

    def get(self, remote: str, local: str, expected: str, on_bytes: Callable[[int], None]) -> str:
        """Download ``remote`` into ``local`` (a temporary name the caller renames) and verify it."""
        if not expected:
            raise UserError(f"{remote} has no checksum in the repository; a download cannot be verified "
                            "(ask the repository admins to checksum it)")
        digest = hashlib.sha256()
        try:
            objects = self.session.data_objects
            with objects.open(remote, "r", auto_close=False) as src, open(local, "wb") as dst:
                for chunk in iter(lambda: src.read(CHUNK), b""):
                    dst.write(chunk)
                    digest.update(chunk)
                    on_bytes(len(chunk))
                dst.flush()
                os.fsync(dst.fileno())
        except (StagerError, PermissionError, FileNotFoundError, IsADirectoryError):
            raise
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, f"reading {remote}") from None
        got = sha2_of(digest.digest())
        if got != expected:
            raise TransientError(f"checksum mismatch after download of {remote}: {got} != {expected}")
        return got
