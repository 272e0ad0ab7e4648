"""Job endpoints: ``irods:/<zone>/...`` (or ``i:/<zone>/...``) and plain absolute POSIX paths.

An endpoint is absolute and has no root to be confined to (the account rules and the
``stagerUser``'s own rights decide what it may touch), so the shared ``include.common.paths``
confinement does not apply; :func:`parse_endpoint` keeps its own textual checks (absolute, no
``..``, no NUL). Names that come back from the repository are checked with
``include.common.paths.safe_relpath`` in the engine (``include/stager/transfer.py``), and the
streamer's source is confined with ``include.common.paths.confine`` (``include/stager/streamer.py``).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from include.stager.errors import UserError

IRODS_PREFIXES = ("irods:", "i:")


@dataclass(frozen=True)
class Endpoint:
    kind: str  # "irods" or "posix"
    path: str  # normalized absolute path, no trailing slash (except "/")

    @property
    def is_irods(self) -> bool:
        return self.kind == "irods"

    def url(self) -> str:
        return f"irods:{self.path}" if self.is_irods else self.path


def parse_endpoint(url: str) -> Endpoint:
    """Parse ``srcURL`` / ``dstURL`` of a job.

    :param url: ``irods:/zone/...``, ``i:/zone/...`` or an absolute POSIX path.
    """
    if not isinstance(url, str) or not url.strip():
        raise UserError("an empty path was given; give an absolute path or irods:/<zone>/...")
    raw = url.strip()
    kind = "posix"
    for prefix in IRODS_PREFIXES:
        if raw.lower().startswith(prefix):
            kind, raw = "irods", raw[len(prefix):]
            break
    if not raw.startswith("/"):
        raise UserError(f"path {url!r} is not absolute; give /abs/path or irods:/<zone>/...")
    if "\0" in raw:
        raise UserError(f"path {url!r} contains a NUL character")
    parts = raw.split("/")
    if ".." in parts:
        raise UserError(f"path {url!r} contains '..'")
    norm = posixpath.normpath(raw)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    if kind == "irods" and len([p for p in norm.split("/") if p]) < 2:
        raise UserError(f"iRODS path {url!r} needs a zone and a collection: irods:/<zone>/<collection>/...")
    return Endpoint(kind, norm)


def parse_pair(src_url: str, dst_url: str) -> tuple[Endpoint, Endpoint]:
    src, dst = parse_endpoint(src_url), parse_endpoint(dst_url)
    if src.is_irods == dst.is_irods:
        raise UserError(
            f"one side of a job must be iRODS and the other POSIX; got {src.url()!r} -> {dst.url()!r}")
    return src, dst
