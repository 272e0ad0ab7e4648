"""A thin adapter over python-irodsclient: what the transfer engine needs from iRODS.

Small files go single-stream through the open/read/write API. Large files (the engine decides, see
``parallel_threshold``) go through python-irodsclient's parallel transfer (``irods/parallel.py``,
iRODS 4.2.9+): ``num_threads`` streams, each on its own connection, open the same replica with its
replica token and move a byte range each; the first stream's close finalizes the replica. The
client runs it non-blocking and supervises the streams, so that an error, a cancel or a timeout
stops all of them (the library's own barrier would otherwise wait forever for a failed stream).
The library caps the streams at the machine's CPU count.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, wait
from dataclasses import dataclass

import irods.exception as iexc
import irods.keywords as kw
from irods.column import Like
from irods.models import Collection, DataObject
from irods.parallel import deferred_call
from irods.session import iRODSSession

from include.stager.errors import StagerError, TransientError, UserError

log = logging.getLogger(__name__)
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


# python-irodsclient 3.3 has no class for iRODS 4.2.9+'s INTERMEDIATE_REPLICA_ACCESS (-405000) and raises a
# KeyError on it; declaring one registers the code with the library (its metaclass keeps a code table).
INTERMEDIATE_REPLICA_ACCESS = iexc.iRODSExceptionMeta.codes.get(-405000) or type(
    "INTERMEDIATE_REPLICA_ACCESS", (iexc.SystemException,), {"code": -405000})


def sha2_of(digest: bytes) -> str:
    return "sha2:" + base64.b64encode(digest).decode()


def translate(exc: BaseException, what: str, user: str = "") -> StagerError:
    """An iRODS client error as a user or transient error, with what to do.

    :param user: the repository account that acted, named in a permission error.
    """
    if isinstance(exc, StagerError):
        return exc
    if isinstance(exc, (iexc.CAT_INVALID_AUTHENTICATION, iexc.CAT_INVALID_USER, iexc.CAT_PASSWORD_EXPIRED)):
        return UserError("the repository rejected the data-repository credential (drUser/drPass); "
                         "check the user name and password")
    if isinstance(exc, iexc.CAT_NO_ACCESS_PERMISSION):
        # iRODS checks only the access rows of the object or collection itself (no inheritance from the
        # parent at check time); a collection's inheritance flag gives new children its rows.
        who = f" for {user}" if user else ""
        return UserError(f"permission denied in the repository{who}: {what}; iRODS checks each collection and "
                         "data object's own access, so ask the collection's manager for write access on it "
                         "(with inheritance on, so that what is created below it gets the same access)")
    if isinstance(exc, (iexc.CAT_UNKNOWN_COLLECTION, iexc.OBJ_PATH_DOES_NOT_EXIST,
                        iexc.CollectionDoesNotExist, iexc.DataObjectDoesNotExist)):
        return UserError(f"does not exist in the repository: {what}")
    if isinstance(exc, (iexc.CAT_NAME_EXISTS_AS_COLLECTION, iexc.CAT_NAME_EXISTS_AS_DATAOBJ)):
        return UserError(f"a collection and a data object clash in the repository: {what}")
    if isinstance(exc, (INTERMEDIATE_REPLICA_ACCESS, iexc.LOCKED_DATA_OBJECT_ACCESS)):
        return TransientError(f"the object is being written by another transfer (its replica is locked) "
                              f"while {what}; retried later")
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
            raise translate(exc, "logging in", self.account.user) from None

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
            raise translate(exc, f"looking up {path}", self.account.user) from None

    def stat(self, path: str) -> RemoteFile | None:
        parent, name = path.rsplit("/", 1)
        try:
            rows = (self.session.query(DataObject.size, DataObject.checksum)
                    .filter(Collection.name == (parent or "/"), DataObject.name == name).all())
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, f"looking up {path}", self.account.user) from None
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
            raise translate(exc, f"listing {root}", self.account.user) from None
        return sorted(colls, key=lambda p: (p.count("/"), p)), files

    def collection_access(self, path: str) -> tuple[bool, dict[str, str]] | None:
        """``(inheritance flag, {user or group: access name})`` of a collection; ``None`` when this
        account cannot see it (iRODS's strict ACLs hide what it may not read)."""
        try:
            coll = self.session.collections.get(path)
            acls = self.session.acls.get(coll)
        except iexc.CollectionDoesNotExist:
            return None
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, f"reading the access of {path}", self.account.user) from None
        return bool(coll.inheritance), {a.user_name: a.access_name for a in acls}

    def groups(self) -> set[str]:
        """The groups this account is in (its own name included, as iRODS counts it)."""
        from irods.models import Group, User

        try:
            rows = self.session.query(Group.name).filter(User.name == self.account.user).all()
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, "looking up the account's groups", self.account.user) from None
        return {r[Group.name] for r in rows} | {self.account.user}

    def mkdirs(self, path: str) -> None:
        try:
            self.session.collections.create(path, recurse=True)
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, f"creating collection {path}", self.account.user) from None

    def checksum(self, path: str, force: bool = False) -> str:
        options = {kw.FORCE_CHKSUM_KW: ""} if force else {}
        try:
            return self.session.data_objects.chksum(path, **options)
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, f"checksumming {path}", self.account.user) from None

    # ---- data --------------------------------------------------------------------------------------
    def put(self, local: str, remote: str, on_bytes: Callable[[int], None], num_threads: int = 0,
            stop: threading.Event | None = None) -> str:
        """Upload ``local`` to ``remote`` (overwriting), register its checksum and verify it.

        :param on_bytes: called with the size of every chunk sent; may raise to abort.
        :param num_threads: parallel streams (python-irodsclient parallel put) when above 1.
        :param stop: set to abort a parallel upload.
        :return: the ``sha2:`` checksum.
        """
        if num_threads > 1:
            return self._put_parallel(local, remote, on_bytes, num_threads, stop)
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
            raise translate(exc, f"writing {remote}", self.account.user) from None
        local_sum = sha2_of(digest.digest())
        remote_sum = self.checksum(remote, force=True)
        if remote_sum != local_sum:
            raise TransientError(f"checksum mismatch after upload of {remote}: {remote_sum} != {local_sum}")
        return local_sum

    def get(self, remote: str, local: str, expected: str, on_bytes: Callable[[int], None], num_threads: int = 0,
            stop: threading.Event | None = None) -> str:
        """Download ``remote`` into ``local`` (a temporary name the caller renames) and verify it.

        :param num_threads: parallel streams (python-irodsclient parallel get) when above 1.
        :param stop: set to abort a parallel download.
        """
        if not expected:
            raise UserError(f"{remote} has no checksum in the repository; a download cannot be verified "
                            "(ask the repository admins to checksum it)")
        if num_threads > 1:
            return self._get_parallel(remote, local, expected, on_bytes, num_threads, stop)
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
            raise translate(exc, f"reading {remote}", self.account.user) from None
        got = sha2_of(digest.digest())
        if got != expected:
            raise TransientError(f"checksum mismatch after download of {remote}: {got} != {expected}")
        return got

    # ---- parallel streams ----------------------------------------------------------------------------
    def _put_parallel(self, local: str, remote: str, on_bytes: Callable[[int], None], num_threads: int,
                      stop: threading.Event | None) -> str:
        with open(local, "rb") as fh:  # unreadable or missing: fail before anything opens the object
            size = os.fstat(fh.fileno()).st_size
        local_sum: list[str | BaseException] = []

        def hash_local():
            try:
                local_sum.append(_file_sha2(local))
            except OSError as exc:
                local_sum.append(exc)

        hasher = threading.Thread(target=hash_local, daemon=True)
        hasher.start()  # hashed while the streams upload (the page cache serves both)
        objects = self.session.data_objects
        opener = deferred_call(objects.open, (remote, "w"), {})  # the first stream, opened by io_main
        self._run_streams(lambda counter: objects.parallel_put(
            local, (remote, opener), async_=True, total_bytes=size, num_threads=num_threads,
            open_options={}, updatables=[counter]), on_bytes, stop, f"writing {remote}")
        hasher.join()
        if isinstance(local_sum[0], BaseException):
            raise local_sum[0]
        remote_sum = self.checksum(remote, force=True)
        if remote_sum != local_sum[0]:
            raise TransientError(f"checksum mismatch after upload of {remote}: {remote_sum} != {local_sum[0]}")
        return local_sum[0]

    def _get_parallel(self, remote: str, local: str, expected: str, on_bytes: Callable[[int], None],
                      num_threads: int, stop: threading.Event | None) -> str:
        objects = self.session.data_objects

        def start(counter):
            first = objects.open(remote, "r")  # the first stream; its close finalizes
            return objects.parallel_get((remote, first), local, async_=True, num_threads=num_threads,
                                        data_open_returned_values={}, updatables=[counter])

        self._run_streams(start, on_bytes, stop, f"reading {remote}")
        with open(local, "rb+") as fh:
            os.fsync(fh.fileno())
        got = _file_sha2(local)
        if got != expected:
            raise TransientError(f"checksum mismatch after download of {remote}: {got} != {expected}")
        return got

    def _run_streams(self, start: Callable, on_bytes: Callable[[int], None], stop: threading.Event | None,
                     what: str) -> None:
        """Start a non-blocking parallel transfer and supervise its streams until all are done.

        A stream that fails, ``on_bytes`` raising (the engine aborting) or ``stop`` quits every stream;
        the session is then reset, which closes the streams' connections (the server finalizes them).
        """
        problems: list[BaseException] = []

        def counter(n: int) -> None:  # in a stream's thread: record, the supervisor below stops them all
            if problems:
                return
            try:
                on_bytes(n)
            except BaseException as exc:  # noqa: BLE001 - handed to the supervisor
                problems.append(exc)

        try:
            notify = start(counter)
        except BaseException as exc:
            self._reset()  # the first stream may be open (the replica locked): closing its connection ends it
            if isinstance(exc, (StagerError, PermissionError, FileNotFoundError, IsADirectoryError)):
                raise
            if isinstance(exc, Exception):
                raise translate(exc, what, self.account.user) from None
            raise
        mgr = notify.keep.get("mgr")  # gone once every stream is done
        pending = set(notify.futures)
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_EXCEPTION)
            problems += [f.exception() for f in done if f.exception() is not None]
            if problems or (stop is not None and stop.is_set()):
                break
        else:
            if all(f.result() is not None for f in notify.futures):
                return
            problems.append(TransientError(f"a parallel stream stopped early while {what}"))
        quitter = None
        if mgr is not None:  # break the streams' barrier and stop them at their next chunk
            quitter = threading.Thread(target=mgr.quit, name="stager-quit", daemon=True)
            quitter.start()
            quitter.join(2)
        self._reset()  # also wakes a stream blocked on the network
        if quitter is not None:
            quitter.join(30)
        first = next((p for p in problems if isinstance(p, StagerError)), None)
        if first is not None:
            raise first
        if problems and isinstance(problems[0], (PermissionError, FileNotFoundError, IsADirectoryError)):
            raise problems[0]
        if problems:
            raise translate(problems[0], what, self.account.user) from None
        raise TransientError(f"stopped while {what}")

    def _reset(self) -> None:
        """Drop every connection of the session (streams left open by an aborted transfer)."""
        try:
            self.session.cleanup()
        except Exception as exc:  # noqa: BLE001 - a broken connection: nothing more to close
            log.debug("session cleanup after an aborted transfer: %r", exc)


def _file_sha2(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return sha2_of(digest.digest())
