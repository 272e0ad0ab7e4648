"""The transfer engine: a recursive sync between a POSIX tree and an iRODS collection, either way.

- directories <-> collections, empty ones too; the destination top level is created;
- symbolic links and special files (FIFOs, sockets, devices) are skipped with a warning;
- a file is skipped when the sizes match and the local SHA-256 equals the iRODS ``sha2:`` checksum,
  so a re-run resumes where the last one stopped;
- uploads register and verify a checksum, downloads verify it (and fail without one) and are
  written under a temporary name then renamed;
- ``threads`` files in parallel, each thread with its own iRODS session; a file larger than
  ``parallel_threshold`` bytes moves in ``num_threads`` parallel streams (python-irodsclient parallel
  put/get: one connection per stream on the replica's token);
- progress is counted by the shared ``include.common.progress.ProgressReporter`` (files, bytes,
  rate, ETA, the ``failed`` and ``skipped`` counters) and reported every ``report_interval``
  seconds as the job status :class:`Progress` ``{total, processed, failed, ...}`` (the stager API's
  progress; the operator puts it in the task log and XCom);
- the overall ``timeout`` and the ``timeout_noprogress`` (no byte moved, no file finished) stop
  the transfer with :class:`TransferTimeout`; ``cancel`` stops it with :class:`Cancelled`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field

from include.common.paths import safe_relpath
from include.common.progress import ProgressReporter, Snapshot
from include.stager.errors import Cancelled, StagerError, TransferTimeout, TransientError, UserError
from include.stager.irods import IrodsAccount, IrodsClient, RemoteFile, sha2_of
from include.stager.paths import Endpoint

log = logging.getLogger(__name__)
HASH_CHUNK = 4 * 1024 * 1024
PARALLEL_THRESHOLD = 32 * 1024 * 1024
MIN_STREAM_BYTES = 1024 * 1024
TMP_SUFFIX = ".stager-part"


@dataclass
class Progress:
    """The job status of a transfer: what the stager API shows as ``progress``.

    ``total``/``processed`` are files (``processed`` includes ``skipped``, not ``failed``);
    ``rate`` bytes per second, ``eta`` seconds left (``None`` while unknown); ``errors`` the first
    failures, ``file: message``.
    """

    total: int = 0
    processed: int = 0
    failed: int = 0
    skipped: int = 0
    bytes_total: int = 0
    bytes_done: int = 0
    errors: list[str] = field(default_factory=list)
    rate: float = 0.0
    eta: float | None = None

    @classmethod
    def of(cls, snap: Snapshot, errors: list[str] | None = None) -> Progress:
        """The job status of a :class:`~include.common.progress.Snapshot` of the transfer's reporter."""
        return cls(total=snap.files_total or 0, processed=snap.files_done, failed=snap.counts.get("failed", 0),
                   skipped=snap.counts.get("skipped", 0), bytes_total=snap.bytes_total or 0,
                   bytes_done=snap.bytes_done, errors=list(errors or []), rate=round(snap.rate, 1),
                   eta=None if snap.eta is None else round(snap.eta, 1))

    def as_dict(self) -> dict:
        out = asdict(self)
        out["errors"] = self.errors[:5]
        return out

    def line(self) -> str:
        return (f"progress: total={self.total} processed={self.processed} failed={self.failed} "
                f"skipped={self.skipped} bytes={self.bytes_done}/{self.bytes_total}")


@dataclass(frozen=True)
class Item:
    rel: str
    src: str
    dst: str
    size: int
    remote: RemoteFile | None  # the iRODS side as listed (destination of an upload, source of a download)


class _Abort(StagerError):
    pass


def local_sha2(path: str, on_activity: Callable[[], None] | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(HASH_CHUNK), b""):
            digest.update(block)
            if on_activity:
                on_activity()
    return sha2_of(digest.digest())


def walk_local(root: str) -> tuple[list[str], list[tuple[str, int]], list[str]]:
    """Directories (relative, parents first), regular files (relative, size) and skipped entries."""
    dirs: list[str] = []
    files: list[tuple[str, int]] = []
    skipped: list[str] = []
    stack = [""]
    while stack:
        rel = stack.pop()
        base = os.path.join(root, rel) if rel else root
        try:
            entries = sorted(os.scandir(base), key=lambda e: e.name)
        except PermissionError:
            raise UserError(f"permission denied reading directory {base}") from None
        for entry in entries:
            child = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_symlink():
                skipped.append(f"{child} (symbolic link)")
            elif entry.is_dir(follow_symlinks=False):
                dirs.append(child)
                stack.append(child)
            elif entry.is_file(follow_symlinks=False):
                files.append((child, entry.stat(follow_symlinks=False).st_size))
            else:
                skipped.append(f"{child} (special file)")
    dirs.sort(key=lambda p: (p.count("/"), p))
    return dirs, files, skipped


class Sync:
    """One transfer job: ``run()`` returns the final :class:`Progress` or raises a :class:`StagerError`."""

    def __init__(self, src: Endpoint, dst: Endpoint, account: IrodsAccount, *, threads: int = 4,
                 timeout: float = 0, timeout_noprogress: float = 0,
                 report: Callable[[Progress], None] | None = None, report_interval: float = 10.0,
                 cancel: threading.Event | None = None, num_threads: int = 4,
                 parallel_threshold: int = PARALLEL_THRESHOLD,
                 client_factory: Callable[[IrodsAccount], IrodsClient] = IrodsClient):
        if src.is_irods == dst.is_irods:
            raise UserError("one side of a job must be iRODS and the other POSIX")
        self.src, self.dst, self.account = src, dst, account
        self.threads = max(1, threads)
        self.num_threads = max(1, num_threads)
        self.parallel_threshold = max(0, parallel_threshold)
        self.timeout, self.timeout_noprogress = timeout, timeout_noprogress
        self.report = report or (lambda p: log.info("%s", p.line()))
        self.report_interval = report_interval
        self.cancel = cancel or threading.Event()
        self.client_factory = client_factory
        self.errors: list[str] = []
        self.reporter = ProgressReporter(f"transfer {src.url()} -> {dst.url()}", files_total=0, bytes_total=0,
                                         interval=report_interval, on_report=self._status)
        self.lock = threading.Lock()
        self.abort = threading.Event()
        self.started = time.monotonic()
        self.last_activity = self.started
        self.error_kinds: list[bool] = []  # True for a user error
        self._local = threading.local()
        self._clients: list[IrodsClient] = []

    # ---- bookkeeping ---------------------------------------------------------------------------------
    @property
    def progress(self) -> Progress:
        """The job status now."""
        with self.lock:
            errors = list(self.errors)
        return Progress.of(self.reporter.snapshot(), errors)

    def _status(self, snap: Snapshot) -> None:
        """The reporter's status channel: the job status to ``report``."""
        with self.lock:
            errors = list(self.errors)
        self.report(Progress.of(snap, errors))

    def _activity(self, nbytes: int = 0) -> None:
        if self.abort.is_set():
            raise _Abort()
        self.last_activity = time.monotonic()
        if nbytes:
            self.reporter.add(nbytes=nbytes)

    def _client(self) -> IrodsClient:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self.client_factory(self.account)
            self._local.client = client
            with self.lock:
                self._clients.append(client)
        return client

    def _check_limits(self) -> None:
        now = time.monotonic()
        done, total = self.reporter.files_done, self.reporter.files_total
        if self.cancel.is_set():
            raise Cancelled("the job was cancelled")
        if self.timeout and now - self.started > self.timeout:
            raise TransferTimeout(f"the transfer did not finish within timeout={self.timeout:g}s "
                                  f"({done} of {total} files done); "
                                  "a re-run resumes where it stopped")
        if self.timeout_noprogress and now - self.last_activity > self.timeout_noprogress:
            raise TransferTimeout(f"no progress for timeout_noprogress={self.timeout_noprogress:g}s "
                                  f"({done} of {total} files done); "
                                  "the source or the repository stalled")

    # ---- planning --------------------------------------------------------------------------------------
    def _plan_upload(self, client: IrodsClient) -> tuple[list[str], list[Item]]:
        root = self.src.path
        try:
            st = os.stat(root)
        except FileNotFoundError:
            raise UserError(f"the source {root} does not exist") from None
        except PermissionError:
            raise UserError(f"permission denied on the source {root}") from None
        dst_kind = client.kind(self.dst.path)
        if stat.S_ISREG(st.st_mode):
            target = self.dst.path
            if dst_kind == "coll":
                target = posixpath.join(self.dst.path, posixpath.basename(root))
            return [posixpath.dirname(target)], [
                Item(posixpath.basename(root), root, target, st.st_size, client.stat(target))]
        if not stat.S_ISDIR(st.st_mode):
            raise UserError(f"the source {root} is neither a file nor a directory")
        if dst_kind == "obj":
            raise UserError(f"the destination {self.dst.url()} is a data object, the source a directory")
        dirs, files, skipped = walk_local(root)
        for entry in skipped:
            log.warning("skipped %s", entry)
        remote_colls, remote_files = client.walk(self.dst.path) if dst_kind == "coll" else ([], {})
        have = set(remote_colls)
        mk = [] if dst_kind == "coll" else [self.dst.path]
        mk += [posixpath.join(self.dst.path, d) for d in dirs if d not in have]
        items = [Item(rel, os.path.join(root, rel), posixpath.join(self.dst.path, rel), size,
                      remote_files.get(rel)) for rel, size in files]
        return mk, items

    def _plan_download(self, client: IrodsClient) -> tuple[list[str], list[Item]]:
        kind = client.kind(self.src.path)
        if kind is None:
            raise UserError(f"the source {self.src.url()} does not exist in the repository "
                            "(or you have no access to it)")
        root = self.dst.path
        if kind == "obj":
            remote = client.stat(self.src.path)
            target = os.path.join(root, posixpath.basename(self.src.path)) if os.path.isdir(root) else root
            return [os.path.dirname(target)], [Item(posixpath.basename(self.src.path), self.src.path, target,
                                                    remote.size if remote else 0, remote)]
        if os.path.exists(root) and not os.path.isdir(root):
            raise UserError(f"the destination {root} is a file, the source a collection")
        colls, files = client.walk(self.src.path)
        for rel in [*colls, *files]:  # names from the repository never lead out of the destination
            safe_relpath(rel, what="repository path", error=UserError)
        mk = [root] + [os.path.join(root, c) for c in colls]
        items = [Item(rel, posixpath.join(self.src.path, rel), os.path.join(root, rel), rf.size, rf)
                 for rel, rf in sorted(files.items())]
        return mk, items

    # ---- one file ----------------------------------------------------------------------------------------
    def _upload(self, item: Item) -> bool:
        client = self._client()
        if item.remote is not None and item.remote.size == item.size:
            remote_sum = item.remote.checksum or client.checksum(item.dst)
            if remote_sum == local_sha2(item.src, self._activity):
                return False
        client.put(item.src, item.dst, self._activity, num_threads=self._streams(item), stop=self.abort)
        return True

    def _download(self, item: Item) -> bool:
        assert item.remote is not None
        if not item.remote.checksum:
            raise UserError(f"{item.src} has no checksum in the repository; a download cannot be verified "
                            "(ask the repository admins to checksum it)")
        try:
            if (os.path.getsize(item.dst) == item.size
                    and local_sha2(item.dst, self._activity) == item.remote.checksum):
                return False
        except FileNotFoundError:
            pass
        tmp = os.path.join(os.path.dirname(item.dst), f".{os.path.basename(item.dst)}{TMP_SUFFIX}")
        try:
            self._client().get(item.src, tmp, item.remote.checksum, self._activity,
                               num_threads=self._streams(item), stop=self.abort)
            os.replace(tmp, item.dst)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return True

    def _streams(self, item: Item) -> int:
        """Parallel streams for this file: ``num_threads`` above the threshold (at most one per MiB, since
        the library's streams wait for each other and one with an empty byte range never arrives), else 0."""
        if item.size <= self.parallel_threshold:
            return 0
        n = min(self.num_threads, item.size // MIN_STREAM_BYTES)
        return n if n > 1 else 0

    def _one(self, item: Item) -> None:
        upload = not self.src.is_irods
        try:
            sent = self._upload(item) if upload else self._download(item)
        except _Abort:
            return
        except (StagerError, OSError) as exc:
            if isinstance(exc, PermissionError):
                exc = UserError(f"permission denied: {exc.filename or item.rel}")
            elif isinstance(exc, FileNotFoundError):
                exc = UserError(f"vanished during the transfer: {item.rel}")
            elif isinstance(exc, OSError):
                exc = TransientError(f"{type(exc).__name__} on {item.rel}: {exc.strerror or exc}")
            log.warning("failed %s: %s", item.rel, exc)
            with self.lock:
                self.errors.append(f"{item.rel}: {exc}")
                self.error_kinds.append(isinstance(exc, UserError))
            self.reporter.count("failed")
            self.last_activity = time.monotonic()
            return
        self.reporter.add(nbytes=0 if sent else item.size, files=1)
        if not sent:
            self.reporter.count("skipped")
        self.last_activity = time.monotonic()

    # ---- the job ------------------------------------------------------------------------------------
    def _make_dirs(self, client: IrodsClient, dirs: list[str]) -> None:
        for path in dirs:
            self._check_limits()
            if self.dst.is_irods:
                client.mkdirs(path)
            else:
                try:
                    os.makedirs(path, exist_ok=True)
                except PermissionError:
                    raise UserError(f"permission denied creating {path}") from None
                except FileExistsError:
                    raise UserError(f"{path} exists and is not a directory") from None
            self.last_activity = time.monotonic()

    def run(self) -> Progress:
        try:
            return self._run()
        finally:
            self.abort.set()
            for client in self._clients:
                try:
                    client.close()
                except Exception:  # noqa: BLE001,S110 - closing a session that broke
                    pass

    def _run(self) -> Progress:
        planner = self._client()
        planner.login()
        dirs, items = self._plan_download(planner) if self.src.is_irods else self._plan_upload(planner)
        bytes_total = sum(i.size for i in items)
        self.reporter.update(files_total=len(items), bytes_total=bytes_total)
        log.info("transfer %s -> %s: %d files, %d bytes, %d directories to create, %d threads, "
                 "%d streams per file above %d bytes", self.src.url(), self.dst.url(), len(items),
                 bytes_total, len(dirs), self.threads, self.num_threads, self.parallel_threshold)
        self._make_dirs(planner, dirs)
        self.reporter.report()
        pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="stager")
        try:
            pending = {pool.submit(self._one, item) for item in items}
            while pending:
                done, pending = wait(pending, timeout=min(0.5, self.report_interval),
                                     return_when=FIRST_COMPLETED)
                for fut in done:
                    fut.result()  # a bug in _one surfaces here
                self._check_limits()
                self.reporter.tick()  # a report when one is due, also when nothing moved
        except BaseException:
            self.abort.set()
            pool.shutdown(wait=False, cancel_futures=True)
            self.reporter.report()
            raise
        pool.shutdown(wait=True)
        final = self.reporter.finish()  # reports (self._status takes the lock): outside it
        with self.lock:
            p = Progress.of(final, self.errors)  # the status of the last report
        if p.failed:
            first = p.errors[0]
            msg = f"{p.failed} of {p.total} files failed; first error: {first}"
            if all(self.error_kinds):
                raise UserError(msg)
            raise TransientError(msg + "; a re-run retries them and skips what is done")
        return p
