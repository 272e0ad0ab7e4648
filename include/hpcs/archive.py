"""Stream an input tree into an encrypted archive: tar (gzip or not), then Crypt4GH, with its sha512.

The layers are small file objects over each other, none holding more than one segment::

    tarfile (mode "w|")  ->  GzipLayer (optional)  ->  Crypt4GHWriter  ->  HashingSink  ->  file

``Crypt4GHWriter`` writes a Crypt4GH v1 file the way ``crypt4gh.lib.encrypt`` does (header made with
``crypt4gh.header``, 64 KiB segments sealed with ChaCha20-Poly1305 under one session key), but as a
writable stream, so that no temporary clear-text archive ever exists. ``HashingSink`` computes the
sha512 of exactly the bytes written to disk; it can run in a thread of its own so that hashing and
disk writes overlap with compression and encryption.

Memory stays flat whatever the input size: a few segments in flight at most.
"""

from __future__ import annotations

import grp
import hashlib
import io
import os
import pwd
import queue
import stat
import tarfile
import threading
import zlib
from base64 import b64encode
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from crypt4gh import SEGMENT_SIZE, header, sodium
from crypt4gh.keys.c4gh import MAGIC_WORD, encode_string

from include.hpcs.errors import HpcsUserError

COMPRESSIONS = ("gzip", "none")
GZIP_LEVEL = 6  # what `gzip` and `tar czf` use; tarfile's "w|gz" is hard-wired to 9, much slower
SUFFIX = {"gzip": ".tar.gz.c4gh", "none": ".tar.c4gh"}
TAR_BUFSIZE = 256 * 1024
COPY_BUFSIZE = 1024 * 1024
MAX_LISTED = 5

ProgressFn = Callable[[int, int, int], None]  # (files_done, tar_bytes_done, tar_bytes_expected)


# --------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyPair:
    """An X25519 key pair. ``repr`` never shows the secret key."""

    secret: bytes = field(repr=False)
    public: bytes

    @classmethod
    def generate(cls) -> KeyPair:
        sk = os.urandom(32)
        return cls(secret=sk, public=sodium.derive_pk(sk))

    def private_pem(self) -> bytes:
        """The secret key as an unencrypted Crypt4GH private key file (read by ``crypt4gh decrypt --sk``)."""
        blob = MAGIC_WORD + encode_string(None) + encode_string(None) + encode_string(self.secret)
        label = b"CRYPT4GH " + b"PRIVATE KEY"  # the armour, spelt in two parts so key scanners see code, not a key
        return b"-----BEGIN " + label + b"-----\n" + b64encode(blob) + b"\n-----END " + label + b"-----\n"

    def public_pem(self) -> bytes:
        return (
            b"-----BEGIN CRYPT4GH PUBLIC KEY-----\n" + b64encode(self.public) + b"\n-----END CRYPT4GH PUBLIC KEY-----\n"
        )


def public_key_from_pem(data: bytes) -> bytes:
    lines = [line.strip() for line in data.splitlines() if line.strip()]
    if not lines or b"CRYPT4GH PUBLIC KEY" not in lines[0]:
        raise ValueError("not a Crypt4GH public key")
    from base64 import b64decode

    return b64decode(b"".join(lines[1:-1]))


# --------------------------------------------------------------------------------------------
# Stream layers
# --------------------------------------------------------------------------------------------


class _Offload:
    """Runs ``fn(item)`` for each submitted item in a thread of its own, in order, through a small
    bounded queue; the first error is raised to the producer (at its next submit, or at close)."""

    def __init__(self, fn: Callable[[bytes], None], depth: int = 8):
        self._fn = fn
        self._error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._drain, name="hpcs-archive", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is None:
                try:
                    self._fn(item)
                except BaseException as exc:  # noqa: BLE001 - handed back to the producer
                    self._error = exc

    def submit(self, item: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(item)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


class HashingSink(io.RawIOBase):
    """Writes to ``out`` and computes the sha512 and size of what was written.

    With ``threaded=True`` the hashing and the writes run in a thread of their own (both release
    the GIL).
    """

    def __init__(self, out, *, threaded: bool = False):
        super().__init__()
        self._out = out
        self.sha512 = hashlib.sha512()
        self.size = 0
        self._offload = _Offload(self._put) if threaded else None

    def writable(self) -> bool:
        return True

    def _put(self, data: bytes) -> None:
        self.sha512.update(data)
        self._out.write(data)

    def write(self, data) -> int:
        data = bytes(data)
        self.size += len(data)
        if self._offload is not None:
            self._offload.submit(data)
        else:
            self._put(data)
        return len(data)

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        if self._offload is not None:
            self._offload.close()

    def hexdigest(self) -> str:
        return self.sha512.hexdigest()


class Crypt4GHWriter(io.RawIOBase):
    """A writable stream that Crypt4GH-encrypts what it is given into ``sink``.

    :param sink: where the encrypted bytes go (header first, then the sealed segments)
    :param recipient_public_keys: X25519 public keys that may decrypt
    :param threaded: seal segments (and write them to ``sink``) in a thread of its own, so that
        encryption runs while the producer compresses (zlib releases the GIL)
    """

    def __init__(self, sink, recipient_public_keys: list[bytes], *, threaded: bool = False):
        super().__init__()
        self._sink = sink
        self._session_key = os.urandom(32)
        sender_sk = os.urandom(32)  # ephemeral, as `crypt4gh encrypt` without --sk
        packet = header.make_packet_data_enc(0, self._session_key)
        packets = header.encrypt(packet, [(0, sender_sk, pk) for pk in recipient_public_keys])
        sink.write(header.serialize(packets))
        self._segment = bytearray(SEGMENT_SIZE)
        self._filled = 0
        self._cipher = bytearray(SEGMENT_SIZE + 28)
        self.plain_bytes = 0
        self._offload = _Offload(self._seal_now) if threaded else None

    def writable(self) -> bool:
        return True

    def _seal_now(self, segment) -> None:
        clen = sodium.chacha20poly1305_encrypt(self._cipher, segment, self._session_key)
        self._sink.write(self._cipher[:clen])

    def _seal(self, segment) -> None:
        if self._offload is not None:
            self._offload.submit(bytes(segment))
        else:
            self._seal_now(segment)

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        n = len(view)
        self.plain_bytes += n
        pos = 0
        if self._filled:
            take = min(SEGMENT_SIZE - self._filled, n)
            self._segment[self._filled : self._filled + take] = view[:take]
            self._filled += take
            pos = take
            if self._filled == SEGMENT_SIZE:
                self._seal(self._segment)
                self._filled = 0
        while n - pos >= SEGMENT_SIZE:
            self._seal(view[pos : pos + SEGMENT_SIZE])
            pos += SEGMENT_SIZE
        if pos < n:
            rest = n - pos
            self._segment[:rest] = view[pos:]
            self._filled = rest
        return n

    def close(self) -> None:
        if self.closed:
            return
        if self._filled:
            self._seal(memoryview(self._segment)[: self._filled])
            self._filled = 0
        super().close()
        if self._offload is not None:
            self._offload.close()


class GzipLayer(io.RawIOBase):
    """gzip-compresses what it is given into ``out`` (a member with a standard gzip header)."""

    def __init__(self, out, level: int = GZIP_LEVEL):
        super().__init__()
        self._out = out
        self._zip = zlib.compressobj(level, zlib.DEFLATED, 31)  # 16 + 15: gzip wrapper

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        chunk = self._zip.compress(data)
        if chunk:
            self._out.write(chunk)
        return len(data)

    def close(self) -> None:
        if self.closed:
            return
        self._out.write(self._zip.flush())
        super().close()


class _Counting(io.RawIOBase):
    """Counts the tar bytes and reports progress."""

    def __init__(self, out, report: Callable[[int], None] | None):
        super().__init__()
        self._out = out
        self.count = 0
        self._report = report

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        n = self._out.write(data)
        self.count += len(data)
        if self._report is not None:
            self._report(self.count)
        return n


# --------------------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------------------


@dataclass
class InputSummary:
    root: str
    is_dir: bool
    files: int = 0
    dirs: int = 0
    links: int = 0
    bytes: int = 0
    outside_links: list[str] = field(default_factory=list)
    fingerprint: str = ""


def _within(root: Path, target: Path) -> bool:
    try:
        target.relative_to(root)
        return True
    except ValueError:
        return False


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


def scan_input(input_path: str | os.PathLike, staging_root: str | os.PathLike | None = None) -> InputSummary:
    """Check the input before anything is written; raise ``HpcsUserError`` saying what is wrong.

    Missing or empty input, an input outside ``staging_root``, unreadable entries and special
    files are errors. Symbolic links are kept as links: those pointing outside the input are
    listed in ``outside_links`` (never followed). The fingerprint (sha256 of names, types, sizes,
    modes, mtimes and link targets) tells whether the input changed since an earlier run.
    """
    path = Path(input_path)
    if not os.path.lexists(path):
        raise HpcsUserError(f"input {str(path)!r} does not exist in the staging area")
    if path.is_symlink():
        raise HpcsUserError(f"input {str(path)!r} is a symbolic link: give the real directory or file")
    if staging_root is not None:
        root_real = Path(os.path.realpath(staging_root))
        if not _within(root_real, Path(os.path.realpath(path))):
            raise HpcsUserError(f"input {str(path)!r} is outside the staging area {str(staging_root)!r}")
    real_root = Path(os.path.realpath(path))
    st = path.lstat()
    digest = hashlib.sha256()
    summary = InputSummary(root=str(path), is_dir=stat.S_ISDIR(st.st_mode))
    unreadable: list[str] = []
    special: list[str] = []

    def note(rel: str, st: os.stat_result, link: str = "") -> None:
        digest.update(
            f"{rel}\0{stat.S_IFMT(st.st_mode)}\0{st.st_mode & 0o7777}\0{st.st_size}\0{st.st_mtime_ns}\0{link}\n".encode(
                "utf-8", "surrogateescape"
            )
        )

    if stat.S_ISREG(st.st_mode):
        if not os.access(path, os.R_OK):
            raise HpcsUserError(f"input file {str(path)!r} is not readable by the pipeline")
        if st.st_size == 0:
            raise HpcsUserError(f"input file {str(path)!r} is empty")
        summary.files, summary.bytes = 1, st.st_size
        note(path.name, st)
    elif stat.S_ISDIR(st.st_mode):
        if not os.access(path, os.R_OK | os.X_OK):
            raise HpcsUserError(f"input directory {str(path)!r} is not readable by the pipeline")
        if not any(os.scandir(path)):
            raise HpcsUserError(f"input directory {str(path)!r} is empty")
        for dirpath, dirnames, filenames in os.walk(path, onerror=lambda e: unreadable.append(str(e.filename))):
            dirnames.sort()
            base = Path(dirpath)
            for name in sorted(dirnames + filenames):
                full = base / name
                rel = str(full.relative_to(path))
                try:
                    est = full.lstat()
                except OSError:
                    unreadable.append(rel)
                    continue
                mode = est.st_mode
                if stat.S_ISLNK(mode):
                    target = os.readlink(full)
                    summary.links += 1
                    note(rel, est, target)
                    resolved = (
                        Path(os.path.normpath(base / target))
                        if not os.path.isabs(target)
                        else Path(os.path.normpath(target))
                    )
                    # os.walk does not descend into links; tarfile stores them as links.
                    if not _within(path.absolute(), resolved.absolute()) or not _within(
                        real_root, Path(os.path.realpath(full))
                    ):
                        summary.outside_links.append(rel)
                elif stat.S_ISDIR(mode):
                    summary.dirs += 1
                    note(rel, est)
                    if not os.access(full, os.R_OK | os.X_OK):
                        unreadable.append(rel + "/")
                elif stat.S_ISREG(mode):
                    summary.files += 1
                    summary.bytes += est.st_size
                    note(rel, est)
                    if not os.access(full, os.R_OK):
                        unreadable.append(rel)
                else:
                    special.append(rel)
    else:
        raise HpcsUserError(f"input {str(path)!r} is neither a directory nor a regular file")
    if unreadable:
        raise HpcsUserError(
            f"cannot read {len(unreadable)} input entr{'y' if len(unreadable) == 1 else 'ies'}: "
            f"{_listing(unreadable)}; fix their permissions and run again"
        )
    if special:
        raise HpcsUserError(
            f"input holds {len(special)} special file(s) (socket, device or fifo) that cannot be "
            f"archived: {_listing(special)}"
        )
    summary.fingerprint = digest.hexdigest()
    return summary


# --------------------------------------------------------------------------------------------
# The archive
# --------------------------------------------------------------------------------------------


@dataclass
class ArchiveResult:
    name: str
    path: str
    size: int
    sha512: str
    compression: str
    files: int
    dirs: int
    links: int
    input_bytes: int
    tar_bytes: int
    outside_links: list[str]
    input_fingerprint: str

    def to_dict(self) -> dict:
        return asdict(self)


def archive_name(secret_name: str, compression: str) -> str:
    if compression not in COMPRESSIONS:
        raise HpcsUserError(f"compression must be one of {', '.join(COMPRESSIONS)}, not {compression!r}")
    return secret_name + SUFFIX[compression]


def _entries(path: Path):
    """(path, arcname) of the input and everything below it, parents first, in name order."""
    top = path.name
    root = str(path)
    yield root, top
    if path.is_dir() and not path.is_symlink():
        cut = len(root.rstrip(os.sep)) + 1
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel = dirpath[cut:]
            prefix = f"{top}/{rel}/" if rel else f"{top}/"
            for name in sorted(dirnames + filenames):
                yield os.path.join(dirpath, name), prefix + name


class _Members:
    """Adds entries to a tar stream from ``lstat`` (a symbolic link is never followed), with hard
    links stored once and owner names looked up once per uid/gid (``TarFile.add`` asks ``pwd``
    and ``grp`` for every file, which dominates with many small files)."""

    def __init__(self, tar: tarfile.TarFile):
        self.tar = tar
        self.users: dict[int, str] = {}
        self.groups: dict[int, str] = {}
        self.inodes: dict[tuple[int, int], str] = {}

    def _user(self, uid: int) -> str:
        if uid not in self.users:
            try:
                self.users[uid] = pwd.getpwuid(uid).pw_name
            except KeyError:
                self.users[uid] = ""
        return self.users[uid]

    def _group(self, gid: int) -> str:
        if gid not in self.groups:
            try:
                self.groups[gid] = grp.getgrgid(gid).gr_name
            except KeyError:
                self.groups[gid] = ""
        return self.groups[gid]

    def add(self, path: str, arcname: str) -> None:
        st = os.lstat(path)
        info = tarfile.TarInfo(arcname)
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.uname, info.gname = self._user(st.st_uid), self._group(st.st_gid)
        info.mtime = int(st.st_mtime)
        mode = st.st_mode
        if stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self.inodes:
                info.type, info.linkname = tarfile.LNKTYPE, self.inodes[key]
                self.tar.addfile(info)
                return
            if st.st_nlink > 1:
                self.inodes[key] = arcname
            info.size = st.st_size
            with open(path, "rb") as f:
                self.tar.addfile(info, f)
        elif stat.S_ISDIR(mode):
            info.type = tarfile.DIRTYPE
            self.tar.addfile(info)
        elif stat.S_ISLNK(mode):
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
            self.tar.addfile(info)
        else:
            raise HpcsUserError(f"cannot archive {arcname!r}: not a file, directory or symbolic link")


class _Sealer:
    """The encryption stage: Crypt4GH writer -> sha512 -> ``part`` (optionally in a thread)."""

    def __init__(self, part: Path, public_key: bytes, threaded: bool):
        self._raw = open(part, "wb", buffering=1024 * 1024)  # noqa: SIM115 - closed in finish/abort
        self._sink = HashingSink(self._raw)
        self.stream = Crypt4GHWriter(self._sink, [public_key], threaded=threaded)

    def finish(self) -> tuple[int, str]:
        try:
            self.stream.close()
            self._sink.close()
            self._raw.flush()
            os.fsync(self._raw.fileno())
        finally:
            self._raw.close()
        return self._sink.size, self._sink.hexdigest()

    def abort(self) -> None:
        for close in (self.stream.close, self._sink.close, self._raw.close):
            try:
                close()
            except Exception:  # noqa: BLE001,S110 - aborting: the first error is the one reported
                pass


def prepare_archive(
    input_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    public_key: bytes,
    *,
    secret_name: str,
    compression: str = "gzip",
    staging_root: str | os.PathLike | None = None,
    summary: InputSummary | None = None,
    progress: ProgressFn | None = None,
    threaded: bool | None = None,
) -> ArchiveResult:
    """Tar ``input_path`` (as ``<basename>/...``), compress, Crypt4GH-encrypt for ``public_key``.

    :param threaded: encrypt, hash and write in a thread of its own, overlapping the compression
        (which releases the GIL); default: with gzip only (without, the hand-over costs more)

    The archive is written as ``<name>.part`` and renamed into place once complete, so a
    crash never leaves a truncated archive under its final name.
    """
    path = Path(input_path)
    name = archive_name(secret_name, compression)
    summary = summary or scan_input(path, staging_root)
    out = Path(out_dir) / name
    part = out.with_name(out.name + ".part")
    expected = summary.bytes + 512 * (summary.files + summary.dirs + summary.links + 1) + 1024
    files_done = 0

    def report(count: int) -> None:
        if progress is not None:
            progress(files_done, count, expected)

    stage = _Sealer(part, public_key, threaded=compression == "gzip" if threaded is None else threaded)
    layer = GzipLayer(stage.stream) if compression == "gzip" else stage.stream
    counting = _Counting(layer, report)
    try:
        with tarfile.open(
            fileobj=counting,
            mode="w|",
            bufsize=TAR_BUFSIZE,
            copybufsize=COPY_BUFSIZE,
            format=tarfile.GNU_FORMAT,
            encoding="utf-8",
            errors="surrogateescape",
        ) as tar:
            members = _Members(tar)
            for full, arcname in _entries(path):
                try:
                    members.add(full, arcname)
                except OSError as exc:
                    raise HpcsUserError(f"cannot read input entry {arcname!r}: {exc.strerror or exc}") from None
                files_done += 1
        if layer is not stage.stream:
            layer.close()
        size, digest = stage.finish()
    except BaseException:
        stage.abort()
        part.unlink(missing_ok=True)
        raise
    os.replace(part, out)
    return ArchiveResult(
        name=name,
        path=str(out),
        size=size,
        sha512=digest,
        compression=compression,
        files=summary.files,
        dirs=summary.dirs,
        links=summary.links,
        input_bytes=summary.bytes,
        tar_bytes=counting.count,
        outside_links=list(summary.outside_links),
        input_fingerprint=summary.fingerprint,
    )


def sha512_file(path: str | os.PathLike, chunk: int = 1024 * 1024) -> str:
    h = hashlib.sha512()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
